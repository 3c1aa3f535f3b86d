"""Machine → PodStatus: pure functions that write a status as a kubelet would.

Full statuses only: phase, the five kubelet conditions with transition times,
per-container states (waiting / running / terminated with reasons and exit
codes), restartCount, lastState, podIP(s), hostIP(s), startTime. Missing
conditions leave pods stuck in real clusters, so we never write a partial one.
"""

from __future__ import annotations

from datetime import datetime

from chalicelib.machines.contract import ContainerRun, Machine, MachinePhase
from chalicelib.timefmt import parse_iso, rfc3339

CONDITION_TYPES = ("PodScheduled", "PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")
# Ours: shown while creates fail for a passing reason. lastTransitionTime = the
# first failure, lastProbeTime = the latest: the back-off is derived from them.
CREATE_BACKOFF = "lambdalet.io/MachineCreateBackOff"
TERMINAL_PHASES = ("Succeeded", "Failed")

# Pod-level reasons (status.reason); "ProviderFailed" is virtual-kubelet's own.
PROVIDER_FAILED = "ProviderFailed"
MACHINE_LOST = "MachineLost"


def _conditions(pod: dict, ready: bool, not_ready_reason: str | None, now: datetime,
                sandbox: bool = False, initialized: bool = True) -> list[dict]:
    """The kubelet's conditions, keeping lastTransitionTime where the status did not change.

    PodReadyToStartContainers (KEP-3085, on by default since 1.29, GA in 1.34): a v1.36
    kubelet writes True once the pod's sandbox exists with its network configured
    (status.GeneratePodReadyToStartContainersCondition: no new sandbox needed), False
    before that and once it is torn down (terminal pods), without a reason. Our sandbox
    is the machine: ``sandbox`` is True while it exists with its network up."""
    existing = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}
    wanted = {
        "PodScheduled": ("True", None),
        "PodReadyToStartContainers": ("True" if sandbox else "False", None),
        "Initialized": ("True", None) if initialized else ("False", "ContainersNotInitialized"),
        "ContainersReady": ("True", None) if ready else ("False", not_ready_reason),
        "Ready": ("True", None) if ready else ("False", not_ready_reason),
    }
    out = []
    for kind in CONDITION_TYPES:
        status, reason = wanted[kind]
        old = existing.get(kind)
        if kind == "PodScheduled" and old and old.get("status") == "True":
            out.append(old)  # written by the apiserver at binding: keep it as it is
            continue
        changed = old is None or old.get("status") != status
        condition = {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": rfc3339(now) if changed else old.get("lastTransitionTime") or rfc3339(now),
        }
        if reason:
            condition["reason"] = reason
        out.append(condition)
    # Conditions others own (DisruptionTarget, readiness gates) go through untouched:
    # the merge patch replaces the whole list. Our back-off condition is written
    # only by create_backoff_status: any other status clears it.
    out += [c for c in (pod.get("status") or {}).get("conditions") or []
            if c.get("type") not in CONDITION_TYPES and c.get("type") != CREATE_BACKOFF]
    return out


def container_state(run: ContainerRun | None) -> dict:
    """A ContainerState from one observed container run (None: not created yet)."""
    if run is None:
        return {"waiting": {"reason": "ContainerCreating"}}
    if run.state == "running":
        return {"running": {"startedAt": rfc3339(run.started_at)} if run.started_at else {}}
    if run.state == "terminated":
        exit_code = run.exit_code if run.exit_code is not None else 0
        terminated: dict = {
            "exitCode": exit_code,
            "reason": run.reason or ("Completed" if exit_code == 0 else "Error"),
        }
        if run.message:
            terminated["message"] = run.message
        if run.started_at:
            terminated["startedAt"] = rfc3339(run.started_at)
        if run.finished_at:
            terminated["finishedAt"] = rfc3339(run.finished_at)
        if run.container_id:
            terminated["containerID"] = run.container_id
        return {"terminated": terminated}
    waiting = {"reason": run.reason or "ContainerCreating"}
    if run.message:
        waiting["message"] = run.message
    return {"waiting": waiting}


def _runs(machine: Machine | None) -> dict[str, ContainerRun]:
    return {run.name: run for run in machine.containers} if machine else {}


def _probe_gated(container: dict) -> bool:
    """Does this container's readiness wait for a health verdict? Its exec probe
    becomes a health check where the node's backend runs one (pod_spec.FEATURES)."""
    probes = [container.get(k) or {} for k in ("readinessProbe", "livenessProbe", "startupProbe")]
    return any("exec" in p for p in probes)


def _ready(container: dict, state: dict, run: ContainerRun | None) -> bool:
    """Ready as the node's backend judges it: its verdict on the run (ECS: the
    health status, None until the first check; Fly: True while the machine runs),
    which a probe-gated container must have; others are ready unless it says no."""
    if "running" not in state:
        return False
    verdict = run.ready if run else None
    return verdict is True if _probe_gated(container) else verdict is not False


