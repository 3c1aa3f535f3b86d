"""The simulator's default-scheduler and node-lifecycle slice: pods land only on
nodes they fit (nodeSelector, taints/tolerations, unschedulable, Ready), bindings
go through pods/binding, and unschedulable pods say why like kube-scheduler."""
from __future__ import annotations

import time

from tests.world.kube_sim.testing import core, node_body, pod_body, sim  # noqa: F401

VK_TAINT = {"key": "virtual-kubelet.io/provider", "value": "lambdalet", "effect": "NoSchedule"}
VK_TOL = [{"key": "virtual-kubelet.io/provider", "operator": "Equal", "value": "lambdalet", "effect": "NoSchedule"}]


def node_of(core, name):
    return core.read_namespaced_pod(name, "default").spec.node_name


def test_lifecycle_removes_not_ready_taint_when_ready(sim, core):
    core.create_node(node_body("ok"))
    core.create_node(node_body("sick", ready="False"))
    sim.node_lifecycle.run_once()
    assert core.read_node("ok").spec.taints is None
    # Ready=False: NoSchedule (TaintNodesByCondition) and, "ok" being Ready in the
    # same zone, NoExecute (taint-based eviction) -- see tests/test_node_lifecycle.py
    assert [(t.key, t.effect) for t in core.read_node("sick").spec.taints] == [
        ("node.kubernetes.io/not-ready", "NoSchedule"), ("node.kubernetes.io/not-ready", "NoExecute")]
    assert core.read_node("ok").metadata.annotations == {"node.alpha.kubernetes.io/ttl": "0"}


def test_node_selector_and_taints(sim, core):
    core.create_node(node_body("vk", labels={"type": "virtual-kubelet"}, taints=[VK_TAINT]))
    core.create_node(node_body("plain"))
    core.create_namespaced_pod("default", pod_body("virtual", node_selector={"type": "virtual-kubelet"}, tolerations=VK_TOL))
    core.create_namespaced_pod("default", pod_body("regular"))
    core.create_namespaced_pod("default", pod_body("intolerant", node_selector={"type": "virtual-kubelet"}))
    core.create_namespaced_pod("default", pod_body("manual", scheduler="someone-else"))
    assert sim.scheduler.run_once() == 2
    assert (node_of(core, "virtual"), node_of(core, "regular")) == ("vk", "plain")
    assert node_of(core, "manual") is None
    p = core.read_namespaced_pod("intolerant", "default")
    cond = p.status.conditions[0]
    assert (cond.type, cond.status, cond.reason, cond.observed_generation) == ("PodScheduled", "False", "Unschedulable", 1)
    assert cond.message.startswith("0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
                                   "1 node(s) had untolerated taint {virtual-kubelet.io/provider: lambdalet}.")
    sched = [e for e in core.list_namespaced_event("default").items if e.reason == "Scheduled"]
    assert sorted(e.message for e in sched) == ["Successfully assigned default/regular to plain",
                                                "Successfully assigned default/virtual to vk"]
    assert {e.involved_object.uid for e in sched} == {
        core.read_namespaced_pod(n, "default").metadata.uid for n in ("regular", "virtual")}


def test_unschedulable_and_not_ready_nodes_are_skipped(sim, core):
    core.create_node(node_body("cordoned", unschedulable=True))
    core.create_node(node_body("down", ready="False"))
    core.create_namespaced_pod("default", pod_body("p", tolerations=[{"operator": "Exists"}]))
    assert sim.scheduler.run_once() == 0
    msg = core.read_namespaced_pod("p", "default").status.conditions[0].message
    assert "1 node(s) were unschedulable" in msg and "1 node(s) were not ready" in msg
    core.patch_node_status("down", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert sim.scheduler.run_once() == 1 and node_of(core, "p") == "down"


def test_no_nodes_message_and_no_event_spam(sim, core):
    core.create_namespaced_pod("default", pod_body("p"))
    sim.scheduler.run_once()
    sim.scheduler.run_once()
    p = core.read_namespaced_pod("p", "default")
    assert p.status.conditions[0].message == "no nodes available to schedule pods"
    assert len([e for e in core.list_namespaced_event("default").items if e.reason == "FailedScheduling"]) == 1


def test_background_scheduler_binds(sim, core):
    core.create_node(node_body("n"))
    sim.start_scheduler(interval=0.05)
    core.create_namespaced_pod("default", pod_body("p"))
    deadline = time.time() + 3
    while node_of(core, "p") is None and time.time() < deadline:
        time.sleep(0.02)
    assert node_of(core, "p") == "n"
