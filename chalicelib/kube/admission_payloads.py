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

from pydantic import BaseModel, ConfigDict, Field

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
    dryRun: bool = False
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
    """Raises pydantic.ValidationError (a ValueError) when the body is not an AdmissionReview v1."""
    return AdmissionReview.model_validate_json(body)


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
