"""The chaos run: many pod lifecycles through the whole test world while
deliveries and calls fail, then at most two clean reconcile passes, then the
invariants, printed as figures. On either backend.

    ./dev chaos                      # full size: 1,000 lifecycles, 20 % dropped, 20 % duplicated, 10 % failing
    ./dev chaos --backend fly        # the same through the Fly fake
    ./dev chaos --lifecycles 60      # any size (CI runs tests/test_chaos.py, a small one of each backend)

The storm, each round (5 simulated seconds): new pods (jobs that exit 0 or 1,
servers; restartPolicy Never/OnFailure/Always), the scheduler, audit batches
(the simulator's audit webhook drops, duplicates and reorders), admission
deliveries dropped (time out: failurePolicy decides) or duplicated, ECS task
state events dropped, duplicated, delayed a round and reordered, some run
twice concurrently, pod deletes (graceful and ``--grace-period=0 --force``),
machines stopped out of band (ECS: Spot interruptions, abrupt host loss; Fly:
``fly machine stop``, the OOM killer, a machine destroyed, a host unreachable
for a while), heartbeat and reconcile invocations with too little Lambda time
left (a reconcile whose time runs out mid-pass is killed at its next cloud
call, as Lambda ends it), reconciles (sometimes two at once) while the
Kubernetes API fails lambdalet's calls (429 with Retry-After, 500, 504
timeouts, 409 on pod status and Lease writes, 410 on a continued list:
tests/world/kube_sim/faults.py) and a share of ALL cloud calls fails
(tests/world/cloud_faults.py: every AWS call — ECS, Secrets Manager, Logs,
DynamoDB — throttled, 5xx, timed out before or after the work; every Fly call
429 with Retry-After, 5xx, a 409 lease conflict, the answer lost; Fly machines
show their IP late). Some invocations are killed right after the cloud
accepted a create (RunTask / Machine create returned), before anything after it
is recorded: the next passes must adopt that machine (ECS: its clientToken;
Fly: its create claim and metadata).

Figures (all must be 0 but the last, which must stay bounded): machines
without a pod, pods with two live machines, bound live pods without a machine,
pods stuck Terminating, pods whose status disagrees with their machine (phase,
or the IP of a running one), finished pods rewritten, and the most Events any
one pod has.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone

from tests.world.cloud_faults import CloudFaults, Killed
from tests.world.fargate_plane import Clock
from tests.world.stack import NODE, OPT_IN, SA_USER, Stack, pod_sources, virtual_pod

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
MAX_EVENTS_PER_POD = 40
LIVE = ("PROVISIONING", "PENDING", "ACTIVATING", "RUNNING")
FLY_LIVE = ("created", "starting", "started")
KILL_RATE = 0.25  # of the invocations: killed right after their first create the cloud accepted


class Storm:
    def __init__(self, stack: Stack, rng: random.Random, cloud: CloudFaults, *, drop: float, duplicate: float,
                 failing: float):
        self.stack, self.rng, self.cloud = stack, rng, cloud
        self.fate = random.Random(rng.random())  # which invocations die: apart, as threads draw from it
        self.drop, self.duplicate, self.failing = drop, duplicate, failing
        self.delayed: list[dict] = []
        self.counts: Counter = Counter()
        self.finished: dict[str, str] = {}  # uid -> the status JSON when first seen finished
        self.rewritten: set[str] = set()

    # -- invocations -----------------------------------------------------------
    def invoke(self, call, *args, failed=None):
        """One Lambda invocation (or HTTP delivery) of the app; a killed one returns None.
        An error escaping the function fails the invocation (Lambda records it; an
        asynchronous one is retried: ``failed()``) and also returns None."""
        self.cloud.revive(doomed=self.fate.random() < KILL_RATE)
        try:
            return call(*args)
        except Killed:
            self.counts["invocations killed"] += 1
            return None
        except Exception as err:  # noqa: BLE001 - what Lambda does with a function error
            self.counts[f"invocations failed ({type(err).__name__})"] += 1
            if failed is not None:
                failed()
            return None
        finally:
            self.cloud.revive()

    # -- deliveries ------------------------------------------------------------
    def admission_sink(self, url: str, body: bytes, timeout: float):
        if self.rng.random() < self.drop:
            self.counts["admission dropped"] += 1
            raise TimeoutError(url)
        answer = self.invoke(self.stack.deliver_admission, url, body, timeout)
        if self.rng.random() < self.duplicate:
            self.counts["admission duplicated"] += 1
            answer = self.invoke(self.stack.deliver_admission, url, body, timeout)
        if answer is None:  # killed: the apiserver's call times out
            raise TimeoutError(url)
        return answer

    def audit_sink(self, deliver):
        """Wrap the audit webhook's sink: a killed invocation is a 504 from API Gateway."""
        def sink(*args):
            answer = self.invoke(deliver, *args)
            return 504 if answer is None else answer
        return sink

    def machine_events(self, events: list[dict]) -> None:
        out = self.delayed
        self.delayed = []
        for event in events:
            roll = self.rng.random()
            if roll < self.drop:
                self.counts["ecs events dropped"] += 1
                continue
            if roll < self.drop + 0.1:
                self.delayed.append(event)  # next round, after newer ones
                self.counts["ecs events delayed"] += 1
                continue
            out.append(event)
            if self.rng.random() < self.duplicate:
                out.append(event)
                self.counts["ecs events duplicated"] += 1
        self.rng.shuffle(out)
        if out and self.rng.random() < 0.2:  # the same event in two concurrent invocations
            self._concurrently(lambda: self.invoke(self.stack.machine_events, [out[0]]),
                               lambda: self.invoke(self.stack.machine_events, [out[0]]))
            self.counts["ecs events run concurrently"] += 1
        for event in out:  # one invocation each, as EventBridge delivers them; Lambda retries a failed one
            self.invoke(self.stack.machine_events, [event], failed=lambda event=event: self.delayed.append(event))

    @staticmethod
    def _concurrently(*calls) -> None:
        threads = [threading.Thread(target=call) for call in calls]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    # -- failing calls ---------------------------------------------------------
    def faults(self) -> None:
        """This round's new failing calls: each kind with probability ``failing`` (they
        wait for the calls they match, however many rounds that takes)."""
        faults = self.stack.sim.api.faults
        kinds = [("list", "pods", 429, {}), ("list", "pods", 500, {}), ("list", "pods", 410, {"continued_only": True}),
                 ("get", "pods", 504, {}), ("patch", "pods/status", 409, {}), ("patch", "pods/status", 500, {}),
                 ("update", "leases", 409, {}), ("create", "events", 500, {}), ("delete", "pods", 500, {})]
        for verb, resource, status, extra in kinds:
            if self.rng.random() < self.failing:
                faults.add(verb, resource, status, user=SA_USER, times=self.rng.randint(1, 3), **extra)
                self.counts[f"kube {verb} {resource} {status}"] += 1

    def clear(self) -> None:
        self.stack.sim.api.faults.clear()
        self.cloud.armed = False

    # -- watching finished pods ------------------------------------------------
    def watch_finished(self, pods: list[dict]) -> None:
        for pod in pods:
            status = pod.get("status") or {}
            uid = pod["metadata"]["uid"]
            if status.get("phase") in ("Succeeded", "Failed"):
                seen = json.dumps(status, sort_keys=True)
                if uid not in self.finished:
                    self.finished[uid] = seen
                elif self.finished[uid] != seen:
                    self.rewritten.add(uid)


