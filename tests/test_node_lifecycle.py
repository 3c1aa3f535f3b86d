"""The virtual node against kube-controller-manager's node lifecycle, on simulated time.

The simulator's NodeLifecycle runs every 5 simulated seconds (node-monitor-period)
while the heartbeat function is invoked through the Chalice app once a minute, its
10 s waits advancing the same clock. A second, healthy node is present: with a
single node the controller enters disruption mode and never evicts, which would
make the eviction checks pass vacuously.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.world.fargate_plane import Clock
from tests.world.kube_sim import KubeSim
from tests.world.kube_sim.lifecycle import UNREACHABLE
from tests.world.kube_sim.util import fmt_micro, parse_time
from tests.world.stack import NODE, Stack, virtual_pod

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
MONITOR_PERIOD = 5.0
WORKER = "worker-1"
SLEEP_FOREVER = ["sh", "-c", "sleep 100000"]


def node_manifest(name: str, zone: str = "us-east-1a") -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  "topology.kubernetes.io/region": "us-east-1",
                                                  "topology.kubernetes.io/zone": zone}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "message": "kubelet is posting ready status"}],
                       "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}


class World:
    """The clock, the controllers on their period, a healthy worker kubelet, and what we saw."""

    def __init__(self, stack: Stack, *, worker: bool = True):
        self.stack, self.sim = stack, stack.sim
        self.next_run = stack.clock()
        self.seen: list[tuple[datetime, str, list, bool]] = []  # (time, Ready, taints, pod alive)
        self.renewals: list[datetime] = []
        self.worker = worker
        if worker:
            self._put_lease(WORKER)
            assert self.sim.request("POST", "/api/v1/nodes", node_manifest(WORKER)).status == 201

    def _put_lease(self, name: str) -> None:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": fmt_micro(self.stack.clock())}}
        put_lease(self.sim, body)

    def sleep(self, seconds: float) -> None:
        """Advance the clock; every MONITOR_PERIOD the worker renews and the controllers run."""
        target = self.stack.clock() + timedelta(seconds=seconds)
        while self.next_run <= target:
            self.stack.clock._now = max(self.stack.clock(), self.next_run)
            self.tick()
            self.next_run += timedelta(seconds=MONITOR_PERIOD)
        self.stack.clock._now = target

    def until(self, moment: datetime) -> None:
        self.sleep(max(0.0, (moment - self.stack.clock()).total_seconds()))

    def tick(self) -> None:
        if self.worker:
            self._put_lease(WORKER)
        self.sim.node_lifecycle.run_once()
        node = self.sim.api.store.get("nodes", "", NODE)
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        pod = self.sim.api.store.get("pods", "default", "web")
        alive = pod is not None and not pod["metadata"].get("deletionTimestamp")
        self.seen.append((self.stack.clock(), ready, list(node["spec"].get("taints") or []), alive))
        renew = parse_time(self.sim.api.store.get("leases", "kube-node-lease", NODE)["spec"]["renewTime"])
        if not self.renewals or renew != self.renewals[-1]:
            self.renewals.append(renew)

    def first(self, what) -> datetime | None:
        return next((t for t, ready, taints, alive in self.seen if what(ready, taints, alive)), None)


def put_lease(sim: KubeSim, body: dict) -> None:
    """A kubelet's renewal (admin, in-process): create the lease or move its renewTime."""
    path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
    name = body["metadata"]["name"]
    r = sim.request("PATCH", f"{path}/{name}", {"spec": body["spec"]}, content_type="application/merge-patch+json")
    if r.status == 404:
        r = sim.request("POST", path, body)
    assert r.status in (200, 201), r.body


def unreachable(taints: list, effect: str) -> bool:
    return any(t["key"] == UNREACHABLE and t["effect"] == effect for t in taints)


@pytest.fixture
def stack():
    with Stack(clock=Clock(T0)) as s:
        yield s


def running_pod(stack: Stack) -> None:
    stack.reconcile()  # registers the node
    stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER))
    stack.settle(rounds=4)
    assert stack.pod("web")["spec"]["nodeName"] == NODE
    assert stack.pod("web")["status"]["phase"] == "Running"


