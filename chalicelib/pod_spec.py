"""Pod -> MachineSpec: pure translation of a raw Pod dict (camelCase, as the
Kubernetes API returns it) into what a backend must run. No I/O.

What this version can run is one table, ``FEATURES``: each row names a pod
field, says whether it is supported, ignored or unsupported, and (for
unsupported rows) how to find offending uses. ``unsupported(pod)`` returns every
violation with its field path; ``machine_spec`` raises ``UnsupportedPod`` with
all of them. Admission can reuse ``unsupported`` to reject such pods up front.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from chalicelib.machines.contract import (
    ContainerSpec,
    MachineSpec,
    PodRef,
    PortSpec,
)


class UnsupportedPod(ValueError):
    """The pod uses something this version cannot run. ``str()`` is for users:
    it names each offending field and what to do instead."""

    def __init__(self, violations: list[tuple[str, str]]):
        self.violations = violations
        super().__init__(
            "; ".join(f"{field}: {why}" for field, why in violations)
        )


# --------------------------------------------------------------------------
# Quantities
# --------------------------------------------------------------------------

_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:\d+\.?\d*|\.\d+))"
    r"(?:(?P<exp>[eE][+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$"
)


# Beyond 10^±30 no machine size is meant (E is 10^18); also keeps Decimal from
# overflowing on "1e999999999".
MAX_EXPONENT = 30


def parse_quantity(value: Any, field: str = "quantity") -> Decimal:
    """A Kubernetes resource.Quantity ("250m", "1Gi", "1e9", 2) as a Decimal
    in base units (cores, bytes). Raises UnsupportedPod naming ``field``."""
    if isinstance(value, bool):
        raise UnsupportedPod([(field, f"{value!r} is not a quantity")])
    if isinstance(value, (int, float)):
        value = str(value)  # JSON numbers go through the same checks as strings
    m = _QUANTITY.match(str(value).strip())
    if not m:
        raise UnsupportedPod(
            [(field, f"{value!r} is not a Kubernetes quantity (e.g. 250m, 1, 512Mi, 1Gi)")]
        )
    try:
        num = Decimal(m["num"])
    except InvalidOperation:  # pragma: no cover - the regex only admits numbers
        raise UnsupportedPod([(field, f"{value!r} is not a number")]) from None
    if m["exp"] and abs(int(m["exp"][1:])) > MAX_EXPONENT:
        raise UnsupportedPod([(field, f"{value!r} is out of range for a resource quantity")])
    quantity = num * (Decimal(10) ** int(m["exp"][1:]) if m["exp"] else _SUFFIX[m["suffix"] or ""])
    if quantity < 0:  # as kube-apiserver's validation (ValidateNonnegativeQuantity)
        raise UnsupportedPod([(field, f"{value!r} is negative: a resource quantity must be 0 or more")])
    return quantity


def cpu_millis(value: Any, field: str = "cpu") -> int:
    """CPU quantity -> millicores, rounded up ("250m" -> 250, "0.5" -> 500)."""
    return math.ceil(parse_quantity(value, field) * 1000)


def memory_mib(value: Any, field: str = "memory") -> int:
    """Memory quantity -> MiB, rounded up ("1G" -> 954, "1Gi" -> 1024)."""
    return math.ceil(parse_quantity(value, field) / (2**20))


# --------------------------------------------------------------------------
# The feature table
# --------------------------------------------------------------------------

Status = Literal["supported", "ignored", "unsupported"]
Check = Callable[[dict], Iterator[str]]  # yields offending field paths


def _containers(pod: dict) -> Iterator[tuple[str, dict]]:
    for i, c in enumerate((pod.get("spec") or {}).get("containers") or []):
        yield f"spec.containers[{i}]", c


def _is_token_volume(v: dict) -> bool:
    """The projected service-account token volume the apiserver adds to every pod."""
    return str(v.get("name", "")).startswith("kube-api-access-") and "projected" in v


def _token_volume_names(pod: dict) -> set[str]:
    return {
        v.get("name") for v in (pod.get("spec") or {}).get("volumes") or [] if _is_token_volume(v)
    }


def _init_containers(pod: dict) -> Iterator[str]:
    if (pod.get("spec") or {}).get("initContainers"):
        yield "spec.initContainers"


def _env_value_from(pod: dict) -> Iterator[str]:
    for path, c in _containers(pod):
        for j, e in enumerate(c.get("env") or []):
            if "valueFrom" in e:
                yield f"{path}.env[{j}].valueFrom ({e.get('name')})"


def _env_from(pod: dict) -> Iterator[str]:
    for path, c in _containers(pod):
        if c.get("envFrom"):
            yield f"{path}.envFrom"


def _volumes(pod: dict) -> Iterator[str]:
    for k, v in enumerate((pod.get("spec") or {}).get("volumes") or []):
        if not _is_token_volume(v):
            yield f"spec.volumes[{k}] ({v.get('name')})"


def _volume_mounts(pod: dict) -> Iterator[str]:
    ok = _token_volume_names(pod)
    for path, c in _containers(pod):
        for j, m in enumerate(c.get("volumeMounts") or []):
            if m.get("name") not in ok:
                yield f"{path}.volumeMounts[{j}] ({m.get('name')})"


def _host_namespaces(pod: dict) -> Iterator[str]:
    spec = pod.get("spec") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            yield f"spec.{key}"


def _privileged(pod: dict) -> Iterator[str]:
    for path, c in _containers(pod):
        if ((c.get("securityContext") or {}).get("privileged")) is True:
            yield f"{path}.securityContext.privileged"


def _ports(pod: dict) -> Iterator[str]:
    for path, c in _containers(pod):
        for j, p in enumerate(c.get("ports") or []):
            proto = p.get("protocol", "TCP")
            if proto not in ("TCP", "UDP"):
                yield f"{path}.ports[{j}].protocol ({proto})"
            host = p.get("hostPort")
            if host not in (None, 0, p.get("containerPort")):
                yield f"{path}.ports[{j}].hostPort ({host})"


@dataclass(frozen=True)
class Feature:
    field: str
    status: Status
    note: str  # for users: what happens, or what to do instead
    check: Check | None = None  # unsupported rows: yields offending field paths


FEATURES: tuple[Feature, ...] = (
    Feature("metadata.{namespace,name,uid}", "supported", "tagged on the machine"),
    Feature("spec.containers[].{name,image,command,args}", "supported",
            "command is the entrypoint, args its arguments; $(VAR) is expanded from the container's env"),
    Feature("spec.containers[].env[].value", "supported", "literal values only"),
    Feature("spec.containers[].ports[]", "supported", "containerPort/protocol (TCP or UDP)"),
    Feature("spec.containers[].resources", "supported",
            "the machine gets the sum over containers of max(request, limit); "
            "limits are enforced for the pod as a whole, not per container; more than the backend's "
            "largest machine (ECS Fargate: 16 vCPU / 120 GiB) is refused at admission, and a pod asking "
            "for nothing gets the smallest (0.25 vCPU / 512 MiB), written into its requests"),
    Feature("spec.restartPolicy", "supported", "a restart is a new machine (attempt)"),
    Feature("spec.terminationGracePeriodSeconds", "supported",
            "the cloud may cap it (ECS Fargate: 120 s)"),
    Feature("spec.volumes[] kube-api-access-*", "ignored",
            "the service-account token volume is not mounted"),
    Feature("spec.containers[].{livenessProbe,readinessProbe,startupProbe}", "ignored",
            "probes are not run; Ready follows the machine's Running state"),
    Feature("spec.initContainers", "unsupported",
            "init containers are not supported; fold the step into the main container's command",
            _init_containers),
    Feature("spec.containers[].env[].valueFrom", "unsupported",
            "env from ConfigMaps/Secrets/fieldRef is not supported; use a literal value",
            _env_value_from),
    Feature("spec.containers[].envFrom", "unsupported",
            "envFrom is not supported; list the variables with literal values",
            _env_from),
    Feature("spec.volumes", "unsupported",
            "volumes are not supported (only the automatic kube-api-access-* token volume is accepted, and ignored)",
            _volumes),
    Feature("spec.containers[].volumeMounts", "unsupported",
            "volume mounts are not supported", _volume_mounts),
    Feature("spec.{hostNetwork,hostPID,hostIPC}", "unsupported",
            "there is no host to share on a virtual node; remove it", _host_namespaces),
    Feature("spec.containers[].securityContext.privileged", "unsupported",
            "privileged containers cannot run on the virtual node", _privileged),
    Feature("spec.containers[].ports[].{hostPort,protocol}", "unsupported",
            "hostPort must be unset or equal containerPort; protocol must be TCP or UDP", _ports),
)


def unsupported(pod: dict) -> list[tuple[str, str]]:
    """Every use of an unsupported feature: ``[(field path, what to do)]``."""
    out: list[tuple[str, str]] = []
    for f in FEATURES:
        if f.status == "unsupported" and f.check is not None:
            out.extend((path, f.note) for path in f.check(pod))
    return out


# --------------------------------------------------------------------------
# Translation
# --------------------------------------------------------------------------

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes $(VAR) expansion: defined vars are replaced, ``$$`` escapes
    ``$``, undefined references stay as they are."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR_REF.sub(sub, text)


def _str_list(value: Any, field: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise UnsupportedPod([(field, "must be a list of strings")])
    return tuple(value)


def _container(path: str, c: dict) -> ContainerSpec:
    name, image = c.get("name"), c.get("image")
    if not name:
        raise UnsupportedPod([(f"{path}.name", "a container needs a name")])
    if not image:
        raise UnsupportedPod([(f"{path}.image", "a container needs an image")])
    env: list[tuple[str, str]] = []
    resolved: dict[str, str] = {}
    for j, e in enumerate(c.get("env") or []):
        value = expand(str(e.get("value", "")), resolved)  # env may refer to earlier env
        env.append((e["name"], value))
        resolved[e["name"]] = value
    command = _str_list(c.get("command"), f"{path}.command")
    args = _str_list(c.get("args"), f"{path}.args")
    ports = tuple(
        PortSpec(container_port=int(p["containerPort"]), protocol=p.get("protocol", "TCP"))
        for p in c.get("ports") or []
    )
    return ContainerSpec(
        name=name,
        image=image,
        command=tuple(expand(x, resolved) for x in command) if command is not None else None,
        args=tuple(expand(x, resolved) for x in args) if args is not None else None,
        env=tuple(env),
        ports=ports,
    )


def _resources(path: str, c: dict) -> tuple[int, int]:
    res = c.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    cpu = max(
        cpu_millis(req.get("cpu", 0), f"{path}.resources.requests.cpu"),
        cpu_millis(lim.get("cpu", 0), f"{path}.resources.limits.cpu"),
    )
    mem = max(
        memory_mib(req.get("memory", 0), f"{path}.resources.requests.memory"),
        memory_mib(lim.get("memory", 0), f"{path}.resources.limits.memory"),
    )
    return cpu, mem


def pod_size(pod: dict) -> tuple[int, int]:
    """What the machine must hold: (millicores, MiB), the sum over containers of
    max(request, limit), as ``machine_spec`` computes it. Raises UnsupportedPod
    on a malformed quantity."""
    cpu = mem = 0
    for path, c in _containers(pod):
        c_cpu, c_mem = _resources(path, c)
        cpu, mem = cpu + c_cpu, mem + c_mem
    return cpu, mem


def machine_spec(pod: dict, node: str, attempt: int) -> MachineSpec:
    """The MachineSpec for run ``attempt`` of ``pod`` on ``node``.

    Raises UnsupportedPod (a ValueError) naming every field this version
    cannot run, or a malformed field.
    """
    problems = unsupported(pod)
    if problems:
        raise UnsupportedPod(problems)
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    for key in ("name", "uid"):
        if not meta.get(key):
            raise UnsupportedPod([(f"metadata.{key}", "the pod has none")])
    containers = list(_containers(pod))
    if not containers:
        raise UnsupportedPod([("spec.containers", "a pod needs at least one container")])
    cpu = mem = 0
    specs = []
    for path, c in containers:
        specs.append(_container(path, c))
        c_cpu, c_mem = _resources(path, c)
        cpu, mem = cpu + c_cpu, mem + c_mem
    grace = spec.get("terminationGracePeriodSeconds")
    return MachineSpec(
        pod=PodRef(
            namespace=meta.get("namespace") or "default", name=meta["name"], uid=meta["uid"]
        ),
        node=node,
        attempt=attempt,
        containers=tuple(specs),
        cpu_millis=cpu,
        memory_mib=mem,
        restart_policy=spec.get("restartPolicy") or "Always",
        termination_grace_seconds=30 if grace is None else max(0, int(grace)),
        annotations=tuple(sorted(
            (k, str(v)) for k, v in (meta.get("annotations") or {}).items() if k.startswith("lambdalet.io/"))),
    )
