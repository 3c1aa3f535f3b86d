"""The /admission/validate and /admission/mutate routes through chalice.test.Client,
with a recording World (no cluster, no cloud): parsing, answers, 400s, the
binding fast path's calls, dryRun, and internal errors answering allowed."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest
from chalice.test import Client

from chalicelib import wiring
from chalicelib.machines.contract import Machine, MachinePhase, MachineSpec, TransientMachineError
from chalicelib.machines.fargate_sizes import SIZES as FARGATE
from chalicelib.node import node_object
from chalicelib.usecases.world import World
from chalicelib.webhook_guard import WebhookTokens
from tests.samples import REPO, sample

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
UID = "1bd47beb-026c-4a60-95f6-3df9c511fb9c"
TOKEN = "the-apiserver-webhook-token"


class RecordingKube:
    def __init__(self, pod: dict | None):
        self.pod, self.calls = pod, []

    def get_pod(self, namespace, name):
        self.calls.append(("get_pod", namespace, name))
        return self.pod

    def patch_pod_status(self, pod, status):
        self.calls.append(("patch_pod_status", pod["metadata"]["name"], status["phase"]))
        return pod

    def create_event(self, namespace, event):
        self.calls.append(("create_event", event["reason"]))
        return True


class RecordingBackend:
    name = "ecs"
    sizes = FARGATE
    keeps_stopped = False

    def __init__(self, fail: Exception | None = None):
        self.created: list[MachineSpec] = []
        self.fail = fail

    def create(self, spec: MachineSpec, listed: bool = False) -> Machine:
        if self.fail:
            raise self.fail
        self.created.append(spec)
        return Machine(id=f"m-{len(self.created)}", pod=spec.pod, node=spec.node, attempt=spec.attempt,
                       phase=MachinePhase.PENDING, created_at=NOW)

    def list(self, node):  # the fast path must not need it
        raise AssertionError("the binding fast path lists no machines")


def unbound_pod() -> dict:
    pod = sample("admission-pod-create.json")["request"]["object"]
    pod["metadata"]["resourceVersion"] = "230"
    return pod


@pytest.fixture
def world(monkeypatch):
    # The sample pod tolerates virtual-kubelet.io/provider=test: the node's taint says "test".
    nodes = {"vk-test": node_object("vk-test", "test", "us-east-1", {"cpu": "10"}, NOW)}
    tokens = WebhookTokens(lambda stage: (TOKEN, NOW) if stage == "AWSCURRENT" else None, lambda: NOW)
    w = World(kube=RecordingKube(unbound_pod()), backends={"vk-test": RecordingBackend()}, nodes=nodes,
              clock=lambda: NOW, webhook_tokens=tokens)
    monkeypatch.setattr(wiring, "world", lambda: w)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    return w


@pytest.fixture
def client(world):
    import app

    with Client(app.app, stage_name="local", project_dir=str(REPO)) as c:
        yield c


def post(client, path: str, body, token: str | None = TOKEN) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    r = client.http.post(path, headers=headers, body=raw)
    return r.status_code, json.loads(r.body or b"null")


def with_ops(review: dict, pod_change=None, **request) -> dict:
    if pod_change:
        pod_change(review["request"]["object"])
    review["request"].update(request)
    return review


def test_validate_allows_the_sample_pod_echoing_the_uid(client):
    status, body = post(client, "/admission/validate", sample("admission-pod-create.json"))
    assert status == 200
    assert body == {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": {"uid": "1c8285db-aacc-4714-aa70-a2ecf9dcf1ab", "allowed": True}}


def test_validate_refuses_an_unsupported_pod_with_a_status(client):
    review = with_ops(sample("admission-pod-create.json"), lambda p: p["spec"].update(hostPID=True))
    status, body = post(client, "/admission/validate", review)
    assert status == 200  # a refusal is an answer, not an HTTP error
    response = body["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 403 and "spec.hostPID" in response["status"]["message"]
    assert response["status"]["details"]["causes"][0]["field"] == "spec.hostPID"


def test_mutate_answers_a_base64_json_patch(client):
    status, body = post(client, "/admission/mutate", sample("admission-pod-create.json"))
    assert status == 200 and body["response"]["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(body["response"]["patch"]))
    assert {"op": "add", "path": "/metadata/annotations",
            "value": {"lambdalet.io/backend": "test", "lambdalet.io/defaulted-requests": "cpu,memory"}} in ops


@pytest.mark.parametrize("path", ["/admission/validate", "/admission/mutate"])
@pytest.mark.parametrize("body,why", [
    (b"not json", "AdmissionReview"),
    ({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1", "request": {}}, "apiVersion"),
    ({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}, "request"),
    ({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": []}, "apiVersion"),
])
def test_malformed_review_is_a_400_with_a_reason(client, path, body, why):
    status, answer = post(client, path, body)
    assert status == 400 and why in answer["Message"]


def test_binding_to_our_node_starts_the_machine_as_if_bound(client, world):
    status, body = post(client, "/admission/validate", sample("admission-pods-binding-create.json"))
    assert status == 200 and body["response"] == {"uid": "315006db-06b5-4df0-9c0d-3eb2461fd479", "allowed": True}
    [spec] = world.backends["vk-test"].created
    assert (spec.pod.uid, spec.node, spec.attempt) == (UID, "vk-test", 0)
    assert world.kube.calls[0] == ("get_pod", "demo", "demo-pod")
    assert ("create_event", "Created") in world.kube.calls


def test_binding_again_creates_again_idempotently_keyed_on_the_pod_not_the_review(client, world):
    for uid in ("a", "b"):
        review = sample("admission-pods-binding-create.json")
        review["request"]["uid"] = uid
        post(client, "/admission/validate", review)
    assert [(s.pod.uid, s.attempt) for s in world.backends["vk-test"].created] == [(UID, 0), (UID, 0)]


@pytest.mark.parametrize("change", [
    {"dryRun": True},
    {"object": {**sample("admission-pods-binding-create.json")["request"]["object"],
                "target": {"kind": "Node", "name": "worker-1"}}},
])
def test_dry_run_or_other_node_binding_has_no_side_effects(client, world, change):
    review = with_ops(sample("admission-pods-binding-create.json"), **change)
    status, body = post(client, "/admission/validate", review)
    assert status == 200 and body["response"]["allowed"] is True
    assert world.backends["vk-test"].created == [] and world.kube.calls == []


def test_mutate_ignores_bindings(client, world):
    status, body = post(client, "/admission/mutate", sample("admission-pods-binding-create.json"))
    assert body["response"] == {"uid": "315006db-06b5-4df0-9c0d-3eb2461fd479", "allowed": True}
    assert world.backends["vk-test"].created == []


@pytest.mark.parametrize("pod", [None, "other-uid", "bound-elsewhere", "deleting"])
def test_binding_fast_path_skips_a_pod_that_is_not_this_one(client, world, pod):
    p = unbound_pod()
    if pod == "other-uid":
        p["metadata"]["uid"] = "another"
    elif pod == "bound-elsewhere":
        p["spec"]["nodeName"] = "worker-1"
    elif pod == "deleting":
        p["metadata"]["deletionTimestamp"] = "2026-11-27T12:40:00Z"
    world.kube.pod = p if pod else None
    status, body = post(client, "/admission/validate", sample("admission-pods-binding-create.json"))
    assert body["response"]["allowed"] is True and world.backends["vk-test"].created == []


def test_cloud_failure_in_the_fast_path_still_allows_the_binding(client, world):
    world.backends["vk-test"].fail = TransientMachineError("ThrottlingException: Rate exceeded")
    status, body = post(client, "/admission/validate", sample("admission-pods-binding-create.json"))
    assert status == 200 and body["response"]["allowed"] is True


def test_kube_failure_in_the_fast_path_still_allows_the_binding(client, world, monkeypatch):
    def broken(namespace, name):
        raise ConnectionError("apiserver unreachable")
    monkeypatch.setattr(world.kube, "get_pod", broken)
    status, body = post(client, "/admission/validate", sample("admission-pods-binding-create.json"))
    assert status == 200 and body["response"]["allowed"] is True


@pytest.mark.parametrize("path", ["/admission/validate", "/admission/mutate"])
def test_internal_error_allows_and_is_reported(client, monkeypatch, path):
    from chalicelib import admission
    from chalicelib.usecases import admission_review

    def bug(*args, **kwargs):
        raise RuntimeError("a bug")
    monkeypatch.setattr(admission, "validate", bug)
    monkeypatch.setattr(admission, "mutate", bug)
    review = with_ops(sample("admission-pod-create.json"), lambda p: p["spec"].update(hostPID=True))
    status, body = post(client, path, review)
    assert status == 200 and body["response"] == {"uid": "1c8285db-aacc-4714-aa70-a2ecf9dcf1ab", "allowed": True}
    result = admission_review.handle_admission(wiring.world(), json.dumps(review).encode(), "validate")
    assert result.errors and "a bug" in result.errors[0]


@pytest.mark.parametrize("name", ["admission-pod-delete.json", "admission-pod-delete-grace0-final.json"])
def test_delete_reviews_are_allowed_without_side_effects(client, world, name):
    for path in ("/admission/validate", "/admission/mutate"):
        status, body = post(client, path, sample(name))
        assert status == 200 and body["response"]["allowed"] is True and "patch" not in body["response"]
    assert world.backends["vk-test"].created == [] and world.kube.calls == []
