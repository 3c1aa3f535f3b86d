"""The chaos run: many pod lifecycles through the whole test world while
deliveries and calls fail, then at most two clean reconcile passes, then the
invariants, printed as figures.

    ./dev chaos                      # full size: 1,000 lifecycles, 20 % dropped, 20 % duplicated, 10 % failing
    ./dev chaos --lifecycles 60      # any size (CI runs tests/test_chaos.py, a small one)

The storm, each round (5 simulated seconds): new pods (jobs that exit 0 or 1,
servers; restartPolicy Never/OnFailure/Always), the scheduler, audit batches
(the simulator's audit webhook drops, duplicates and reorders), admission
deliveries dropped (time out: failurePolicy decides) or duplicated, ECS task
state events dropped, duplicated, delayed a round and reordered, some run
twice concurrently, pod deletes (graceful and ``--grace-period=0 --force``),
out-of-band task stops (Spot interruptions, abrupt host loss), heartbeat
invocations with too little Lambda time left, and reconciles (sometimes two at
once) while the Kubernetes API fails lambdalet's calls (429 with Retry-After,
500, 504 timeouts, 409 on pod status and Lease writes, 410 on a continued
list: tests/world/kube_sim/faults.py) and RunTask fails (throttling, 5xx). A
failed status write right after a create is an invocation killed between the
create and what it records after it.

Figures (all must be 0 but the last, which must stay bounded): machines
without a pod, pods with two live machines, bound live pods without a machine,
pods stuck Terminating, pods whose status disagrees with their machine,
finished pods rewritten, and the most Events any one pod has.
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

from tests.world.fargate_plane import Clock
from tests.world.stack import NODE, OPT_IN, SA_USER, Stack, virtual_pod

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
MAX_EVENTS_PER_POD = 40
LIVE = ("PROVISIONING", "PENDING", "ACTIVATING", "RUNNING")


class Storm:
    def __init__(self, stack: Stack, rng: random.Random, *, drop: float, duplicate: float, failing: float):
        self.stack, self.rng = stack, rng
        self.drop, self.duplicate, self.failing = drop, duplicate, failing
        self.delayed: list[dict] = []
        self.counts: Counter = Counter()
        self.finished: dict[str, str] = {}  # uid -> the status JSON when first seen finished
        self.rewritten: set[str] = set()

    # -- deliveries ------------------------------------------------------------
    def admission_sink(self, url: str, body: bytes, timeout: float):
        if self.rng.random() < self.drop:
            self.counts["admission dropped"] += 1
            raise TimeoutError(url)
        answer = self.stack.deliver_admission(url, body, timeout)
        if self.rng.random() < self.duplicate:
            self.counts["admission duplicated"] += 1
            answer = self.stack.deliver_admission(url, body, timeout)
        return answer

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
            self._concurrently(lambda: self.stack.machine_events([out[0]]), lambda: self.stack.machine_events([out[0]]))
            self.counts["ecs events run concurrently"] += 1
        self.stack.machine_events(out)

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
        if self.rng.random() < self.failing:
            n = self.rng.randint(1, 3)
            self.stack.plane.fail_runs(n, self.rng.choice(["ThrottlingException", "ServerException"]),
                                       status=self.rng.choice([400, 500]))
            self.counts["ecs RunTask failed"] += n

    def clear(self) -> None:
        self.stack.sim.api.faults.clear()
        self.stack.plane.run_failures.clear()

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


def lifecycle_pod(rng: random.Random, index: int) -> tuple[dict, str]:
    kind = rng.choice(["ok-job", "failing-job", "crashloop", "server", "server"])
    name = f"chaos-{index}"
    if kind == "ok-job":
        return virtual_pod(name, restart="Never", command=["sh", "-c", f"sleep {rng.randint(1, 20)}; exit 0"]), kind
    if kind == "failing-job":
        return virtual_pod(name, restart=rng.choice(["Never", "OnFailure"]),
                           command=["sh", "-c", f"sleep {rng.randint(1, 20)}; exit 3"]), kind
    if kind == "crashloop":
        return virtual_pod(name, restart="Always", command=["sh", "-c", f"sleep {rng.randint(1, 10)}; exit 1"]), kind
    return virtual_pod(name, restart="Always", command=["sh", "-c", "sleep 100000"]), kind


def storm(stack: Stack, storm_: Storm, rng: random.Random, lifecycles: int, per_round: int) -> None:
    created, live_names = 0, []
    rounds = 0
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
        running = stack.tasks("RUNNING")
        for task in running:
            if rng.random() < 0.03:
                stack.plane.kill(task["taskArn"], abrupt=rng.random() < 0.3)
                storm_.counts["tasks stopped out of band"] += 1
        if rng.random() < 0.5:
            if rng.random() < 0.3:
                Storm._concurrently(stack.reconcile, stack.reconcile)
                storm_.counts["reconciles concurrent"] += 1
            else:
                stack.reconcile()
                storm_.counts["reconciles"] += 1
        if rng.random() < 0.1:
            heartbeat_short_of_time(stack)
            storm_.counts["heartbeats out of time"] += 1
        storm_.watch_finished(all_pods(stack))
        stack.advance(5)
    storm_.counts["rounds"] = rounds


def heartbeat_short_of_time(stack: Stack) -> None:
    """A heartbeat invocation with only 3 s of Lambda time left: it must stop cleanly."""
    from chalicelib import wiring

    wiring.world().sleep = stack.advance
    event = stack.client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={},
                                                  resources=[], region="us-east-1")
    stack.client.lambda_.invoke("heartbeat", event)  # chalice.test gives 3 s: the short budget


def clean_passes(stack: Stack, storm_: Storm) -> None:
    """Faults off; the world moves on (task stop timeouts, back-offs); two reconciles."""
    storm_.clear()
    stack.audit.drop = stack.audit.duplicate = 0.0
    stack.audit.flush()
    for _ in range(2):
        for _ in range(8):  # the cloud finishes what it was asked (stop timeouts up to 30 s)
            stack.cloud_step(deliver=False)
            stack.advance(5)
        stack.reconcile()
        storm_.watch_finished(all_pods(stack))
    stack.cloud_step(deliver=False)


def measure(stack: Stack, storm_: Storm) -> dict[str, int]:
    pods = all_pods(stack)
    tasks = stack.tasks()
    by_uid = {p["metadata"]["uid"]: p for p in pods}
    live = defaultdict(list)
    latest: dict[str, dict] = {}
    for task in tasks:
        tags = _tags(task)
        uid = tags.get("lambdalet.io/pod-uid")
        if task["lastStatus"] in LIVE and task["desiredStatus"] != "STOPPED":
            live[uid].append(task)
        if uid not in latest or int(tags.get("lambdalet.io/attempt", 0)) >= int(_tags(latest[uid]).get(
                "lambdalet.io/attempt", 0)):
            latest[uid] = task
    orphans = sum(len(ts) for uid, ts in live.items()
                  if uid not in by_uid or by_uid[uid]["spec"].get("nodeName") != NODE)
    doubles = sum(1 for uid, ts in live.items() if len(ts) > 1)
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
        task = latest.get(uid)
        if task is not None and says_running != (task["lastStatus"] == "RUNNING"):
            disagree.append((pod["metadata"]["name"], status.get("phase"), task["lastStatus"]))
    events = Counter(e["involvedObject"].get("uid") for e in all_events(stack))
    return {
        "machines without a pod": orphans,
        "pods with two live machines": doubles,
        "bound live pods without a machine": len(without),
        "pods stuck Terminating": sum(1 for p in pods if p["metadata"].get("deletionTimestamp")),
        "pods whose status disagrees with their machine": len(disagree),
        "finished pods rewritten": len(storm_.rewritten),
        "most Events on one pod": max(events.values(), default=0),
        "_detail": {"without": without[:10], "disagree": disagree[:10]},
    }


def run(lifecycles: int = 1000, drop: float = 0.2, duplicate: float = 0.2, failing: float = 0.1,
        seed: int = 1, per_round: int | None = None, out=sys.stdout) -> dict:
    from chalicelib.kube import client

    rng = random.Random(seed)
    started = time.monotonic()
    page_size, client.PAGE_SIZE = client.PAGE_SIZE, 10  # small pages: continued lists, so 410s can strike
    try:
        return _run(lifecycles, drop, duplicate, failing, seed, per_round, out, rng, started)
    finally:
        client.PAGE_SIZE = page_size


def _run(lifecycles, drop, duplicate, failing, seed, per_round, out, rng, started) -> dict:
    audit = {"drop": drop, "duplicate": duplicate, "reorder": True, "seed": seed, "batch_max_wait": 1.0}
    with Stack(clock=Clock(T0), audit=audit, admission=True) as stack:
        storm_ = Storm(stack, rng, drop=drop, duplicate=duplicate, failing=failing)
        stack.sim.connect_webhook("https://LAMBDALET_API_HOST/api", storm_.admission_sink)
        stack.core.patch_namespace("default", {"metadata": {"labels": OPT_IN}})  # the binding fast path
        stack.reconcile()
        storm(stack, storm_, rng, lifecycles, per_round or max(2, lifecycles // 40))
        clean_passes(stack, storm_)
        figures = measure(stack, storm_)
        figures["_storm"] = dict(sorted(storm_.counts.items()))
        figures["_storm"]["kube faults injected"] = stack.sim.api.faults.injected
    figures["_seconds"] = round(time.monotonic() - started, 1)
    print(f"chaos: {lifecycles} lifecycles, {drop:.0%} dropped, {duplicate:.0%} duplicated, "
          f"{failing:.0%} of call kinds failing each round, seed {seed}, {figures['_seconds']} s", file=out)
    for key, value in figures["_storm"].items():
        print(f"  storm  {key}: {value}", file=out)
    for key, value in figures.items():
        if not key.startswith("_"):
            print(f"  after  {key}: {value}", file=out)
    if any(figures["_detail"].values()):
        print(f"  detail {figures['_detail']}", file=out)
    return figures


def failed(figures: dict) -> list[str]:
    bad = [k for k, v in figures.items() if not k.startswith("_") and k != "most Events on one pod" and v]
    if figures["most Events on one pod"] > MAX_EVENTS_PER_POD:
        bad.append("most Events on one pod")
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lifecycles", type=int, default=1000)
    parser.add_argument("--drop", type=float, default=0.2)
    parser.add_argument("--duplicate", type=float, default=0.2)
    parser.add_argument("--failing", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    import chalicelib.telemetry  # noqa: F401 - powertools' "lambdalet" logger, quieted below

    logging.getLogger("lambdalet").setLevel(logging.CRITICAL)  # the storm's failures are expected: figures only
    figures = run(args.lifecycles, args.drop, args.duplicate, args.failing, args.seed)
    bad = failed(figures)
    print("chaos: " + ("FAILED: " + ", ".join(bad) if bad else "all invariants hold"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
