"""Pod -> Fly ``CreateMachineRequest`` (pure): names, metadata, the machine config."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from ..contract import MachineSpec, PermanentMachineError
from .guest import fit

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