def all_pods(stack: Stack) -> list[dict]:
    return stack.sim.request("GET", "/api/v1/pods").body["items"]


def all_events(stack: Stack) -> list[dict]:
    return stack.sim.request("GET", "/api/v1/events").body["items"]


def _tags(task: dict) -> dict:
    """The task's identity: its tags, or (StopTask deletes them) its group."""
    from chalicelib.machines.ecs.identity import identity_from_task

    return {**(identity_from_task(task) or {}), **{t["key"]: t["value"] for t in task.get("tags", [])}}


def _task_ip(task: dict) -> str | None:
    for attachment in task.get("attachments") or []:
        for detail in attachment.get("details") or []:
            if detail.get("name") == "privateIPv4Address" and detail.get("value"):
                return detail["value"]
    return None


def machines(stack: Stack) -> list[dict]:
    """Every machine the cloud has (live or not), read from the cloud itself, as
    ``{id, uid, attempt, live, running, ip}``."""
    if stack.backend == "fly":
        from chalicelib.machines.fly.config import META_ATTEMPT, META_UID

        with stack.fly._lock:
            found = list(stack.fly.machines.values()) + list(stack.fly.destroyed.values())
            return [{"id": m.id, "uid": (m.config.get("metadata") or {}).get(META_UID),
                     "attempt": int((m.config.get("metadata") or {}).get(META_ATTEMPT, 0)),
                     "live": m.state in FLY_LIVE, "running": m.state == "started",
                     "ip": m.private_ip if m.started_at is not None else None} for m in found]
    out = []
    for task in stack.plane.tasks():
        tags = _tags(task)
        out.append({"id": task["taskArn"], "uid": tags.get("lambdalet.io/pod-uid"),
                    "attempt": int(tags.get("lambdalet.io/attempt", 0)),
                    "live": task["lastStatus"] in LIVE and task["desiredStatus"] != "STOPPED",
                    "running": task["lastStatus"] == "RUNNING", "ip": _task_ip(task)})
    return out


