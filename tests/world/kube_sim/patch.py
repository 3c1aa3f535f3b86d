"""The three patch types kube-apiserver accepts.

- JSON merge patch (RFC 7386): lists replaced wholesale.
- Strategic merge patch: lists merge on the patch merge key the real OpenAPI
  document declares (x-kubernetes-patch-strategy / -merge-key), so conditions
  merge by `type`, containers by `name`, while `tolerations` or
  `containerStatuses` (atomic in 1.36) are replaced.
- JSON patch (RFC 6902), with `test`.
"""
from __future__ import annotations

import copy

from .errors import ApiError


class PatchError(Exception):
    pass


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# ---------------------------------------------------------------- strategic merge
class SchemaWalker:
    """Navigates an OpenAPI v3 components/schemas dict to find patch metadata."""

    def __init__(self, schemas: dict | None):
        self.schemas = schemas or {}

    def resolve(self, s):
        seen = 0
        while isinstance(s, dict) and seen < 10:
            if "$ref" in s:
                s = self.schemas.get(s["$ref"].split("/")[-1], {})
            elif "allOf" in s and len(s["allOf"]) == 1:
                s = s["allOf"][0]
            else:
                break
            seen += 1
        return s or {}

    def prop(self, s, key):
        s = self.resolve(s)
        return (s.get("properties") or {}).get(key) or s.get("additionalProperties") or {}

    def items(self, s):
        return self.resolve(s).get("items") or {}


