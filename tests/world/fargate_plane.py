"""The Fargate data plane moto lacks: runs the tasks moto only records.

moto's ECS (5.2.5) stores tasks but runs nothing, and answers more kindly
than ECS: it ignores RunTask ``clientToken``, ANDs ListTasks filters, never
paginates, keeps stopped tasks and their tags forever, gives every task its
IP at once and only its first container. ``FargatePlane`` makes it behave as
AWS documents, taking the pessimistic reading where the documentation is the
only source (sources in brackets; tests/fixtures/README.md lists them):

* RunTask [RunTask API reference; "Ensuring idempotency"]: ``clientToken``
  per cluster for 24 h: the same request again returns the same tasks, the
  token with any other parameter changed answers ``ConflictException`` with
  ``resourceIds`` (the existing tasks). ``run_task_failures`` queues
  ``failures`` answers (``CAPACITY_REASON``, ``CPU_LIMIT_REASON``);
  ``fail_runs`` queues errors (throttling as ``ThrottlingException`` or
  ``InvalidParameterException`` "Request limit exceeded").
* Rates [AWS Fargate throttling quotas; Request throttling for the Amazon ECS
  API]: token buckets on the plane's clock, per account and Region: RunTask
  20 calls/s burst and sustained, Fargate launches burst 100 then 20/s;
  beyond them ``ThrottlingException`` "Rate exceeded". ``Limits`` sets them,
  ``latency_s`` adds real time to each call (benchmarks; 0 in tests).
* ListTasks [ListTasks API reference]: ``startedBy`` must be the only filter
  (InvalidParameterException otherwise); the default desiredStatus filter is
  RUNNING; pages of 100 with ``nextToken``.
* StopTask [StopTask API reference]: desiredStatus STOPPED, stopCode
  UserInitiated, and the task's tags are deleted; an unknown task is
  InvalidParameterException "The referenced task was not found.".
* Stopped tasks vanish one hour after they stopped [ListTasks: "for at least
  one hour"]; stoppedReason is cut to 128 characters (reported, issue 8).
* Lifecycle [Task lifecycle, ECS developer guide; issue 8's observed events],
  one transition per ``step()``: PROVISIONING (ENI PRECREATED, no IP) ->
  PENDING (ENI ATTACHED, IP) -> RUNNING -> RUNNING with desiredStatus
  STOPPED (SIGTERM; SIGKILL after stopTimeout) -> DEPROVISIONING -> STOPPED;
  ``version`` grows with each change. ``at_least_once`` delivers events as
  EventBridge may: duplicated and out of order.
* Containers: all of them, with exit codes; an image whose name contains
  ``doesnotexist`` fails to pull (TaskFailedToStart, CannotPullContainerError);
  one containing ``memhog`` is OOM-killed ("OutOfMemoryError: Container
  killed due to memory usage", 137) once its sleeps are over; ``kill`` stops
  a task as a Fargate Spot reclaim does (TerminationNotice) or, abrupt, as a
  lost host.

Everything is set on moto's own model objects or in its response layer, so
``mock_aws`` and a same-process ``ThreadedMotoServer`` both see it, and
DescribeTasks serializes real shapes (timestamps, stopCode, containers).

How a container runs: ``sh -c "<script>"`` (or a bare argv) whose commands,
separated by ``;``/``&&``/newlines, are ``sleep N``, ``echo ...``,
``exit N``, ``true``, ``false``, ``:`` exits with that code once the sleeps
have elapsed on the plane's clock (injectable; ``clock.advance(s)``).
Anything else runs until stopped. What ``echo`` prints is the container's
output, written when the clock reaches it. A script's file commands (``echo >
f``, ``printf``, ``base64 -d``, ``cat f``, ...) run on the task's files when the
container starts, its ``$NAME`` expanded from its environment and secrets:
task volumes are shared by the containers that mount them
(tests/world/container_fs.py), so an init container's output reaches the app.

Container output, as the ``awslogs`` log driver writes it: a container
definition whose ``logConfiguration`` is awslogs gets, when it starts, the log
stream ``<awslogs-stream-prefix>/<container name>/<task id>`` in its
``awslogs-group`` (the stream-name format of the ECS awslogs documentation,
https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using_awslogs.html),
one event per line, stamped with the time it was printed.

Container Insights (enhanced observability), as ECS publishes it: every
complete minute a container ran, ``ContainerCpuUtilized`` (CPU units) and
``ContainerMemoryUtilized`` (MiB) in ``ECS/ContainerInsights`` with the
dimensions ClusterName, TaskDefinitionFamily, TaskId, ContainerName, stamped with
the minute they measure. A test container uses a fixed 5 % of its task's CPU
and 16 MiB (``CPU_SHARE``, ``MEMORY_MIB``). On stop, an interpreted script is PID 1
without a SIGTERM handler, so it ignores SIGTERM and is SIGKILLed once the
container's ``stopTimeout`` has passed since the stop was asked for (exit
137); any other program exits on SIGTERM at once (exit 143).

``step()`` returns the "ECS Task State Change" EventBridge events (real
envelope and detail shape, ISO timestamps, ENI attachment ``type: "eni"``,
no ``tags`` — AWS documents none in this event) for every task whose
lastStatus, desiredStatus or a container status changed, as ECS does.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from tests.world.container_fs import SHELLS, MachineFS, shell_commands
from tests.world.container_fs import run as run_on_fs

ECS_TASK_MODEL = "ecs::task"
CPU_SHARE = 0.05  # of the task's CPU units, what a test container uses
MEMORY_MIB = 16  # its working set

# "Currently, stopped tasks appear in the returned results for at least one
# hour" (ListTasks API reference): the plane forgets them after exactly that.
STOPPED_RETENTION = timedelta(hours=1)
# "Up to 64 characters ... idempotency" tokens last 24 hours per cluster
# (RunTask clientToken; "Ensuring idempotency", ECS API reference).
CLIENT_TOKEN_TTL = timedelta(hours=24)
# stoppedReason is reportedly cut to about 128 characters (issue 8): the
# pessimistic reading.
STOPPED_REASON_MAX = 128
PAGE = 100  # ListTasks maxResults default and maximum (botocore model)
OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"
CAPACITY_REASON = "Capacity is unavailable at this time. Please try again later or in a different availability zone"
CPU_LIMIT_REASON = "The requested CPU configuration is above your limit"


class Clock:
    """A manual clock: ``now()`` only moves with ``advance()``."""

    def __init__(self, start: datetime | None = None):
        self._now = (start or datetime.now(timezone.utc)).replace(microsecond=0)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now

    __call__ = now


class TokenBucket:
    """AWS's token bucket on an injectable clock: ``burst`` tokens, refilled
    at ``rate`` a second (AWS Fargate throttling quotas, ECS developer guide:
    "the tasks and pods token bucket size ... is 100 tokens, and the refill
    rate is 20 tokens per second"; RunTask itself "20 calls per second
    (burst and sustained)")."""

    def __init__(self, burst: float, rate: float, clock: Callable[[], datetime]):
        self.burst, self.rate, self.clock = burst, rate, clock
        self.tokens = float(burst)
        self.at = clock()

    def take(self, n: int = 1) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at).total_seconds() * self.rate)
        self.at = now
        if self.tokens < n:
            return False
        self.tokens -= n
        return True


