"""The values a pod takes from elsewhere, resolved when its machine is created.
Pure: the ConfigMaps and Secrets arrive as ``Sources`` (read at the I/O edge).

- env: ``valueFrom`` configMapKeyRef / secretKeyRef / fieldRef /
  resourceFieldRef and ``envFrom`` configMapRef / secretRef (with ``prefix``),
  in the kubelet's order: ``envFrom`` first, then ``env`` (later names win).
- volumes: ``configMap``, ``secret``, ``downwardAPI`` and ``projected`` as
  files (items, modes), ``emptyDir`` as scratch space.

Secret values stay ``SecretStr`` all the way to the backend. A missing
ConfigMap/Secret (or key) that is not ``optional`` raises ``MissingReference``
with the kubelet's words (pkg/kubelet/kubelet_pods.go, makeEnvironmentVariables:
``configmap "x" not found``, ``couldn't find key k in ConfigMap ns/x``), which
the pod shows as ``CreateContainerConfigError`` until it appears.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import SecretStr

from chalicelib.machines.contract import FileSpec, Reference, SecretRef, VolumeSpec
from chalicelib.quantity import memory_mib, parse_quantity

# Env names kubelet accepts from envFrom (others are skipped, as kubelet does
# with an InvalidEnvironmentVariableNames event): IsEnvVarName.
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

# fieldRef paths known when the machine is created (status.podIP etc. are not).
FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
               "spec.serviceAccountName")
FIELD_MAP = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")
RESOURCE_FIELDS = ("limits.cpu", "limits.memory", "requests.cpu", "requests.memory",
                   "limits.ephemeral-storage", "requests.ephemeral-storage")


class MissingReference(ValueError):
    """A ConfigMap/Secret or key the pod needs does not exist (yet). ``str()``
    is the kubelet's message; it names objects and keys, never values."""

    def __init__(self, message: str, reference: Reference):
        self.reference = reference
        super().__init__(message)


@dataclass(frozen=True)
class Sources:
    """The pod's ConfigMaps and Secrets as read: (kind, name) -> object, None
    when it does not exist."""

    objects: Mapping[tuple[str, str], dict | None] = field(default_factory=dict)

    def get(self, kind: str, name: str) -> dict | None:
        return self.objects.get((kind, name))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def entries(obj: dict, kind: str) -> dict[str, bytes]:
    """A ConfigMap's ``data`` + ``binaryData``, or a Secret's ``data`` (+ ``stringData``), as bytes."""
    out: dict[str, bytes] = {}
    if kind == "ConfigMap":
        out.update({k: str(v).encode() for k, v in (obj.get("data") or {}).items()})
        out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    else:
        out.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
        out.update({k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()})
    return out


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes $(VAR) expansion: defined vars are replaced, ``$$`` escapes
    ``$``, undefined references stay as they are."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR_REF.sub(sub, text)


# --------------------------------------------------------------------------
# What the pod references
# --------------------------------------------------------------------------


def all_containers(pod: dict) -> Iterator[tuple[str, dict]]:
    """(field path, container) of every init container, then every container."""
    spec = pod.get("spec") or {}
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(kind) or []):
            yield f"spec.{kind}[{i}]", c


def _volume_sources(volume: dict) -> Iterator[tuple[str, dict]]:
    """(kind, ref dict) of each ConfigMap/Secret a volume reads."""
    if isinstance(volume.get("configMap"), dict):
        yield "ConfigMap", volume["configMap"]
    if isinstance(volume.get("secret"), dict):
        yield "Secret", {**volume["secret"], "name": volume["secret"].get("secretName")}
    for src in (volume.get("projected") or {}).get("sources") or []:
        if isinstance(src.get("configMap"), dict):
            yield "ConfigMap", src["configMap"]
        if isinstance(src.get("secret"), dict):
            yield "Secret", src["secret"]


def references(pod: dict, *, token_volume=lambda v: False) -> tuple[Reference, ...]:
    """Every ConfigMap/Secret the pod needs, once each; optional only if every use is."""
    found: dict[tuple[str, str], bool] = {}

    def add(kind: str, ref: Any) -> None:
        if isinstance(ref, dict) and ref.get("name"):
            key = (kind, str(ref["name"]))
            found[key] = found.get(key, True) and bool(ref.get("optional"))

    for _, c in all_containers(pod):
        for e in c.get("env") or []:
            source = e.get("valueFrom") or {}
            add("ConfigMap", source.get("configMapKeyRef"))
            add("Secret", source.get("secretKeyRef"))
        for e in c.get("envFrom") or []:
            add("ConfigMap", e.get("configMapRef"))
            add("Secret", e.get("secretRef"))
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if token_volume(v):
            continue
        for kind, ref in _volume_sources(v):
            add(kind, ref)
    for s in (pod.get("spec") or {}).get("imagePullSecrets") or []:
        add("Secret", {"name": s.get("name"), "optional": True})  # kubelet pulls without a missing one
    return tuple(Reference(kind=k, name=n, optional=o) for (k, n), o in sorted(found.items()))


