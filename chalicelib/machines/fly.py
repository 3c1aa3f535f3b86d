"""Fly Machines backend: each machine is one Fly Machine (a Firecracker micro-VM).

Spoken over the Machines REST API (``/v1/apps/{app}/machines...``, the public
Swagger 2.0 spec in ``specs/fly-machines-swagger.json``) with ``requests``; the
API token comes from Secrets Manager through ``token_provider`` and is never
logged nor put in an error message.

Identity and idempotency (Fly has no client token on create)
    A machine is the Fly Machine for ``(pod uid, attempt)``. Its name is derived
    from that pair (``machine_name``), and its ``config.metadata`` carries the
    pod's namespace, name and UID, the node, the attempt and the container name
    (``lambdalet_*`` keys, plus the ``lambdalet`` marker). ``create``:

    1. claims the key in DynamoDB (``claims.Claims``: a conditional PutItem).
       A claim already settled names the machine: it is returned. A claim
       still being worked on by another invocation: TransientMachineError
       (the next pass finds the machine). A stale claim (its creator died)
       stops blocking once its lease expires.
    2. with the claim won, looks the machine up by metadata (the list endpoint
       of this API version has no metadata filter: one list call, filtered
       here) so a crash between create and claim bookkeeping never yields a
       second machine;
    3. creates it (region: the pod's ``lambdalet.io/fly-region`` annotation
       where the spec carries annotations, else the settings' region; on a
       capacity error, each fallback region in turn), then records the machine
       id on the claim. The reconciler stops any duplicate it still finds,
       keeping the oldest (``created_at`` is reported for that).

Pod -> CreateMachineRequest (``create_request``, pure)
    image; Kubernetes ``command`` -> ``init.entrypoint``, ``args`` ->
    ``init.cmd``; env; ``guest`` from ``fly_guest.fit``; ``restart.policy`` is
    always ``no``: a restart is a new machine (attempt) decided by the core,
    with kubelet's crash-loop back-off and restartCount — Fly restarting in place
    would hide exits from the pod, and Fly's default (on-failure) would apply
    if we sent nothing. ``stop_config``: SIGTERM, timeout = the pod's grace.
    Ports are not published (``services`` would expose them through Fly's
    proxy; pods talk over the 6PN private network). This API version has no
    multi-container machines (no ``containers`` in ``fly.MachineConfig``): a
    pod with several containers is refused with PermanentMachineError before
    any call.

Observed state (``machine_from_fly``, pure)
    ``state`` -> phase (created/starting -> PENDING, started -> RUNNING,
    stopping/suspending/destroying -> STOPPING unless the exit is already
    known, stopped/suspended/destroyed -> STOPPED, failed -> STOPPED with
    FAILED_TO_START); the latest ``exit`` event's ``exit_event`` gives the
    exit code (128 + signal for a signal death), ``oom_killed`` (reason
    ``OOMKilled``), ``requested_stop`` (REQUESTED, else EXITED) and
    ``exited_at``; the latest ``start`` event gives startedAt; ``private_ip``
    (6PN IPv6) is podIP and hostIP. Fly has no EventBridge:
    ``machine_from_event`` is always None and status comes through the
    reconcile.

Deletion (``delete``)
    One GET, then: started -> POST stop (SIGTERM, the grace as timeout);
    created/starting (nothing ran yet) or ``grace_seconds=0`` -> destroy with
    ``force=true`` in one call; already stopped/failed/suspended -> destroy;
    stopping, destroying, destroyed or 404 -> nothing to do. Every call is
    idempotent and cheap. A machine stopped by a graceful delete stays
    ``stopped`` (its exit is the pod's last word) until a later delete call
    destroys it. The planner finalizes a pod as soon as its machines are
    STOPPED and never stops a STOPPED orphan, so today nothing calls delete
    again: stopped machines of deleted pods stay in the app (Fly keeps them,
    unlike ECS's one hour) until the planner sends STOPPED orphans to
    ``delete`` too.

Limits
    Per-machine actions go through a token bucket of 1 request/s per action
    per machine, burst 3 (Fly's documented limit). 429 and 5xx are retried with
    exponential back-off and full jitter (tenacity), honouring Retry-After,
    within a small budget; a create is retried on 429 only (a 5xx may have
    created it: the claim and the lookup handle that on the next pass).
    ``classify`` turns every error into the contract's three kinds.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from .claims import Claim, Claims, Held
from .contract import (
    ContainerRun,
    Machine,
    MachineError,
    MachineNotFound,
    MachinePhase,
    MachineSpec,
    PermanentMachineError,
    PodRef,
    StopCause,
    TransientMachineError,
)
from ..timefmt import EPOCH, parse_iso
from .fly_guest import SIZES, fit

DEFAULT_API_URL = "https://api.machines.dev"
REGION_ANNOTATION = "lambdalet.io/fly-region"

# Metadata keys: no "/" or "." (keys also appear in /metadata/{key} paths).
MARKER = "lambdalet"
MARKER_VALUE = "v1"
META_NAMESPACE = "lambdalet_pod_namespace"
META_NAME = "lambdalet_pod_name"
META_UID = "lambdalet_pod_uid"
META_NODE = "lambdalet_node"
META_ATTEMPT = "lambdalet_attempt"
META_CONTAINER = "lambdalet_container"

MAX_STOP_TIMEOUT = 300  # seconds; Fly's kill_timeout ceiling
MAX_NAME = 63
_NAME_OK = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class CapacityError(TransientMachineError):
    """No room for the machine in that region now: retry, or try another region."""


# --------------------------------------------------------------------------
# Names and translation (pure)
# --------------------------------------------------------------------------


def machine_name(uid: str, attempt: int) -> str:
    """Deterministic machine name for ``(uid, attempt)``: ``lambdalet-<uid>-<attempt>``
    while it is a short lowercase DNS label (a pod UID is), else a hash."""
    value = f"lambdalet-{uid}-{attempt}".lower()
    if len(value) <= MAX_NAME and _NAME_OK.match(value):
        return value
    return f"lambdalet-h{hashlib.sha256(f'{uid}/{attempt}'.encode()).hexdigest()[:32]}-{attempt}"


def go_duration(seconds: int) -> str:
    """A Go duration string ("30s"): how the Machines API reads ``fly.Duration``."""
    return f"{int(seconds)}s"


def metadata(spec: MachineSpec) -> dict[str, str]:
    return {
        MARKER: MARKER_VALUE,
        META_NAMESPACE: spec.pod.namespace,
        META_NAME: spec.pod.name,
        META_UID: spec.pod.uid,
        META_NODE: spec.node,
        META_ATTEMPT: str(spec.attempt),
        META_CONTAINER: spec.containers[0].name,
    }


def region_override(spec: MachineSpec) -> str | None:
    """The pod's ``lambdalet.io/fly-region`` annotation, if any."""
    for key, value in spec.annotations:
        if key == REGION_ANNOTATION and str(value).strip():
            return str(value).strip()
    return None


