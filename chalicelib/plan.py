"""The reconciler's brain: pods + machines → actions. Pure, no I/O.

``plan`` joins the pods bound to a node with the machines of that node on pod
UID and says what converges them: create what is missing, stop what has no pod
(or a duplicate), finalize pods whose machines are gone, patch only statuses
that changed. The same function serves the scheduled reconcile (every pod of
the node) and the fast paths (audit, cloud events: a few pods), so there is one
logic, whatever woke us.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from chalicelib import pod_status as ps
from chalicelib.machines.contract import Machine, MachinePhase, MachineSpec, StopCause
from chalicelib.pod_spec import UnsupportedPod, machine_spec

# Kubelet's crash-loop back-off: 10 s doubling per restart, capped at 5 min,
# forgotten once a run lasted 10 min.
BACKOFF_BASE = timedelta(seconds=10)
BACKOFF_CAP = timedelta(minutes=5)
BACKOFF_RESET = timedelta(minutes=10)
# A machine without a pod bound to us is left alone this long: a fast path may
# have created it for a pod whose binding we have not listed yet. Only for pods
# that may still be being bound: one known deleted stops at once (``gone``).
ORPHAN_GRACE = timedelta(seconds=60)


@dataclass(frozen=True)
class Create:
    pod: dict
    spec: MachineSpec
    status: dict | None  # what the pod shows once the create call succeeded; None: leave it
    previous: Machine | None = None  # the attempt before, for lastState should the create fail


@dataclass(frozen=True)
class Stop:
    machine: Machine
    grace_seconds: int
    reason: str
    pod: dict | None = None  # for the Killing event, when there is a pod


@dataclass(frozen=True)
class PatchStatus:
    pod: dict
    status: dict


@dataclass(frozen=True)
class Finalize:
    pod: dict


@dataclass(frozen=True)
class Emit:
    pod: dict
    type: str  # Normal | Warning
    reason: str
    message: str


Action = Create | Stop | PatchStatus | Finalize | Emit


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # pods the planner could not judge (a bug or odd data)

    def add(self, *actions: Action) -> None:
        self.actions.extend(actions)

    def of(self, kind: type) -> list:
        return [a for a in self.actions if isinstance(a, kind)]


def backoff(attempt: int) -> timedelta:
    return min(BACKOFF_BASE * (2**attempt), BACKOFF_CAP)


def create_delay(first_failure: datetime, last_failure: datetime) -> timedelta:
    """After failed creates, wait as long as they have been failing (so the
    waits double), at least the back-off base and at most its cap."""
    return min(max(last_failure - first_failure, BACKOFF_BASE), BACKOFF_CAP)


def restart_delay(machine: Machine) -> timedelta:
    """How long to wait before restarting after ``machine`` exited."""
    ran = (machine.stopped_at - machine.started_at) if machine.stopped_at and machine.started_at else timedelta(0)
    return backoff(0) if ran >= BACKOFF_RESET else backoff(machine.attempt)


def wants_restart(policy: str, exit_codes: list[int]) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return any(code != 0 for code in exit_codes)
    return False


def _oldest_first(machine: Machine) -> tuple:
    return (machine.created_at, machine.id)


def plan(
    node: str,
    pods: list[dict],
    machines: list[Machine],
    now: datetime,
    *,
    scope: set[str] | None = None,
    reap_stopped: bool = False,
    gone: frozenset[str] | set[str] = frozenset(),
) -> Plan:
    """Everything that converges ``node``. With ``scope`` (pod UIDs), only those
    pods and their machines are considered: a fast path must not judge machines
    whose pods it did not read. ``reap_stopped``: the backend keeps stopped
    machines until deleted (Fly), so delete those nobody needs any more (no pod,
    duplicates, attempts older than the previous one). ``gone``: pod UIDs known
    deleted (an audit DELETE, a read that found no such pod or another UID
    under its name): their machines stop at once, without the orphan grace."""
    result = Plan()
    by_uid: dict[str, list[Machine]] = defaultdict(list)
    for machine in machines:
        if scope is None or machine.pod.uid in scope:
            by_uid[machine.pod.uid].append(machine)
    seen: set[str] = set()
    for pod in pods:
        uid = pod["metadata"]["uid"]
        if (pod.get("spec") or {}).get("nodeName") != node:
            continue  # not ours (any more): its machines are orphans
        seen.add(uid)
        mark = len(result.actions)
        try:
            plan_pod(result, node, pod, sorted(by_uid.get(uid, []), key=_oldest_first), now, reap_stopped)
        except Exception as err:  # noqa: BLE001 - one odd pod must not stop its node's convergence
            del result.actions[mark:]
            meta = pod["metadata"]
            result.errors.append(f"{meta.get('namespace')}/{meta.get('name')}: {type(err).__name__}: {err}")
    for uid, orphans in by_uid.items():
        if uid in seen:
            continue
        for machine in orphans:
            if machine.phase == MachinePhase.STOPPING or (machine.phase == MachinePhase.STOPPED and not reap_stopped):
                continue
            if uid in gone:
                result.add(Stop(machine, 0, f"lambdalet: pod {machine.pod.namespace}/{machine.pod.name} "
                                            f"(uid {uid}) was deleted"))
            elif now - machine.created_at >= ORPHAN_GRACE:
                result.add(Stop(machine, 0, "lambdalet: no pod bound to this node owns this machine"))
    return result


def plan_pod(result: Plan, node: str, pod: dict, machines: list[Machine], now: datetime,
             reap_stopped: bool = False) -> None:
    """Converge one pod with its machines (oldest first)."""
    meta, spec = pod["metadata"], pod["spec"]
    phase = (pod.get("status") or {}).get("phase", "Pending")
    live = [m for m in machines if m.phase not in (MachinePhase.STOPPED, MachinePhase.STOPPING)]

    if meta.get("deletionTimestamp"):
        grace = int(meta.get("deletionGracePeriodSeconds", spec.get("terminationGracePeriodSeconds", 30)))
        for machine in live:
            result.add(
                Stop(machine, grace, f"lambdalet: pod {meta['namespace']}/{meta['name']} deleted", pod),
                Emit(pod, "Normal", "Killing", f"Stopping machine {machine.id}"),
            )
        if not any(m.phase != MachinePhase.STOPPED for m in machines):
            result.add(Finalize(pod), Emit(pod, "Normal", "Finalized",
                                           "Machine stopped; the pod object is removed"))
        return

    if phase in ps.TERMINAL_PHASES:
        for machine in live:  # never rewrite a finished pod; just make sure nothing runs
            result.add(Stop(machine, 0, "lambdalet: pod already finished"))
        return

    # One machine per attempt: keep the oldest, stop the younger duplicates.
    by_attempt: dict[int, Machine] = {}
    for machine in machines:
        if machine.attempt in by_attempt:
            if machine.phase != MachinePhase.STOPPING and (machine.phase != MachinePhase.STOPPED or reap_stopped):
                result.add(Stop(machine, 0, "lambdalet: duplicate machine for this pod"))
            continue
        by_attempt[machine.attempt] = machine

    attempt = max([ps.restart_count(pod), *by_attempt.keys()])
    current, previous = by_attempt.get(attempt), by_attempt.get(attempt - 1)
    if reap_stopped:  # the current and the previous attempt tell the pod's status; older ones go
        for old, machine in by_attempt.items():
            if old < attempt - 1 and machine.phase == MachinePhase.STOPPED:
                result.add(Stop(machine, 0, "lambdalet: machine of an earlier restart"))

    if current is None:
        if ps.seen_started(pod, attempt):
            status = ps.lost_status(
                pod, now, restart_count=attempt,
                detail=f"The machine of this pod (attempt {attempt}) disappeared from the cloud",
            )
            result.add(
                PatchStatus(pod, status),
                Emit(pod, "Warning", ps.MACHINE_LOST, "The pod's machine disappeared; the pod has failed"),
            )
            return
        _create(result, node, pod, attempt, previous, now)
        return

    if current.phase != MachinePhase.STOPPED:
        # Machines are listed before pods: a machine event may have shown a later state
        # in between. An older listing writes nothing (it would roll the pod back, or
        # meet a 409); the next pass lists the machine as it is.
        if not ps.is_stale(pod, current):
            _patch(result, pod, ps.running_status(pod, current, now, restart_count=attempt, previous=previous))
        return

    # The current machine has stopped: why?
    if current.stop_cause == StopCause.FAILED_TO_START:
        message = current.stop_reason or "the machine failed to start"
        state = {"terminated": {"exitCode": 128, "reason": "StartError", "message": message}}
        status = ps.failed_status(pod, now, reason=ps.PROVIDER_FAILED, message=message,
                                  container_state=state, machine=current, restart_count=attempt)
        if ps.status_differs(pod, status):
            result.add(PatchStatus(pod, status), Emit(pod, "Warning", "Failed", message))
        return
    if current.stop_cause == StopCause.START_RETRYABLE:
        # Not the pod's fault and not final: wait as kubelet does for an image pull,
        # then try a new machine, whatever the restart policy (nothing ran yet).
        message = f"{current.stop_reason or 'the machine did not start'}; retrying"
        if (current.stopped_at or current.created_at) + restart_delay(current) > now:
            status = ps.running_status(pod, None, now, restart_count=attempt, previous=previous,
                                       waiting=("StartBackOff", message))
            if ps.status_differs(pod, status):
                result.add(PatchStatus(pod, status), Emit(pod, "Warning", "StartBackOff", message))
            return
        _create(result, node, pod, attempt + 1, previous, now)
        return
    if current.stop_cause == StopCause.LOST:
        detail = current.cloud_says() or "the cloud stopped the machine"
        result.add(
            PatchStatus(pod, ps.lost_status(pod, now, restart_count=attempt, detail=detail)),
            Emit(pod, "Warning", ps.MACHINE_LOST, detail),
        )
        return

    codes = [r.exit_code if r.exit_code is not None else 1 for r in current.containers]
    if not wants_restart(spec.get("restartPolicy", "Always"), codes):
        _patch(result, pod, ps.exited_status(pod, current, now, restart_count=attempt, previous=previous))
        return

    stopped_at = current.stopped_at or current.created_at
    delay = restart_delay(current)
    if stopped_at + delay > now:
        names = ",".join(r.name for r in current.containers if r.exit_code) or "containers"
        message = f"back-off {int(delay.total_seconds())}s restarting failed container {names}"
        # As kubelet shows a crash loop: waiting now, the exit just seen as lastState.
        status = ps.running_status(pod, current, now, restart_count=attempt, previous=current,
                                   waiting=("CrashLoopBackOff", message))
        if ps.status_differs(pod, status):
            result.add(PatchStatus(pod, status))
            for run in current.containers:
                code = run.exit_code if run.exit_code is not None else 1
                result.add(Emit(pod, "Normal" if code == 0 else "Warning", "Exited",
                                f"Container {run.name} exited with code {code}"))
            result.add(Emit(pod, "Warning", "BackOff", message))
        return
    if _create(result, node, pod, attempt + 1, current, now):
        result.add(Emit(pod, "Normal", "Restarting",
                        f"Restarting the pod's containers (restart {attempt + 1}, policy {spec.get('restartPolicy')})"))


def _create(result: Plan, node: str, pod: dict, attempt: int, previous: Machine | None, now: datetime) -> bool:
    """Plan the machine of ``attempt``; False when no create is planned (the pod
    cannot run at all, or creates are backing off)."""
    try:
        spec = machine_spec(pod, node, attempt)
    except UnsupportedPod as err:
        message = f"lambdalet cannot run this pod: {err}"
        state = {"waiting": {"reason": "CreateContainerConfigError", "message": message}}
        status = ps.failed_status(pod, now, reason=ps.PROVIDER_FAILED, message=message,
                                  container_state=state, restart_count=attempt)
        result.add(PatchStatus(pod, status), Emit(pod, "Warning", "ProviderCreateFailed", message))
        return False
    failing = ps.create_backoff(pod)
    if failing and now < failing[1] + create_delay(*failing):
        return False  # the cloud refused lately: the pod shows it; try again after the back-off
    status = ps.running_status(pod, None, now, restart_count=attempt, previous=previous)
    result.add(Create(pod, spec, status, previous))
    return True


def _patch(result: Plan, pod: dict, status: dict) -> None:
    if ps.status_differs(pod, status):
        result.add(PatchStatus(pod, status))
        for type_, reason, message in ps.container_events(pod.get("status") or {}, status):
            result.add(Emit(pod, type_, reason, message))
