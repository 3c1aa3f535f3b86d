"""Pod -> Fly ``CreateMachineRequest`` (pure): names, metadata, the machine config."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from ..contract import ContainerSpec, MachineSpec, PermanentMachineError
from . import workload
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


def container_config(c: ContainerSpec) -> dict[str, Any]:
    """One pod container as a multi-container machine's ``ContainerConfig``
    (``tests/fixtures/fly/machine-config-2026.json``). ``depends_on`` (init
    containers: ``exited_successfully``) and ``files`` (configMap/secret
    volumes, ``raw_value`` + ``mode``, never an app secret's ``secret_name``)
    are the fields the workloads mapping adds here."""
    out: dict[str, Any] = {"name": c.name, "image": c.image}
    if c.command is not None:
        out["entrypoint"] = list(c.command)
    if c.args is not None:
        out["cmd"] = list(c.args)
    if c.env:
        out["env"] = dict(c.env)
    return out


def create_request(spec: MachineSpec, region: str | None) -> dict[str, Any]:
    """The ``CreateMachineRequest`` body for ``spec`` in ``region``.

    One container: the machine's own ``image``/``init``/``env``. Several: a
    multi-container machine (``containers``, run by Fly's Pilot init; the
    organisation must have it enabled), all sharing the machine's size and
    network as a pod's containers do."""
    c = spec.containers[0]
    guest = fit(spec.cpu_millis, spec.memory_mib)
    config: dict[str, Any] = {
        "image": c.image,
        "guest": guest.body(),
        "restart": {"policy": "no"},
        "stop_config": {
            "signal": "SIGTERM",
            "timeout": go_duration(max(0, min(spec.termination_grace_seconds, MAX_STOP_TIMEOUT))),
        },
        "metadata": metadata(spec),
    }
    if workload.needs_containers(spec):
        workload.refuse(spec)
        names = [x.name for x in (*spec.init_containers, *spec.containers)]
        if len(set(names)) != len(names):
            raise PermanentMachineError(f"container names must be unique in a pod: {', '.join(names)}")
        # Init containers first, each after the one before exited 0; the app containers after the last.
        chain: list[str | None] = [None, *(x.name for x in spec.init_containers)]
        config["containers"] = [
            {**container_config(x), **workload.container_extras(spec, x, chain[i])}
            for i, x in enumerate(spec.init_containers)
        ] + [{**container_config(x), **workload.container_extras(spec, x, chain[-1])} for x in spec.containers]
        if found := workload.volumes(spec):
            config["volumes"] = found  # emptyDirs: temp_dir volumes the containers share
        # httpGet/tcpSocket probes are machine-level checks: one per app container and kind.
        found = {f"{x.name}-{kind}": check for x in spec.containers for kind, check in workload.checks(x).items()}
        if found:
            config["checks"] = found
    else:
        config.update(workload.config_extras(spec, c))  # env (Secret values included), files, checks
        init: dict[str, Any] = {}
        if c.command is not None:
            init["entrypoint"] = list(c.command)
        if c.args is not None:
            init["cmd"] = list(c.args)
        if init:
            config["init"] = init
    body: dict[str, Any] = {"name": machine_name(spec.pod.uid, spec.attempt), "config": config}
    if region:
        body["region"] = region
    return body