def create_request(spec: MachineSpec, region: str | None) -> dict[str, Any]:
    """The ``CreateMachineRequest`` body for ``spec`` in ``region``.
    Raises PermanentMachineError for what Fly cannot run."""
    if len(spec.containers) != 1:
        names = ", ".join(c.name for c in spec.containers)
        raise PermanentMachineError(
            f"the pod has {len(spec.containers)} containers ({names}); a Fly Machine runs one "
            "container in this version of the Machines API: use a single container"
        )
    c = spec.containers[0]
    guest = fit(spec.cpu_millis, spec.memory_mib)
    init: dict[str, Any] = {}
    if c.command is not None:
        init["entrypoint"] = list(c.command)
    if c.args is not None:
        init["cmd"] = list(c.args)
    config: dict[str, Any] = {
        "image": c.image,
        "env": dict(c.env),
        "guest": guest.body(),
        "restart": {"policy": "no"},
        "stop_config": {
            "signal": "SIGTERM",
            "timeout": go_duration(max(0, min(spec.termination_grace_seconds, MAX_STOP_TIMEOUT))),
        },
        "metadata": metadata(spec),
    }
    if init:
        config["init"] = init
    body: dict[str, Any] = {"name": machine_name(spec.pod.uid, spec.attempt), "config": config}
    if region:
        body["region"] = region
    return body