def lifecycle_pod(rng: random.Random, index: int) -> tuple[dict, str]:
    kind = rng.choice(["ok-job", "failing-job", "crashloop", "server", "server", "server-with-secret"])
    name = f"chaos-{index}"
    if kind == "ok-job":
        return virtual_pod(name, restart="Never", command=["sh", "-c", f"sleep {rng.randint(1, 20)}; exit 0"]), kind
    if kind == "failing-job":
        return virtual_pod(name, restart=rng.choice(["Never", "OnFailure"]),
                           command=["sh", "-c", f"sleep {rng.randint(1, 20)}; exit 3"]), kind
    if kind == "crashloop":
        return virtual_pod(name, restart="Always", command=["sh", "-c", f"sleep {rng.randint(1, 10)}; exit 1"]), kind
    if kind == "server-with-secret":  # ECS: a mirror in Secrets Manager per pod; Fly: in the machine's config
        secret = {"secretKeyRef": {"name": "app-secret", "key": "password"}}
        return virtual_pod(name, restart="Always", command=["sh", "-c", "sleep 100000"],
                           container={"env": [{"name": "DB_PASSWORD", "valueFrom": secret}]}), kind
    return virtual_pod(name, restart="Always", command=["sh", "-c", "sleep 100000"]), kind


def read_logs(stack: Stack, storm_: Storm, rng: random.Random, pods: list[dict]) -> None:
    """``kubectl logs`` of a few started pods (apiserver -> kubelet API -> CloudWatch Logs / Fly logs),
    while those calls fail too: counted by answer."""
    started = [p["metadata"]["name"] for p in pods if p["spec"].get("nodeName") == NODE
               and (p.get("status") or {}).get("containerStatuses")]
    for name in rng.sample(started, min(2, len(started))):
        answer = stack.sim.request("GET", f"/api/v1/namespaces/default/pods/{name}/log")
        storm_.counts[f"logs read: {answer.status}"] += 1


def stop_out_of_band(stack: Stack, storm_: Storm, rng: random.Random) -> None:
    """The cloud (or someone else) stops a few running machines; Fly hosts come and go."""
    if stack.backend == "fly":
        fly = stack.fly
        with fly._lock:
            started = [m.id for m in fly.machines.values() if m.state == "started"]
            away = [m.id for m in fly.machines.values() if m.host_status != "ok"]
        for machine_id in away:  # back after a round or two
            if rng.random() < 0.5:
                fly.reachable(machine_id)
        for machine_id in started:
            roll = rng.random()
            if roll < 0.015:
                fly.stop_out_of_band(machine_id)
                storm_.counts["fly machines stopped out of band"] += 1
            elif roll < 0.02:
                fly.oom(machine_id)
                storm_.counts["fly machines OOM-killed"] += 1
            elif roll < 0.025:
                fly.vanish(machine_id)
                storm_.counts["fly machines vanished"] += 1
            elif roll < 0.04:
                fly.unreachable(machine_id, rng.choice(["unreachable", "unknown"]))
                storm_.counts["fly hosts unreachable"] += 1
        return
    for task in stack.plane.tasks():
        if task["lastStatus"] == "RUNNING" and task["desiredStatus"] == "RUNNING" and rng.random() < 0.03:
            stack.plane.kill(task["taskArn"], abrupt=rng.random() < 0.3)
            storm_.counts["tasks stopped out of band"] += 1


