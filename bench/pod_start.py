"""Pod start in the sandbox's HTTP world (issue 12, goal 7).

The world of ``./dev sandbox``: the Kubernetes API simulator over HTTP, moto
as a server with the Fargate data plane, lambdalet's routes under ``chalice
local`` (the apiserver's audit batches and admission reviews reach them over
HTTP), its functions invoked as Lambda would. Measured: from the moment the
plane reports the task RUNNING to the pod showing Running when read through
the Kubernetes API, (a) on the event path (the ECS task state change delivered
to ``on_machine_event``) and (b) on the reconcile path alone (no events: the
next scheduled reconcile; the wait for it is at most one schedule period).
"""

from __future__ import annotations

import statistics
import time


def _running_event(events: list[dict], uid_of: dict[str, str]) -> dict[str, dict]:
    """ECS task state changes that say RUNNING, by pod name (from the task group)."""
    found = {}
    for event in events:
        detail = event.get("detail") or {}
        group = str(detail.get("group") or "")
        if detail.get("lastStatus") == "RUNNING" and group.startswith("lambdalet:"):
            name = group.split(":")[3]
            if name in uid_of:
                found[name] = event
    return found


def pod_start_http(pods: int = 8) -> None:
    import urllib.request

    from chalice import local

    from tests.world.kube_sim.admission import http_sink
    from tests.world.sandbox import forget_aws_clients, start_http, start_moto, stop_http, utcnow
    from tests.world.stack import WEBHOOK_URL_PLACEHOLDER, Stack, lambda_timeout, virtual_pod

    local.ChaliceRequestHandler.log_message = lambda *_: None  # one stderr line per request
    moto, endpoint = start_moto()
    forget_aws_clients()
    stack = Stack(moto_endpoint=endpoint, clock=utcnow, connect_audit=False, anonymous=True,
                  audit={"batch_max_size": 400, "batch_max_wait": 1.0}, admission=False)
    http = None
    try:
        stack.start()
        http, url = start_http(stack.app)
        stack.connect_audit(f"{url}/audit")
        stack.connect_admission(lambda u, body, timeout: http_sink(u.replace(WEBHOOK_URL_PLACEHOLDER, url),
                                                                   body, timeout))
        stack.reconcile()  # registers the node
        results: dict[str, list[float]] = {"event": [], "reconcile": []}
        reconcile_ms: list[float] = []
        for path in ("event", "reconcile"):
            names = {f"{path}{i}": "" for i in range(pods)}
            for name in names:
                names[name] = stack.create_pod(virtual_pod(name, command=["sh", "-c", "sleep 100000"]))["metadata"]["uid"]
            stack.sim.scheduler.run_once()  # bindings (admission over HTTP)
            stack.audit.flush()  # the audit batch over HTTP: the tasks start
            waiting = set(names)
            deadline = time.monotonic() + 120
            while waiting and time.monotonic() < deadline:
                events = stack.plane.step()
                running = _running_event(events, names)
                others = [e for e in events if e not in running.values()]
                if path == "event":
                    stack.machine_events(others)
                for name, event in running.items():
                    if name not in waiting:
                        continue
                    t = time.perf_counter()
                    if path == "event":
                        stack.machine_events([event])
                    else:
                        stack.reconcile()  # the next scheduled run (the wait for it is not counted here)
                        reconcile_ms.append((time.perf_counter() - t) * 1000)
                    while (stack.pod(name) or {}).get("status", {}).get("phase") != "Running":
                        if time.perf_counter() - t > 30:
                            break
                        time.sleep(0.005)
                    results[path].append((time.perf_counter() - t) * 1000)
                    waiting.discard(name)
                time.sleep(0.2)
            for name in names:
                stack.core.delete_namespaced_pod(name, "default")
        ev, rc = results["event"], results["reconcile"]
        period = 60  # infra: the reconcile's schedule, Rate(1 minute) in app.py
        print(f"pod start in the sandbox's HTTP world (simulator + moto over HTTP, chalice local): task RUNNING -> "
              f"pod Running through the Kubernetes API: event path median {statistics.median(ev):.0f} ms, max "
              f"{max(ev):.0f} ms over {len(ev)} pods (goal <= 1 s); reconcile path alone: the wait for the next run "
              f"(<= {period} s) + {statistics.median(rc):.0f} ms (max {max(rc):.0f} ms, a reconcile of "
              f"{pods} pods {statistics.median(reconcile_ms):.0f} ms) over {len(rc)} pods "
              f"(goal <= one period: <= {period + max(rc) / 1000:.1f} s; reconcile timeout {lambda_timeout('reconcile')} s)")
    finally:
        if http is not None:
            stop_http(http, stack.app)
        stack.stop()
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)
        moto.stop()
        forget_aws_clients()
