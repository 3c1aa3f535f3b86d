"""A Fly ``Machine`` as the contract's Machine (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ...timefmt import EPOCH, parse_iso
from ..contract import ContainerRun, Machine, MachinePhase, PodRef, StopCause
from .config import MARKER, MARKER_VALUE, META_ATTEMPT, META_CONTAINER, META_NAME, META_NAMESPACE, META_NODE, META_UID

_PENDING = {"created", "starting"}
_STOPPING = {"stopping", "suspending", "destroying"}
_STOPPED = {"stopped", "suspended", "destroyed"}


def _time(value: Any) -> datetime | None:
    """Machine times (ISO, Go may print nanoseconds) or event timestamps (epoch milliseconds)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value / 1000, tz=timezone.utc) if value else None
    return parse_iso(str(value)) if value else None


def _events(machine: Mapping) -> list[dict]:
    """Events newest first (Fly sends them so; sorted here to be sure)."""
    events = [e for e in machine.get("events") or [] if isinstance(e, Mapping)]
    return sorted(events, key=lambda e: int(e.get("timestamp") or 0), reverse=True)


def _exit_event(event: Mapping) -> dict | None:
    request = event.get("request")
    if not isinstance(request, Mapping):
        return None
    exit_event = request.get("exit_event")
    if not isinstance(exit_event, Mapping):
        monitor = request.get("MonitorEvent")
        exit_event = monitor.get("exit_event") if isinstance(monitor, Mapping) else None
    return dict(exit_event) if isinstance(exit_event, Mapping) else None


def exit_code_of(exit_event: Mapping) -> int:
    code = exit_event.get("exit_code")
    signal = exit_event.get("signal")
    if isinstance(code, int) and code >= 0 and not (code == 0 and isinstance(signal, int) and signal > 0):
        return code
    if isinstance(signal, int) and signal > 0:
        return 128 + signal
    return 137 if exit_event.get("oom_killed") else 1


def exit_words(exit_event: Mapping) -> str:
    """The machine's exit event in words: the pod shows the cloud's reason."""
    if exit_event.get("oom_killed"):
        return f"the guest kernel killed the main process: out of memory (exit code {exit_code_of(exit_event)})"
    signal = exit_event.get("signal")
    if isinstance(signal, int) and signal > 0:
        return f"the main process was killed by signal {signal} (exit code {exit_code_of(exit_event)})"
    return f"the main process exited with code {exit_code_of(exit_event)}"


def image_id(machine: Mapping) -> str | None:
    ref = machine.get("image_ref") or {}
    digest = ref.get("digest")
    if not digest:
        return None
    repo = "/".join(p for p in (ref.get("registry"), ref.get("repository")) if p)
    return f"{repo}@{digest}" if repo else digest


UNREACHABLE_HOST = frozenset({"unknown", "unreachable"})


def config_of(m: Mapping) -> dict:
    """The machine's config. A machine on a host the API cannot reach now
    comes back with ``host_status`` unknown/unreachable and what the API still
    knows in ``incomplete_config`` instead of ``config`` (fly-go ``Machine``
    type; issue 8, item 1): still ours, still the same machine."""
    return dict(m.get("config") or m.get("incomplete_config") or {})


def launch_failure(m: Mapping, events: list[dict]) -> str | None:
    """Why Fly could not launch the machine, when it could not: the state
    ``launch_failed`` (after which Fly destroys the machine) or a ``launch``
    event that failed, e.g. the image pull (``MANIFEST_UNKNOWN``) found
    asynchronously (issue 8, item 4). None when the launch did not fail."""
    failed = next((e for e in events if e.get("type") == "launch" and e.get("status") in ("failed", "launch_failed")),
                  None)
    if failed is None and m.get("state") != "launch_failed":
        return None
    request = (failed or {}).get("request")
    detail = request.get("error") if isinstance(request, Mapping) else None
    return f"Fly could not launch the machine: {detail}" if detail else "Fly could not launch the machine"