def storm(stack: Stack, storm_: Storm, rng: random.Random, lifecycles: int, per_round: int) -> None:
    created, live_names = 0, []
    rounds = 0
    storm_.cloud.armed = True
    while created < lifecycles or rounds < 3:
        rounds += 1
        storm_.faults()
        for _ in range(min(per_round, lifecycles - created)):
            pod, kind = lifecycle_pod(rng, created)
            stack.create_pod(pod)
            storm_.counts[f"lifecycles {kind}"] += 1
            live_names.append(pod["metadata"]["name"])
            created += 1
        stack.sim.scheduler.run_once()
        stack.audit.flush()
        storm_.machine_events(stack.cloud_step(deliver=False))
        for name in list(live_names):
            roll = rng.random()
            if roll < 0.04:
                stack.core.delete_namespaced_pod(name, "default", grace_period_seconds=0)
                storm_.counts["deletes forced"] += 1
                live_names.remove(name)
            elif roll < 0.12:
                stack.core.delete_namespaced_pod(name, "default")
                storm_.counts["deletes graceful"] += 1
                live_names.remove(name)
        stop_out_of_band(stack, storm_, rng)
        if rng.random() < 0.5:
            if rng.random() < 0.3:
                Storm._concurrently(lambda: storm_.invoke(stack.reconcile), lambda: storm_.invoke(stack.reconcile))
                storm_.counts["reconciles concurrent"] += 1
            else:
                storm_.invoke(stack.reconcile)
                storm_.counts["reconciles"] += 1
        if rounds % 8 == 4:
            reconcile_short_of_time(stack, storm_, rng)
        if rng.random() < 0.1:
            storm_.invoke(heartbeat_short_of_time, stack)
            storm_.counts["heartbeats out of time"] += 1
        pods = all_pods(stack)
        storm_.watch_finished(pods)
        read_logs(stack, storm_, rng, pods)
        stack.advance(5)
    storm_.counts["rounds"] = rounds


def heartbeat_short_of_time(stack: Stack) -> None:
    """A heartbeat invocation with only 3 s of Lambda time left: it must stop cleanly."""
    from chalicelib import wiring

    wiring.world().sleep = stack.advance
    event = stack.client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={},
                                                  resources=[], region="us-east-1")
    stack.client.lambda_.invoke("heartbeat", event)  # chalice.test gives 3 s: the short budget


def reconcile_short_of_time(stack: Stack, storm_: Storm, rng: random.Random) -> None:
    """A reconcile invocation with little Lambda time left (0.05 to 1 s): it starts no
    pod's work past its deadline, and when the time is up Lambda ends it (its next
    cloud call is Killed). The next runs finish what it left."""
    from functools import partial
    from unittest import mock

    from chalice.local import LambdaContext

    budget = rng.uniform(0.05, 1.0)
    event = stack.client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={},
                                                  resources=[], region="us-east-1")
    timer = threading.Timer(budget, storm_.cloud.kill_now)

    def invocation():
        timer.start()
        try:
            return stack.client.lambda_.invoke("reconcile", event).payload
        finally:
            timer.cancel()

    with mock.patch("chalice.test.LambdaContext", partial(LambdaContext, max_runtime_ms=int(budget * 1000))):
        payload = storm_.invoke(invocation)
    storm_.counts["reconciles out of time"] += 1
    deferred = sum(r.get("deferred", 0) for r in (payload or {}).values() if isinstance(r, dict))
    outcome = ("killed when its time was up" if payload is None
               else "stopped at its deadline" if deferred else "done in time")
    storm_.counts[f"reconciles out of time: {outcome}"] += 1
    storm_.counts["reconciles out of time: pods deferred"] += deferred


def clean_passes(stack: Stack, storm_: Storm) -> None:
    """Faults off; the world moves on (task stop timeouts, back-offs); two reconciles."""
    storm_.clear()
    stack.audit.drop = stack.audit.duplicate = 0.0
    if stack.backend == "fly":
        with stack.fly._lock:
            for m in stack.fly.machines.values():
                m.host_status = "ok"
    stack.audit.flush()
    for n in (1, 2):
        for _ in range(8):  # the cloud finishes what it was asked (stop timeouts up to 30 s)
            stack.cloud_step(deliver=False)
            stack.advance(5)
        report = stack.reconcile()
        for key, value in (report.get(NODE) or {}).items():  # what each clean pass did (deferred: out of time)
            storm_.counts[f"clean pass {n}: {key}"] = value
        storm_.watch_finished(all_pods(stack))
    stack.cloud_step(deliver=False)