# --------------------------------------------------------------------------
# Observed state (pure)
# --------------------------------------------------------------------------

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


def image_id(machine: Mapping) -> str | None:
    ref = machine.get("image_ref") or {}
    digest = ref.get("digest")
    if not digest:
        return None
    repo = "/".join(p for p in (ref.get("registry"), ref.get("repository")) if p)
    return f"{repo}@{digest}" if repo else digest


def machine_from_fly(m: Mapping) -> Machine | None:
    """A Machines API ``Machine`` as the contract's Machine; None when it is
    not one of ours (no lambdalet metadata). See the module docstring."""
    config = m.get("config") or {}
    meta = config.get("metadata") or {}
    if meta.get(MARKER) != MARKER_VALUE or not meta.get(META_UID) or not meta.get(META_NODE):
        return None
    state = str(m.get("state") or "created")
    events = _events(m)
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
    if state == "failed":
        stop_cause = StopCause.FAILED_TO_START
        stop_reason = "Fly could not start the machine (state: failed)"
    elif phase in (MachinePhase.STOPPED, MachinePhase.STOPPING):
        if exit_info is not None and (exit_info.get("requested_stop") or user_stop):
            stop_cause, stop_reason = StopCause.REQUESTED, "the machine was asked to stop"
        elif exit_info is not None:
            stop_cause, stop_reason = StopCause.EXITED, "the machine's main process exited"
        elif user_stop or state in ("stopping", "destroying", "destroyed", "suspending", "suspended"):
            stop_cause, stop_reason = StopCause.REQUESTED, f"the machine was asked to stop (state: {state})"
        else:
            stop_cause, stop_reason = StopCause.LOST, f"Fly stopped the machine without an exit (state: {state})"

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
        run = ContainerRun(state="running", started_at=started_at, **common)
    else:
        run = ContainerRun(state="waiting", reason="ContainerCreating", **common)

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
        stop_reason=stop_reason,
        containers=(run,),
    )


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class FlyApiError(Exception):
    """A non-2xx answer of the Machines API (never carries the token)."""

    def __init__(self, action: str, status: int, body: Any, retry_after: float | None = None):
        self.action, self.status, self.body, self.retry_after = action, status, body, retry_after
        super().__init__(f"Fly {action} failed: HTTP {status}: {error_text(body)}")


def error_text(body: Any) -> str:
    if isinstance(body, Mapping):
        text = str(body.get("error") or body.get("message") or "") or json.dumps(body)[:300]
        if body.get("status") and body.get("status") != "unknown":
            text += f" ({body['status']})"
        return text
    return str(body or "")[:300]


_CAPACITY_MARKERS = ("insufficient resources", "insufficient memory", "insufficient capacity",
                     "no capacity", "over the allowed quota", "capacity")


def is_capacity(status: int, body: Any) -> bool:
    """A capacity refusal: the spec's ``ErrorResponse.status`` is
    ``insufficient_capacity``, or (older shapes seen in production) 403/409/412
    whose error names exhausted capacity or quota."""
    if isinstance(body, Mapping) and body.get("status") == "insufficient_capacity":
        return True
    text = error_text(body).lower()
    return status in (403, 409, 412) and any(m in text for m in _CAPACITY_MARKERS)


