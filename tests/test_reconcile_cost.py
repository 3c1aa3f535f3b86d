"""A reconcile costs O(pages) reads + O(changes) writes, whatever the pod count (DESIGN.md)."""

import math
from collections import Counter

from chalicelib import wiring
from chalicelib.kube import client as kube_client
from tests.world.stack import NODE, SA_USER, Stack, virtual_pod

PODS = 60
PAGE = 25


def calls_of(stack: Stack, run) -> tuple[Counter, Counter]:
    """The Kubernetes and ECS calls lambdalet makes during ``run()``."""
    ecs: Counter = Counter()
    hook = lambda model, **_: ecs.__setitem__(model.name, ecs[model.name] + 1)  # noqa: E731
    events = wiring.world().backend_for(NODE).ecs.meta.events
    events.register("before-call.ecs", hook)
    before = Counter({k: v for k, v in stack.sim.api.calls.items() if k[0] == SA_USER})
    run()
    events.unregister("before-call.ecs", hook)
    after = Counter({k: v for k, v in stack.sim.api.calls.items() if k[0] == SA_USER})
    return Counter({(verb, res): n for (_, verb, res), n in (after - before).items()}), ecs


def test_steady_state_reconcile_reads_pages_and_writes_nothing_about_pods(monkeypatch):
    monkeypatch.setattr(kube_client, "PAGE_SIZE", PAGE)
    with Stack() as stack:
        stack.reconcile()
        for i in range(PODS):
            stack.create_pod(virtual_pod(f"p{i}", command=["sh", "-c", "sleep 100000"]))
        stack.settle(rounds=5, reconcile=True)
        assert sum(1 for i in range(PODS) if stack.pod(f"p{i}")["status"]["phase"] == "Running") == PODS

        kube, ecs = calls_of(stack, stack.reconcile)
        assert kube[("list", "pods")] == math.ceil(PODS / PAGE)
        pod_writes = {k: n for k, n in kube.items() if k[1].startswith("pods") and k[0] != "list"}
        assert pod_writes == {}
        heartbeat = {k: n for k, n in kube.items() if k[1] in ("nodes", "nodes/status", "leases")}
        assert sum(heartbeat.values()) <= 4  # get node, patch status, get + update lease
        assert ecs["ListTasks"] <= 2 and ecs["DescribeTasks"] <= 2 * math.ceil(PODS / 100)
        assert set(ecs) <= {"ListTasks", "DescribeTasks"}

        # one change -> one write, not one per pod
        stack.core.delete_namespaced_pod("p0", "default")
        kube, ecs = calls_of(stack, stack.reconcile)
        assert ecs["StopTask"] == 1 and kube[("list", "pods")] == math.ceil(PODS / PAGE)
        assert not any(k[1] == "pods/status" for k in kube)


def test_nodes_on_one_cluster_list_only_their_own_tasks():
    from tests.world.stack import NODE

    with Stack(nodes=(NODE, "lambdalet-ecs-2")) as stack:
        stack.reconcile()
        stack.create_pod(virtual_pod("a", command=["sh", "-c", "sleep 100000"]))
        stack.create_pod(virtual_pod("b", command=["sh", "-c", "sleep 100000"], node="lambdalet-ecs-2"))
        stack.settle(rounds=4, reconcile=True)
        _, ecs = calls_of(stack, stack.reconcile)
        assert ecs["ListTasks"] == 3  # one startedBy listing per node + the stopped tasks of the cluster
        assert ecs["DescribeTasks"] == 1
        for name in ("a", "b"):
            assert stack.pod(name)["status"]["phase"] == "Running"