def _container_statuses(
    pod: dict,
    current: dict[str, dict],
    runs: dict[str, ContainerRun],
    last: dict[str, ContainerRun],
    restart_count: int,
    kind: str = "containers",
) -> list[dict]:
    # Without the previous machine at hand (fast paths), keep the lastState we showed.
    field = "containerStatuses" if kind == "containers" else "initContainerStatuses"
    shown = {s.get("name"): s.get("lastState") or {}
             for s in (pod.get("status") or {}).get(field) or []
             if s.get("restartCount", 0) == restart_count}
    out = []
    for container in pod["spec"].get(kind) or []:
        name = container["name"]
        run = runs.get(name)
        state = current.get(name) or container_state(run)
        status = {
            "name": name,
            "image": container["image"],
            "imageID": (run.image_id if run and run.image_id else ""),
            "ready": _ready(container, state, run) if kind == "containers" else (
                state.get("terminated", {}).get("exitCode") == 0),
            "started": "running" in state,
            "restartCount": restart_count,
            "state": state,
            "lastState": container_state(last[name]) if name in last else shown.get(name, {}),
        }
        if run and run.container_id:
            status["containerID"] = run.container_id
        out.append(status)
    return out


def _addresses(pod: dict, machine: Machine | None) -> dict:
    old = pod.get("status") or {}
    ip = (machine.ip if machine else None) or old.get("podIP")
    host_ip = (machine.host_ip if machine else None) or old.get("hostIP") or ip
    out: dict = {}
    if ip:
        out["podIP"] = ip
        out["podIPs"] = [{"ip": ip}]
    if host_ip:
        out["hostIP"] = host_ip
        out["hostIPs"] = [{"ip": host_ip}]
    return out


def _base(pod: dict, phase: str, now: datetime, machine: Machine | None) -> dict:
    old = pod.get("status") or {}
    start = old.get("startTime") or rfc3339(machine.created_at if machine else now)
    return {"phase": phase, "startTime": start, **_addresses(pod, machine)}


def running_status(
    pod: dict,
    machine: Machine | None,
    now: datetime,
    *,
    restart_count: int = 0,
    previous: Machine | None = None,
    waiting: tuple[str, str] | None = None,
) -> dict:
    """Status of a pod whose machine is starting, running or being replaced.

    ``waiting`` forces every container into waiting (reason, message): used for
    create retries and crash-loop back-off.
    """
    runs = _runs(machine)
    forced = {}
    if waiting:
        reason, message = waiting
        state = {"waiting": {"reason": reason, "message": message}}
        forced = {c["name"]: state for c in pod["spec"]["containers"]}
    inits = _container_statuses(pod, {}, runs, _runs(previous), restart_count, kind="initContainers")
    initialized = all(s["ready"] for s in inits)
    if not initialized and not waiting:  # as kubelet: app containers wait while init containers run
        forced = {c["name"]: {"waiting": {"reason": "PodInitializing"}} for c in pod["spec"]["containers"]}
    statuses = _container_statuses(pod, forced, runs, _runs(previous), restart_count)
    ready = bool(statuses) and all(s["ready"] for s in statuses)
    was_running = (pod.get("status") or {}).get("phase") == "Running"
    phase = "Running" if (machine and machine.phase != MachinePhase.PENDING and initialized) or was_running \
        or restart_count else "Pending"
    status = _base(pod, phase, now, machine)
    sandbox = machine is not None and (machine.phase in (MachinePhase.RUNNING, MachinePhase.STOPPING)
                                       or machine.phase == MachinePhase.PENDING and bool(machine.ip))
    status["conditions"] = _conditions(pod, ready, None if ready else "ContainersNotReady", now, sandbox,
                                       initialized=initialized)
    if inits:
        status["initContainerStatuses"] = inits
    status["containerStatuses"] = statuses
    return status


def create_backoff_status(pod: dict, now: datetime, *, restart_count: int, previous: Machine | None,
                          error: str) -> dict:
    """A create failed for a passing reason: containers wait (ProviderBackOff) and
    the back-off condition records when the failures began and the latest one."""
    message = f"{error}; lambdalet retries with back-off"
    status = running_status(pod, None, now, restart_count=restart_count, previous=previous,
                            waiting=("ProviderBackOff", message))
    first = (create_backoff(pod) or (now, now))[0]
    status["conditions"].append({
        "type": CREATE_BACKOFF, "status": "True", "reason": "CloudRefusedForNow", "message": error[:1024],
        "lastTransitionTime": rfc3339(first), "lastProbeTime": rfc3339(now),
    })
    return status