def measure(stack: Stack, storm_: Storm) -> dict[str, int]:
    pods = all_pods(stack)
    by_uid = {p["metadata"]["uid"]: p for p in pods}
    live = defaultdict(list)
    latest: dict[str, dict] = {}
    found = machines(stack)
    for machine in found:
        uid = machine["uid"]
        if machine["live"]:
            live[uid].append(machine)
        if uid not in latest or machine["attempt"] >= latest[uid]["attempt"]:
            latest[uid] = machine
    orphaned = {m["id"] for uid, ms in live.items() for m in ms
                if uid not in by_uid or by_uid[uid]["spec"].get("nodeName") != NODE}
    orphans = len(orphaned)
    per_attempt = Counter((m["uid"], m["attempt"]) for m in found)
    twice = sum(n - 1 for n in per_attempt.values() if n > 1)
    # A create whose invocation was killed right after the cloud accepted it: its
    # machine must be the pod's (no orphan) and the only one of its attempt (no duplicate).
    killed = [m for m in found if m["id"] in set(storm_.cloud.killed_creates)]
    not_adopted = [m["id"] for m in killed if m["id"] in orphaned or per_attempt[(m["uid"], m["attempt"])] > 1]
    doubles = sum(1 for uid, ms in live.items() if len(ms) > 1)
    without, disagree = [], []
    for pod in pods:
        uid, status = pod["metadata"]["uid"], pod.get("status") or {}
        if pod["spec"].get("nodeName") != NODE or pod["metadata"].get("deletionTimestamp"):
            continue
        states = [c.get("state") or {} for c in status.get("containerStatuses") or []]
        waiting = {s["waiting"].get("reason") for s in states if "waiting" in s}
        conditions = {c["type"] for c in status.get("conditions") or []}
        backing_off = waiting & {"CrashLoopBackOff", "StartBackOff"} or "lambdalet.io/MachineCreateBackOff" in conditions
        if status.get("phase") not in ("Succeeded", "Failed") and not live.get(uid) and not backing_off:
            without.append(pod["metadata"]["name"])
        says_running = status.get("phase") == "Running" and any("running" in s for s in states)
        machine = latest.get(uid)
        if machine is not None and says_running != machine["running"]:
            disagree.append((pod["metadata"]["name"], status.get("phase"), "machine running" if machine["running"]
                             else "machine not running"))
        elif machine is not None and says_running and machine["ip"] and status.get("podIP") != machine["ip"]:
            disagree.append((pod["metadata"]["name"], f"podIP {status.get('podIP')}", f"machine IP {machine['ip']}"))
    events = Counter(e["involvedObject"].get("uid") for e in all_events(stack))
    return {
        "machines without a pod": orphans,
        "pods with two live machines": doubles,
        "machines created twice for one pod attempt": twice,
        "killed creates not adopted": len(not_adopted),
        "bound live pods without a machine": len(without),
        "pods stuck Terminating": sum(1 for p in pods if p["metadata"].get("deletionTimestamp")),
        "pods whose status disagrees with their machine": len(disagree),
        "finished pods rewritten": len(storm_.rewritten),
        "most Events on one pod": max(events.values(), default=0),
        "_detail": {"without": without[:10], "disagree": disagree[:10], "not adopted": not_adopted[:10]},
        "_killed creates": len(killed),
    }


def run(lifecycles: int = 1000, drop: float = 0.2, duplicate: float = 0.2, failing: float = 0.1,
        seed: int = 1, per_round: int | None = None, out=sys.stdout, backend: str = "ecs") -> dict:
    from chalicelib.kube import client

    rng = random.Random(seed)
    started = time.monotonic()
    page_size, client.PAGE_SIZE = client.PAGE_SIZE, 10  # small pages: continued lists, so 410s can strike
    try:
        with CloudFaults(random.Random(seed + 1), failing) as cloud:
            return _run(lifecycles, drop, duplicate, failing, seed, per_round, out, rng, started, backend, cloud)
    finally:
        client.PAGE_SIZE = page_size


