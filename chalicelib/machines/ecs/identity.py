"""Who a task is: the pod identity ECS carries for us (pure).

Every task is tagged with the pod's namespace, name and UID, the node and the
attempt (``lambdalet.io/...``). The identity is also written where every view
of a task shows it, tags or not: ``startedBy`` = ``lambdalet/<uid>/<attempt>``
and the task ``group`` = ``lambdalet:<node>:<namespace>:<name>``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from ..contract import MachineSpec

TAG_PREFIX = "lambdalet.io/"
TAG_NAMESPACE = TAG_PREFIX + "pod-namespace"
TAG_NAME = TAG_PREFIX + "pod-name"
TAG_UID = TAG_PREFIX + "pod-uid"
TAG_NODE = TAG_PREFIX + "node"
TAG_ATTEMPT = TAG_PREFIX + "attempt"

STARTED_BY_PREFIX = "lambdalet/"
_STARTED_BY_OK = re.compile(r"^[A-Za-z0-9_/-]+$")
_CLIENT_TOKEN_OK = re.compile(r"^[\x21-\x7e]+$")


def _digest(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def started_by(uid: str, attempt: int) -> str:
    """Deterministic ListTasks-able key for ``(uid, attempt)``: up to 128
    letters, digits, ``-``, ``_`` and ``/`` (ECS rule); a pod UID (a UUID)
    stays readable, anything else is hashed."""
    value = f"{STARTED_BY_PREFIX}{uid}/{attempt}"
    if len(value) <= 128 and _STARTED_BY_OK.match(value):
        return value
    return f"{STARTED_BY_PREFIX}h-{_digest(f'{uid}/{attempt}', 48)}/{attempt}"


def parse_started_by(value: str | None) -> tuple[str, int] | None:
    """``(uid, attempt)`` from a readable ``startedBy`` of ours, else None."""
    if not value or not value.startswith(STARTED_BY_PREFIX):
        return None
    uid, _, attempt = value[len(STARTED_BY_PREFIX):].rpartition("/")
    if not uid or uid.startswith("h-") or not attempt.isdigit():
        return None
    return uid, int(attempt)


def client_token(uid: str, attempt: int) -> str:
    """RunTask clientToken for ``(uid, attempt)``: <= 64 chars in 33..126."""
    value = f"{uid}/{attempt}"
    if len(value) <= 64 and _CLIENT_TOKEN_OK.match(value):
        return value
    return _digest(value, 64)


GROUP_PREFIX = "lambdalet:"
MAX_GROUP = 255  # ECS: a task group name is at most 255 characters


def task_group(spec: MachineSpec) -> str | None:
    """RunTask ``group`` naming the pod: ``lambdalet:<node>:<namespace>:<name>``.

    With ``startedBy`` (uid, attempt) it makes a task's identity readable
    from any view of the task, EventBridge events included, which carry no
    tags. Kubernetes names never contain ``:``. None when it would not fit.
    """
    value = f"{GROUP_PREFIX}{spec.node}:{spec.pod.namespace}:{spec.pod.name}"
    return value if len(value) <= MAX_GROUP else None


def identity_from_task(task: Mapping) -> dict[str, str] | None:
    """Our tags rebuilt from ``startedBy`` + ``group``, or None."""
    parsed = parse_started_by(task.get("startedBy"))
    group = str(task.get("group") or "")
    if parsed is None or not group.startswith(GROUP_PREFIX):
        return None
    parts = group[len(GROUP_PREFIX):].split(":")
    if len(parts) != 3 or not all(parts):
        return None
    node, namespace, name = parts
    uid, attempt = parsed
    return {TAG_NODE: node, TAG_NAMESPACE: namespace, TAG_NAME: name, TAG_UID: uid,
            TAG_ATTEMPT: str(attempt)}


def task_tags(spec: MachineSpec) -> list[dict[str, str]]:
    return [
        {"key": TAG_NAMESPACE, "value": spec.pod.namespace},
        {"key": TAG_NAME, "value": spec.pod.name},
        {"key": TAG_UID, "value": spec.pod.uid},
        {"key": TAG_NODE, "value": spec.node},
        {"key": TAG_ATTEMPT, "value": str(spec.attempt)},
    ]

def _tag_map(tags: Any) -> dict[str, str]:
    if tags is None:
        return {}
    if isinstance(tags, Mapping):
        return {str(k): str(v) for k, v in tags.items()}
    return {str(t.get("key")): str(t.get("value", "")) for t in tags}

