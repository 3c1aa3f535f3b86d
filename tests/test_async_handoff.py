"""Work handed to asynchronous invocations (World.defer, Lambda's Event invoke):
the binding webhook answers without calling anything, the handed-over create
and a reconcile racing it start one task, and many nodes reconcile one per
invocation (counts, not timings)."""

from __future__ import annotations

from collections import Counter

from chalicelib import wiring
from tests.world.stack import NODE, OPT_IN, SA_USER, Stack, virtual_pod

NS = "apps"  # opted in to the binding fast path


def opted_in(stack: Stack) -> None:
    stack.core.create_namespace({"metadata": {"name": NS, "labels": OPT_IN}})


def ours(name: str) -> dict:
    pod = virtual_pod(name, command=["sh", "-c", "sleep 100000"])
    pod["metadata"].setdefault("labels", {}).update(OPT_IN)
    return pod


def test_binding_webhook_hands_the_create_over_and_a_racing_reconcile_makes_no_second_task():
    with Stack(connect_audit=False, async_invoke=True) as stack:
        stack.reconcile()
        opted_in(stack)
        runs: Counter = Counter()
        wiring.world().backend_for(NODE).ecs.meta.events.register(
            "before-call.ecs", lambda model, **_: runs.update([model.name]))
        stack.create_pod(ours("fast"), namespace=NS)
        calls_before = sum(n for k, n in stack.sim.api.calls.items() if k[0] == SA_USER)
        assert stack.sim.scheduler.run_once() == 1  # the binding reaches our webhook, which answers at once
        assert sum(n for k, n in stack.sim.api.calls.items() if k[0] == SA_USER) == calls_before
        assert stack.tasks() == [] and [f for f, _ in stack.deferred] == ["start_bound"]
        stack.reconcile()  # the reconcile meets the bound pod before the handed-over create ran
        # its create needs no look-up of its own: the node's listing (RUNNING + STOPPED) said "none"
        assert runs["RunTask"] == 1 and runs["ListTasks"] == 2
        stack.run_deferred()  # ... whose RunTask carries the same clientToken: ECS returns the same task
        assert len(stack.tasks()) == 1 and runs["RunTask"] == 2
        stack.settle(rounds=6)
        assert stack.pod("fast", NS)["status"]["phase"] == "Running" and len(stack.tasks()) == 1


def test_many_nodes_reconcile_one_invocation_each():
    from chalicelib.usecases.reconcile import FANOUT_NODES

    nodes = tuple(f"{NODE}-{i}" for i in range(FANOUT_NODES + 1))
    with Stack(nodes=nodes, async_invoke=True) as stack:
        report = stack.reconcile()
        assert set(report) == set(nodes) and stack.sim.api.store.get("nodes", "", nodes[0]) is None
        assert sorted(p["node"] for f, p in stack.deferred if f == "reconcile_node") == sorted(nodes)
        done = stack.run_deferred()
        assert [list(r) for r in done] == [[n] for n in nodes]  # each invocation did its own node only
        assert all(stack.sim.api.store.get("nodes", "", n) is not None for n in nodes)
