"""Pod and Machine builders for pure tests: shaped like what the apiserver and backends return."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from chalicelib.machines.contract import ContainerRun, Machine, MachinePhase, PodRef, StopCause

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=timezone.utc)


def pod(name="web", node="vk-1", *, namespace="default", restart="Always", containers=None,
        phase="Pending", uid=None, status=None, deleting=False, grace=30) -> dict:
    containers = containers or [{"name": "app", "image": "nginx:1.27"}]
    out = {
        "metadata": {
            "name": name, "namespace": namespace, "uid": uid or str(uuid.uuid4()),
            "resourceVersion": "100", "creationTimestamp": "2026-11-27T11:59:00Z",
        },
        "spec": {
            "nodeName": node, "restartPolicy": restart, "terminationGracePeriodSeconds": grace,
            "containers": containers,
        },
        "status": status or {
            "phase": phase,
            "conditions": [{"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                            "lastTransitionTime": "2026-11-27T11:59:01Z"}],
            "qosClass": "BestEffort",
        },
    }
    if deleting:
        out["metadata"]["deletionTimestamp"] = "2026-11-27T12:00:30Z"
        out["metadata"]["deletionGracePeriodSeconds"] = grace
    return out


def machine(p: dict, phase=MachinePhase.RUNNING, *, attempt=0, codes=None, cause=None, reason=None,
            created=T0, stopped=None, mid=None, ip="10.0.0.7") -> Machine:
    meta = p["metadata"]
    runs = []
    for i, c in enumerate(p["spec"]["containers"]):
        if phase == MachinePhase.STOPPED:
            code = (codes or [0] * 10)[i]
            runs.append(ContainerRun(name=c["name"], image=c["image"], state="terminated", exit_code=code,
                                     started_at=created + timedelta(seconds=5), finished_at=stopped or created + timedelta(seconds=20)))
        elif phase == MachinePhase.RUNNING:
            runs.append(ContainerRun(name=c["name"], image=c["image"], state="running",
                                     started_at=created + timedelta(seconds=5), container_id=f"containerd://{c['name']}-{attempt}"))
        else:
            runs.append(ContainerRun(name=c["name"], image=c["image"], state="waiting", reason="ContainerCreating"))
    return Machine(
        id=mid or f"arn:aws:ecs:us-east-1:123456789012:task/c/{uuid.uuid4().hex}",
        pod=PodRef(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"]),
        node=p["spec"]["nodeName"], attempt=attempt, phase=phase, created_at=created,
        started_at=created + timedelta(seconds=5) if phase != MachinePhase.PENDING else None,
        stopped_at=(stopped or created + timedelta(seconds=20)) if phase == MachinePhase.STOPPED else None,
        ip=ip if phase != MachinePhase.PENDING else None, stop_cause=cause, stop_reason=reason,
        containers=tuple(runs),
    )


def with_status(p: dict, status: dict) -> dict:
    """The pod as the apiserver returns it after our status patch."""
    out = {**p, "status": {**p["status"], **status}}
    return out


__all__ = ["T0", "pod", "machine", "with_status", "StopCause", "MachinePhase"]