@dataclass
class Limits:
    """The published per account+Region rates; ``None`` in a field: unlimited."""

    run_task: tuple[float, float] | None = (20, 20)  # RunTask calls: burst, per second
    launches: tuple[float, float] | None = (100, 20)  # Fargate task launches: burst, per second

    @classmethod
    def unlimited(cls) -> "Limits":
        return cls(run_task=None, launches=None)


# --------------------------------------------------------------------------
# The "container runtime": a minimal sh interpreter
# --------------------------------------------------------------------------



@dataclass(frozen=True)
class Program:
    """What a container does: exit with ``exit_code`` after ``seconds``, or
    run forever (``exit_code is None``). ``ignores_sigterm``: PID 1 script."""

    seconds: float = 0.0
    exit_code: int | None = None
    ignores_sigterm: bool = False
    output: tuple[tuple[float, str], ...] = ()  # (seconds after start, line) it prints


FOREVER = Program()


# Commands that finish at once and succeed here (lambdalet's files writer uses them).
_QUICK = ("set", "mkdir", "printf", "base64", "chmod", "rm", "cat", "touch", "cp", "test")


def _run_script(script: str) -> Program:
    elapsed, code, skip = 0.0, 0, False
    printed: list[tuple[float, str]] = []
    try:
        commands = shell_commands(script)
    except ValueError:  # unbalanced quotes: a shell would fail at once
        return Program(0.0, 2, True, ((0.0, "sh: syntax error: unterminated quoted string"),))
    for sep, words in commands:
        if sep == "&&" and code != 0:
            skip = True
        elif sep != "&&":
            skip = False
        if skip:
            continue
        cmd, args = words[0], words[1:]
        if cmd == "sleep":
            if not args or args[0] == "infinity":
                return Program(ignores_sigterm=True, output=tuple(printed))
            try:
                elapsed += float(args[0].rstrip("s"))
            except ValueError:
                return Program(ignores_sigterm=True, output=tuple(printed))
            code = 0
        elif cmd == "echo":
            printed.append((elapsed, " ".join(args)))
            code = 0
        elif cmd in ("true", ":", *_QUICK):
            code = 0
        elif cmd == "false":
            code = 1
        elif cmd == "exit":
            try:
                return Program(elapsed, int(args[0]) % 256 if args else code, True, tuple(printed))
            except ValueError:
                return Program(elapsed, 2, True, tuple(printed))
        else:
            return Program(ignores_sigterm=True, output=tuple(printed))  # an unknown command: runs on
    return Program(elapsed, code, True, tuple(printed))


def program_of(entry_point: list[str] | None, command: list[str] | None) -> Program:
    """The Program for a container definition's entryPoint + command."""
    argv = list(entry_point or []) + list(command or [])
    if not argv:
        return FOREVER
    if argv[0] in SHELLS and len(argv) >= 3 and argv[1] == "-c":
        return _run_script(argv[2])
    if argv[0] in ("sleep", "echo", "true", "false", "exit", ":"):
        return _run_script(shlex.join(argv))
    return FOREVER


# --------------------------------------------------------------------------
# The plane
# --------------------------------------------------------------------------