def classify(error: BaseException, action: str = "request") -> MachineError:
    """The MachineError kind for anything the Fly client raised.

    Transient: 429 (rate limited), 5xx, 408, capacity (``CapacityError``),
    401/403 (the operator's token or org: retried and shown, never fatal),
    connection errors and timeouts. Not found: 404 (the machine, or for a
    create the app: transient, fix the setup). Permanent: any other 4xx (the
    request can never succeed as it is, e.g. an image that does not exist).
    """
    if isinstance(error, MachineError):
        return error
    if isinstance(error, FlyApiError):
        status, text = error.status, str(error)
        if is_capacity(status, error.body):
            return CapacityError(text)
        if status == 429 or status == 408 or status >= 500:
            return TransientMachineError(text)
        if status in (401, 403):
            return TransientMachineError(text + " (fix the lambdalet Fly token/app; retrying)")
        if status == 404:
            if action == "create":
                return TransientMachineError(text + " (does the Fly app exist? retrying)")
            return MachineNotFound(text)
        if 400 <= status < 500:
            return PermanentMachineError(text)
        return TransientMachineError(text)
    import requests  # lazy: keep module import light

    if isinstance(error, requests.RequestException):
        return TransientMachineError(f"Fly {action} could not reach the Machines API: {type(error).__name__}")
    return TransientMachineError(f"Fly {action} failed: {type(error).__name__}: {error}")


# --------------------------------------------------------------------------
# HTTP: rate limit, retries
# --------------------------------------------------------------------------


