"""Real Kubernetes schemas: `kubernetes_validate` JSON schemas (strict variant) for
validation, and the real `/openapi/v3/api/v1` document for kubectl and for the
strategic-merge-patch metadata.

Validators are built once per (apiVersion, kind) and cached: ~1 ms per pod.
"""
from __future__ import annotations

import functools
import json
import threading
from pathlib import Path

import jsonschema
from referencing import Registry, Resource

from tests.samples import GOLDEN

_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def openapi_v1_bytes() -> bytes:
    return (GOLDEN / "openapi-v3-api-v1.json").read_bytes()


@functools.lru_cache(maxsize=1)
def openapi_v1() -> dict:
    return json.loads(openapi_v1_bytes())


def core_schemas() -> dict:
    return openapi_v1()["components"]["schemas"]


def _schema_dir() -> Path:
    import kubernetes_validate
    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    for name in ("v1.36.0-local-strict",):
        if (base / name).is_dir():
            return base / name
    # newest strict directory available
    cands = sorted(p for p in base.iterdir() if p.name.endswith("-local-strict"))
    return cands[-1]


@functools.lru_cache(maxsize=1)
def _definitions():
    d = _schema_dir()
    return Resource.from_contents(json.loads((d / "_definitions.json").read_text()))


@functools.lru_cache(maxsize=1)
def definitions() -> dict:
    """Every 1.36 type's schema by OpenAPI name (io.k8s.api.apps.v1.Deployment, ...), with descriptions
    and the x-kubernetes-patch-* metadata."""
    return json.loads((_schema_dir() / "_definitions.json").read_text())["$defs"]


@functools.lru_cache(maxsize=None)
def validator(api_version: str, kind: str):
    group_version = api_version.split("/")
    if len(group_version) == 2:
        fname = f"{kind.lower()}-{group_version[0].split('.')[0]}-{group_version[1]}.json"
    else:
        fname = f"{kind.lower()}-{api_version}.json"
    path = _schema_dir() / fname
    schema = json.loads(path.read_text())
    registry = _definitions() @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def errors(obj: dict) -> list:
    """All schema errors of `obj` (a full object with apiVersion/kind)."""
    with _lock:
        v = validator(obj["apiVersion"], obj["kind"])
    return list(v.iter_errors(obj))


def _path(err) -> str:
    out = ""
    for p in err.absolute_path:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + str(p))
    return out


def split_errors(obj: dict, decode_only: bool = False):
    """-> (unknown_field_paths, other_errors) where other errors are (path, message).

    decode_only: what Go's JSON decoding would reject (types, unknown fields), not
    `required` (the decoder fills zero values; validation comes later)."""
    unknown, other = [], []
    for e in errors(obj):
        if decode_only and e.validator == "required":
            continue
        if e.validator == "additionalProperties":
            base = _path(e)
            allowed = set((e.schema.get("properties") or {}).keys())
            for k in e.instance:
                if k not in allowed:
                    unknown.append((list(e.absolute_path), k, (base + "." if base else "") + k))
        else:
            other.append((_path(e), e.message))
    return unknown, other


def drop_unknown(obj: dict, unknown) -> None:
    for path, key, _ in unknown:
        cur = obj
        for p in path:
            cur = cur[p]
        cur.pop(key, None)
