"""What a pod's workload features become in an ECS task definition (pure).

- Init containers: non-essential containers, each ``dependsOn`` the one before
  with condition SUCCESS (it exited 0); the app containers depend on the last.
  A failing step stops the chain: the app containers never start.
- Secret values: ``secrets[].valueFrom`` = the ARN of their Secrets Manager
  mirror (``secret_store``); the task definition never holds a value.
- Volumes: each pod volume is a task volume (Fargate ephemeral storage, no
  host path). Files volumes (configMap, secret, downwardAPI, projected) are
  written by a first non-essential container (``FILES_CONTAINER``, image a
  setting) before anything else starts: ConfigMap and downward-API contents
  travel as its environment, Secret contents as its ``secrets``.
  ``subPath`` mounts need a file bind, which ECS cannot do: refused at create
  (admission says so for ECS nodes too).
- Probes: an exec probe is the container's ``healthCheck`` (readiness, else
  liveness, else startup), clamped to ECS's ranges (interval 5-300 s, timeout
  2-60 s, retries 1-10, startPeriod 0-300 s). httpGet/tcpSocket are not run.
- imagePullSecrets: ``repositoryCredentials`` = the ARN of the mirrored
  ``{"username", "password"}`` for the image's registry.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from ..contract import ContainerSpec, ExecProbe, MachineSpec, PermanentMachineError, registry_of

FILES_CONTAINER = "lambdalet-files"
FILES_ROOT = "/lambdalet-files"
DEFAULT_FILES_IMAGE = "public.ecr.aws/docker/library/busybox:1.37"


def secret_values(spec: MachineSpec) -> list[str]:
    """Every value that must go through Secrets Manager, once each, in a stable order."""
    out: dict[str, None] = {}
    for c in (*spec.init_containers, *spec.containers):
        for _, ref in c.secret_env:
            out[ref.value.get_secret_value()] = None
    for v in spec.volumes:
        for f in v.files:
            if f.secret:
                out[f.content.get_secret_value()] = None
    for auth in spec.registry_auth:
        out[registry_secret(auth.username.get_secret_value(), auth.password.get_secret_value())] = None
    return list(out)


def registry_secret(username: str, password: str) -> str:
    """The secret ECS reads for ``repositoryCredentials``."""
    return json.dumps({"username": username, "password": password}, sort_keys=True)


def _health_check(c: ContainerSpec) -> dict | None:
    probe = next((p for p in (c.probes.readiness, c.probes.liveness, c.probes.startup) if isinstance(p, ExecProbe)),
                 None)
    if probe is None:
        return None
    return {"command": ["CMD", *probe.command], "interval": min(max(probe.period, 5), 300),
            "timeout": min(max(probe.timeout, 2), 60), "retries": min(max(probe.failure_threshold, 1), 10),
            "startPeriod": min(max(probe.initial_delay, 0), 300)}


def _mounts(c: ContainerSpec, spec: MachineSpec) -> list[dict]:
    out = []
    for m in c.mounts:
        if m.sub_path:
            raise PermanentMachineError(
                f"container {c.name}: volumeMount {m.volume} at {m.path} uses subPath, which ECS cannot mount "
                f"(it binds whole volumes): mount the volume at a directory, or run the pod on a Fly node")
        out.append({"sourceVolume": m.volume, "containerPath": m.path, "readOnly": m.read_only})
    return out


def _files_script(spec: MachineSpec) -> tuple[str, list[dict], list[dict]]:
    """The writer's shell script, its environment and its secrets."""
    lines, env, secrets = ["set -e"], [], []
    for v in spec.volumes:
        for i, f in enumerate(v.files):
            var = f"F_{len(env) + len(secrets)}"
            target = f"{FILES_ROOT}/{v.name}/{f.path}"
            folder = target.rsplit("/", 1)[0]
            lines.append(f"mkdir -p {shlex.quote(folder)} && printf %s \"${var}\" > {shlex.quote(target)}.b64 && "
                         f"base64 -d {shlex.quote(target)}.b64 > {shlex.quote(target)} && "
                         f"rm {shlex.quote(target)}.b64 && chmod {f.mode:o} {shlex.quote(target)}")
            (secrets if f.secret else env).append((var, f))
    return "\n".join(lines), [{"name": var, "value": f.content.get_secret_value()} for var, f in env], \
        [(var, f) for var, f in secrets]