@dataclass
class _Run:
    """Plane-side state of one container."""

    name: str
    image: str
    program: Program
    stop_timeout: int
    status: str = "PENDING"
    exit_code: int | None = None
    reason: str | None = None
    runtime_id: str | None = None
    digest: str | None = None
    log: dict | None = None  # awslogs options of the container definition
    printed: int = 0  # lines of program.output written so far
    essential: bool = True
    depends_on: list = field(default_factory=list)  # [(container name, condition)]
    health_check: list | None = None  # the healthCheck command, if any
    health: str = "UNKNOWN"
    started_at: datetime | None = None
    argv: list = field(default_factory=list)  # entryPoint + command
    env: dict = field(default_factory=dict)  # environment and secrets, as the container sees them


@dataclass
class _TaskState:
    arn: str
    runs: list[_Run]
    version: int = 1
    stop_requested_at: datetime | None = None
    sigterm_at: datetime | None = None
    abrupt: bool = False
    seen: tuple = field(default_factory=tuple)
    eni_details: list = field(default_factory=list)  # shown once the ENI is ATTACHED
    family: str = ""
    cpu_units: int = 256
    measured_until: datetime | None = None  # Container Insights: minutes published up to here
    fs: MachineFS | None = None  # the containers' files: task volumes shared by those that mount them


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------
# The API surface moto answers too kindly: hooked where the request's
# parameters are still at hand (moto's response layer), for every plane.
# --------------------------------------------------------------------------

_ORIGINAL: dict[str, Any] = {}


def _plane_of(response) -> "FargatePlane | None":
    return getattr(response.ecs_backend, "_lambdalet_plane", None)


def _patch_responses() -> None:
    """Route RunTask/ListTasks/DescribeTasks through the plane installed on
    the account's backend (moto's own answer where none is)."""
    from moto.ecs.responses import EC2ContainerServiceResponse as R

    if _ORIGINAL:
        return
    for name in ("run_task", "list_tasks", "describe_tasks"):
        original = getattr(R, name)
        _ORIGINAL[name] = original

        def hooked(response, _name=name, _original=original):
            plane = _plane_of(response)
            if plane is None:
                return _original(response)
            return getattr(plane, f"_api_{_name}")(response, _original)

        setattr(R, name, hooked)


def _ecs_error(code: str, message: str, status: int = 400, **members: Any) -> Exception:
    """An ECS error as AWS sends it (JSON ``__type``/``message`` and any
    modelled members, e.g. ConflictException ``resourceIds``)."""
    from moto.core.exceptions import JsonRESTError

    error = JsonRESTError(code, message)
    error.code = status
    error.description = json.dumps({"__type": code, "message": message, **members})
    return error