def create_backoff(pod: dict) -> tuple[datetime, datetime] | None:
    """(first, latest) failed create the pod shows, or None."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == CREATE_BACKOFF and condition.get("status") == "True":
            first, last = parse_iso(condition.get("lastTransitionTime")), parse_iso(condition.get("lastProbeTime"))
            if first and last:
                return first, last
    return None


def exited_status(pod: dict, machine: Machine, now: datetime, *, restart_count: int, previous: Machine | None) -> dict:
    """Terminal status once every container of the last machine has exited."""
    runs = _runs(machine)
    inits = _container_statuses(pod, {}, runs, _runs(previous), restart_count, kind="initContainers")
    initialized = all(s["ready"] for s in inits)
    statuses = _container_statuses(pod, {}, runs, _runs(previous), restart_count)
    codes = [s["state"].get("terminated", {}).get("exitCode", 1) for s in statuses]
    phase = "Succeeded" if initialized and all(code == 0 for code in codes) else "Failed"
    status = _base(pod, phase, now, machine)
    status["conditions"] = _conditions(pod, False, "PodCompleted", now, initialized=initialized)
    if inits:
        status["initContainerStatuses"] = inits
    status["containerStatuses"] = statuses
    return status


def failed_status(
    pod: dict,
    now: datetime,
    *,
    reason: str,
    message: str,
    container_state: dict,
    machine: Machine | None = None,
    restart_count: int = 0,
) -> dict:
    """Terminal Failed status with a pod-level reason a user can read in `kubectl describe`."""
    forced = {c["name"]: container_state for c in pod["spec"]["containers"]}
    statuses = _container_statuses(pod, forced, _runs(machine), {}, restart_count)
    status = _base(pod, "Failed", now, machine)
    status.update(reason=reason, message=message)
    status["conditions"] = _conditions(pod, False, "PodFailed", now)
    status["containerStatuses"] = statuses
    return status


def lost_status(pod: dict, now: datetime, *, restart_count: int, detail: str) -> dict:
    """The machine vanished under a running pod: Failed, as pod GC does for a lost node."""
    state = {
        "terminated": {
            "exitCode": 137,
            "reason": "ContainerStatusUnknown",
            "message": "The container could not be located when the pod was terminated",
        }
    }
    return failed_status(pod, now, reason=MACHINE_LOST, message=detail, container_state=state, restart_count=restart_count)


def container_events(old: dict, new: dict) -> list[tuple[str, str, str]]:
    """What a user should read in `kubectl describe pod` about this status change:
    containers that started and containers that exited (with their code)."""
    before = {(s.get("name"), s.get("restartCount", 0)): s.get("state") or {}
              for s in old.get("containerStatuses") or []}
    out = []
    for status in new.get("containerStatuses") or []:
        name, state = status["name"], status["state"]
        was = before.get((name, status.get("restartCount", 0)), {})
        if "running" in state and "running" not in was:
            out.append(("Normal", "Started", f"Started container {name}"))
        if "terminated" in state and "terminated" not in was:
            term = state["terminated"]
            code, reason = term.get("exitCode"), term.get("reason", "")
            said = f": {term['message']}" if term.get("message") else ""
            if code == 0:
                out.append(("Normal", "Completed", f"Container {name} exited with code 0{said}"))
            else:
                out.append(("Warning", "Exited", f"Container {name} exited with code {code} ({reason}){said}"))
    return out


def status_differs(pod: dict, desired: dict) -> bool:
    """True when writing ``desired`` would change what the pod shows.

    Only the keys we write are compared: the apiserver adds others (qosClass).
    """
    current = pod.get("status") or {}
    return any(current.get(key) != value for key, value in desired.items())


def restart_count(pod: dict) -> int:
    return max((s.get("restartCount", 0) for s in (pod.get("status") or {}).get("containerStatuses") or []), default=0)


_PHASE_RANK = {MachinePhase.PENDING: 0, MachinePhase.RUNNING: 1, MachinePhase.STOPPING: 1, MachinePhase.STOPPED: 2}


def _shown_rank(state: dict) -> int:
    """How far along the pod already shows a container: waiting 0, running 1, exited 2."""
    if "terminated" in state or (state.get("waiting") or {}).get("reason") == "CrashLoopBackOff":
        return 2
    return 1 if "running" in state else 0


def is_stale(pod: dict, machine: Machine) -> bool:
    """Does the pod already show a later point of the machine's life than ``machine``?

    Events arrive late and out of order: news about an earlier attempt, or of
    an earlier state of this attempt, must not roll the pod back.
    """
    attempt = restart_count(pod)
    if machine.attempt != attempt:
        return machine.attempt < attempt
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    shown = max((_shown_rank(s.get("state") or {}) for s in statuses), default=0)
    return _PHASE_RANK[machine.phase] < shown


def seen_started(pod: dict, attempt: int) -> bool:
    """Did we already show this attempt's containers running or exited?"""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any(
        s.get("restartCount", 0) == attempt and ("running" in (s.get("state") or {}) or "terminated" in (s.get("state") or {}))
        for s in statuses
    )