def strategic_merge_patch(target, patch, schema, walker: SchemaWalker):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    if patch.get("$patch") == "replace":
        return {k: v for k, v in copy.deepcopy(patch).items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    out = dict(target)
    for k, v in patch.items():
        if k.startswith("$setElementOrder/") or k == "$retainKeys" or k == "$patch":
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            if isinstance(out.get(field), list):
                out[field] = [x for x in out[field] if x not in v]
            continue
        if v is None:
            out.pop(k, None)
            continue
        raw = schema.get("properties", {}).get(k) if isinstance(schema, dict) else None
        pschema = walker.prop(schema, k)
        if isinstance(v, list):
            meta = raw if isinstance(raw, dict) else {}
            strategy = meta.get("x-kubernetes-patch-strategy", "")
            key = meta.get("x-kubernetes-patch-merge-key")
            if "merge" in strategy.split(",") and isinstance(out.get(k), list):
                out[k] = _merge_list(out[k], v, key, walker.items(pschema), walker, patch.get(f"$setElementOrder/{k}"))
            else:
                out[k] = [x for x in copy.deepcopy(v) if not (isinstance(x, dict) and x.get("$patch") == "delete")]
        elif isinstance(v, dict):
            merged = strategic_merge_patch(out.get(k), v, walker.resolve(pschema), walker)
            if merged is None:
                out.pop(k, None)
            else:
                out[k] = merged
        else:
            out[k] = copy.deepcopy(v)
    return out


def _merge_list(cur: list, patch: list, key, item_schema, walker, order=None):
    """Merge on `key`, then order like apimachinery's normalizeElementOrder: items
    named in the patch keep the patch order, server-only items keep their server
    positions relative to them."""
    if not key:  # merge strategy on primitives: union
        out = list(cur)
        for x in patch:
            if x not in out:
                out.append(copy.deepcopy(x))
        return out
    merged = {}
    patched_keys = []
    for item in patch:
        if not isinstance(item, dict):
            continue
        k = item.get(key)
        if item.get("$patch") == "delete":
            merged[k] = None
            continue
        base = next((x for x in cur if isinstance(x, dict) and x.get(key) == k), {})
        merged[k] = strategic_merge_patch(base, item, walker.resolve(item_schema), walker)
        patched_keys.append(k)
    if order:
        patched_keys.sort(key=lambda k: next((i for i, o in enumerate(order) if isinstance(o, dict) and o.get(key) == k), len(order)))
    server_order = [x.get(key) for x in cur if isinstance(x, dict)]
    left = [copy.deepcopy(x) for x in cur if isinstance(x, dict) and x.get(key) not in merged]
    right = [merged[k] for k in patched_keys]
    out, i, j = [], 0, 0
    while i < len(left) or j < len(right):
        if j >= len(right):
            out.append(left[i]); i += 1
        elif i >= len(left):
            out.append(right[j]); j += 1
        else:
            li, ri = left[i].get(key), right[j].get(key)
            if li in server_order and ri in server_order and server_order.index(li) < server_order.index(ri):
                out.append(left[i]); i += 1
            else:
                out.append(right[j]); j += 1
    return out


# ---------------------------------------------------------------- JSON patch
def _unescape(tok: str) -> str:
    return tok.replace("~1", "/").replace("~0", "~")


def _split(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid path {path!r}")
    return [_unescape(t) for t in path[1:].split("/")]


def _parent(doc, toks):
    cur = doc
    for t in toks[:-1]:
        if isinstance(cur, list):
            cur = cur[int(t)]
        elif isinstance(cur, dict):
            if t not in cur:
                raise PatchError(f"missing path segment {t!r}")
            cur = cur[t]
        else:
            raise PatchError("path through a scalar")
    return cur


def _get(doc, path):
    cur = doc
    for t in _split(path):
        if isinstance(cur, list):
            cur = cur[int(t)]
        elif isinstance(cur, dict) and t in cur:
            cur = cur[t]
        else:
            raise PatchError(f"path {path!r} not found")
    return cur


def _add(doc, path, value):
    toks = _split(path)
    if not toks:
        return value
    p = _parent(doc, toks)
    last = toks[-1]
    if isinstance(p, list):
        if last == "-":
            p.append(value)
        else:
            i = int(last)
            if i > len(p):
                raise PatchError("index out of range")
            p.insert(i, value)
    elif isinstance(p, dict):
        p[last] = value
    else:
        raise PatchError("cannot add to scalar")
    return doc


def _remove(doc, path):
    toks = _split(path)
    p = _parent(doc, toks)
    last = toks[-1]
    try:
        if isinstance(p, list):
            return p.pop(int(last))
        return p.pop(last)
    except (KeyError, IndexError, ValueError):
        raise PatchError(f"path {path!r} not found")


def json_patch(doc, ops):
    if not isinstance(ops, list):
        raise PatchError("json patch must be a list")
    doc = copy.deepcopy(doc)
    for op in ops:
        try:
            kind, path = op["op"], op["path"]
            if kind == "add":
                doc = _add(doc, path, copy.deepcopy(op["value"]))
            elif kind == "remove":
                _remove(doc, path)
            elif kind == "replace":
                _get(doc, path)
                if _split(path):
                    _remove(doc, path)
                    doc = _add(doc, path, copy.deepcopy(op["value"]))
                else:
                    doc = copy.deepcopy(op["value"])
            elif kind == "move":
                v = _remove(doc, op["from"])
                doc = _add(doc, path, v)
            elif kind == "copy":
                doc = _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
            elif kind == "test":
                if _get(doc, path) != op.get("value"):
                    raise PatchError(f"testing value {path} failed")
            else:
                raise PatchError(f"unknown op {kind}")
        except (KeyError, IndexError, ValueError, TypeError) as e:
            raise PatchError(str(e))
    return doc


PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/json-patch+json": "json",
    "application/apply-patch+yaml": "apply",
}


def apply_patch(kind: str, current: dict, patch, schema: dict | None, walker: SchemaWalker) -> dict:
    """Apply `patch` of `kind` to `current`; errors become the apiserver's Status."""
    try:
        if kind == "merge":
            if not isinstance(patch, dict):
                raise ApiError(400, "BadRequest", "json: cannot unmarshal array into Go value of type map[string]interface {}")
            return merge_patch(current, patch)
        if kind == "strategic":
            if not isinstance(patch, dict):
                raise ApiError(400, "BadRequest", "json: cannot unmarshal array into Go value of type map[string]interface {}")
            return strategic_merge_patch(current, patch, walker.resolve(schema or {}), walker)
        if kind == "json":
            return json_patch(current, patch)
    except PatchError:
        # kube-apiserver answers a failed json-patch (e.g. a `test` op) with a bare 422.
        raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request", {})
    raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json")
