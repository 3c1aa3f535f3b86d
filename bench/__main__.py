"""lambdalet benchmarks: `./dev bench` prints the figures.

- cold start: a fresh Python process importing the Chalice app (what every
  Lambda scale-out pays before the handler runs), and a fresh process doing
  its first reconcile against the simulator + a moto server (imports, clients,
  Secrets Manager, node heartbeat, list calls);
- steady-state reconcile at N pods: wall time, Kubernetes and ECS calls, peak
  Python memory;
- one audit batch of the apiserver's maximum size (400 events);
- the planner alone (lambdalet's own CPU per reconcile) at 1,000 and 10,000 pods;
- Fly: pod creates against Fly's documented per-app limits (the fake enforces them).

Emulator time (moto serialising DescribeTasks, the simulator's lists) dominates
the steady-state figures; the call counts are the portable part.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections import Counter

from tests.world.stack import REPO, SA_USER, Stack, virtual_pod

PY = sys.executable


def fresh(code: str, env: dict | None = None, runs: int = 5) -> tuple[float, float]:
    """Median wall ms and median max RSS MiB of ``python -c code`` in a new process."""
    walls, rss = [], []
    # VmHWM: this process's peak RSS (ru_maxrss would carry the parent's over exec).
    probe = code + "\nprint([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    for _ in range(runs):
        t = time.perf_counter()
        out = subprocess.run([PY, "-c", probe], cwd=REPO, env={**os.environ, **(env or {})},
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        walls.append((time.perf_counter() - t) * 1000)
        rss.append(int(out) / 1024)
    return statistics.median(walls), statistics.median(rss)


def cold_start() -> None:
    wall, mib = fresh("pass")
    print(f"python -c pass                     {wall:8.1f} ms  {mib:6.1f} MiB")
    for module in ("boto3", "kubernetes", "app"):
        wall, mib = fresh(f"import {module}")
        print(f"import {module:27s} {wall:8.1f} ms  {mib:6.1f} MiB")


def cold_reconcile() -> None:
    from moto.server import ThreadedMotoServer

    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        with Stack(moto_endpoint=f"http://{host}:{port}") as stack:
            stack.reconcile()
            env = {k: v for k, v in os.environ.items() if k.startswith(("LAMBDALET_", "AWS_"))}
            env["POWERTOOLS_LOG_LEVEL"] = "WARNING"
            code = ("import app\nfrom chalicelib import wiring\nfrom chalicelib.usecases.reconcile import reconcile\n"
                    "reconcile(wiring.world())")
            wall, mib = fresh(code, env=env)
            print(f"first reconcile, fresh process     {wall:8.1f} ms  {mib:6.1f} MiB  (import + clients + secret + heartbeat + lists)")
    finally:
        server.stop()


def steady_reconcile(pods: int) -> None:
    with Stack() as stack:
        stack.reconcile()
        for i in range(pods):
            stack.create_pod(virtual_pod(f"p{i}", command=["sh", "-c", "sleep 100000"]))
        stack.settle(rounds=4, reconcile=True, deliver_events=False)
        from chalicelib import wiring
        from chalicelib.usecases import reconcile as usecases
        from tests.world.stack import NODE

        world = wiring.world()
        ecs: Counter = Counter()
        world.backend_for(NODE).ecs.meta.events.register("before-call.ecs", lambda model, **_: ecs.update([model.name]))
        before = Counter({k: v for k, v in stack.sim.api.calls.items() if k[0] == SA_USER})
        tracemalloc.start()
        times = []
        for _ in range(3):
            t = time.perf_counter()
            report = usecases.reconcile(world)
            times.append((time.perf_counter() - t) * 1000)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        after = Counter({k: v for k, v in stack.sim.api.calls.items() if k[0] == SA_USER})
        kube = {f"{verb} {res}": n / 3 for (_, verb, res), n in (after - before).items()}
        running = report[next(iter(report))]["pods"]
        print(f"steady reconcile, {pods:4d} pods ({running} listed)  {statistics.median(times):8.1f} ms  "
              f"peak {peak:5.1f} MiB  per run: k8s {json.dumps(kube)}  ecs {json.dumps({k: v / 3 for k, v in ecs.items()})}")


def audit_batch() -> None:
    captured: list[bytes] = []
    with Stack(audit={"batch_max_size": 400}, connect_audit=False) as stack:
        stack.connect_audit(lambda body: captured.append(body) or 200)
        stack.reconcile()
        for i in range(100):
            stack.create_pod(virtual_pod(f"a{i}", command=["sh", "-c", "sleep 100000"]))
        stack.sim.scheduler.run_once()
        stack.audit.flush()
        events = [e for body in captured for e in json.loads(body)["items"]][:400]
        body = json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
                           "items": events}).encode()
        from chalicelib import wiring
        from chalicelib.usecases import audit as usecases

        t = time.perf_counter()
        report = usecases.handle_audit(wiring.world(), body)
        wall = (time.perf_counter() - t) * 1000
        print(f"audit batch of {len(events)} events ({report.pods} pods bound, tasks started)  {wall:8.1f} ms")
        t = time.perf_counter()
        report = usecases.handle_audit(wiring.world(), body)
        wall = (time.perf_counter() - t) * 1000
        print(f"same batch redelivered (nothing to do)                {wall:8.1f} ms  actions {dict(report.actions)}")


def pure_plan(pods: int) -> None:
    """lambdalet's own CPU per reconcile: the planner on N running pods, no I/O."""
    from datetime import timedelta

    from chalicelib.plan import plan
    from tests.world.pods import T0, machine, pod, with_status

    pairs = []
    for i in range(pods):
        p = pod(f"p{i}")
        m = machine(p)
        shown = plan("vk-1", [p], [m], T0).actions[0].status
        pairs.append((with_status(p, shown), m))
    all_pods, machines = [p for p, _ in pairs], [m for _, m in pairs]
    times = []
    for _ in range(5):
        t = time.perf_counter()
        result = plan("vk-1", all_pods, machines, T0 + timedelta(minutes=1))
        times.append((time.perf_counter() - t) * 1000)
    print(f"plan(), {pods:5d} running pods, no change  {statistics.median(times):8.1f} ms  actions {len(result.actions)}")


