"""What a pod's workload features become in a Fly Machine config (pure).

Fields from the Machines API spec (tests/fixtures/fly/fly-machines-swagger.json,
``fly.MachineConfig``, and the 2026 additions in machine-config-2026.json):
``env``, ``files`` (``fly.File``: ``guest_path``, ``raw_value`` base64,
``secret_name``, ``mode``), ``checks`` (``fly.MachineCheck``: ``type``
http/tcp, ``port``, ``path``, ``interval``, ``timeout``, ``grace_period``);
per container of a multi-container machine (``fly.ContainerConfig``): ``env``,
``files``, ``depends_on`` (``exited_successfully``), ``healthchecks``
(``fly.ContainerHealthcheck``: ``kind`` readiness/liveness, ``exec``),
``mounts`` (``fly.ContainerMount``: ``name``, ``path``) of the machine's
``volumes`` (``fly.VolumeConfig``: ``name``, ``temp_dir`` {``storage_type``,
``size_mb``}).

- Init containers: a multi-container machine; each init container
  ``depends_on`` the one before ``exited_successfully``, the app containers on
  the last (Fly's Pilot init runs them; the organisation must have it).

- Secret values go into the machine's own ``env`` and ``files`` ``raw_value``,
  never into app secrets (``secret_name`` would make them readable by every
  machine of the app): the Fly API offers nothing narrower. Whoever holds an
  API token of the app can read them in the machine's config (GET
  /apps/{app}/machines/{id}); nothing else sees them.
- configMap/secret/downwardAPI/projected volumes: one ``files`` entry per file
  at the mount path, with its mode (subPath mounts one file at the mount path
  itself), for each container that mounts it.
- emptyDir on a multi-container machine: a ``temp_dir`` machine volume, which
  every container that mounts it shares (each Fly container has its own root
  filesystem otherwise). medium Memory: ``storage_type`` memory (it counts
  against the machine's memory; Fly applies ``size_mb`` to disk only); on disk
  ``size_mb`` is the sizeLimit, else the pod's ephemeral-storage limit, else
  unset (bounded by the machine's disk). A machine volume is mounted whole, so a
  subPath mount of an emptyDir is refused (pod_spec.FEATURES). On a
  single-container machine (no ``containers``, so no ``mounts``) nothing is
  shared: the emptyDir is a directory of its root filesystem (a marker file
  makes sure it exists), medium and sizeLimit not enforced.
- httpGet/tcpSocket probes: ``checks`` (Fly reports them; Ready follows the
  machine's state). Exec probes: the container's ``healthchecks`` on a
  multi-container machine; a single-container machine has http/tcp checks only.
"""

from __future__ import annotations

import base64
import posixpath
from typing import Any

from ..contract import CheckProbe, ContainerSpec, ExecProbe, MachineSpec, PermanentMachineError

EMPTYDIR_MARKER = ".lambdalet-emptydir"


def _duration(seconds: int) -> str:
    return f"{max(int(seconds), 1)}s"


def env(c: ContainerSpec) -> dict[str, str]:
    """The machine env: literal values, then the Secret values (names defined once, by pod_values)."""
    out = dict(c.env)
    out.update({k: ref.value.get_secret_value() for k, ref in c.secret_env})
    return out


def files(spec: MachineSpec, c: ContainerSpec, *, temp_dirs: bool = False) -> list[dict]:
    """``files`` of the volumes ``c`` mounts; an emptyDir is a marker file, unless
    it is a machine volume (``temp_dirs``: a multi-container machine)."""
    by_name = {v.name: v for v in spec.volumes}
    out: list[dict] = []
    for m in c.mounts:
        volume = by_name.get(m.volume)
        if volume is None or (volume.kind == "emptyDir" and temp_dirs):
            continue
        if volume.kind == "emptyDir":
            marker = base64.b64encode(b"lambdalet emptyDir\n").decode()
            out.append({"guest_path": posixpath.join(m.path, EMPTYDIR_MARKER), "raw_value": marker})
            continue
        for f in volume.files:
            if m.sub_path:
                if f.path != m.sub_path:
                    continue
                path = m.path
            else:
                path = posixpath.join(m.path, f.path)
            out.append({"guest_path": path, "raw_value": f.content.get_secret_value(), "mode": f.mode})
    return out


