"""Who a task is: the pod identity ECS carries for us (pure).

Every task is tagged with the pod's namespace, name and UID, the node and the
attempt (``lambdalet.io/...``). The identity is also written where every view
of a task shows it, tags or not (StopTask deletes tags): ``startedBy`` =
``lambdalet/<node>`` and the task ``group`` =
``lambdalet:<node>:<namespace>:<name>:<uid>:<attempt>``.
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


def started_by(node: str) -> str:
    """RunTask ``startedBy`` for every task of ``node``: ``lambdalet/<node>``.

    ListTasks filters on it, and "when you specify startedBy as the filter, it
    must be the only filter that you use" (ListTasks API reference): one
    listing per node returns that node's tasks ECS wants RUNNING, and nothing
    else of the cluster. Up to 128 letters, digits, ``-``, ``_`` and ``/``
    (ECS rule): a node name's dots become ``_`` (DNS names have no ``_``, so
    this stays one-to-one); a name that still does not fit is hashed.
    """
    value = STARTED_BY_PREFIX + node.replace(".", "_")
    if len(value) <= 128 and _STARTED_BY_OK.match(value):
        return value
    return f"{STARTED_BY_PREFIX}h-{_digest(node, 48)}"


def node_of_started_by(value: str | None) -> str | None:
    """The node a readable ``startedBy`` of ours names, else None."""
    if not value or not value.startswith(STARTED_BY_PREFIX):
        return None
    rest = value[len(STARTED_BY_PREFIX):]
    if not rest or "/" in rest or rest.startswith("h-"):
        return None
    return rest.replace("_", ".")


def client_token(uid: str, attempt: int) -> str:
    """RunTask clientToken for ``(uid, attempt)``: <= 64 chars in 33..126."""
    value = f"{uid}/{attempt}"
    if len(value) <= 64 and _CLIENT_TOKEN_OK.match(value):
        return value
    return _digest(value, 64)


GROUP_PREFIX = "lambdalet:"
MAX_GROUP = 255  # ECS: a task group name is at most 255 characters


def task_group(spec: MachineSpec) -> str | None:
    """RunTask ``group`` naming the machine:
    ``lambdalet:<node>:<namespace>:<name>:<uid>:<attempt>``.

    StopTask deletes a task's tags ("Any tags associated with the task will be
    deleted", StopTask API reference) and EventBridge events carry none, but
    ``group`` and ``startedBy`` stay in every view of the task for as long as
    ECS shows it (DescribeTasks, ListTasks, the "ECS Task State Change"
    detail): the identity lives there. Kubernetes names never contain ``:``.
    Too long for 255 characters: the pod name is left out (the UID is what
    lambdalet joins on); None when even that does not fit (tags only).
    """
    for name in (spec.pod.name, ""):
        value = f"{GROUP_PREFIX}{spec.node}:{spec.pod.namespace}:{name}:{spec.pod.uid}:{spec.attempt}"
        if len(value) <= MAX_GROUP:
            return value
    return None


def identity_from_task(task: Mapping) -> dict[str, str] | None:
    """Our tags rebuilt from ``group`` (and ``startedBy``), or None."""
    group = str(task.get("group") or "")
    if not group.startswith(GROUP_PREFIX):
        return None
    parts = group[len(GROUP_PREFIX):].split(":")
    if len(parts) != 5 or not parts[0] or not parts[1] or not parts[3] or not parts[4].isdigit():
        return None
    node, namespace, name, uid, attempt = parts
    if task.get("startedBy") != started_by(node):
        return None
    return {TAG_NODE: node, TAG_NAMESPACE: namespace, TAG_NAME: name, TAG_UID: uid, TAG_ATTEMPT: attempt}


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