def admission() -> None:
    """Webhook answers must come within the webhook timeout (5 s in infra/k8s/webhooks.yaml)."""
    from chalicelib import wiring
    from chalicelib.usecases import admission_review as usecases
    from tests.samples import sample
    from tests.world.stack import NODE

    with Stack() as stack:
        stack.reconcile()
        world = wiring.world()
        review = sample("admission-pod-create.json")
        pod = review["request"]["object"]
        pod["spec"]["tolerations"] = [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}]
        pod["spec"]["nodeSelector"] = {"kubernetes.io/hostname": NODE}
        body = json.dumps(review).encode()
        for webhook in ("validate", "mutate"):
            times = []
            for _ in range(50):
                t = time.perf_counter()
                usecases.handle_admission(world, body, webhook)
                times.append((time.perf_counter() - t) * 1000)
            print(f"admission {webhook:8s} review, warm              {statistics.median(times):8.2f} ms  (p-max {max(times):.2f} ms)")
        times = []
        for i in range(20):
            created = stack.create_pod(virtual_pod(f"fast{i}", command=["sh", "-c", "sleep 100000"]))
            binding = sample("admission-pods-binding-create.json")
            binding["request"].update(name=created["metadata"]["name"], namespace="default", dryRun=False)
            binding["request"]["object"]["metadata"].update(name=created["metadata"]["name"], namespace="default",
                                                          uid=created["metadata"]["uid"])
            binding["request"]["object"]["target"]["name"] = NODE
            t = time.perf_counter()
            usecases.handle_admission(world, json.dumps(binding).encode(), "validate")
            times.append((time.perf_counter() - t) * 1000)
        print(f"binding fast path (read pod + RunTask on moto)  {statistics.median(times):8.1f} ms  "
              f"(p-max {max(times):.1f} ms, tasks {len(stack.tasks())})")


def fly_creates(n: int) -> None:
    """n pod creates on Fly against its documented limits (the fake enforces
    them: creates and lists 1/s burst 3 per app): the ceiling any create
    path on one Fly app meets, whatever lambdalet does."""
    from chalicelib.machines.fly import FlyApi, FlyBackend
    from chalicelib.pod_spec import machine_spec
    from tests.world.fly_fake import FlyFake

    with FlyFake(apps={"app"}, token="t") as fly:
        fly.rate_limit = True
        backend = FlyBackend(FlyApi(fly.url, "app", lambda: "t"), region="iad")
        t = time.perf_counter()
        for i in range(n):
            pod = {"metadata": {"name": f"p{i}", "namespace": "default", "uid": f"00000000-0000-4000-8000-{i:012d}"},
                   "spec": {"containers": [{"name": "app", "image": "nginx"}]}}
            backend.create(machine_spec(pod, "vk", 0))
        wall = time.perf_counter() - t
        throttled = sum(1 for (_, _, status) in fly.requests if status == 429)
    print(f"Fly creates at the documented limits ({n} pods, one app)  {wall:8.1f} s  "
          f"({n / wall:.2f} creates/s, {len(fly.requests)} calls, {throttled} answered 429)")


def main() -> None:
    print(f"lambdalet benchmarks ({os.cpu_count()} cores, Python {sys.version.split()[0]})")
    cold_start()
    cold_reconcile()
    for pods in (1000, 10000):
        pure_plan(pods)
    for pods in (100, 500):
        steady_reconcile(pods)
    audit_batch()
    admission()
    fly_creates(20)


if __name__ == "__main__":
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    main()