def machine_from_fly(m: Mapping) -> Machine | None:
    """A Machines API ``Machine`` as the contract's Machine; None when it is
    not one of ours (no lambdalet metadata). See the package docstring."""
    config = config_of(m)
    meta = config.get("metadata") or {}
    if meta.get(MARKER) != MARKER_VALUE or not meta.get(META_UID) or not meta.get(META_NODE):
        return None
    state = str(m.get("state") or "created")
    events = _events(m)
    launch_failed = launch_failure(m, events)
    if launch_failed:
        state = "failed"  # whatever came after (destroyed): it never ran
    # The run that matters is the latest: events after the latest start.
    start = next((e for e in events if e.get("type") == "start" and e.get("status") == "started"), None)
    start_ts = int(start.get("timestamp") or 0) if start else 0
    exit_ev = next(
        (e for e in events if e.get("type") == "exit" and int(e.get("timestamp") or 0) >= start_ts), None
    ) if start else None
    exit_info = _exit_event(exit_ev) if exit_ev else None
    user_stop = any(
        e.get("type") == "stop" and e.get("source") == "user" and int(e.get("timestamp") or 0) >= start_ts
        for e in events
    )
    started_at = _time(start.get("timestamp")) if start else None
    finished_at = None
    if exit_ev is not None:
        finished_at = _time((exit_info or {}).get("exited_at")) or _time(exit_ev.get("timestamp"))

    if state == "failed":
        phase = MachinePhase.STOPPED
    elif state in _STOPPED:
        phase = MachinePhase.STOPPED
    elif state in _STOPPING:
        phase = MachinePhase.STOPPED if exit_ev is not None and state != "suspending" else MachinePhase.STOPPING
    elif state == "started":
        phase = MachinePhase.RUNNING
    elif state in _PENDING:
        phase = MachinePhase.PENDING
    else:  # replacing, updating, ...: a config change in progress
        phase = MachinePhase.RUNNING if started_at else MachinePhase.PENDING

    stop_cause: StopCause | None = None
    stop_reason: str | None = None
    # stop_code: Fly's own word for what happened (its state or exit-event field).
    stop_code: str | None = None
    if state == "failed":
        stop_cause = StopCause.FAILED_TO_START
        stop_code = "launch_failed" if launch_failed else "failed"
        stop_reason = launch_failed or "Fly could not start the machine (state: failed)"
    elif phase in (MachinePhase.STOPPED, MachinePhase.STOPPING):
        if exit_info is not None:
            stop_code = "oom" if exit_info.get("oom_killed") else (
                "requested_stop" if exit_info.get("requested_stop") else "exited")
        if exit_info is not None and (exit_info.get("requested_stop") or user_stop):
            stop_cause, stop_reason = StopCause.REQUESTED, f"the machine was asked to stop; {exit_words(exit_info)}"
        elif exit_info is not None:
            stop_cause, stop_reason = StopCause.EXITED, exit_words(exit_info)
        elif user_stop or state in ("stopping", "destroying", "destroyed", "suspending", "suspended"):
            stop_cause, stop_reason = StopCause.REQUESTED, f"the machine was asked to stop (state: {state})"
            stop_code = state
        else:
            stop_cause, stop_reason = StopCause.LOST, f"Fly stopped the machine without an exit (state: {state})"
            stop_code = state

    name = meta.get(META_CONTAINER) or "main"
    image = str(config.get("image") or "")
    common = dict(
        name=name, image=image, image_id=image_id(m),
        container_id=f"fly://{m.get('id')}/{m.get('instance_id')}" if m.get("instance_id") else f"fly://{m.get('id')}",
    )
    if state == "failed":
        run = ContainerRun(state="waiting", reason="CreateContainerError", message=stop_reason, **common)
    elif phase == MachinePhase.STOPPED and exit_info is not None:
        code = exit_code_of(exit_info)
        if exit_info.get("oom_killed"):
            reason = "OOMKilled"
        else:
            reason = "Completed" if code == 0 else "Error"
        message = None
        if exit_info.get("oom_killed"):
            message = "the machine ran out of memory"
        elif exit_info.get("requested_stop"):
            message = "stopped on request"
        run = ContainerRun(state="terminated", reason=reason, message=message, exit_code=code,
                           started_at=started_at, finished_at=finished_at, **common)
    elif phase == MachinePhase.STOPPED:
        run = ContainerRun(state="terminated", reason="ContainerStatusUnknown", message=stop_reason,
                           exit_code=137, started_at=started_at, finished_at=finished_at, **common)
    elif phase in (MachinePhase.RUNNING, MachinePhase.STOPPING) and started_at:
        # Fly reports no per-container health: readiness follows the machine's state.
        run = ContainerRun(state="running", started_at=started_at, ready=True, **common)
    else:
        run = ContainerRun(state="waiting", reason="ContainerCreating", **common)

    # A multi-container machine: Fly reports the machine's state and exit, not
    # each container's, so every container shows the machine's (its name, its image).
    # Init containers (what the others wait for to exit 0): Fly does not say when each
    # finished, so on a running machine they show Completed; a failing one stops the
    # machine with its exit code, which every container then shows.
    listed = [c for c in config.get("containers") or [] if isinstance(c, Mapping) and c.get("name")]
    inits = {d.get("name") for c in listed for d in c.get("depends_on") or []
             if isinstance(d, Mapping) and d.get("condition") == "exited_successfully"}
    done = ContainerRun(state="terminated", reason="Completed", exit_code=0, started_at=started_at, **common) \
        if run.state == "running" else run
    runs = tuple((done if c["name"] in inits else run).model_copy(
        update={"name": str(c["name"]), "image": str(c.get("image") or image)}) for c in listed) or (run,)

    try:
        attempt = int(meta.get(META_ATTEMPT, "0"))
    except ValueError:
        attempt = 0
    ip = m.get("private_ip") or None
    return Machine(
        id=str(m.get("id", "")),
        pod=PodRef(namespace=meta.get(META_NAMESPACE, "default"), name=meta.get(META_NAME, ""),
                   uid=meta[META_UID]),
        node=meta[META_NODE],
        attempt=attempt,
        phase=phase,
        created_at=_time(m.get("created_at")) or EPOCH,
        started_at=started_at,
        stopped_at=finished_at if phase == MachinePhase.STOPPED else None,
        ip=ip,
        host_ip=ip,
        stop_cause=stop_cause,
        stop_code=stop_code,
        stop_reason=stop_reason,
        containers=runs,
    )

