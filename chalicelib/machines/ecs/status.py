"""Observed state (pure): a DescribeTasks task or an EventBridge "ECS Task
State Change" event ``detail`` -> Machine."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ...timefmt import EPOCH, parse_iso
from ..contract import ContainerRun, Machine, MachinePhase, PodRef, StopCause
from .identity import TAG_ATTEMPT, TAG_NAME, TAG_NAMESPACE, TAG_NODE, TAG_UID, _tag_map, identity_from_task

_PENDING = {"PROVISIONING", "PENDING", "ACTIVATING"}
_STOPPING = {"DEACTIVATING", "STOPPING", "DEPROVISIONING"}
_STOP_CAUSE = {
    "EssentialContainerExited": StopCause.EXITED,
    "UserInitiated": StopCause.REQUESTED,
    "ServiceSchedulerInitiated": StopCause.REQUESTED,
    "TaskFailedToStart": StopCause.FAILED_TO_START,
    "SpotInterruption": StopCause.LOST,
    "TerminationNotice": StopCause.LOST,
    "InfrastructureHealth": StopCause.LOST,
}
def _time(value: Any) -> datetime | None:
    """DescribeTasks datetimes (boto3), ISO strings (EventBridge) or epoch
    seconds (raw DescribeTasks JSON) as aware datetimes."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    return parse_iso(str(value)) if value else None


def _task_ip(task: Mapping) -> str | None:
    for att in task.get("attachments") or []:
        if att.get("type") in ("ElasticNetworkInterface", "eni"):
            for d in att.get("details") or []:
                if d.get("name") == "privateIPv4Address" and d.get("value"):
                    return d["value"]
    for c in task.get("containers") or []:
        for ni in c.get("networkInterfaces") or []:
            if ni.get("privateIpv4Address"):
                return ni["privateIpv4Address"]
    return None


def image_id(image: str, digest: str | None) -> str | None:
    """Kubernetes-style imageID ``repo@sha256:...`` from ECS ``imageDigest``."""
    if not digest:
        return None
    repo = image.split("@", 1)[0]
    last = repo.rsplit("/", 1)[-1]
    if ":" in last:  # drop the tag, not a registry port
        repo = repo[: len(repo) - len(last)] + last.split(":", 1)[0]
    return f"{repo}@{digest}"


def _container_run(c: Mapping, task: Mapping, phase: MachinePhase, others: str | None = None) -> ContainerRun:
    """One ECS container as a ContainerRun.

    containerID is ``ecs://<runtimeId>``: the runtime id ECS reports, under a
    scheme that says it is not a CRI/containerd handle anyone can dial.
    """
    name = str(c.get("name", ""))
    image = str(c.get("image", ""))
    status = c.get("lastStatus")
    exit_code = c.get("exitCode")
    reason = c.get("reason") or None
    started = _time(task.get("startedAt"))
    finished = (
        _time(task.get("executionStoppedAt"))
        or _time(task.get("stoppedAt"))
        or _time(task.get("stoppingAt"))
    )
    stop_reason = task.get("stoppedReason") or None
    common = dict(
        name=name,
        image=image,
        image_id=image_id(image, c.get("imageDigest")),
        container_id=f"ecs://{c['runtimeId']}" if c.get("runtimeId") else None,
        ready={"HEALTHY": True, "UNHEALTHY": False}.get(str(c.get("healthStatus"))),
    )
    if exit_code is not None and (status == "STOPPED" or phase == MachinePhase.STOPPED):
        if reason and "OutOfMemory" in reason:
            k8s_reason = "OOMKilled"
        elif exit_code == 0:
            k8s_reason = "Completed"
        else:
            k8s_reason = "Error"
        return ContainerRun(
            state="terminated", reason=k8s_reason, message=reason or others, exit_code=int(exit_code),
            started_at=started, finished_at=finished, **common,
        )
    if status == "RUNNING" and phase != MachinePhase.STOPPED:
        return ContainerRun(state="running", started_at=started, **common)
    if phase == MachinePhase.STOPPED or status == "STOPPED":
        message = reason or stop_reason
        failed_start = task.get("stopCode") == "TaskFailedToStart" or (
            stop_reason or ""
        ).startswith("CannotPull")
        if failed_start:
            # Never ran: say what kept it from starting. A sibling of the
            # container that failed reports no reason of its own.
            own = reason or (stop_reason if len(task.get("containers") or []) == 1 else None)
            if own is None:
                k8s_reason = "ContainerCreating"
            elif "CannotPull" in own:
                k8s_reason = "ErrImagePull"
            else:
                k8s_reason = "CreateContainerError"
            return ContainerRun(state="waiting", reason=k8s_reason, message=message, **common)
        # Stopped without an exit code (host lost, stopped before it ran):
        # what kubelet reports for a container it cannot account for.
        return ContainerRun(
            state="terminated", reason="ContainerStatusUnknown", message=message,
            exit_code=137, started_at=started, finished_at=finished, **common,
        )
    return ContainerRun(state="waiting", reason="ContainerCreating", message=reason, **common)


