"""The Fly Machines Swagger 2.0 spec as JSON Schema validators.

Swagger 2.0 schema objects are (a subset of) JSON Schema draft 4 with
``#/definitions/...`` references: each validator gets the whole
``definitions`` block next to its schema so those refs resolve locally.

The live API has grown past that file: ``tests/fixtures/fly/machine-config-2026.json``
(``FLY_SPEC_2026``) holds what it added (multi-container ``containers`` with
``depends_on``, ``files[].mode``, ``host_status``/``incomplete_config``, the
``name_taken`` status), merged over the Swagger definitions property by
property; the Swagger check keeps covering everything else.

Two deliberate deviations from the spec, both stricter or truer to the wire:

* **Closed objects.** Every definition with ``properties`` gets
  ``additionalProperties: false`` (unless it says otherwise). The real API
  (Go's encoding/json) silently drops unknown fields, which would hide a
  misspelt or unsupported field (``containers``, ``kill_timeout``...) until
  production; here it is a violation.
* **``fly.Duration`` is a Go duration string** ("30s", "1m30s"). The spec
  renders the Go type ``struct{ time.Duration }`` as an object with a
  ``time.Duration`` enum of constants (a swag artifact); the server
  marshals and unmarshals it as a duration string (fly-go ``StopConfig``:
  ``swaggertype:"string" example:"10s"``; newer specs say so).
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from typing import Any

from jsonschema import Draft4Validator

from tests.samples import FLY_SPEC, FLY_SPEC_2026

GO_DURATION = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"


@lru_cache(maxsize=1)
def spec() -> dict:
    return json.loads(FLY_SPEC.read_text())


def _close(node: Any) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict) and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close(value)
    elif isinstance(node, list):
        for value in node:
            _close(value)


@lru_cache(maxsize=1)
def additions() -> dict:
    return json.loads(FLY_SPEC_2026.read_text())


def _merge(defs: dict, extra: dict) -> None:
    """Add the 2026 definitions: new ones whole; known ones gain properties
    (and take a new enum or ``required``)."""
    for name, schema in extra.items():
        if name not in defs:
            defs[name] = copy.deepcopy(schema)
            continue
        target = defs[name]
        target.setdefault("properties", {}).update(copy.deepcopy(schema.get("properties", {})))
        for key in ("enum", "required"):
            if key in schema:
                target[key] = list(schema[key])
        if not target["properties"]:
            del target["properties"]


@lru_cache(maxsize=1)
def definitions() -> dict:
    defs = copy.deepcopy(spec()["definitions"])
    _merge(defs, additions()["definitions"])
    defs["fly.Duration"] = {"type": "string", "pattern": GO_DURATION}
    _close(defs)
    return defs


@lru_cache(maxsize=None)
def _validator(schema_json: str) -> Draft4Validator:
    schema = json.loads(schema_json)
    return Draft4Validator({**schema, "definitions": definitions()})


def errors(schema: dict, instance: Any) -> list[str]:
    """Every way ``instance`` breaks ``schema`` (a Swagger schema object), as readable lines."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    out = []
    for err in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(body)"
        out.append(f"{where}: {err.message}")
    return out


def operation(path_template: str, method: str) -> dict:
    return spec()["paths"][path_template][method.lower()]


def body_schema(op: dict) -> tuple[dict | None, bool]:
    """The body parameter's schema of an operation and whether it is required."""
    for param in op.get("parameters", []):
        if param.get("in") == "body":
            return param["schema"], bool(param.get("required"))
    return None, False


def query_params(op: dict) -> dict[str, dict]:
    return {p["name"]: p for p in op.get("parameters", []) if p.get("in") == "query"}


def response_schema(op: dict, status: int) -> dict | None:
    """The schema the spec gives for ``status``; undeclared errors use ErrorResponse."""
    responses = op.get("responses", {})
    declared = responses.get(str(status))
    if declared is not None:
        return declared.get("schema")
    if status >= 400:
        return {"$ref": "#/definitions/ErrorResponse"}
    return None
