"""AWS ECS Fargate backend: each machine is one Fargate task.

Identity and idempotency
    A machine is the task for ``(pod uid, attempt)``. ``create`` derives from
    that pair a RunTask ``clientToken`` (AWS-side idempotency of the request)
    and a ``startedBy`` value, and first looks the task up by ``startedBy``
    (ListTasks) so a retry, a concurrent call or a call after a crash returns
    the existing task instead of starting a second one. Every task is tagged
    with the pod's namespace, name and UID, the node and the attempt
    (``lambdalet.io/...``), which is all ``list`` needs to rebuild the picture.

Task definitions
    Content-addressed: the family is ``lambdalet-<hash>`` of the canonical JSON
    of everything that goes into the task definition (containers, size,
    stopTimeout, roles). Identical pod templates (Deployment replicas) share
    one family/revision; it is registered once, on first use.

    * Every container is ``essential``: a pod ends when its containers end,
      and ECS stops the whole task as soon as one essential container exits.
      A pod whose sidecar outlives its main container therefore ends with the
      main container (the sidecar gets SIGTERM), which is the right outcome
      for batch pods and a documented limit for pods mixing lifetimes.
    * Size: task-level cpu/memory is the cheapest Fargate size holding the
      pod's sum of max(request, limit) (``fargate_sizes.fit``). Each container
      gets a soft ``memoryReservation`` (the task memory split evenly, which
      ECS needs when it places containers and moto needs to run the task) and
      no hard per-container ``memory`` limit: the task memory is the pod's
      hard limit, per-container limits are not enforced separately.
    * ``stopTimeout`` is the pod's terminationGracePeriodSeconds, clamped to
      Fargate's 120 s. StopTask cannot override it per call, so
      ``delete(grace_seconds=...)`` gets the template's grace period.
    * Kubernetes ``command`` -> ECS ``entryPoint``; ``args`` -> ECS ``command``.

Observed state
    ``machine_from_task`` translates a DescribeTasks task (datetimes) or the
    ``detail`` of an EventBridge "ECS Task State Change" event (ISO strings)
    into a Machine. AWS documents no ``tags`` in that event detail, so the
    identity is also written where events show it: ``startedBy`` =
    ``lambdalet/<uid>/<attempt>`` and the task ``group`` =
    ``lambdalet:<node>:<namespace>:<name>``; ``machine_from_event`` is pure.
    ECS keeps stopped tasks visible for only about an hour: after that
    ``list``/``get`` no longer report them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from .contract import (
    ContainerRun,
    Machine,
    MachineError,
    MachinePhase,
    MachineSpec,
    PermanentMachineError,
    PodRef,
    StopCause,
    TransientMachineError,
)
from ..timefmt import EPOCH, parse_iso
from .fargate_sizes import SIZES, fit

# --------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------

TAG_PREFIX = "lambdalet.io/"
TAG_NAMESPACE = TAG_PREFIX + "pod-namespace"
TAG_NAME = TAG_PREFIX + "pod-name"
TAG_UID = TAG_PREFIX + "pod-uid"
TAG_NODE = TAG_PREFIX + "node"
TAG_ATTEMPT = TAG_PREFIX + "attempt"

STARTED_BY_PREFIX = "lambdalet/"
FAMILY_PREFIX = "lambdalet-"
FARGATE_MAX_STOP_TIMEOUT = 120
MAX_CONTAINERS = SIZES.max_containers  # container definitions per task definition
DESCRIBE_BATCH = 100  # DescribeTasks takes at most 100 tasks

_STARTED_BY_OK = re.compile(r"^[A-Za-z0-9_/-]+$")
_CLIENT_TOKEN_OK = re.compile(r"^[\x21-\x7e]+$")


def _digest(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def started_by(uid: str, attempt: int) -> str:
    """Deterministic ListTasks-able key for ``(uid, attempt)``: up to 128
    letters, digits, ``-``, ``_`` and ``/`` (ECS rule); a pod UID (a UUID)
    stays readable, anything else is hashed."""
    value = f"{STARTED_BY_PREFIX}{uid}/{attempt}"
    if len(value) <= 128 and _STARTED_BY_OK.match(value):
        return value
    return f"{STARTED_BY_PREFIX}h-{_digest(f'{uid}/{attempt}', 48)}/{attempt}"


def parse_started_by(value: str | None) -> tuple[str, int] | None:
    """``(uid, attempt)`` from a readable ``startedBy`` of ours, else None."""
    if not value or not value.startswith(STARTED_BY_PREFIX):
        return None
    uid, _, attempt = value[len(STARTED_BY_PREFIX):].rpartition("/")
    if not uid or uid.startswith("h-") or not attempt.isdigit():
        return None
    return uid, int(attempt)


def client_token(uid: str, attempt: int) -> str:
    """RunTask clientToken for ``(uid, attempt)``: <= 64 chars in 33..126."""
    value = f"{uid}/{attempt}"
    if len(value) <= 64 and _CLIENT_TOKEN_OK.match(value):
        return value
    return _digest(value, 64)


GROUP_PREFIX = "lambdalet:"
MAX_GROUP = 255  # ECS: a task group name is at most 255 characters


def task_group(spec: MachineSpec) -> str | None:
    """RunTask ``group`` naming the pod: ``lambdalet:<node>:<namespace>:<name>``.

    With ``startedBy`` (uid, attempt) it makes a task's identity readable
    from any view of the task, EventBridge events included, which carry no
    tags. Kubernetes names never contain ``:``. None when it would not fit.
    """
    value = f"{GROUP_PREFIX}{spec.node}:{spec.pod.namespace}:{spec.pod.name}"
    return value if len(value) <= MAX_GROUP else None


def identity_from_task(task: Mapping) -> dict[str, str] | None:
    """Our tags rebuilt from ``startedBy`` + ``group``, or None."""
    parsed = parse_started_by(task.get("startedBy"))
    group = str(task.get("group") or "")
    if parsed is None or not group.startswith(GROUP_PREFIX):
        return None
    parts = group[len(GROUP_PREFIX):].split(":")
    if len(parts) != 3 or not all(parts):
        return None
    node, namespace, name = parts
    uid, attempt = parsed
    return {TAG_NODE: node, TAG_NAMESPACE: namespace, TAG_NAME: name, TAG_UID: uid,
            TAG_ATTEMPT: str(attempt)}


def task_tags(spec: MachineSpec) -> list[dict[str, str]]:
    return [
        {"key": TAG_NAMESPACE, "value": spec.pod.namespace},
        {"key": TAG_NAME, "value": spec.pod.name},
        {"key": TAG_UID, "value": spec.pod.uid},
        {"key": TAG_NODE, "value": spec.node},
        {"key": TAG_ATTEMPT, "value": str(spec.attempt)},
    ]


# --------------------------------------------------------------------------
# Task definitions (pure)
# --------------------------------------------------------------------------


def task_definition(
    spec: MachineSpec,
    *,
    execution_role_arn: str | None = None,
    task_role_arn: str | None = None,
) -> dict[str, Any]:
    """RegisterTaskDefinition arguments for ``spec``, ``family`` included.

    Only what the pod template determines goes in (never the pod's identity),
    so identical templates hash to the same family.
    Raises PermanentMachineError for what Fargate cannot run.
    """
    if len(spec.containers) > MAX_CONTAINERS:
        raise PermanentMachineError(
            f"pod has {len(spec.containers)} containers; an ECS task can have at most {MAX_CONTAINERS}"
        )
    cpu, memory = fit(spec.cpu_millis, spec.memory_mib)
    stop_timeout = max(0, min(spec.termination_grace_seconds, FARGATE_MAX_STOP_TIMEOUT))
    reservation = memory // len(spec.containers)
    containers = []
    for c in spec.containers:
        d: dict[str, Any] = {
            "name": c.name,
            "image": c.image,
            "essential": True,
            "memoryReservation": reservation,
            "stopTimeout": stop_timeout,
            "environment": [{"name": k, "value": v} for k, v in c.env],
            "portMappings": [
                {"containerPort": p.container_port, "protocol": p.protocol.lower()}
                for p in c.ports
            ],
        }
        if c.command is not None:
            d["entryPoint"] = list(c.command)
        if c.args is not None:
            d["command"] = list(c.args)
        containers.append(d)
    body: dict[str, Any] = {
        "containerDefinitions": containers,
        "cpu": str(cpu),
        "memory": str(memory),
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
    }
    if execution_role_arn:
        body["executionRoleArn"] = execution_role_arn
    if task_role_arn:
        body["taskRoleArn"] = task_role_arn
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return {"family": FAMILY_PREFIX + _digest(canonical, 16), **body}


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

_THROTTLING = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "LimitExceededException",
}
_SERVER = {"ServerException", "InternalFailure", "InternalError", "ServiceUnavailable",
           "ServiceUnavailableException", "RequestTimeout", "RequestTimeoutException"}
# Operator-side problems: nothing is wrong with the pod, and it can start
# once someone fixes the account/IAM/cluster. Retried and shown, never fatal.
_OPERATOR = {
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "ExpiredToken",
    "ClusterNotFoundException",
    "BlockedException",
}
_PERMANENT = {
    "InvalidParameterException",
    "ClientException",
    "PlatformUnknownException",
    "PlatformTaskDefinitionIncompatibilityException",
    "UnsupportedFeatureException",
    "ConflictException",
    "ValidationException",
}
# ClientException is also ECS's word for some passing conditions.
_TRANSIENT_CLIENT_MESSAGES = ("too many concurrent", "rate exceeded", "try again")
# An invalid parameter about what the operator configured (network, roles, the
# cluster) is nothing the pod can fix: keep the pod waiting, say what to fix.
_OPERATOR_PARAMETERS = ("subnet", "securitygroup", "security group", "networkconfiguration",
                        "role", "cluster", "vpc")


def classify(error: BaseException, action: str = "ECS") -> MachineError:
    """The MachineError kind for any error raised by the ECS client."""
    if isinstance(error, MachineError):
        return error
    from botocore import exceptions as bx  # lazy: keep module import light

    if isinstance(error, bx.ClientError):
        err = error.response.get("Error", {})
        code = str(err.get("Code", "Unknown"))
        message = str(err.get("Message", "") or error)
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        text = f"ECS {action} failed: {code}: {message}"
        if code in _THROTTLING or code in _SERVER or status >= 500:
            return TransientMachineError(text)
        if code in _OPERATOR or (code == "InvalidParameterException"
                                 and any(m in message.lower() for m in _OPERATOR_PARAMETERS)):
            return TransientMachineError(text + " (fix the lambdalet AWS setup; retrying)")
        if code == "ClientException" and any(
            m in message.lower() for m in _TRANSIENT_CLIENT_MESSAGES
        ):
            return TransientMachineError(text)
        if code in _PERMANENT or 400 <= status < 500:
            return PermanentMachineError(text)
        return TransientMachineError(text)
    if isinstance(error, (bx.ParamValidationError, bx.ValidationError)):
        return PermanentMachineError(f"ECS {action} rejected the request: {error}")
    if isinstance(
        error,
        (bx.ConnectionError, bx.HTTPClientError, bx.NoCredentialsError,
         bx.PartialCredentialsError, bx.CredentialRetrievalError),
    ):
        return TransientMachineError(f"ECS {action} could not reach AWS: {error}")
    return TransientMachineError(f"ECS {action} failed: {type(error).__name__}: {error}")


def failure_error(failures: list[dict]) -> MachineError:
    """RunTask ``failures`` (capacity, ENI, agent, ...) as a MachineError."""
    text = "; ".join(
        f"{f.get('reason', 'unknown')}" + (f" ({f['detail']})" if f.get("detail") else "")
        for f in failures
    )
    # ATTRIBUTE: a placement constraint no capacity can satisfy, for this task.
    if all(str(f.get("reason", "")).startswith("ATTRIBUTE") for f in failures):
        return PermanentMachineError(f"ECS RunTask could not place the task: {text}")
    return TransientMachineError(f"ECS RunTask could not start the task now: {text}")


def client_config(retries: int = 2, mode: str = "standard"):
    """botocore Config for the ECS client: the SDK's own retries (standard
    mode: exponential backoff with jitter) for throttling/5xx/connection
    errors. Few of them: a webhook must answer within its timeout, and the
    next reconcile pass is the real retry. Short timeouts for the same reason."""
    from botocore.config import Config

    # botocore's `max_attempts` counts retries, not the first attempt.
    return Config(
        retries={"mode": mode, "max_attempts": retries},
        connect_timeout=3,
        read_timeout=15,
    )


def make_client(region_name: str | None = None, **kwargs: Any):
    """An ECS client with ``client_config()``; ``kwargs`` go to boto3.client."""
    import boto3

    kwargs.setdefault("config", client_config())
    return boto3.client("ecs", region_name=region_name, **kwargs)


# --------------------------------------------------------------------------
# Observed state (pure)
# --------------------------------------------------------------------------

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


def _tag_map(tags: Any) -> dict[str, str]:
    if tags is None:
        return {}
    if isinstance(tags, Mapping):
        return {str(k): str(v) for k, v in tags.items()}
    return {str(t.get("key")): str(t.get("value", "")) for t in tags}


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


def _container_run(c: Mapping, task: Mapping, phase: MachinePhase) -> ContainerRun:
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
    )
    if exit_code is not None and (status == "STOPPED" or phase == MachinePhase.STOPPED):
        if reason and "OutOfMemory" in reason:
            k8s_reason = "OOMKilled"
        elif exit_code == 0:
            k8s_reason = "Completed"
        else:
            k8s_reason = "Error"
        return ContainerRun(
            state="terminated", reason=k8s_reason, message=reason, exit_code=int(exit_code),
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
    events carry no tags), from ``startedBy`` (uid, attempt) and ``group``
    (node, namespace, name).

    Phase: PROVISIONING/PENDING/ACTIVATING -> PENDING; RUNNING -> RUNNING
    (STOPPING once ECS wants it stopped); DEACTIVATING/STOPPING/DEPROVISIONING
    -> STOPPING, except STOPPED as soon as every container has stopped (only
    network teardown is left, the pod's outcome is known); STOPPED -> STOPPED.
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
    elif last == "RUNNING":
        phase = MachinePhase.STOPPING if desired == "STOPPED" else MachinePhase.RUNNING
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
    return Machine(
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
        stop_reason=task.get("stoppedReason") or None,
        containers=tuple(_container_run(c, task, phase) for c in containers),
    )


def is_task_state_change(event: Mapping) -> bool:
    return event.get("source") == "aws.ecs" and event.get("detail-type") == "ECS Task State Change"


# --------------------------------------------------------------------------
# The backend
# --------------------------------------------------------------------------


class EcsBackend:
    """MachineBackend on ECS Fargate. See the module docstring.

    ``ecs_client``: a boto3 ECS client, ideally built with ``client_config()``
    (``make_client``) so the SDK retries throttling/5xx with backoff.
    """

    def __init__(
        self,
        ecs_client: Any,
        *,
        cluster: str,
        subnets: Iterable[str],
        security_groups: Iterable[str] = (),
        assign_public_ip: bool = False,
        name: str = "ecs",
        execution_role_arn: str | None = None,
        task_role_arn: str | None = None,
    ):
        self.ecs = ecs_client
        self.cluster = cluster
        self.subnets = list(subnets)
        self.security_groups = list(security_groups)
        self.assign_public_ip = assign_public_ip
        self.name = name
        self.sizes = SIZES
        self.keeps_stopped = False
        self.execution_role_arn = execution_role_arn
        self.task_role_arn = task_role_arn
        self._families: dict[str, str] = {}  # family -> task definition ARN (warm cache)

    # -- helpers ---------------------------------------------------------

    def _call(self, action: str, method: str, **kwargs: Any) -> dict:
        try:
            return getattr(self.ecs, method)(**kwargs)
        except Exception as e:  # classified in one place; nothing raw escapes
            raise classify(e, action) from e

    def _describe(self, arns: list[str]) -> list[dict]:
        tasks: list[dict] = []
        for i in range(0, len(arns), DESCRIBE_BATCH):
            resp = self._call(
                "DescribeTasks", "describe_tasks",
                cluster=self.cluster, tasks=arns[i : i + DESCRIBE_BATCH], include=["TAGS"],
            )
            tasks.extend(resp.get("tasks") or [])
        return tasks

    def _list_arns(self, **filters: Any) -> list[str]:
        try:
            paginator = self.ecs.get_paginator("list_tasks")
            arns: list[str] = []
            for page in paginator.paginate(cluster=self.cluster, **filters):
                arns.extend(page.get("taskArns") or [])
            return arns
        except Exception as e:
            raise classify(e, "ListTasks") from e

    def ensure_task_definition(self, spec: MachineSpec) -> str:
        """ARN of the (shared) task definition for ``spec``; registers it once."""
        td = task_definition(
            spec, execution_role_arn=self.execution_role_arn, task_role_arn=self.task_role_arn
        )
        family = td["family"]
        if family in self._families:
            return self._families[family]
        try:
            resp = self.ecs.describe_task_definition(taskDefinition=family)
            found = resp.get("taskDefinition") or {}
            if found.get("status", "ACTIVE") == "ACTIVE":
                self._families[family] = found["taskDefinitionArn"]
                return found["taskDefinitionArn"]
        except Exception as e:
            err = classify(e, "DescribeTaskDefinition")
            if not _is_missing_task_definition(e):
                raise err from e
        resp = self._call("RegisterTaskDefinition", "register_task_definition", **td)
        arn = resp["taskDefinition"]["taskDefinitionArn"]
        self._families[family] = arn
        return arn

    def _find(self, uid: str, attempt: int) -> list[dict]:
        """Tasks already started for ``(uid, attempt)``, oldest first."""
        key = started_by(uid, attempt)
        arns = self._list_arns(startedBy=key)  # desiredStatus defaults to RUNNING
        try:
            arns += [a for a in self._list_arns(startedBy=key, desiredStatus="STOPPED") if a not in arns]
        except PermanentMachineError:
            pass  # filter combination refused: clientToken still guards the retry
        tasks = [t for t in self._describe(arns) if _tag_map(t.get("tags")).get(TAG_UID) == uid] if arns else []
        tasks.sort(key=lambda t: (_time(t.get("createdAt")) or EPOCH, t.get("taskArn", "")))
        return tasks

    # -- MachineBackend ----------------------------------------------------

    def create(self, spec: MachineSpec) -> Machine:
        for task in self._find(spec.pod.uid, spec.attempt):
            machine = machine_from_task(task)
            if machine is not None:
                return machine
        td_arn = self.ensure_task_definition(spec)
        awsvpc: dict[str, Any] = {
            "subnets": self.subnets,
            "assignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED",
        }
        if self.security_groups:
            awsvpc["securityGroups"] = self.security_groups
        tags = task_tags(spec)
        resp = self._call(
            "RunTask", "run_task",
            cluster=self.cluster,
            taskDefinition=td_arn,
            launchType="FARGATE",
            count=1,
            networkConfiguration={"awsvpcConfiguration": awsvpc},
            startedBy=started_by(spec.pod.uid, spec.attempt),
            clientToken=client_token(spec.pod.uid, spec.attempt),
            tags=tags,
            enableECSManagedTags=True,
            **({"group": group} if (group := task_group(spec)) else {}),
        )
        tasks = resp.get("tasks") or []
        if not tasks:
            raise failure_error(resp.get("failures") or [{"reason": "no task and no failure reported"}])
        machine = machine_from_task(tasks[0], tags=tasks[0].get("tags") or tags)
        assert machine is not None  # we just gave it our tags
        return machine

    def list(self, node: str) -> list[Machine]:
        return self.list_nodes([node])[node]

    def list_nodes(self, nodes: Iterable[str]) -> dict[str, list[Machine]]:
        # One listing of the cluster serves every node on it.
        out: dict[str, list[Machine]] = {node: [] for node in nodes}
        arns = self._list_arns(desiredStatus="RUNNING")
        seen = set(arns)
        arns += [a for a in self._list_arns(desiredStatus="STOPPED") if a not in seen]
        for task in self._describe(arns) if arns else []:
            node = _tag_map(task.get("tags")).get(TAG_NODE)
            if node not in out:
                continue
            machine = machine_from_task(task)
            if machine is not None:
                out[node].append(machine)
        return out

    def get(self, machine_id: str) -> Machine | None:
        tasks = self._describe([machine_id])
        return machine_from_task(tasks[0]) if tasks else None

    def delete(self, machine_id: str, grace_seconds: int, reason: str) -> None:
        # grace_seconds: ECS applies the task definition's stopTimeout (the
        # pod's terminationGracePeriodSeconds, <= 120 s); StopTask has no
        # per-call override.
        try:
            self.ecs.stop_task(cluster=self.cluster, task=machine_id, reason=(reason or "")[:255])
        except Exception as e:
            if _is_missing_task(e):
                return
            raise classify(e, "StopTask") from e

    def machine_from_event(self, event: Mapping) -> Machine | None:
        """The Machine an EventBridge "ECS Task State Change" event is about,
        or None when it is not about a task of ours in our cluster. Pure: the
        identity comes from the detail's ``startedBy`` and ``group`` (AWS
        sends no tags in this event). A pod whose names do not fit a task
        group (over 255 characters) has no event fast path: None, and the
        reconciler picks the change up."""
        if not is_task_state_change(event):
            return None
        detail = event.get("detail") or {}
        cluster_arn = str(detail.get("clusterArn", ""))
        if cluster_arn and cluster_arn.rsplit("/", 1)[-1] != self.cluster.rsplit("/", 1)[-1]:
            return None
        return machine_from_task(detail)


def _client_error_parts(e: BaseException) -> tuple[str, str]:
    response = getattr(e, "response", None)
    if not isinstance(response, Mapping):
        return "", ""
    err = response.get("Error") or {}
    return str(err.get("Code", "")), str(err.get("Message", ""))


def _is_missing_task_definition(e: BaseException) -> bool:
    code, message = _client_error_parts(e)
    m = message.lower()
    return code == "ClientException" and (
        "unable to describe task definition" in m or "not found" in m or "missing" in m
    )


def _is_missing_task(e: BaseException) -> bool:
    code, message = _client_error_parts(e)
    return code in ("InvalidParameterException", "ClientException") and (
        "not found" in message.lower() or "could not find" in message.lower()
    )
