"""Fly Machines backend: each machine is one Fly Machine (a Firecracker micro-VM).

The package, as virtual-kubelet providers are laid out: ``api.py`` (HTTP
client, errors and their kinds, rate limiting), ``config.py`` (pure: pod ->
machine config), ``status.py`` (pure: Fly machine -> contract Machine),
``backend.py`` (``FlyBackend``), ``guest.py`` (the size presets).

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
    2. with the claim won, looks the machine up by metadata (one list call
       with the documented ``metadata.<key>=<value>`` filter, destroyed
       machines included: a failed launch is not launched again) so a crash
       between create and claim bookkeeping never yields a second machine;
       a settled claim whose machine GETs 404 within PROPAGATION_SECONDS
       of the create is propagation, not a gone machine;
    3. creates it (region: the pod's ``lambdalet.io/fly-region`` annotation
       where the spec carries annotations, else the settings' region; on a
       capacity error, each fallback region in turn), then records the machine
       id on the claim. The reconciler stops any duplicate it still finds,
       keeping the oldest (``created_at`` is reported for that).

Pod -> CreateMachineRequest (``create_request``, pure)
    image; Kubernetes ``command`` -> ``init.entrypoint``, ``args`` ->
    ``init.cmd``; env; ``guest`` from ``guest.fit``; ``restart.policy`` is
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
    (6PN IPv6) is podIP and hostIP. A machine whose host the API cannot reach
    (``host_status`` unknown/unreachable) is read from ``incomplete_config``
    and keeps its last known state; a failed launch (state ``launch_failed`` or
    a failed ``launch`` event, then ``destroyed``) is FAILED_TO_START with
    Fly's reason; ``stop_reason`` puts the exit event in words (code, signal,
    out of memory). Fly has no EventBridge:
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
    Fly limits per action and identifier: the machine id, or the app for
    creates and lists; 1 request/s burst 3, Get Machine 5/s burst 10. The
    client paces itself with one token bucket per (action, identifier).
    ``MANIFEST_UNKNOWN`` at create is retried with back-off (an image pushed a
    moment ago), then permanent. 429 and 5xx are retried with
    exponential back-off and full jitter (tenacity), honouring Retry-After,
    within a small budget; a create is retried on 429 only (a 5xx may have
    created it: the claim and the lookup handle that on the next pass).
    ``classify`` turns every error into the contract's three kinds.
"""

from .api import CapacityError, FlyApi, FlyApiError, TokenBuckets, classify, error_text, is_capacity
from .backend import FlyBackend
from .config import DEFAULT_API_URL, REGION_ANNOTATION, create_request, go_duration, machine_name, metadata
from .status import machine_from_fly

__all__ = [
    "DEFAULT_API_URL", "REGION_ANNOTATION", "CapacityError", "FlyApi", "FlyApiError", "FlyBackend",
    "TokenBuckets", "classify", "create_request", "error_text", "go_duration", "is_capacity",
    "machine_from_fly", "machine_name", "metadata",
]
