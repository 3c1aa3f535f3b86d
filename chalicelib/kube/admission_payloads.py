"""Pydantic models of kube-apiserver's admission calls (admission.k8s.io/v1).

Only the fields lambdalet reads are declared, the rest is ignored, so a newer
apiserver adding fields never breaks parsing. ``object``/``oldObject`` stay raw
dicts (camelCase, as the Kubernetes API returns them): the pure pod code reads
them as it reads any pod. See tests/fixtures/kube-apiserver-1.36/admission-*.json.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

API_VERSION = "admission.k8s.io/v1"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class GroupVersionKind(_Model):
    group: str = ""
    version: str = ""
    kind: str = ""


class GroupVersionResource(_Model):
    group: str = ""
    version: str = ""
    resource: str = ""


class UserInfo(_Model):
    username: str = ""
    uid: str = ""
    groups: list[str] = Field(default_factory=list)


class AdmissionRequest(_Model):
    uid: str = Field(min_length=1)
    kind: GroupVersionKind
    resource: GroupVersionResource
    subResource: str = ""
    name: str = ""
    namespace: str = ""
    operation: Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
    userInfo: UserInfo = Field(default_factory=UserInfo)
    object: dict[str, Any] | None = None
    oldObject: dict[str, Any] | None = None
    dryRun: StrictBool = False  # a JSON boolean: "yes" is no answer to "is this a dry run?"
    options: dict[str, Any] | None = None

    @property
    def is_pod(self) -> bool:
        return self.resource.group == "" and self.resource.resource == "pods"

    @property
    def is_binding(self) -> bool:
        return self.is_pod and self.subResource == "binding" and self.operation == "CREATE"


class AdmissionReview(_Model):
    apiVersion: Literal["admission.k8s.io/v1"]
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest


def parse_review(body: bytes | str) -> AdmissionReview:
    """Raises ValueError (pydantic's ValidationError, or BadObject naming the
    field) when the body is not an AdmissionReview v1 or its object cannot be
    what the request says it is (a Pod for pods, a Binding for pods/binding)."""
    review = AdmissionReview.model_validate_json(body)
    request = review.request
    if request.is_pod and request.object is not None and request.operation in ("CREATE", "UPDATE"):
        shape = BindingShape if request.subResource == "binding" else PodShape if not request.subResource else None
        if shape is not None:
            try:
                shape.model_validate(request.object)
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                raise BadObject(f"request.object.{where}: {first['msg']} (the object cannot be a "
                                f"{shape.__name__.removesuffix('Shape')})") from None
    return review


class BadObject(ValueError):
    """The review's object is not the kind of object its request names."""


# --------------------------------------------------------------------------
# The shape of what lambdalet reads from a review's object. Types as the
# Kubernetes API declares them (core/v1 types.go); a field lambdalet does not
# read may hold anything. Strict: "1" is not an integer, "yes" not a boolean.
# --------------------------------------------------------------------------


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


Quantity = str | int | float  # resource.Quantity is int-or-string on the wire; pod_spec parses it


class ObjectMetaShape(_Shape):
    name: str | None = None
    generateName: str | None = None
    namespace: str | None = None
    uid: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    deletionTimestamp: str | None = None


class EnvVarShape(_Shape):
    name: str
    value: str | None = None
    valueFrom: dict[str, Any] | None = None


class PortShape(_Shape):
    containerPort: int
    hostPort: int | None = None
    protocol: str | None = None
    name: str | None = None


class ResourcesShape(_Shape):
    requests: dict[str, Quantity] | None = None
    limits: dict[str, Quantity] | None = None


class SecurityContextShape(_Shape):
    privileged: bool | None = None


class NamedShape(_Shape):
    name: str | None = None


class ContainerShape(_Shape):
    name: str
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[EnvVarShape] | None = None
    envFrom: list[dict[str, Any]] | None = None
    ports: list[PortShape] | None = None
    resources: ResourcesShape | None = None
    volumeMounts: list[NamedShape] | None = None
    securityContext: SecurityContextShape | None = None


class TolerationShape(_Shape):
    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    tolerationSeconds: int | None = None


class RequirementShape(_Shape):
    key: str
    operator: str
    values: list[str] | None = None


class TermShape(_Shape):
    matchExpressions: list[RequirementShape] | None = None
    matchFields: list[RequirementShape] | None = None


class NodeSelectorShape(_Shape):
    nodeSelectorTerms: list[TermShape]


class NodeAffinityShape(_Shape):
    requiredDuringSchedulingIgnoredDuringExecution: NodeSelectorShape | None = None


class AffinityShape(_Shape):
    nodeAffinity: NodeAffinityShape | None = None


class PodSpecShape(_Shape):
    containers: list[ContainerShape]
    initContainers: list[dict[str, Any]] | None = None
    volumes: list[NamedShape] | None = None
    nodeName: str | None = None
    nodeSelector: dict[str, str] | None = None
    tolerations: list[TolerationShape] | None = None
    affinity: AffinityShape | None = None
    restartPolicy: Literal["Always", "OnFailure", "Never"] | None = None
    terminationGracePeriodSeconds: int | None = None
    hostNetwork: bool | None = None
    hostPID: bool | None = None
    hostIPC: bool | None = None


class PodShape(_Shape):
    metadata: ObjectMetaShape = Field(default_factory=ObjectMetaShape)
    spec: PodSpecShape


class TargetShape(_Shape):
    kind: str | None = None
    name: str


class BindingShape(_Shape):
    metadata: ObjectMetaShape = Field(default_factory=ObjectMetaShape)
    target: TargetShape


def review_response(uid: str, *, allowed: bool, code: int | None = None, reason: str = "",
                    message: str = "", causes: list[dict] | None = None,
                    patch: list[dict] | None = None, warnings: list[str] | None = None) -> dict:
    """The AdmissionReview a webhook answers with (same apiVersion, the request's uid).

    A refusal carries a metav1.Status (code, reason, message, details.causes): the
    apiserver prefixes the message with 'admission webhook "<name>" denied the
    request: ' and answers the client with that code. A patch is a JSONPatch,
    base64-encoded, with patchType JSONPatch.
    """
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        status: dict[str, Any] = {"status": "Failure", "message": message, "reason": reason or "Forbidden",
                                  "code": code or 403}
        if causes:
            status["details"] = {"causes": causes}
        response["status"] = status
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()
    if warnings:
        response["warnings"] = warnings
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}