def _fly_world(stack: Stack, storm_: Storm) -> None:
    """The Fly fake fails a share of calls (cloud_faults), hides IPs until a machine runs,
    and lambdalet's Fly client is killed after a create; its waits (Retry-After, its own
    rate buckets) are counted, not slept: the fake keeps no real-time limits here."""
    from chalicelib import wiring

    stack.fly.chaos = storm_.cloud.fly_fault
    stack.fly.late_ips = True
    api = wiring.world().backend_for(NODE).api
    api.session.hooks["response"].append(storm_.cloud.fly_kill_hook)

    def waited(seconds: float) -> None:
        storm_.cloud.count("fly client waits (Retry-After, back-off, pacing)")

    api.sleep = api.buckets.sleep = waited


def _run(lifecycles, drop, duplicate, failing, seed, per_round, out, rng, started, backend, cloud) -> dict:
    audit = {"drop": drop, "duplicate": duplicate, "reorder": True, "seed": seed, "batch_max_wait": 1.0}
    with Stack(clock=Clock(T0), audit=audit, admission=True, backend=backend) as stack:
        storm_ = Storm(stack, rng, cloud, drop=drop, duplicate=duplicate, failing=failing)
        stack.sim.connect_webhook("https://LAMBDALET_API_HOST/api", storm_.admission_sink)
        stack.audit.sink = storm_.audit_sink(stack.audit.sink)
        stack.core.patch_namespace("default", {"metadata": {"labels": OPT_IN}})  # the binding fast path
        pod_sources(stack.core)  # the Secret app-secret some pods take a value from
        stack.reconcile()
        if backend == "fly":
            _fly_world(stack, storm_)
        storm(stack, storm_, rng, lifecycles, per_round or max(2, lifecycles // 40))
        clean_passes(stack, storm_)
        figures = measure(stack, storm_)
        figures["_storm"] = dict(sorted(storm_.counts.items()))
        figures["_storm"]["kube faults injected"] = stack.sim.api.faults.injected
        figures["_cloud"] = dict(sorted(cloud.counts.items()))
        figures["_cloud"]["cloud faults injected"] = sum(v for k, v in cloud.counts.items()
                                                         if not k.startswith(("killed", "fly client")))
    figures["_seconds"] = round(time.monotonic() - started, 1)
    print(f"chaos: {backend}, {lifecycles} lifecycles, {drop:.0%} dropped, {duplicate:.0%} duplicated, "
          f"{failing:.0%} of cloud calls failing, seed {seed}, {figures['_seconds']} s", file=out)
    for key, value in figures["_storm"].items():
        print(f"  storm  {key}: {value}", file=out)
    for key, value in _grouped(figures["_cloud"]).items():
        print(f"  cloud  {key}: {value}", file=out)
    print(f"  after  machines of killed creates, seen: {figures['_killed creates']}", file=out)
    for key, value in figures.items():
        if not key.startswith("_"):
            print(f"  after  {key}: {value}", file=out)
    if any(figures["_detail"].values()):
        print(f"  detail {figures['_detail']}", file=out)
    return figures


def _grouped(counts: dict) -> dict:
    """Cloud faults per call (``aws ecs RunTask``) and per kind (``aws ... throttled``), then the rest."""
    out: Counter = Counter()
    kinds = ("throttled", "5xx", "connect timeout", "read timeout", "lost", "lease")
    for key, value in counts.items():
        kind = next((k for k in kinds if key.endswith(" " + k)), None)
        if key.startswith(("aws ", "fly ")) and kind:
            out[key[: -len(kind) - 1] + " (call)"] += value
            out[f"{key.split()[0]} * {kind} (kind)"] += value
        else:
            out[key] += value
    return dict(sorted(out.items()))


def failed(figures: dict) -> list[str]:
    bad = [k for k, v in figures.items() if not k.startswith("_") and k != "most Events on one pod" and v]
    if figures["most Events on one pod"] > MAX_EVENTS_PER_POD:
        bad.append("most Events on one pod")
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("ecs", "fly"), default="ecs")
    parser.add_argument("--lifecycles", type=int, default=1000)
    parser.add_argument("--drop", type=float, default=0.2)
    parser.add_argument("--duplicate", type=float, default=0.2)
    parser.add_argument("--failing", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    import chalicelib.telemetry  # noqa: F401 - powertools' "lambdalet" logger, quieted below

    logging.getLogger("lambdalet").setLevel(logging.CRITICAL)  # the storm's failures are expected: figures only
    figures = run(args.lifecycles, args.drop, args.duplicate, args.failing, args.seed, backend=args.backend)
    bad = failed(figures)
    print("chaos: " + ("FAILED: " + ", ".join(bad) if bad else "all invariants hold"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
