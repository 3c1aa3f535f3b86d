"""Pydantic models of what kube-apiserver sends us (audit.k8s.io/v1).

Only the fields lambdalet reads are declared; the rest is ignored, so a newer
apiserver adding fields never breaks parsing. A batch is parsed item by item:
one malformed event is reported and skipped, its neighbours are kept.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ObjectRef(_Model):
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    uid: str | None = None
    apiVersion: str | None = None
    subresource: str | None = None


class ResponseStatus(_Model):
    code: int | None = None


class AuditEvent(_Model):
    auditID: str
    stage: str
    verb: str
    objectRef: ObjectRef | None = None
    responseStatus: ResponseStatus | None = None
    requestObject: dict[str, Any] | None = None
    responseObject: dict[str, Any] | None = None


class AuditEventList(_Model):
    kind: Literal["EventList"]
    apiVersion: Literal["audit.k8s.io/v1"]
    items: list[Any]


class PodTouch(_Model):
    """A pod an audit event says we should look at now."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str
    uid: str | None
    node: str | None  # binding target; None for deletes (look the pod up)
    why: Literal["binding", "delete"]


def parse_batch(body: bytes) -> tuple[AuditEventList, list[AuditEvent], list[str]]:
    """The batch, its well-formed events, and one reason per malformed event.

    Raises ValidationError/ValueError when the body is not an EventList at all.
    """
    batch = AuditEventList.model_validate_json(body)
    events, problems = [], []
    for index, item in enumerate(batch.items):
        try:
            events.append(AuditEvent.model_validate(item))
        except ValidationError as err:
            problems.append(f"items[{index}]: {err.errors()[0]['loc']} {err.errors()[0]['msg']}")
    return batch, events, problems


def pod_touch(event: AuditEvent) -> PodTouch | None:
    """The pod a completed, successful binding or delete refers to, else None."""
    ref = event.objectRef
    if event.stage != "ResponseComplete" or ref is None or ref.resource != "pods" or not ref.namespace or not ref.name:
        return None
    code = event.responseStatus.code if event.responseStatus else None
    if code is None or not 200 <= code < 300:
        return None
    if event.verb == "create" and ref.subresource == "binding":
        target = (event.requestObject or {}).get("target") or {}
        uid = ref.uid or ((event.requestObject or {}).get("metadata") or {}).get("uid")
        return PodTouch(namespace=ref.namespace, name=ref.name, uid=uid, node=target.get("name"), why="binding")
    if event.verb == "delete" and ref.subresource is None:
        if is_final_delete(event.requestObject):
            return None  # a kubelet's last word on a pod whose machines have stopped (our own echo)
        uid = ((event.responseObject or {}).get("metadata") or {}).get("uid") or ref.uid
        node = ((event.responseObject or {}).get("spec") or {}).get("nodeName")
        return PodTouch(namespace=ref.namespace, name=ref.name, uid=uid, node=node, why="delete")
    return None


def is_final_delete(options: dict[str, Any] | None) -> bool:
    """DeleteOptions as a kubelet sends them once a pod's containers are gone:
    grace period 0 with a UID precondition (``KubeClient.finalize_pod``; seen
    verbatim in tests/fixtures/kube-apiserver-1.36/audit-eventlist-delete-grace0.json).
    ``kubectl delete --grace-period=0 --force`` sends no precondition."""
    options = options or {}
    return options.get("gracePeriodSeconds") == 0 and bool((options.get("preconditions") or {}).get("uid"))
