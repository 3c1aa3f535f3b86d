"""The converger's pool and deadline: a pod's actions all run or none do, and the
next pass finishes what a deadline left (counts, not timings)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime, timezone

from chalicelib.converge import Converger
from chalicelib.machines.contract import Machine, MachinePhase, MachineSpec
from chalicelib.plan import plan
from tests.world.pods import machine, pod

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
NODE = "vk-1"


class SlowBackend:
    """Records creates; each takes ``delay`` seconds (a RunTask's latency)."""

    name, keeps_stopped = "ecs", False

    def __init__(self, delay: float = 0.0):
        self.delay, self.created, self.lock = delay, [], threading.Lock()
        self.in_flight = self.most_in_flight = 0

    def create(self, spec: MachineSpec, listed: bool = False) -> Machine:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(self.delay)
        with self.lock:
            self.in_flight -= 1
            self.created.append((spec.pod.uid, spec.attempt))
        return Machine(id=f"m-{spec.pod.uid}", pod=spec.pod, node=spec.node, attempt=spec.attempt,
                       phase=MachinePhase.PENDING, created_at=NOW)


class RecordingKube:
    def __init__(self, pods=()):
        self.patched, self.events, self.lock = Counter(), Counter(), threading.Lock()
        self.pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}

    def get_pod(self, namespace, name):  # a create writes its status onto the pod as it is now
        return self.pods.get((namespace, name))

    def patch_pod_status(self, pod, status):
        with self.lock:
            self.patched[pod["metadata"]["uid"]] += 1
        return pod

    def create_event(self, namespace, event):
        with self.lock:
            self.events[event["involvedObject"]["uid"]] += 1
        return True


def bound_pods(n: int) -> list[dict]:
    return [pod(f"p{i}", node=NODE) for i in range(n)]


def test_actions_run_on_a_bounded_pool_each_pod_once():
    pods = bound_pods(40)
    backend, kube = SlowBackend(delay=0.02), RecordingKube(pods)
    result = plan(NODE, pods, [], NOW)
    done = Converger(NODE, kube, backend, lambda: NOW, workers=8).apply(result)
    assert done["Create"] == 40 and "failed" not in done and "deferred" not in done
    assert sorted(backend.created) == sorted((p["metadata"]["uid"], 0) for p in pods)
    assert 1 < backend.most_in_flight <= 8
    # each pod: its create, then its status and its event, exactly once
    assert set(kube.patched.values()) == {1} and len(kube.patched) == 40


def test_a_deadline_stops_new_work_and_leaves_nothing_half_done():
    pods = bound_pods(60)
    backend, kube = SlowBackend(delay=0.05), RecordingKube(pods)
    until = time.monotonic() + 0.2
    done = Converger(NODE, kube, backend, lambda: NOW, workers=4).apply(plan(NODE, pods, [], NOW), deadline=until)
    # 60 creates of 50 ms on 4 threads need 0.75 s: some are left (how many depends on the machine)
    assert done["deferred"] > 0 and done["Create"] + done["deferred"] == 60
    created = {uid for uid, _ in backend.created}
    # every pod whose machine was created also shows it; no other pod was touched
    assert set(kube.patched) == created and set(kube.events) == created
    # the next pass sees the machines created and does exactly the rest
    machines = [machine(p, MachinePhase.PENDING, created=NOW) for p in pods if p["metadata"]["uid"] in created]
    rest = plan(NODE, pods, machines, NOW)
    done2 = Converger(NODE, kube, backend, lambda: NOW, workers=4).apply(rest)
    assert done2["Create"] == 60 - done["Create"]
    assert sorted(uid for uid, _ in backend.created) == sorted(p["metadata"]["uid"] for p in pods)