def invocation_minutes(world: World, stack: Stack, minutes: int, start: datetime, jitter=lambda k: 0.0) -> None:
    """EventBridge: the heartbeat invoked at start + k min (+ jitter), each run's sleeps on the clock."""
    for k in range(minutes):
        world.until(start + timedelta(seconds=60 * k + jitter(k)))
        report = stack.heartbeat(sleep=world.sleep)
        assert report[NODE]["failed"] == 0, report


def test_an_hour_of_real_schedule_cadence_never_leaves_ready(stack):
    running_pod(stack)
    world = World(stack)
    start = stack.clock() + timedelta(seconds=30)  # the reconcile's renewal is 30 s old then
    # invocations land up to 9 s late (EventBridge gives no second-level guarantee)
    invocation_minutes(world, stack, 60, start, jitter=lambda k: (k * 7) % 10)
    world.until(start + timedelta(minutes=60))

    assert stack.clock() - start >= timedelta(hours=1) and len(world.seen) >= 720
    assert {ready for _, ready, _, _ in world.seen} == {"True"}
    assert world.first(lambda ready, taints, alive: unreachable(taints, "NoSchedule")
                       or unreachable(taints, "NoExecute")) is None
    assert all(alive for *_, alive in world.seen) and stack.sim.node_lifecycle.evicted == []
    renewals = [t for t in world.renewals if t >= start]
    gaps = [(b - a).total_seconds() for a, b in zip(renewals, renewals[1:])]
    assert max(gaps) <= 20 and len(renewals) >= 350  # ~every 10 s, never near the 50 s grace
    # Node status: written only when due (every 5 min), not once a minute
    status_writes = sum(n for (user, verb, res), n in stack.sim.api.calls.items()
                        if res == "nodes/status" and verb in ("patch", "update") and "lambdalet" in user)
    assert 10 <= status_writes <= 14


def test_stopped_heartbeat_makes_the_node_unknown_then_evicts_its_pod(stack):
    running_pod(stack)
    world = World(stack)
    invocation_minutes(world, stack, 2, stack.clock())
    last = parse_time(stack.sim.api.store.get("leases", "kube-node-lease", NODE)["spec"]["renewTime"])
    world.sleep(400)  # no more invocations

    unknown_at = world.first(lambda ready, taints, alive: ready == "Unknown")
    assert unknown_at is not None, "the node never went Ready=Unknown"
    assert 50 < (unknown_at - last).total_seconds() <= 50 + MONITOR_PERIOD
    node = stack.sim.api.store.get("nodes", "", NODE)
    ready = {c["type"]: c for c in node["status"]["conditions"]}["Ready"]
    assert (ready["reason"], ready["message"]) == ("NodeStatusUnknown", "Kubelet stopped posting node status.")
    tainted_at = world.first(lambda ready, taints, alive: unreachable(taints, "NoSchedule")
                             and unreachable(taints, "NoExecute"))
    assert tainted_at == unknown_at

    evicted_at = world.first(lambda ready, taints, alive: not alive)
    assert evicted_at is not None, "the pod was never evicted"
    assert 300 <= (evicted_at - tainted_at).total_seconds() <= 300 + MONITOR_PERIOD
    assert stack.sim.node_lifecycle.evicted == [("default", "web", NODE)]
    pod = stack.pod("web")
    assert pod["metadata"]["deletionTimestamp"]  # graceful: lambdalet stops the task, then finalizes
    assert {c["type"]: c.get("reason") for c in pod["status"]["conditions"]}["DisruptionTarget"] == "DeletionByTaintManager"


def test_heartbeat_resumed_before_eviction_recovers_the_node_and_keeps_the_pod(stack):
    running_pod(stack)
    world = World(stack)
    invocation_minutes(world, stack, 1, stack.clock())
    world.sleep(120)
    assert world.seen[-1][1] == "Unknown" and unreachable(world.seen[-1][2], "NoExecute")
    resumed = stack.clock()
    invocation_minutes(world, stack, 10, resumed)  # past the 300 s the pod tolerates
    after = [(ready, taints) for t, ready, taints, _ in world.seen if t > resumed]
    assert after[0][0] == "True"  # the first beat posts Ready again
    assert all(ready == "True" and not any(t["key"] == UNREACHABLE for t in taints) for ready, taints in after[1:])
    assert world.first(lambda ready, taints, alive: not alive) is None
    assert stack.sim.node_lifecycle.evicted == []


