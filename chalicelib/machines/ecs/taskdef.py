"""Pod (MachineSpec) -> ECS task definition (pure). See the package docstring."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..contract import MachineSpec, PermanentMachineError
from ..fargate_sizes import SIZES, fit
from . import workload
from .identity import _digest

FAMILY_PREFIX = "lambdalet-"
# "The valid values for Fargate are 2-120 seconds." (botocore ecs model,
# ContainerDefinition.stopTimeout): a grace period of 0 or 1 gets 2.
FARGATE_MIN_STOP_TIMEOUT = 2
FARGATE_MAX_STOP_TIMEOUT = 120
MAX_CONTAINERS = SIZES.max_containers  # container definitions per task definition


def task_definition(
    spec: MachineSpec,
    *,
    execution_role_arn: str | None = None,
    task_role_arn: str | None = None,
    log_configuration: dict[str, Any] | None = None,
    files_image: str = workload.DEFAULT_FILES_IMAGE,
    secret_arns: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """RegisterTaskDefinition arguments for ``spec``, ``family`` included.

    Only what the pod template determines goes in (never the pod's identity),
    so identical templates hash to the same family. Secret values are named
    by the ARNs of their mirrors (``secret_arns``: value -> ARN), never written
    (init containers, volumes, probes: ``workload``).
    Raises PermanentMachineError for what Fargate cannot run.
    """
    count = len(spec.containers) + len(spec.init_containers) + (1 if any(v.files for v in spec.volumes) else 0)
    if count > MAX_CONTAINERS:
        raise PermanentMachineError(
            f"pod has {count} containers (init containers and lambdalet's files writer included); "
            f"an ECS task can have at most {MAX_CONTAINERS}"
        )
    cpu, memory = fit(spec.cpu_millis, spec.memory_mib)
    stop_timeout = max(FARGATE_MIN_STOP_TIMEOUT, min(spec.termination_grace_seconds, FARGATE_MAX_STOP_TIMEOUT))
    reservation = memory // len(spec.containers)
    containers = []
    for c in spec.containers:
        d: dict[str, Any] = {
            "name": c.name,
            "image": c.image,
            "essential": True,
            "memoryReservation": reservation,
            "stopTimeout": stop_timeout,
            "environment": [{"name": k, "value": v} for k, v in c.env],
            "portMappings": [
                {"containerPort": p.container_port, "protocol": p.protocol.lower()}
                for p in c.ports
            ],
        }
        if c.command is not None:
            d["entryPoint"] = list(c.command)
        if c.args is not None:
            d["command"] = list(c.args)
        if log_configuration:  # awslogs (logs.py): the same for every pod, so families stay shared
            d["logConfiguration"] = log_configuration
        containers.append(d)
    containers = workload.containers(spec, containers, files_image=files_image, secret_arns=secret_arns or {})
    body: dict[str, Any] = {
        "containerDefinitions": containers,
        "cpu": str(cpu),
        "memory": str(memory),
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
    }
    if spec.volumes:
        body["volumes"] = workload.volumes(spec)
    if (gib := workload.ephemeral_gib(spec)) is not None:
        body["ephemeralStorage"] = {"sizeInGiB": gib}
    if execution_role_arn:
        body["executionRoleArn"] = execution_role_arn
    if task_role_arn:
        body["taskRoleArn"] = task_role_arn
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return {"family": FAMILY_PREFIX + _digest(canonical, 16), **body}