class FargatePlane:
    """Runs the ECS Fargate tasks of one moto account/region. See module doc."""

    def __init__(
        self,
        account_id: str = "123456789012",
        region: str = "us-east-1",
        cluster: str | None = None,
        clock: Callable[[], datetime] | None = None,
        *,
        limits: Limits | None = None,
        latency_s: float = 0.0,
    ):
        self.account_id = account_id
        self.region = region
        self.cluster = cluster
        self.clock = clock or Clock()
        self._states: dict[str, _TaskState] = {}
        self.run_failures: list[Exception] = []  # raised by the next RunTask calls, in order
        self.run_task_failures: list[str] = []  # reasons of the next RunTask `failures` answers
        # Real time each hooked ECS call takes (RunTask, ListTasks,
        # DescribeTasks, StopTask): for benchmarks; 0 in tests.
        self.latency_s = latency_s
        self.set_limits(limits if limits is not None else Limits())
        self.throttled = 0  # calls answered ThrottlingException by the buckets
        self._tokens: dict[tuple[str, str], tuple[str, list[str], datetime]] = {}
        self._pending_events: list[dict] = []
        self._installed: list[Any] = []
        self._lock = threading.RLock()
        from moto.moto_api import state_manager

        self._state_manager = state_manager
        self._saved_transition = state_manager._transitions.get(ECS_TASK_MODEL)  # noqa: SLF001
        # Freeze moto's describe-driven walk: the plane moves tasks.
        state_manager.set_transition(ECS_TASK_MODEL, {"progression": "manual", "times": 2**62})
        self._install()

    # -- moto plumbing -----------------------------------------------------

    def _backend(self):
        from moto.ecs.models import ecs_backends

        backend = ecs_backends[self.account_id][self.region]
        if getattr(backend, "_lambdalet_plane", None) is not self:
            self._install_on(backend)
        return backend

    def _install(self) -> None:
        self._backend()
        _patch_responses()

    def _install_on(self, backend) -> None:
        plane = self
        original_run = backend.run_task

        def run_task(*args, **kwargs):
            if plane.run_failures:
                raise plane.run_failures.pop(0)
            tasks = original_run(*args, **kwargs)
            with plane._lock:
                for task in tasks:
                    plane._adopt(backend, task)
            return tasks

        def stop_task(cluster_str, task_str, reason):
            plane._pause()
            with plane._lock:
                plane._expire(backend)
                task = plane._find(backend, task_str)
                if task is None:
                    from moto.ecs.exceptions import InvalidParameterException

                    raise InvalidParameterException("The referenced task was not found.")
                plane._request_stop(
                    backend, task, reason or "Task stopped by user", "UserInitiated"
                )
                # "Any tags associated with the task will be deleted." (StopTask API reference)
                task.tags = []
                return task

        backend.run_task = run_task
        backend.stop_task = stop_task
        backend._lambdalet_plane = self
        self._installed.append(backend)

    def close(self) -> None:
        """Give moto back its own RunTask/StopTask and default task walk."""
        for backend in self._installed:
            if getattr(backend, "_lambdalet_plane", None) is self:
                for attr in ("run_task", "stop_task", "_lambdalet_plane"):
                    backend.__dict__.pop(attr, None)
        self._installed.clear()
        if self._saved_transition is None:
            self._state_manager.unset_transition(ECS_TASK_MODEL)
        else:
            self._state_manager.set_transition(ECS_TASK_MODEL, self._saved_transition)

    def __enter__(self) -> "FargatePlane":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _tasks(self, backend) -> list[Any]:
        out = []
        for cluster_name, tasks in backend.tasks.items():
            if self.cluster and cluster_name != self.cluster.rsplit("/", 1)[-1]:
                continue
            out.extend(tasks.values())
        return out

    def _find(self, backend, task_str: str):
        task_id = task_str.rsplit("/", 1)[-1]
        for task in self._tasks(backend):
            if task.task_arn == task_str or task.id == task_id:
                return task
        return None

    # -- the API as AWS documents it ---------------------------------------

    def set_limits(self, limits: Limits) -> None:
        """Use ``limits`` from now on, with full buckets."""
        self.limits = limits
        self._buckets = {
            name: TokenBucket(*rates, self.clock)
            for name, rates in (("run_task", limits.run_task), ("launches", limits.launches))
            if rates
        }

    def _pause(self) -> None:
        if self.latency_s:
            time.sleep(self.latency_s)

    def _throttle(self, bucket: str, n: int = 1) -> None:
        b = self._buckets.get(bucket)
        if b is not None and not b.take(n):
            self.throttled += 1
            # "If you exceed an API throttling quota, you get the
            # ThrottlingException error code ... Rate exceeded" (Request
            # throttling for the Amazon ECS API).
            raise _ecs_error("ThrottlingException", "Rate exceeded")

    def _expire(self, backend) -> None:
        """Stopped tasks vanish STOPPED_RETENTION after they stopped."""
        cutoff = self.clock() - STOPPED_RETENTION
        for tasks in backend.tasks.values():
            for arn in [a for a, t in tasks.items()
                        if t.last_status == "STOPPED" and getattr(t, "stopped_at", None)
                        and t.stopped_at <= cutoff]:
                del tasks[arn]
                self._states.pop(arn, None)

    def _api_run_task(self, response, original):
        from moto.core.responses import ActionResult

        self._pause()
        backend = response.ecs_backend
        with self._lock:
            self._expire(backend)
            self._throttle("run_task")
            cluster = str(response._get_param("cluster", "default")).rsplit("/", 1)[-1]
            token = response._get_param("clientToken")
            params = {k: v for k, v in json.loads(response.body or "{}").items() if k != "clientToken"}
            fingerprint = json.dumps(params, sort_keys=True)
            now = self.clock()
            if token:
                self._tokens = {k: v for k, v in self._tokens.items() if v[2] + CLIENT_TOKEN_TTL > now}
                known = self._tokens.get((cluster, token))
                if known is not None:
                    if known[0] != fingerprint:
                        # RunTask API reference: "The provided clientToken is
                        # already in use with a different RunTask request. The
                        # resourceIds are the existing task ARNs".
                        raise _ecs_error("ConflictException",
                                         "The clientToken is already in use with a different RunTask request.",
                                         resourceIds=known[1])
                    tasks = [t for arn in known[1] if (t := self._find(backend, arn)) is not None]
                    return ActionResult({"tasks": tasks, "failures": []})
            if self.run_task_failures:
                reason = self.run_task_failures.pop(0)
                return ActionResult({"tasks": [], "failures": [{"reason": reason}]})
            self._throttle("launches", response._get_int_param("count", 1))
            result = original(response)
            arns = [t.task_arn for t in result.result["tasks"]] if hasattr(result, "result") else []
            if token and arns:
                self._tokens[(cluster, token)] = (fingerprint, arns, now)
            return result

    def _api_list_tasks(self, response, original):
        from moto.core.responses import ActionResult

        self._pause()
        backend = response.ecs_backend
        with self._lock:
            self._expire(backend)
            get = response._get_param
            others = [k for k in ("containerInstance", "family", "serviceName", "desiredStatus", "launchType")
                      if get(k)]
            if get("startedBy") and others:
                # ListTasks API reference: "When you specify startedBy as the
                # filter, it must be the only filter that you use."
                raise _ecs_error("InvalidParameterException",
                                 "startedBy must be the only filter when it is specified "
                                 f"(also given: {', '.join(others)})")
            desired = get("desiredStatus") or "RUNNING"  # "The default status filter is RUNNING"
            tasks = backend.list_tasks(get("cluster", "default"), get("containerInstance"), get("family"),
                                       get("startedBy"), get("serviceName"), desired)
            arns = sorted(t.task_arn for t in tasks)
            size = min(int(get("maxResults") or PAGE), PAGE)
            start = int(get("nextToken") or 0)
            page = {"taskArns": arns[start:start + size]}
            if start + size < len(arns):
                page["nextToken"] = str(start + size)
            return ActionResult(page)

    def _api_describe_tasks(self, response, original):
        self._pause()
        with self._lock:
            self._expire(response.ecs_backend)
        return original(response)

    # -- task model --------------------------------------------------------

    def _adopt(self, backend, task) -> _TaskState:
        td = backend.describe_task_definition(task.task_definition_arn)
        runs = [
            _Run(
                name=cd["name"],
                image=cd["image"],
                program=program_of(cd.get("entryPoint"), cd.get("command")),
                stop_timeout=int(cd.get("stopTimeout", 30)),
                log=((cd.get("logConfiguration") or {}).get("options")
                     if (cd.get("logConfiguration") or {}).get("logDriver") == "awslogs" else None),
                essential=cd.get("essential", True) is not False,
                depends_on=[(d["containerName"], d["condition"]) for d in cd.get("dependsOn") or []],
                health_check=(cd.get("healthCheck") or {}).get("command"),
                argv=list(cd.get("entryPoint") or []) + list(cd.get("command") or []),
                env=self._environment(cd),
            )
            for cd in td.container_definitions
        ]
        state = _TaskState(arn=task.task_arn, runs=runs, family=td.family, cpu_units=int(td.cpu or 256),
                           fs=MachineFS([v["name"] for v in td.volumes or []],
                                        {cd["name"]: [(m["containerPath"], m["sourceVolume"])
                                                      for m in cd.get("mountPoints") or []]
                                         for cd in td.container_definitions}, {}))
        self._states[task.task_arn] = state
        now = self.clock()
        task.status = "PROVISIONING"
        task.desired_status = "RUNNING"
        task.created_at = now
        task.cpu = td.cpu
        task.memory = td.memory
        task.version = 1
        task.availability_zone = f"{self.region}a"
        task.platform_version = "1.4.0"
        task.platform_family = "Linux"
        task.connectivity = "CONNECTED"
        task.connectivity_at = now
        task.stopped_reason = None
        task.health_status = "UNKNOWN"
        # RunTask answers PROVISIONING with the ENI PRECREATED and no address
        # yet; the IP shows once the attachment is ATTACHED (PENDING).
        for att in task.attachments:
            state.eni_details = list(att.get("details", []))
            att["status"] = "PRECREATED"
            att["details"] = [d for d in state.eni_details if d["name"] == "subnetId"]
        self._sync(task, state)
        state.seen = self._signature(task, state)
        self._pending_events.append(self.event(task))  # ECS reports the new task too
        return state

    def _eni(self, task) -> tuple[str | None, str | None]:
        for att in task.attachments:
            details = {d["name"]: d["value"] for d in att.get("details", [])}
            return att.get("id"), details.get("privateIPv4Address")
        return None, None

    def _sync(self, task, state: _TaskState) -> None:
        """Write the plane's container view into moto's model (serialized as-is)."""
        attachment_id, ip = self._eni(task)
        containers = []
        for run in state.runs:
            c: dict[str, Any] = {
                "containerArn": f"arn:aws:ecs:{self.region}:{self.account_id}:container/"
                f"{task.cluster_name}/{task.id}/{uuid.uuid5(uuid.NAMESPACE_URL, task.task_arn + run.name)}",
                "taskArn": task.task_arn,
                "name": run.name,
                "image": run.image,
                "lastStatus": run.status,
                "networkInterfaces": (
                    [{"attachmentId": attachment_id, "privateIpv4Address": ip}] if ip else []
                ),
                "healthStatus": run.health,
                "cpu": "0",
            }
            if run.runtime_id:
                c["runtimeId"] = run.runtime_id
            if run.digest:
                c["imageDigest"] = run.digest
            if run.exit_code is not None:
                c["exitCode"] = run.exit_code
            if run.reason:
                c["reason"] = run.reason
            containers.append(c)
        task.containers = containers

    @staticmethod
    def _signature(task, state: _TaskState) -> tuple:
        return (task.last_status, task.desired_status, tuple((r.status, r.exit_code, r.health) for r in state.runs))

    def _request_stop(self, backend, task, reason: str, stop_code: str, abrupt: bool = False) -> None:
        state = self._states.get(task.task_arn) or self._adopt(backend, task)
        if task.desired_status == "STOPPED":
            return  # already stopping: the first reason wins, as on ECS
        now = self.clock()
        task.desired_status = "STOPPED"
        task.stop_code = stop_code
        task.stopped_reason = reason[:STOPPED_REASON_MAX]
        task.stopping_at = now
        state.stop_requested_at = now
        state.abrupt = abrupt

    # -- public ------------------------------------------------------------

    def fail_runs(self, count: int, error_type: str = "ThrottlingException",
                  message: str = "Rate exceeded", status: int = 400) -> None:
        """Make the next ``count`` RunTask calls fail as ECS does under load
        (ThrottlingException 400, ServerException 500, ...). The SDK retries
        count too: with client_config() botocore makes up to 3 attempts a call."""
        from moto.core.exceptions import JsonRESTError

        for _ in range(count):
            error = JsonRESTError(error_type, message)
            error.code = status
            self.run_failures.append(error)

    def kill(
        self,
        task_arn: str,
        reason: str = "Your Spot Task was interrupted.",
        stop_code: str = "TerminationNotice",
        *,
        abrupt: bool = False,
    ) -> None:
        """Stop a task out of band, as the cloud does: a Fargate Spot
        interruption by default (SIGTERM, then the usual stop walk). With
        ``abrupt=True`` the host is gone: containers stop without exit codes."""
        with self._lock:
            backend = self._backend()
            task = self._find(backend, task_arn)
            if task is None:
                raise KeyError(task_arn)
            self._request_stop(backend, task, reason, stop_code, abrupt=abrupt)

    def tasks(self) -> list[dict[str, Any]]:
        """Every task of the cluster as the plane holds it (``state``'s shape), read
        without the API: what a test looks at, at any volume, without emulator cost."""
        with self._lock:
            return [self._view(task) for task in self._tasks(self._backend())]

    def state(self, task_arn: str) -> dict[str, Any]:
        """The task as the plane holds it (DescribeTasks shape, datetimes)."""
        with self._lock:
            backend = self._backend()
            task = self._find(backend, task_arn)
            if task is None:
                raise KeyError(task_arn)
            return self._view(task)

    def step(self) -> list[dict]:
        """Advance every task one lifecycle step; the EventBridge events."""
        with self._lock:
            backend = self._backend()
            events, self._pending_events = self._pending_events, []
            for task in self._tasks(backend):
                state = self._states.get(task.task_arn)
                if state is None:  # started before the plane was installed
                    state = self._adopt(backend, task)
                    events.extend(self._pending_events)
                    self._pending_events = []
                before = state.seen
                self._advance(task, state)
                self._print(task, state)
                self._measure(task, state)
                self._sync(task, state)
                after = self._signature(task, state)
                if after != before:
                    state.version += 1
                    task.version = state.version
                    task.updated_at = self.clock()
                    state.seen = after
                    events.append(self.event(task))
            return events

    def settle(self, max_steps: int = 20) -> list[dict]:
        """``step()`` until nothing changes (at the current clock time)."""
        events: list[dict] = []
        for _ in range(max_steps):
            batch = self.step()
            if not batch:
                break
            events.extend(batch)
        return events

    # -- lifecycle ---------------------------------------------------------

    def _advance(self, task, state: _TaskState) -> None:
        now = self.clock()
        last = task.last_status
        if last == "STOPPED":
            return
        if task.desired_status == "STOPPED" and state.abrupt:
            for run in state.runs:
                if run.status != "STOPPED":
                    run.status, run.reason = "STOPPED", "Task was lost"
            self._stopped(task, now)
            return
        if last == "PROVISIONING":
            if task.desired_status == "STOPPED":
                return self._stopped(task, now)
            task.status = "PENDING"
            task.pull_started_at = now
            for att in task.attachments:  # the ENI is attached: the task has its IP
                att["status"] = "ATTACHED"
                att["details"] = list(state.eni_details) or att.get("details", [])
        elif last == "PENDING":
            if task.desired_status == "STOPPED":
                return self._stopped(task, now)
            bad = [r for r in state.runs if "doesnotexist" in r.image]
            if bad:
                reason = (
                    f"CannotPullContainerError: pull image manifest has been retried 5 time(s): "
                    f"failed to resolve ref {bad[0].image}: not found"
                )
                for run in state.runs:
                    run.status = "STOPPED"
                bad[0].reason = reason
                task.desired_status = "STOPPED"
                task.stop_code = "TaskFailedToStart"
                task.stopped_reason = reason[:STOPPED_REASON_MAX]
                task.stopping_at = now
                self._stopped(task, now)
                return
            task.pull_stopped_at = now
            task.status = "RUNNING"
            task.started_at = now
            self._start_ready(task, state, now)
        elif last == "RUNNING":
            # A standalone awsvpc task stays RUNNING while its containers are
            # stopped (desiredStatus STOPPED), then DEPROVISIONING -> STOPPED;
            # ACTIVATING/DEACTIVATING only happen with load balancers or
            # Cloud Map (task lifecycle, ECS developer guide).
            if task.desired_status == "STOPPED":
                first = state.sigterm_at is None
                if first:
                    # SIGTERM as soon as the stop is asked for (no load
                    # balancer to drain): stopTimeout counts from the request.
                    state.sigterm_at = state.stop_requested_at or now
                self._terminate(task, state, now)
                # ECS reports RUNNING with desiredStatus STOPPED once before it deprovisions
                if not first and all(r.status == "STOPPED" for r in state.runs):
                    task.status = "DEPROVISIONING"
            else:
                self._run_containers(task, state, now)
        elif last == "DEPROVISIONING":
            self._stopped(task, now)
        self._note_execution_stopped(task, state, now)

    def _note_execution_stopped(self, task, state: _TaskState, now: datetime) -> None:
        """executionStoppedAt: the moment the last container stopped."""
        if getattr(task, "execution_stopped_at", None) is None and all(
            r.status == "STOPPED" for r in state.runs
        ):
            task.execution_stopped_at = now

    def _environment(self, cd: dict) -> dict:
        """What the container's environment holds: ``environment`` and each of its
        ``secrets`` read from Secrets Manager (the agent injects them at start)."""
        from moto.secretsmanager.models import secretsmanager_backends

        env = {e["name"]: e.get("value", "") for e in cd.get("environment") or []}
        secrets = secretsmanager_backends[self.account_id][self.region]
        for s in cd.get("secrets") or []:
            try:
                env[s["name"]] = secrets.get_secret_value(s["valueFrom"], None, None).get("SecretString") or ""
            except Exception:  # noqa: BLE001 - a missing secret stops the task in ECS; modelled elsewhere
                continue
        return env

    @staticmethod
    def _start(task, run: _Run, now: datetime, fs: MachineFS | None = None) -> None:
        """The container starts; a script's file commands run on the task's files at
        once (what an init container wrote, those started after it read)."""
        if fs is not None and len(run.argv) >= 3 and run.argv[0] in SHELLS and run.argv[1] == "-c":
            printed, status = run_on_fs(fs, run.name, run.argv, run.env)
            p = run.program
            run.program = replace(p, output=tuple(printed),
                                  exit_code=status if p.exit_code is not None and status is not None else p.exit_code)
        run.status, run.started_at = "RUNNING", now
        run.runtime_id = f"{task.id}-{int(hashlib.sha256(run.name.encode()).hexdigest()[:8], 16) % 10**10:010d}"
        run.digest = "sha256:" + hashlib.sha256(run.image.encode()).hexdigest()

    def _start_ready(self, task, state: _TaskState, now: datetime) -> None:
        """Start the containers whose ``dependsOn`` conditions hold (ECS
        ContainerDependency: START = the dependency started, COMPLETE = it
        exited, SUCCESS = it exited 0, HEALTHY = its health check passed).
        A container whose condition can no longer hold (a SUCCESS dependency
        exited non-zero) never starts: it stops with no exit code, and as an
        essential container that stops the task (modelled on the documented
        conditions; the stop reason ECS gives then is not recorded here)."""
        runs = {r.name: r for r in state.runs}
        changed = True
        while changed:
            changed = False
            for run in state.runs:
                if run.status != "PENDING":
                    continue
                verdicts = []
                for name, condition in run.depends_on:
                    dep = runs.get(name)
                    done = dep is not None and dep.status == "STOPPED"
                    if condition == "START":
                        verdicts.append(dep is not None and dep.status in ("RUNNING", "STOPPED"))
                    elif condition == "COMPLETE":
                        verdicts.append(done or None)
                    elif condition == "SUCCESS":
                        verdicts.append(None if not done else dep.exit_code == 0)
                    else:  # HEALTHY
                        verdicts.append(dep is not None and dep.health == "HEALTHY" or None)
                if any(v is False for v in verdicts):
                    run.status = "STOPPED"
                    run.reason = "dependency condition not met"
                    changed = True
                elif all(v is True for v in verdicts):
                    self._start(task, run, now, state.fs)
                    changed = True

    def _run_containers(self, task, state: _TaskState, now: datetime) -> None:
        for run in state.runs:
            p = run.program
            started = run.started_at or task.started_at
            if run.status == "RUNNING" and "memhog" in run.image and (now - started).total_seconds() >= p.seconds:
                run.status, run.exit_code, run.reason = "STOPPED", 137, OOM_REASON
            elif run.status == "RUNNING" and p.exit_code is not None:
                if (now - started).total_seconds() >= p.seconds:
                    run.status, run.exit_code = "STOPPED", p.exit_code
            if run.status == "RUNNING" and run.health_check:
                # A health check command "passes" unless it is plainly failing (false / exit N>0).
                words = [w for part in run.health_check[1:] for w in str(part).split()]
                run.health = "UNHEALTHY" if "false" in words or any(
                    w.isdigit() and int(w) and words[i - 1] == "exit" for i, w in enumerate(words) if i) else "HEALTHY"
        if task.desired_status != "STOPPED":
            self._start_ready(task, state, now)
        if task.desired_status != "STOPPED" and any(r.status == "STOPPED" and r.essential for r in state.runs):
            task.desired_status = "STOPPED"
            task.stop_code = "EssentialContainerExited"
            task.stopped_reason = "Essential container in task exited"
            task.stopping_at = now
            state.stop_requested_at = now

    def _terminate(self, task, state: _TaskState, now: datetime) -> None:
        """SIGTERM at ``sigterm_at``, SIGKILL ``stopTimeout`` later."""
        self._run_containers(task, state, now)  # scripts may finish on their own
        for run in state.runs:
            if run.status == "STOPPED":
                continue
            if run.status != "RUNNING":  # never started
                run.status = "STOPPED"
                continue
            if not run.program.ignores_sigterm:
                run.status, run.exit_code = "STOPPED", 143
            elif (now - state.sigterm_at).total_seconds() >= run.stop_timeout:
                run.status, run.exit_code = "STOPPED", 137

    def _stopped(self, task, now: datetime) -> None:
        state = self._states[task.task_arn]
        for run in state.runs:
            if run.status != "STOPPED":
                run.status = "STOPPED"
        task.status = "STOPPED"
        task.desired_status = "STOPPED"
        if getattr(task, "execution_stopped_at", None) is None:
            task.execution_stopped_at = now
        if getattr(task, "stopping_at", None) is None:
            task.stopping_at = now
        task.stopped_at = now
        task.connectivity = None
        for att in task.attachments:
            att["status"] = "DELETED"

    # -- what the containers print and use ---------------------------------

    def _print(self, task, state: _TaskState) -> None:
        """awslogs: the lines each running (or just stopped) container has printed by now."""
        started = getattr(task, "started_at", None)
        if started is None:
            return
        from moto.logs.models import logs_backends

        logs = logs_backends[self.account_id][self.region]
        now = min(self.clock(), getattr(task, "execution_stopped_at", None) or self.clock())  # no output after the end
        for run in state.runs:
            if run.log is None or run.runtime_id is None or run.log.get("awslogs-group") not in logs.groups:
                continue
            group, stream = run.log["awslogs-group"], f"{run.log['awslogs-stream-prefix']}/{run.name}/{task.id}"
            if run.printed == 0 and stream not in logs.groups[group].streams:
                logs.create_log_stream(group, stream)
            due = [(offset, line) for offset, line in run.program.output[run.printed:]
                   if started + timedelta(seconds=offset) <= now]
            if due:
                logs.put_log_events(group, stream, [
                    {"timestamp": int((started + timedelta(seconds=offset)).timestamp() * 1000), "message": line}
                    for offset, line in due])
                run.printed += len(due)

    def _measure(self, task, state: _TaskState) -> None:
        """Container Insights: one datapoint per container for each complete minute it ran."""
        started = getattr(task, "started_at", None)
        if started is None:
            return
        end = (getattr(task, "execution_stopped_at", None) or self.clock()).replace(second=0, microsecond=0)
        minute = state.measured_until or started.replace(second=0, microsecond=0)
        if minute >= end:
            return
        data = []
        while minute < end:
            for run in state.runs:
                dims = [{"Name": "ClusterName", "Value": task.cluster_name}, {"Name": "TaskDefinitionFamily", "Value": state.family},
                        {"Name": "TaskId", "Value": task.id}, {"Name": "ContainerName", "Value": run.name}]
                data += [{"MetricName": "ContainerCpuUtilized", "Value": state.cpu_units * CPU_SHARE,
                          "Unit": "None", "Timestamp": minute, "Dimensions": dims},
                         {"MetricName": "ContainerMemoryUtilized", "Value": MEMORY_MIB, "Unit": "Megabytes",
                          "Timestamp": minute, "Dimensions": dims}]
            minute += timedelta(minutes=1)
        state.measured_until = minute
        from moto.cloudwatch.models import cloudwatch_backends

        # Into moto's model, as ECS (not a caller of the API) publishes them; naive UTC, as moto
        # keeps the times it parses from requests.
        for datum in data:
            datum["Timestamp"] = datum["Timestamp"].astimezone(timezone.utc).replace(tzinfo=None)
        cloudwatch_backends[self.account_id][self.region].put_metric_data("ECS/ContainerInsights", data)

    # -- views -------------------------------------------------------------

    _FIELDS = (
        ("createdAt", "created_at"), ("startedAt", "started_at"),
        ("stoppingAt", "stopping_at"), ("stoppedAt", "stopped_at"),
        ("executionStoppedAt", "execution_stopped_at"), ("pullStartedAt", "pull_started_at"),
        ("pullStoppedAt", "pull_stopped_at"), ("connectivityAt", "connectivity_at"),
        ("updatedAt", "updated_at"), ("stopCode", "stop_code"),
        ("stoppedReason", "stopped_reason"), ("cpu", "cpu"), ("memory", "memory"),
        ("availabilityZone", "availability_zone"), ("platformVersion", "platform_version"),
        ("connectivity", "connectivity"), ("version", "version"),
    )

    def _view(self, task) -> dict[str, Any]:
        view: dict[str, Any] = {
            "attachments": [dict(a) for a in task.attachments],
            "clusterArn": task.cluster_arn,
            "containers": [dict(c) for c in task.containers],
            "desiredStatus": task.desired_status,
            "group": task.group,
            "lastStatus": task.last_status,
            "launchType": task.launch_type or "FARGATE",
            "overrides": {"containerOverrides": [{"name": c["name"]} for c in task.containers]},
            "startedBy": task.started_by,
            "taskArn": task.task_arn,
            "taskDefinitionArn": task.task_definition_arn,
        }
        for key, attr in self._FIELDS:
            value = getattr(task, attr, None)
            if value is not None and value != "":
                view[key] = value
        return view

    def event(self, task) -> dict[str, Any]:
        """The "ECS Task State Change" EventBridge event for ``task`` now."""
        detail = self._view(task)
        for key, value in list(detail.items()):
            if isinstance(value, datetime):
                detail[key] = _iso(value)
        for att in detail["attachments"]:
            if att.get("type") == "ElasticNetworkInterface":
                att["type"] = "eni"
        now = self.clock()
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "ECS Task State Change",
            "source": "aws.ecs",
            "account": self.account_id,
            "time": now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [task.task_arn],
            "detail": detail,
        }


def make_network(ec2_client) -> dict[str, list[str]]:
    """A VPC/subnet/security group moto's awsvpc RunTask accepts (DNS
    hostnames on: moto's ENI needs it). Returns EcsBackend kwargs."""
    vpc = ec2_client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2_client.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2_client.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2_client.create_security_group(
        GroupName="lambdalet-tasks", Description="lambdalet tasks", VpcId=vpc
    )["GroupId"]
    return {"subnets": [subnet], "security_groups": [sg]}


def at_least_once(events: list[dict], rng, duplicate: float = 0.3) -> list[dict]:
    """``events`` as EventBridge may deliver them: "at least once", some
    twice, in any order (EventBridge delivery; ECS task state change events
    carry ``version`` to order them)."""
    out = list(events) + [e for e in events if rng.random() < duplicate]
    rng.shuffle(out)
    return out