# Start failures that pass by themselves (kubelet's ImagePullBackOff retries these):
# registry rate limits, and the ENI/secrets/registry calls of task set-up timing out.
_PASSING_START_FAILURES = ("toomanyrequests", "429 too many requests", "rate exceeded", "throttl",
                           "resourceinitializationerror", "i/o timeout", "context deadline exceeded")


def _passing(reason: str) -> bool:
    return any(marker in reason.lower() for marker in _PASSING_START_FAILURES)


def machine_from_task(task: Mapping, tags: Any = None) -> Machine | None:
    """A DescribeTasks task, or an "ECS Task State Change" event ``detail``,
    as a Machine; None when it is not one of ours.

    Identity comes from our tags (``tags``, a list of {key, value} or a
    mapping, else ``task["tags"]``) or, where there are none (EventBridge
    events carry no tags), from ``group`` (node, namespace, name, uid,
    attempt) checked against ``startedBy`` (node).

    Phase: PROVISIONING/PENDING/ACTIVATING -> PENDING; RUNNING -> RUNNING
    (STOPPING once ECS wants it stopped); RUNNING with desiredStatus STOPPED
    and DEACTIVATING/STOPPING/DEPROVISIONING -> STOPPING, except STOPPED as
    soon as every container has stopped (only network teardown is left, the
    pod's outcome is known); STOPPED -> STOPPED.
    hostIP is the task's ENI IP: a Fargate task has no host of its own
    (Fargate-on-EKS reports the same).
    """
    t = _tag_map(tags if tags is not None else task.get("tags"))
    if TAG_UID not in t or TAG_NODE not in t:
        t = identity_from_task(task) or {}
    if TAG_UID not in t or TAG_NODE not in t:
        return None
    last = task.get("lastStatus") or "PENDING"
    desired = task.get("desiredStatus") or "RUNNING"
    containers = list(task.get("containers") or [])
    all_stopped = bool(containers) and all(c.get("lastStatus") == "STOPPED" for c in containers)
    if last == "STOPPED" or last == "DELETED":
        phase = MachinePhase.STOPPED
    elif last in _STOPPING:
        phase = MachinePhase.STOPPED if (desired == "STOPPED" and all_stopped) else MachinePhase.STOPPING
    elif last == "RUNNING" and desired == "STOPPED":
        # ECS stops the containers while the task is still RUNNING (desired
        # STOPPED), then deprovisions: once they have all stopped, the
        # pod's outcome is known.
        phase = MachinePhase.STOPPED if all_stopped else MachinePhase.STOPPING
    elif last == "RUNNING":
        phase = MachinePhase.RUNNING
    else:
        phase = MachinePhase.PENDING
    stop_cause = None
    code = task.get("stopCode")
    if phase in (MachinePhase.STOPPED, MachinePhase.STOPPING) or code:
        stop_cause = _STOP_CAUSE.get(code) if code else None
        if stop_cause is None and phase == MachinePhase.STOPPED:
            exited = all_stopped and all(c.get("exitCode") is not None for c in containers)
            stop_cause = StopCause.EXITED if exited else StopCause.LOST
    if stop_cause == StopCause.FAILED_TO_START and _passing(task.get("stoppedReason") or ""):
        stop_cause = StopCause.START_RETRYABLE
    ip = _task_ip(task)
    try:
        attempt = int(t.get(TAG_ATTEMPT, "0"))
    except ValueError:
        attempt = 0
    # When the containers stopped (executionStoppedAt), not when ECS finished
    # tearing the network down (stoppedAt): stable from the moment the
    # machine is STOPPED, and what back-off and finishedAt are measured from.
    stopped_at = None
    if phase == MachinePhase.STOPPED:
        stopped_at = (
            _time(task.get("executionStoppedAt"))
            or _time(task.get("stoppedAt"))
            or _time(task.get("stoppingAt"))
        )
    machine = Machine(
        id=str(task.get("taskArn", "")),
        pod=PodRef(
            namespace=t.get(TAG_NAMESPACE, "default"),
            name=t.get(TAG_NAME, ""),
            uid=t[TAG_UID],
        ),
        node=t[TAG_NODE],
        attempt=attempt,
        phase=phase,
        # Real ECS always reports createdAt; the epoch marks "unknown".
        created_at=_time(task.get("createdAt")) or EPOCH,
        started_at=_time(task.get("startedAt")),
        stopped_at=stopped_at,
        ip=ip,
        host_ip=ip,
        stop_cause=stop_cause,
        stop_code=code or None,
        version=int(task["version"]) if str(task.get("version") or "").isdigit() else None,
        stop_reason=task.get("stoppedReason") or None,
    )
    # Stopped by someone else than lambdalet (a user, the scheduler, a Spot
    # reclaim): each container's exit says so, not just its bare exit code.
    others = f"Machine stopped outside lambdalet ({machine.cloud_says()})" if machine.stopped_by_others() else None
    # Set on the machine just made (each ContainerRun validated as it is built): a
    # model_copy would build the Machine twice, per task of a 10,000-task listing.
    machine.containers = tuple(_container_run(c, task, phase, others) for c in containers)
    return machine


def is_task_state_change(event: Mapping) -> bool:
    return event.get("source") == "aws.ecs" and event.get("detail-type") == "ECS Task State Change"

