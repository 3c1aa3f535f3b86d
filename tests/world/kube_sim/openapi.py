"""/openapi/v3 documents for the groups other than core/v1 (apps/v1, batch/v1).

core/v1 is served verbatim from the real 1.36 server (tests/fixtures). For the
other groups there is no recorded document, so one is assembled from the 1.36
schemas (kubernetes_validate's definitions, generated from the same OpenAPI):
what kubectl reads from it is (a) a PATCH operation per kind tagged with
`x-kubernetes-group-version-kind` whose parameters include `fieldValidation`
(cli-runtime's QueryParamVerifierV3: without it `kubectl apply` refuses), and
(b) the kind's schema, tagged the same way, with the `x-kubernetes-patch-*`
metadata for the strategic merge patch kubectl computes on update.
"""
from __future__ import annotations

import functools
import hashlib
import json

from . import schema

COMPONENT = "#/components/schemas/"
PATCH_TYPES = ("application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json")
QUERY = {"type": "string", "uniqueItems": True}
PARAMS = [{"name": n, "in": "query", "schema": QUERY} for n in ("dryRun", "fieldManager", "fieldValidation")]


def _rewrite(node):
    """$defs refs -> components refs; JSON-schema type lists (["integer", "null"]) -> OpenAPI's single type."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                out[k] = COMPONENT + v.split("/")[-1]
            elif k == "type" and isinstance(v, list):
                kinds = [t for t in v if t != "null"]
                out[k] = kinds[0] if len(kinds) == 1 else kinds
            else:
                out[k] = _rewrite(v)
        return out
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node


def _closure(defs: dict, roots: list[str]) -> dict:
    seen: dict = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen[name] = defs[name]
        text = json.dumps(defs[name])
        todo += [part.split('"')[0] for part in text.split('"$ref": "#/$defs/')[1:]]
    return seen


def _op(gvk: dict, action: str, body_ref: str | None = None, patch: bool = False) -> dict:
    op = {"parameters": PARAMS if action in ("post", "put", "patch") else [], "x-kubernetes-action": action,
          "x-kubernetes-group-version-kind": gvk,
          "responses": {"200": {"content": {"application/json": {"schema": {"$ref": COMPONENT + body_ref}}}}}
          if body_ref else {}}
    if patch:
        op["requestBody"] = {"content": {t: {"schema": {"$ref": COMPONENT + "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}}
                                         for t in PATCH_TYPES}, "required": True}
    elif action in ("post", "put"):
        op["requestBody"] = {"content": {"application/json": {"schema": {"$ref": COMPONENT + body_ref}}},
                             "required": True}
    return op


@functools.lru_cache(maxsize=None)
def document(group: str, version: str) -> bytes:
    from .resources import RESOURCES
    defs = schema.definitions()
    kinds = [rt for rt in RESOURCES if rt.group == group and rt.version == version]
    short = group.split(".")[0]
    roots, paths = ["io.k8s.apimachinery.pkg.apis.meta.v1.Patch", "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
                    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"], {}
    tagged = {}
    for rt in kinds:
        name = f"io.k8s.api.{short}.{version}.{rt.kind}"
        gvk = {"group": group, "version": version, "kind": rt.kind}
        roots.append(name)
        tagged[name] = gvk
        base = f"/apis/{group}/{version}/namespaces/{{namespace}}/{rt.plural}"
        paths[base] = {"get": _op(gvk, "list"), "post": _op(gvk, "post", name)}
        paths[base + "/{name}"] = {"get": _op(gvk, "get", name), "put": _op(gvk, "put", name),
                                   "patch": _op(gvk, "patch", name, patch=True), "delete": _op(gvk, "delete")}
        for sub in rt.subresources:
            if sub == "scale":
                sgvk = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
                roots.append("io.k8s.api.autoscaling.v1.Scale")
                tagged["io.k8s.api.autoscaling.v1.Scale"] = sgvk
                paths[f"{base}/{{name}}/scale"] = {"get": _op(sgvk, "get", "io.k8s.api.autoscaling.v1.Scale"),
                                                   "patch": _op(sgvk, "patch", "io.k8s.api.autoscaling.v1.Scale",
                                                                patch=True)}
            elif sub == "status":
                paths[f"{base}/{{name}}/status"] = {"get": _op(gvk, "get", name),
                                                    "patch": _op(gvk, "patch", name, patch=True)}
    schemas = {k: _rewrite(v) for k, v in sorted(_closure(defs, roots).items())}
    for name, gvk in tagged.items():
        schemas[name]["x-kubernetes-group-version-kind"] = [gvk]
    doc = {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "1.36"}, "paths": paths,
           "components": {"schemas": schemas}}
    return json.dumps(doc).encode()


def digest(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest().upper()
