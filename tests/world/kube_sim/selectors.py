"""Label and field selectors with kube-apiserver's syntax and errors."""
from __future__ import annotations

import re
from typing import Callable

from .errors import ApiError, bad_request


def _split_top(s: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [p.strip() for p in out if p.strip()]


_SET_RE = re.compile(r"^([A-Za-z0-9_./-]+)\s+(in|notin)\s*\((.*)\)$")
_EQ_RE = re.compile(r"^([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)$")
_EXISTS_RE = re.compile(r"^(!?)\s*([A-Za-z0-9_./-]+)$")


def label_selector_matches(sel: dict | None, labels: dict) -> bool:
    """metav1.LabelSelector (matchLabels + matchExpressions) against a labels dict; empty matches all."""
    sel = sel or {}
    if any(labels.get(k) != v for k, v in (sel.get("matchLabels") or {}).items()):
        return False
    for r in sel.get("matchExpressions") or []:
        key, op, vals = r.get("key"), r.get("operator"), set(r.get("values") or [])
        if op == "In" and labels.get(key) not in vals or op == "NotIn" and key in labels and labels[key] in vals \
                or op == "Exists" and key not in labels or op == "DoesNotExist" and key in labels:
            return False
    return True


def parse_label_selector(s: str | None) -> Callable[[dict], bool]:
    """Return a predicate over a labels dict (equality- and set-based syntax)."""
    if not s:
        return lambda labels: True
    reqs = []
    for part in _split_top(s):
        m = _SET_RE.match(part)
        if m:
            key, op, vals = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
            if op == "in":
                reqs.append(lambda l, k=key, v=vals: k in l and l[k] in v)
            else:
                reqs.append(lambda l, k=key, v=vals: k not in l or l[k] not in v)
            continue
        m = _EQ_RE.match(part)
        if m:
            key, op, val = m.groups()
            if op == "!=":
                reqs.append(lambda l, k=key, v=val: l.get(k) != v)
            else:
                reqs.append(lambda l, k=key, v=val: k in l and l[k] == v)
            continue
        m = _EXISTS_RE.match(part)
        if m:
            neg, key = m.groups()
            if neg:
                reqs.append(lambda l, k=key: k not in l)
            else:
                reqs.append(lambda l, k=key: k in l)
            continue
        raise bad_request(f"unable to parse requirement: {part!r}")
    return lambda labels: all(r(labels or {}) for r in reqs)


def parse_field_selector(s: str | None, fields: dict[str, Callable[[dict], str]],
                         convert: Callable[[str], str] | None = None) -> Callable[[dict], bool]:
    """Return a predicate over an object; `fields` maps supported labels to getters.

    Unsupported labels give 400 "field label not supported: X", as the apiserver does.
    """
    if not s:
        return lambda obj: True
    reqs = []
    for part in _split_top(s):
        m = re.match(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise bad_request(f"invalid selector: '{s}'; can't understand '{part}'")
        label, op, val = m.group(1).strip(), m.group(2), m.group(3).strip()
        if convert:
            label = convert(label)
        getter = fields.get(label)
        if getter is None:
            raise bad_request(f"field label not supported: {m.group(1).strip()}")
        if op == "!=":
            reqs.append(lambda o, g=getter, v=val: g(o) != v)
        else:
            reqs.append(lambda o, g=getter, v=val: g(o) == v)
    return lambda obj: all(r(obj) for r in reqs)


def getter(path: str, default: str = "") -> Callable[[dict], str]:
    """Getter for a dotted path, rendered as the apiserver's field set does (bools lowercased)."""
    keys = path.split(".")

    def get(obj):
        cur = obj
        for k in keys:
            if not isinstance(cur, dict):
                return default
            cur = cur.get(k)
        if cur is None:
            return default
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return str(cur)
    return get


__all__ = ["parse_label_selector", "parse_field_selector", "getter", "ApiError"]