def test_single_node_disruption_mode_taints_no_execute_nothing_and_evicts_nothing(stack):
    running_pod(stack)
    world = World(stack, worker=False)  # lambdalet's node is the only node
    invocation_minutes(world, stack, 1, stack.clock())
    world.sleep(900)
    assert world.seen[-1][1] == "Unknown" and unreachable(world.seen[-1][2], "NoSchedule")
    assert world.first(lambda ready, taints, alive: unreachable(taints, "NoExecute")) is None
    assert world.first(lambda ready, taints, alive: not alive) is None


# -- the controller alone, on a bare simulator ----------------------------------------------


@pytest.fixture
def sim():
    clock = Clock(T0)
    with KubeSim(clock=clock, seed=1) as s:
        s.test_clock = clock
        yield s


def lease(sim: KubeSim, name: str) -> None:
    put_lease(sim, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": "kube-node-lease"},
                    "spec": {"holderIdentity": name, "renewTime": fmt_micro(sim.clock())}})


def bound_pod(sim: KubeSim, name: str, node: str, tolerations=None) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": node,
                    **({"tolerations": tolerations} if tolerations is not None else {})}}
    assert sim.request("POST", "/api/v1/namespaces/default/pods", pod).status == 201


def taints_of(sim: KubeSim, name: str) -> list[tuple[str, str]]:
    return [(t["key"], t["effect"]) for t in sim.api.store.get("nodes", "", name)["spec"].get("taints") or []]


def test_toleration_seconds_decide_when_each_pod_goes(sim):
    for name in ("a", "b"):
        sim.request("POST", "/api/v1/nodes", node_manifest(name))
        lease(sim, name)
    bound_pod(sim, "default-300", "a")  # DefaultTolerationSeconds: 300 s
    bound_pod(sim, "quick", "a", [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
                                  "tolerationSeconds": 30}])
    bound_pod(sim, "forever", "a", [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}])
    evicted_at = {}
    for _ in range(int(500 / MONITOR_PERIOD)):
        sim.test_clock.advance(MONITOR_PERIOD)
        lease(sim, "b")
        sim.node_lifecycle.run_once()
        for ns, name, _ in sim.node_lifecycle.evicted:
            evicted_at.setdefault(name, (sim.clock() - T0).total_seconds())
    assert set(taints_of(sim, "a")) == {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")}
    assert evicted_at == {"quick": 55 + 30, "default-300": 55 + 300}
    assert sim.api.store.get("pods", "default", "forever")["metadata"].get("deletionTimestamp") is None


def test_a_node_that_never_posted_status_is_unknown_after_the_startup_grace(sim):
    sim.request("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "mute"}})
    sim.test_clock.advance(60)
    sim.node_lifecycle.run_once()
    assert "Ready" not in {c["type"] for c in sim.api.store.get("nodes", "", "mute")["status"].get("conditions") or []}
    sim.test_clock.advance(1)
    sim.node_lifecycle.run_once()
    ready = {c["type"]: c for c in sim.api.store.get("nodes", "", "mute")["status"]["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("Unknown", "NodeStatusNeverUpdated")


def test_ready_pods_are_marked_not_ready_when_their_node_goes_unknown(sim):
    sim.request("POST", "/api/v1/nodes", node_manifest("a"))
    bound_pod(sim, "p", "a")
    status = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    assert sim.request("PATCH", "/api/v1/namespaces/default/pods/p/status", status,
                       content_type="application/strategic-merge-patch+json").status == 200
    sim.test_clock.advance(51)
    sim.node_lifecycle.run_once()
    conds = {c["type"]: c["status"] for c in sim.api.store.get("pods", "default", "p")["status"]["conditions"]}
    assert conds["Ready"] == "False"


def test_partial_disruption_of_a_small_zone_adds_no_no_execute_taints(sim):
    for i in range(4):
        sim.request("POST", "/api/v1/nodes", node_manifest(f"n{i}"))
        lease(sim, f"n{i}")
    sim.test_clock.advance(51)
    lease(sim, "n0")  # 3 of 4 (75 %) not ready, more than 2: PartialDisruption
    sim.node_lifecycle.run_once()
    assert all((UNREACHABLE, "NoExecute") not in taints_of(sim, f"n{i}") for i in range(4))
    assert all((UNREACHABLE, "NoSchedule") in taints_of(sim, f"n{i}") for i in (1, 2, 3))