class TokenBuckets:
    """Client-side limit: ``rate`` requests/s per key with ``burst``; waits for a token."""

    def __init__(self, rate: float = 1.0, burst: int = 3, *,
                 monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.rate, self.burst, self.monotonic, self.sleep = rate, burst, monotonic, sleep
        self._buckets: dict[tuple, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: tuple) -> float:
        """Take one token for ``key``, sleeping if none is left; the time slept."""
        with self._lock:
            now = self.monotonic()
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[key] = (tokens - 1 + wait * self.rate, now + wait)
        if wait > 0:
            self.sleep(wait)
        return wait


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None


class FlyApi:
    """The few Machines API calls lambdalet makes, with limits and retries.

    ``token_provider``: returns the API token (Secrets Manager, cached by the
    caller); called per request so a rotated token is picked up.
    """

    def __init__(
        self,
        base_url: str,
        app: str,
        token_provider: Callable[[], str],
        *,
        session: Any = None,
        timeout: tuple[float, float] = (3.0, 15.0),
        max_attempts: int = 4,
        max_wait: float = 8.0,
        buckets: TokenBuckets | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        import requests

        self.base = base_url.rstrip("/") + "/v1"
        self.app = app
        self.token_provider = token_provider
        self.session = session or requests.Session()
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self.buckets = buckets or TokenBuckets(sleep=sleep)
        self.sleep = sleep

    def _once(self, action: str, method: str, path: str, body: Any = None, params: dict | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token_provider()}", "Accept": "application/json"}
        kwargs: dict[str, Any] = {"headers": headers, "params": params, "timeout": self.timeout}
        if body is not None:
            kwargs["data"] = json.dumps(body)
            headers["Content-Type"] = "application/json"
        response = self.session.request(method, self.base + path, **kwargs)
        if 200 <= response.status_code < 300:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                return None
        try:
            payload = response.json()
        except ValueError:
            payload = response.text
        raise FlyApiError(action, response.status_code, payload, _retry_after(response.headers.get("Retry-After")))

    def call(self, action: str, method: str, path: str, *, body: Any = None, params: dict | None = None,
             machine_id: str | None = None, retry_5xx: bool = True) -> Any:
        """One API call: rate-limited per (action, machine), retried on 429
        (and 5xx/connection errors when ``retry_5xx``) with jittered
        exponential back-off that honours Retry-After. Raises FlyApiError or
        a requests exception after the last attempt."""
        import requests
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

        jitter = wait_random_exponential(multiplier=0.25, max=self.max_wait)

        def retryable(e: BaseException) -> bool:
            if isinstance(e, FlyApiError):
                return e.status == 429 or (retry_5xx and e.status >= 500)
            return retry_5xx and isinstance(e, (requests.ConnectionError, requests.Timeout))

        def wait(state) -> float:
            e = state.outcome.exception()
            return min(self.max_wait, max(getattr(e, "retry_after", None) or 0.0, jitter(state)))

        for attempt in Retrying(stop=stop_after_attempt(self.max_attempts), wait=wait,
                                retry=retry_if_exception(retryable), sleep=self.sleep, reraise=True):
            with attempt:
                if machine_id is not None:
                    self.buckets.acquire((action, machine_id))
                return self._once(action, method, path, body, params)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- endpoints ---------------------------------------------------------

    def list_machines(self) -> list[dict]:
        return self.call("list", "GET", f"/apps/{self.app}/machines") or []

    def get_machine(self, machine_id: str) -> dict:
        return self.call("get", "GET", f"/apps/{self.app}/machines/{machine_id}", machine_id=machine_id)

    def create_machine(self, body: dict) -> dict:
        return self.call("create", "POST", f"/apps/{self.app}/machines", body=body, retry_5xx=False)

    def stop_machine(self, machine_id: str, signal: str, timeout_seconds: int) -> None:
        self.call("stop", "POST", f"/apps/{self.app}/machines/{machine_id}/stop",
                  body={"signal": signal, "timeout": go_duration(timeout_seconds)}, machine_id=machine_id)

    def destroy_machine(self, machine_id: str, force: bool = False) -> None:
        self.call("destroy", "DELETE", f"/apps/{self.app}/machines/{machine_id}",
                  params={"force": "true"} if force else None, machine_id=machine_id)


# --------------------------------------------------------------------------
# The backend
# --------------------------------------------------------------------------

def _refused(err: MachineError) -> bool:
    """Did the API refuse the request (so nothing was created)? 4xx and
    capacity yes; 5xx, timeouts and connection errors: unknown."""
    if isinstance(err, (CapacityError, PermanentMachineError)):
        return True
    cause = err.__cause__
    return isinstance(cause, FlyApiError) and cause.status < 500


_LIVE = {"created", "starting", "started", "replacing", "updating"}
_DESTROYABLE = {"stopped", "failed", "suspended"}


class FlyBackend:
    """MachineBackend on Fly Machines. See the module docstring."""

    def __init__(
        self,
        api: FlyApi,
        *,
        region: str | None,
        fallback_regions: Iterable[str] = (),
        claims: Claims | None = None,
        name: str = "fly",
    ):
        self.api = api
        self.region = region or None
        self.fallback_regions = [r for r in fallback_regions if r and r != region]
        self.claims = claims
        self.name = name
        self.sizes = SIZES
        self.keeps_stopped = True

    # -- helpers ---------------------------------------------------------

    def _call(self, action: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # classified in one place; nothing raw escapes
            raise classify(e, action) from e

    def _find(self, uid: str, attempt: int) -> list[dict]:
        """Machines already created for ``(uid, attempt)``, oldest first."""
        found = [
            m for m in self._call("list", self.api.list_machines)
            if ((m.get("config") or {}).get("metadata") or {}).get(META_UID) == uid
            and ((m.get("config") or {}).get("metadata") or {}).get(META_ATTEMPT) == str(attempt)
            and m.get("state") not in ("destroyed", "destroying")
        ]
        return sorted(found, key=lambda m: (_time(m.get("created_at")) or EPOCH, str(m.get("id"))))

    def _regions(self, spec: MachineSpec) -> list[str | None]:
        first = region_override(spec) or self.region
        return [first, *[r for r in self.fallback_regions if r != first]]

    def _launch(self, spec: MachineSpec) -> dict:
        """POST create, moving on to the next region on a capacity error."""
        errors: list[str] = []
        for region in self._regions(spec):
            body = create_request(spec, region)
            try:
                return self._call("create", self.api.create_machine, body)
            except CapacityError as err:
                errors.append(f"{region or 'default region'}: {err}")
        raise CapacityError("no Fly region has capacity for this machine now: " + "; ".join(errors))

    # -- MachineBackend ----------------------------------------------------

    def create(self, spec: MachineSpec) -> Machine:
        create_request(spec, self.region)  # refuse what Fly cannot run before any call
        uid, attempt = spec.pod.uid, spec.attempt
        claim: Claim | None = None
        if self.claims is not None:
            got = self.claims.claim(uid, attempt)
            if isinstance(got, Held) and got.machine_id:
                existing = self.get(got.machine_id)
                if existing is not None:
                    return existing
                got = self.claims.claim(uid, attempt, replacing=got.machine_id)
            if isinstance(got, Held):
                raise TransientMachineError(
                    "another lambdalet invocation is creating the machine of this pod; it shows up on the next pass"
                )
            claim = got
        try:
            for m in self._find(uid, attempt):
                machine = machine_from_fly(m)
                if machine is not None:
                    if claim is not None:
                        self.claims.settle(claim, machine.id)
                    return machine
            created = self._launch(spec)
        except MachineError as err:
            # Refused before anything was created: free the key for the retry.
            # After a 5xx/timeout the machine may exist: keep the claim, the
            # lease expires and the lookup finds it.
            if claim is not None and _refused(err):
                self.claims.release(claim)
            raise
        if claim is not None:
            self.claims.settle(claim, str(created.get("id")))
        machine = machine_from_fly(created)
        if machine is None:  # the API echoed no config: build it from what we sent
            sent = create_request(spec, self.region)
            machine = machine_from_fly({**created, "config": sent["config"]})
        assert machine is not None
        return machine

    def list(self, node: str) -> list[Machine]:
        return self.list_nodes([node])[node]

    def list_nodes(self, nodes: Iterable[str]) -> dict[str, list[Machine]]:
        # One listing of the app serves every node on it.
        out: dict[str, list[Machine]] = {node: [] for node in nodes}
        for m in self._call("list", self.api.list_machines):
            meta = (m.get("config") or {}).get("metadata") or {}
            node = meta.get(META_NODE)
            if node not in out or meta.get(MARKER) != MARKER_VALUE:
                continue
            if m.get("state") in _STOPPED | {"failed"} and not m.get("events"):
                # Where a list omits events, the exit is in the machine itself.
                m = self._get_raw(str(m.get("id"))) or m
            machine = machine_from_fly(m)
            if machine is not None:
                out[node].append(machine)
        return out

    def _get_raw(self, machine_id: str) -> dict | None:
        try:
            return self._call("get", self.api.get_machine, machine_id)
        except MachineNotFound:
            return None

    def get(self, machine_id: str) -> Machine | None:
        raw = self._get_raw(machine_id)
        if raw is None or raw.get("state") == "destroyed":
            return None
        return machine_from_fly(raw)

    def delete(self, machine_id: str, grace_seconds: int, reason: str) -> None:
        # ``reason``: the Machines API takes none; it is in our Kubernetes Event.
        raw = self._get_raw(machine_id)
        state = (raw or {}).get("state")
        if raw is None or state in ("destroyed", "destroying", "stopping"):
            return
        try:
            if state in _DESTROYABLE:
                self.api.destroy_machine(machine_id)
            elif grace_seconds <= 0 or state in ("created", "starting"):
                # Nothing ran yet (or no grace asked): kill and destroy in one call.
                self.api.destroy_machine(machine_id, force=True)
            else:
                timeout = max(1, min(int(grace_seconds), MAX_STOP_TIMEOUT))
                self.api.stop_machine(machine_id, "SIGTERM", timeout)
        except Exception as e:
            err = classify(e, "delete")
            if isinstance(err, MachineNotFound):
                return
            if isinstance(e, FlyApiError) and e.status in (400, 409, 412):
                # "not currently started": it stopped meanwhile; fine if so.
                again = self._get_raw(machine_id)
                if again is None or again.get("state") not in _LIVE:
                    return
            raise err from e

    def machine_from_event(self, event: Mapping) -> Machine | None:
        """Fly has no EventBridge feed: status comes through the reconcile."""
        return None