def checks(c: ContainerSpec) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for kind in ("liveness", "readiness", "startup"):
        probe = getattr(c.probes, kind)
        if not isinstance(probe, CheckProbe):
            continue
        check: dict[str, Any] = {"type": probe.kind, "port": probe.port, "interval": _duration(probe.period),
                                 "timeout": _duration(probe.timeout), "grace_period": _duration(probe.initial_delay)}
        if probe.kind == "http":
            check.update(method="GET", path=probe.path)
        out[kind] = check
    return out


def healthchecks(c: ContainerSpec) -> list[dict]:
    out = []
    for kind in ("readiness", "liveness"):
        probe = getattr(c.probes, kind)
        if isinstance(probe, ExecProbe):
            out.append({"name": kind, "kind": kind, "exec": {"command": list(probe.command)},
                        "interval": max(probe.period, 1), "timeout": max(probe.timeout, 1),
                        "grace_period": probe.initial_delay, "failure_threshold": probe.failure_threshold})
    return out


def volumes(spec: MachineSpec) -> list[dict]:
    """``volumes``: a ``temp_dir`` for each emptyDir a container mounts (MiB, as
    Fly's other ``_mb`` sizes are: ``guest.memory_mb``)."""
    mounted = {m.volume for c in (*spec.init_containers, *spec.containers) for m in c.mounts}
    out = []
    for v in spec.volumes:
        if v.kind != "emptyDir" or v.name not in mounted:
            continue
        temp_dir: dict[str, Any] = {"storage_type": "memory" if v.memory else "disk"}
        size = v.size_limit_mib or spec.ephemeral_storage_mib
        if not v.memory and size:
            temp_dir["size_mb"] = size
        out.append({"name": v.name, "temp_dir": temp_dir})
    return out


def mounts(spec: MachineSpec, c: ContainerSpec) -> list[dict]:
    """``mounts`` of ``c``: the emptyDirs it mounts, each a machine volume shared
    with the other containers that mount it."""
    empty = {v.name for v in spec.volumes if v.kind == "emptyDir"}
    return [{"name": m.volume, "path": m.path} for m in c.mounts if m.volume in empty]


def needs_containers(spec: MachineSpec) -> bool:
    """Init containers or several containers: a multi-container machine."""
    return bool(spec.init_containers) or len(spec.containers) > 1


def container_extras(spec: MachineSpec, c: ContainerSpec, after: str | None) -> dict[str, Any]:
    """``env``, ``files``, ``mounts``, ``healthchecks`` and ``depends_on`` of one container of a multi-container
    machine."""
    out: dict[str, Any] = {}
    if found := env(c):
        out["env"] = found
    if found := files(spec, c, temp_dirs=True):
        out["files"] = found
    if found := mounts(spec, c):
        out["mounts"] = found
    if found := healthchecks(c):
        out["healthchecks"] = found
    if after:
        out["depends_on"] = [{"name": after, "condition": "exited_successfully"}]
    return out


def config_extras(spec: MachineSpec, c: ContainerSpec) -> dict[str, Any]:
    """``env``, ``files`` and ``checks`` of a single-container machine's config.
    Raises PermanentMachineError for what this API cannot run."""
    refuse(spec)
    out: dict[str, Any] = {"env": env(c)}
    if found := files(spec, c):
        out["files"] = found
    if found := checks(c):
        out["checks"] = found
    return out


def refuse(spec: MachineSpec) -> None:
    if spec.registry_auth:
        raise PermanentMachineError(
            "the pod has imagePullSecrets; the Fly Machines API has no per-machine registry credentials: "
            "push the image to registry.fly.io or a public registry")