# --------------------------------------------------------------------------
# Looking values up
# --------------------------------------------------------------------------


class _Lookup:
    """Values from ``sources``; with ``sources=None`` (deferred) every lookup
    answers nothing and nothing is missing."""

    def __init__(self, pod: dict, sources: Sources | None):
        self.namespace = (pod.get("metadata") or {}).get("namespace") or "default"
        self.sources = sources

    def object(self, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
        if self.sources is None:
            return None
        obj = self.sources.get(kind, name)
        if obj is None:
            if optional:
                return None
            raise MissingReference(f'{kind.lower()} "{name}" not found',
                                   Reference(kind=kind, name=name, optional=False))
        return entries(obj, kind)

    def key(self, kind: str, name: str, key: str, optional: bool) -> bytes | None:
        data = self.object(kind, name, optional)
        if data is None:
            return None
        if key not in data:
            if optional:
                return None
            raise MissingReference(f"couldn't find key {key} in {kind} {self.namespace}/{name}",
                                   Reference(kind=kind, name=name, optional=False))
        return data[key]


def field_value(pod: dict, node: str, path: str) -> str:
    """A fieldRef known at machine creation. Raises KeyError for other paths."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace") or "default",
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName") or node,
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
    }
    if path in simple:
        return str(simple[path] or "")
    m = FIELD_MAP.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):  # downwardAPI volumes: key="value" lines
        items = sorted((meta.get(path.split(".")[1]) or {}).items())
        return "\n".join(f'{k}="{v}"' for k, v in items)
    raise KeyError(path)


def resource_value(pod: dict, container: dict | None, resource: str, divisor: Any) -> str:
    """A resourceFieldRef as kubelet computes it: the container's value divided by
    ``divisor``, rounded up; an unset limit is the machine's (the pod's whole
    size, which is what the container may use on its own machine)."""
    kind, _, name = resource.partition(".")
    name = {"cpu": "cpu", "memory": "memory", "ephemeral-storage": "ephemeral-storage"}[name]

    def of(c: dict, which: str) -> Decimal:
        return parse_quantity(((c.get("resources") or {}).get(which) or {}).get(name, 0))

    value = of(container, kind) if container is not None else Decimal(0)
    if value == 0:  # unset: the limit is what the machine has (requests: 0 stays, as kubelet)
        if kind == "limits" or container is None:
            value = sum((max(of(c, "requests"), of(c, "limits"))
                         for c in (pod.get("spec") or {}).get("containers") or []), Decimal(0))
    div = parse_quantity(divisor or ("1" if name != "cpu" else "1"))
    if div <= 0:
        div = Decimal(1)
    return str(max(math.ceil(value / div), 1 if name == "cpu" and value > 0 else 0))


# --------------------------------------------------------------------------
# env
# --------------------------------------------------------------------------


def env_of(pod: dict, node: str, container: dict, sources: Sources | None,
           ) -> tuple[list[tuple[str, str]], list[tuple[str, SecretRef]]]:
    """The container's env: (literal values in order, values from Secrets).

    A name defined twice keeps its last definition, wherever it came from.
    ``$(VAR)`` in literal values expands from earlier literal values only: a
    Secret's value is never copied into a literal.
    """
    look = _Lookup(pod, sources)
    values: dict[str, str | SecretRef] = {}
    for e in container.get("envFrom") or []:
        prefix = str(e.get("prefix") or "")
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = e.get(key)
            if not isinstance(ref, dict):
                continue
            data = look.object(kind, str(ref.get("name")), bool(ref.get("optional")))
            for k, raw in sorted((data or {}).items()):
                name = prefix + k
                if not _ENV_NAME.match(name):
                    continue
                values.pop(name, None)
                values[name] = (SecretRef(secret=ref["name"], key=k, value=SecretStr(raw.decode(errors="replace")))
                                if kind == "Secret" else raw.decode(errors="replace"))
    literal = {k: v for k, v in values.items() if isinstance(v, str)}
    for e in container.get("env") or []:
        name, source = e["name"], e.get("valueFrom")
        value: str | SecretRef | None
        if not source:
            value = expand(str(e.get("value", "")), literal)
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            raw = look.key("ConfigMap", ref["name"], ref["key"], bool(ref.get("optional")))
            value = None if raw is None else raw.decode(errors="replace")
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            raw = look.key("Secret", ref["name"], ref["key"], bool(ref.get("optional")))
            value = None if raw is None else SecretRef(secret=ref["name"], key=ref["key"],
                                                       value=SecretStr(raw.decode(errors="replace")))
        elif "fieldRef" in source:
            value = field_value(pod, node, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            value = resource_value(pod, container, ref["resource"], ref.get("divisor"))
        else:
            value = None
        if value is None:
            continue  # deferred (not read yet), or an optional reference that is absent: kubelet sets nothing
        values.pop(name, None)
        values[name] = value
        if isinstance(value, str):
            literal[name] = value
        else:
            literal.pop(name, None)
    env = [(k, v) for k, v in values.items() if isinstance(v, str)]
    secret = [(k, v) for k, v in values.items() if isinstance(v, SecretRef)]
    return env, secret


# --------------------------------------------------------------------------
# volumes
# --------------------------------------------------------------------------


def _mode(item: dict, default: Any) -> int:
    mode = item.get("mode", default)
    return int(mode) if mode is not None else 0o644


def _items_files(look: _Lookup, kind: str, ref: dict, name: str, default_mode: Any) -> list[FileSpec]:
    data = look.object(kind, name, bool(ref.get("optional")))
    if data is None:
        return []
    secret = kind == "Secret"
    items = ref.get("items")
    if not items:
        return [FileSpec(path=k, content=SecretStr(_b64(v)), mode=_mode({}, default_mode), secret=secret,
                         source=f"{kind.lower()}/{name}/{k}") for k, v in sorted(data.items())]
    out = []
    for item in items:
        key = item["key"]
        if key not in data:
            if ref.get("optional"):
                continue
            raise MissingReference(f"configmap references non-existent config key: {key}"
                                   if not secret else f"references non-existent secret key: {key}",
                                   Reference(kind=kind, name=name))
        out.append(FileSpec(path=item.get("path") or key, content=SecretStr(_b64(data[key])),
                            mode=_mode(item, default_mode), secret=secret, source=f"{kind.lower()}/{name}/{key}"))
    return out


def _downward_files(pod: dict, node: str, items: list, default_mode: Any) -> list[FileSpec]:
    out = []
    containers = {c.get("name"): c for c in (pod.get("spec") or {}).get("containers") or []}
    for item in items or []:
        if "fieldRef" in item:
            text = field_value(pod, node, item["fieldRef"]["fieldPath"])
        else:
            ref = item["resourceFieldRef"]
            text = resource_value(pod, containers.get(ref.get("containerName")), ref["resource"], ref.get("divisor"))
        out.append(FileSpec(path=item["path"], content=SecretStr(_b64(text.encode())), mode=_mode(item, default_mode),
                            source=f"downwardAPI/{item['path']}"))
    return out


def volume_of(pod: dict, node: str, volume: dict, sources: Sources | None) -> VolumeSpec:
    """A supported volume (checked by pod_spec's feature table) as a VolumeSpec."""
    name = volume["name"]
    if "emptyDir" in volume:
        ed = volume.get("emptyDir") or {}
        limit = ed.get("sizeLimit")
        return VolumeSpec(name=name, kind="emptyDir", memory=ed.get("medium") == "Memory",
                          size_limit_mib=memory_mib(limit, f"volume {name}.emptyDir.sizeLimit") if limit else None)
    look = _Lookup(pod, sources)
    files: list[FileSpec] = []
    if "configMap" in volume:
        ref = volume["configMap"]
        files = _items_files(look, "ConfigMap", ref, ref["name"], ref.get("defaultMode"))
    elif "secret" in volume:
        ref = volume["secret"]
        files = _items_files(look, "Secret", ref, ref["secretName"], ref.get("defaultMode"))
    elif "downwardAPI" in volume:
        ref = volume["downwardAPI"]
        files = _downward_files(pod, node, ref.get("items"), ref.get("defaultMode"))
    elif "projected" in volume:
        ref = volume["projected"]
        default = ref.get("defaultMode")
        for src in ref.get("sources") or []:
            if "configMap" in src:
                files += _items_files(look, "ConfigMap", src["configMap"], src["configMap"]["name"], default)
            elif "secret" in src:
                files += _items_files(look, "Secret", src["secret"], src["secret"]["name"], default)
            elif "downwardAPI" in src:
                files += _downward_files(pod, node, src["downwardAPI"].get("items"), default)
    return VolumeSpec(name=name, kind="files", files=tuple(files))
