"""The heartbeat loop on simulated time: its cadence, its writes, and overlapping invocations."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib import heartbeat as hb
from chalicelib import node as vnode
from chalicelib.kube.client import KubeClient
from tests.world.fargate_plane import Clock
from tests.world.stack import NODE, SA_TOKEN, SA_USER, Stack

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def offsets(clock: Clock, **kwargs) -> list[float]:
    start = clock()
    seen = []
    hb.run(lambda i, now: seen.append((now - start).total_seconds()), clock, clock.advance, **kwargs)
    return seen


def test_loop_renews_every_10_s_for_50_s_of_its_minute():
    assert offsets(Clock(T0)) == [0, 10, 20, 30, 40, 50]


def test_loop_stays_inside_the_lambda_budget():
    assert offsets(Clock(T0), budget=60) == [0, 10, 20, 30, 40, 50]
    assert offsets(Clock(T0), budget=30) == [0, 10, 20]  # last beat no later than budget - MARGIN
    assert offsets(Clock(T0), budget=3) == [0]


def test_a_slow_beat_skips_the_slots_it_missed_instead_of_bursting():
    clock = Clock(T0)
    start, seen = clock(), []

    def beat(i, now):
        seen.append((now - start).total_seconds())
        if i == 1:
            clock.advance(25)  # an apiserver call that hung for 25 s

    hb.run(beat, clock, clock.advance)
    assert seen == [0, 10, 40, 50]


def test_status_is_posted_only_when_changed_or_every_five_minutes():
    desired = vnode.node_object(NODE, "ecs", "us-east-1", {"cpu": "1000", "memory": "4Ti", "pods": "1000"}, T0)
    stored = {**desired, "status": {**desired["status"], "capacity": {"cpu": "1k", "memory": "4Ti", "pods": "1k"},
                                    "allocatable": {"cpu": "1k", "memory": "4Ti", "pods": "1k"}}}
    assert hb.status_due(stored, desired, T0 + timedelta(seconds=299)) is None  # canonical quantities are equal
    assert hb.status_due(stored, desired, T0 + timedelta(seconds=300)) is not None  # nodeStatusReportFrequency
    unknown = [dict(c, status="Unknown", reason="NodeStatusUnknown") if c["type"] == "Ready" else c
               for c in stored["status"]["conditions"]]
    patch = hb.status_due({**stored, "status": {**stored["status"], "conditions": unknown}}, desired,
                          T0 + timedelta(seconds=60))
    ready = {c["type"]: c for c in patch["conditions"]}["Ready"]
    assert ready["status"] == "True" and ready["lastTransitionTime"] == "2026-03-01T12:01:00Z"
    assert {c["type"]: c["status"] for c in patch["conditions"]} == {
        "Ready": "True", "MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False",
        "NetworkUnavailable": "False"}
    bigger = {**desired, "status": {**desired["status"], "capacity": {"cpu": "2000", "memory": "4Ti", "pods": "1000"}}}
    assert hb.status_due(stored, bigger, T0 + timedelta(seconds=10))["capacity"]["cpu"] == "2000"


@pytest.fixture
def stack():
    with Stack(clock=Clock(T0)) as s:
        yield s


def lease_of(stack: Stack, name: str = NODE) -> dict:
    return stack.sim.api.store.get("leases", "kube-node-lease", name)


def sa_calls(stack: Stack) -> dict:
    return {(verb, res): n for (user, verb, res), n in stack.sim.api.calls.items() if user == SA_USER}


def test_one_invocation_registers_the_node_and_renews_its_lease_six_times(stack):
    renewals = []
    report = stack.heartbeat(sleep=lambda s: (renewals.append(lease_of(stack)["spec"]["renewTime"]),
                                              stack.advance(s)))
    # the node registers with its status: nothing to post in the same minute
    assert report == {NODE: {"renewed": 6, "failed": 0, "conflicts": 0, "status_posts": 0}}
    assert renewals == [f"2026-03-01T12:00:{s:02d}.000000Z" for s in (0, 10, 20, 30, 40)]
    assert lease_of(stack)["spec"]["renewTime"] == "2026-03-01T12:00:50.000000Z"
    assert stack.clock() == T0 + timedelta(seconds=50)
    calls = sa_calls(stack)
    # get + create node; create the lease, then one PUT per beat (no re-read)
    assert calls == {("get", "nodes"): 1, ("create", "nodes"): 1,
                     ("get", "leases"): 1, ("create", "leases"): 1, ("update", "leases"): 5}
    stack.advance(10)
    stack.heartbeat()
    stack.advance(250)
    report = stack.heartbeat()  # the Ready condition's last report is 5 min old now
    assert report[NODE]["status_posts"] == 1
    assert sa_calls(stack)[("patch", "nodes/status")] == 1


def test_every_node_of_the_deployment_is_kept_alive():
    with Stack(clock=Clock(T0), nodes=(NODE, "lambdalet-ecs-2")) as stack:
        # the manifest grants nodes/leases by name: widen it for the second name, as a deployer would
        user = stack.sim.api.tokens[SA_TOKEN]
        user["rules"] = [dict(r, resourceNames=r["resourceNames"] + ["lambdalet-ecs-2"]) if "resourceNames" in r
                         else r for r in user["rules"]]
        report = stack.heartbeat()
        assert set(report) == {NODE, "lambdalet-ecs-2"} and all(r["renewed"] == 6 for r in report.values())
        assert lease_of(stack, "lambdalet-ecs-2")["spec"]["renewTime"] == "2026-03-01T12:00:50.000000Z"


def test_overlapping_invocation_makes_a_conflict_that_is_retried_not_raised(stack):
    stack.heartbeat()  # node and lease exist
    stack.advance(10)
    nested = {}

    def sleep(seconds):
        # While invocation A sleeps after its first beat, invocation B runs whole:
        # A's cached lease is stale when it wakes up (409 -> re-read -> retry).
        if not nested:
            nested["report"] = stack.heartbeat()
        stack.advance(seconds)

    report = stack.heartbeat(sleep=sleep)
    assert nested["report"][NODE]["renewed"] == 6
    assert report[NODE]["failed"] == 0 and report[NODE]["conflicts"] == 1
    # A woke up 50 s late: it skipped the slots B covered and still renewed to its end
    assert report[NODE]["renewed"] >= 2


def test_two_invocations_at_once_over_http_never_crash(stack):
    stack.heartbeat()
    kube = KubeClient(stack.sim.api_client(SA_TOKEN))
    nodes = {NODE: vnode.node_object(NODE, "ecs", "us-east-1", {"cpu": "1000", "memory": "4Ti", "pods": "1000"}, T0)}
    lock = threading.Lock()
    now = [stack.clock()]

    def clock():
        with lock:
            return now[0]

    def sleep(seconds):
        with lock:
            now[0] += timedelta(seconds=seconds / 2)  # the two loops share one clock
        threading.Event().wait(0.001)

    reports, errors = [], []

    def invoke():
        try:
            reports.append(hb.keep_alive(kube, nodes, clock, sleep))
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=invoke) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == [] and len(reports) == 2
    # Under tight contention a beat may lose twice (conflict, re-read, conflict):
    # then the other invocation has just renewed the lease, which is what matters.
    # Every lost beat is paired with a won one, so at least half of the 12 beats win.
    assert sum(r[NODE]["renewed"] for r in reports) >= 6
    assert sum(r[NODE]["failed"] for r in reports) <= sum(r[NODE]["conflicts"] for r in reports)


def test_a_failing_apiserver_is_logged_and_the_loop_goes_on(stack, caplog):
    stack.heartbeat()
    stack.sim.api.tokens[SA_TOKEN]["rules"] = []  # every call is now 403
    report = stack.heartbeat()
    assert report[NODE]["failed"] == 6 and report[NODE]["renewed"] == 0
    assert "heartbeat of node lambdalet-ecs failed" in caplog.text


def test_reconcile_beside_the_heartbeat_makes_no_lease_conflict(stack):
    """Steady state: the heartbeat function owns the lease; the reconcile's beat
    finds it fresh and leaves it alone, so no PUT of either meets a 409 and the
    node gets 6 lease writes a minute, not 7."""
    stack.heartbeat()  # node and lease exist
    stack.advance(10)
    before = sa_calls(stack).get(("update", "leases"), 0)

    def sleep(seconds):  # a reconcile runs while the heartbeat waits between beats
        stack.reconcile()
        stack.advance(seconds)

    report = stack.heartbeat(sleep=sleep)
    assert report[NODE]["conflicts"] == 0 and report[NODE]["renewed"] == 6
    assert sa_calls(stack)[("update", "leases")] - before == 6


def test_reconcile_renews_a_lease_the_heartbeat_left_stale(stack):
    stack.heartbeat()
    stack.advance(25)  # the heartbeat function missed two of its beats
    stack.reconcile()
    assert lease_of(stack)["spec"]["renewTime"] == "2026-03-01T12:01:15.000000Z"
    stack.advance(5)
    stack.reconcile()  # fresh now: left alone
    assert lease_of(stack)["spec"]["renewTime"] == "2026-03-01T12:01:15.000000Z"