def containers(spec: MachineSpec, base: list[dict], *, files_image: str,
               secret_arns: Mapping[str, str]) -> list[dict]:
    """The container definitions: ``base`` (the app containers as the task
    definition builder made them, in order) completed with secrets, mounts and
    health checks, behind the files writer and the init containers."""

    def arn(value: str) -> str:
        try:
            return secret_arns[value]
        except KeyError:
            raise PermanentMachineError("a Secret value was not mirrored into Secrets Manager") from None

    def complete(d: dict, c: ContainerSpec) -> dict:
        if c.secret_env:
            d["secrets"] = [{"name": k, "valueFrom": arn(ref.value.get_secret_value())} for k, ref in c.secret_env]
        if c.mounts:
            d["mountPoints"] = _mounts(c, spec)
        health = _health_check(c)
        if health:
            d["healthCheck"] = health
        for auth in spec.registry_auth:
            if registry_of(c.image) == auth.registry:
                d["repositoryCredentials"] = {"credentialsParameter": arn(
                    registry_secret(auth.username.get_secret_value(), auth.password.get_secret_value()))}
        return d

    chain: list[dict] = []
    if any(v.files for v in spec.volumes):
        script, env, secret_files = _files_script(spec)
        writer = {"name": FILES_CONTAINER, "image": files_image, "essential": False,
                  "memoryReservation": base[0].get("memoryReservation"),
                  "entryPoint": ["sh", "-c"], "command": [script], "environment": env,
                  "mountPoints": [{"sourceVolume": v.name, "containerPath": f"{FILES_ROOT}/{v.name}", "readOnly": False}
                                  for v in spec.volumes if v.kind == "files"]}
        if secret_files:
            writer["secrets"] = [{"name": var, "valueFrom": arn(f.content.get_secret_value())} for var, f in secret_files]
        chain.append(writer)
    template = base[0]
    for c in spec.init_containers:
        d = {k: v for k, v in template.items() if k in ("memoryReservation", "stopTimeout")}
        d.update(name=c.name, image=c.image, essential=False,
                 environment=[{"name": k, "value": v} for k, v in c.env], portMappings=[])
        if c.command is not None:
            d["entryPoint"] = list(c.command)
        if c.args is not None:
            d["command"] = list(c.args)
        chain.append(complete(d, c))
    for i, d in enumerate(chain[1:], 1):
        d["dependsOn"] = [{"containerName": chain[i - 1]["name"], "condition": "SUCCESS"}]
    apps = [complete(dict(d), c) for d, c in zip(base, spec.containers)]
    if chain:
        for d in apps:
            d["dependsOn"] = [{"containerName": chain[-1]["name"], "condition": "SUCCESS"}]
    return [*chain, *apps]


def volumes(spec: MachineSpec) -> list[dict]:
    """Task volumes: one per pod volume, no host path (Fargate task storage)."""
    return [{"name": v.name} for v in spec.volumes]


def ephemeral_gib(spec: MachineSpec) -> int | None:
    """Fargate ephemeral storage when the pod needs more than the default 20 GiB (max 200):
    its emptyDirs' size limits, or its ephemeral-storage limit when larger (that limit
    covers the emptyDirs and the containers' writable layers, as the kubelet reckons it)."""
    total = sum(v.size_limit_mib or 0 for v in spec.volumes if v.kind == "emptyDir" and not v.memory)
    total = max(total, spec.ephemeral_storage_mib)
    gib = -(-total // 1024) + 1
    return min(gib, 200) if gib > 20 else None
