"""pytest fixtures and builders for tests that use the simulator.

    from tests.world.kube_sim.testing import sim, core, pod_body, node_body  # noqa: F401
"""
from __future__ import annotations

import pytest

from . import KubeSim


@pytest.fixture
def sim():
    with KubeSim(seed=1) as s:
        yield s


@pytest.fixture
def core(sim):
    import kubernetes
    return kubernetes.client.CoreV1Api(sim.api_client())


def pod_body(name: str, *, labels=None, node_selector=None, tolerations=None, scheduler=None, **spec) -> dict:
    s = {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}
    if node_selector:
        s["nodeSelector"] = node_selector
    if tolerations:
        s["tolerations"] = tolerations
    if scheduler:
        s["schedulerName"] = scheduler
    s.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}}, "spec": s}


def node_body(name: str, *, labels=None, taints=None, ready: str = "True", unschedulable=False) -> dict:
    spec = {"taints": taints or []}
    if unschedulable:
        spec["unschedulable"] = True
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": spec,
            "status": {"conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady",
                                       "message": "ready", "lastHeartbeatTime": "2026-11-27T12:00:00Z",
                                       "lastTransitionTime": "2026-11-27T12:00:00Z"}],
                       "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}
