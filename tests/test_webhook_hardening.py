"""Webhook hardening through the real routes (chalice.test.Client): bounded
bodies (413 before parsing), strict types (dryRun a boolean, an object that
cannot be a Pod or Binding is a 400 naming the field), quantities the mutating
webhook refuses, the token rotation window (Secrets Manager staged versions in
moto), and no binding fast path without a token."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from moto import mock_aws

from chalicelib import webhook_guard
from chalicelib.webhook_guard import WebhookTokens, secrets_manager_fetch
from tests.samples import sample
from tests.test_admission_route import TOKEN, client, post, world  # noqa: F401 - fixtures

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("path,kind", [("/audit", "audit"), ("/admission/validate", "admission"),
                                       ("/admission/mutate", "admission")])
def test_a_body_beyond_the_limit_is_413_and_never_parsed(client, world, path, kind, monkeypatch):
    from chalicelib.kube import admission_payloads, payloads

    def must_not_parse(*args, **kwargs):
        raise AssertionError("parsed a body beyond the limit")
    monkeypatch.setattr(admission_payloads.AdmissionReview, "model_validate_json", must_not_parse)
    monkeypatch.setattr(payloads.AuditEventList, "model_validate_json", must_not_parse)
    big = b'{"pad": "' + b"x" * (webhook_guard.MAX_BODY[kind] + 1) + b'"}'
    r = client.http.post(path, headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
                         body=big)
    assert r.status_code == 413
    assert f"at most {webhook_guard.MAX_BODY[kind]} bytes" in json.loads(r.body)["Message"]
    assert world.backends["vk-test"].created == [] and world.kube.calls == []


def test_a_declared_length_beyond_the_limit_is_413_without_reading_the_body():
    def body():
        raise AssertionError("read the body")
    assert "at most" in webhook_guard.too_large("admission", str(10 * 2**20), body)
    assert webhook_guard.too_large("admission", "12", lambda: b"{}") is None


@pytest.mark.parametrize("value", ["yes", "true", 1, "1", None])
def test_dry_run_must_be_a_boolean(client, world, value):
    review = sample("admission-pods-binding-create.json")
    review["request"]["dryRun"] = value
    status, body = post(client, "/admission/validate", review)
    assert status == 400 and "dryRun" in body["Message"]
    assert world.backends["vk-test"].created == []


def _pod_review(change) -> dict:
    review = sample("admission-pod-create.json")
    change(review["request"]["object"])
    return review


ODD_PODS = [
    ("spec", lambda p: p.update(spec=[]), "spec"),
    ("containers-string", lambda p: p["spec"].update(containers="nginx"), "spec.containers"),
    ("container-int", lambda p: p["spec"].update(containers=[1]), "spec.containers.0"),
    ("tolerations", lambda p: p["spec"].update(tolerations=[1]), "spec.tolerations.0"),
    ("tolerations-dict", lambda p: p["spec"].update(tolerations={"key": "x"}), "spec.tolerations"),
    ("node-selector", lambda p: p["spec"].update(nodeSelector=["type"]), "spec.nodeSelector"),
    ("labels", lambda p: p["metadata"].update(labels={"a": 1}), "metadata.labels.a"),
    ("requests", lambda p: p["spec"]["containers"][0].update(resources={"requests": ["cpu"]}),
     "spec.containers.0.resources.requests"),
    ("env", lambda p: p["spec"]["containers"][0].update(env=[{"value": "x"}]), "spec.containers.0.env.0.name"),
    ("ports", lambda p: p["spec"]["containers"][0].update(ports=[{"containerPort": "80"}]),
     "spec.containers.0.ports.0.containerPort"),
    ("command", lambda p: p["spec"]["containers"][0].update(command="sleep 1"), "spec.containers.0.command"),
    ("affinity", lambda p: p["spec"].update(affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": "x"}}}), "nodeSelectorTerms"),
    ("grace", lambda p: p["spec"].update(terminationGracePeriodSeconds="30"), "terminationGracePeriodSeconds"),
    ("host-pid", lambda p: p["spec"].update(hostPID="yes"), "spec.hostPID"),
    ("metadata", lambda p: p.update(metadata="demo"), "metadata"),
]


@pytest.mark.parametrize("path", ["/admission/validate", "/admission/mutate"])
@pytest.mark.parametrize("name,change,where", ODD_PODS, ids=[c[0] for c in ODD_PODS])
def test_an_object_that_cannot_be_a_pod_is_a_400_naming_the_field(client, world, path, name, change, where):
    status, body = post(client, path, _pod_review(change))
    assert status == 400, body
    assert where in body["Message"] and "cannot be a Pod" in body["Message"]


def test_a_binding_whose_target_is_not_an_object_is_a_400(client, world):
    review = sample("admission-pods-binding-create.json")
    review["request"]["object"]["target"] = "vk-test"
    status, body = post(client, "/admission/validate", review)
    assert status == 400 and "request.object.target" in body["Message"] and "Binding" in body["Message"]
    assert world.backends["vk-test"].created == []


@pytest.mark.parametrize("quantity,why", [("-1", "negative"), (-2, "negative"), ("1e99999999", "out of range"),
                                          ("100000", "the largest"), ("lots", "not a Kubernetes quantity")])
@pytest.mark.parametrize("path", ["/admission/validate", "/admission/mutate"])
def test_negative_or_absurd_quantities_are_refused_by_both_webhooks(client, world, path, quantity, why):
    review = _pod_review(lambda p: p["spec"]["containers"][0].update(resources={"requests": {"cpu": quantity}}))
    status, body = post(client, path, review)
    assert status == 200
    response = body["response"]
    assert response["allowed"] is False and "patch" not in response
    assert why in response["status"]["message"]
    assert response["status"]["details"]["causes"][0]["field"].startswith("spec.containers[")


def test_without_a_webhook_token_the_binding_fast_path_starts_nothing(client, world):
    world.webhook_tokens = None  # a managed control plane: nobody can vouch for the review
    status, body = post(client, "/admission/validate", sample("admission-pods-binding-create.json"), token=None)
    assert status == 200 and body["response"]["allowed"] is True
    assert world.backends["vk-test"].created == [] and world.kube.calls == []


def test_with_the_token_the_same_binding_starts_the_machine(client, world):
    status, body = post(client, "/admission/validate", sample("admission-pods-binding-create.json"))
    assert status == 200 and len(world.backends["vk-test"].created) == 1


def test_a_wrong_token_is_401_and_starts_nothing(client, world):
    status, body = post(client, "/admission/validate", sample("admission-pods-binding-create.json"), token="guess")
    assert status == 401 and world.backends["vk-test"].created == []


# -- token rotation ------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def secrets():
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(Name="webhook", SecretString="old-token")
        yield client


def _created(client, stage: str) -> datetime:
    return client.get_secret_value(SecretId="webhook", VersionStage=stage)["CreatedDate"]


def test_the_previous_token_is_accepted_during_the_rotation_window_only(secrets):
    secrets.put_secret_value(SecretId="webhook", SecretString="new-token")  # a rotation: old -> AWSPREVIOUS
    clock = Clock(_created(secrets, "AWSCURRENT") + timedelta(minutes=1))
    tokens = WebhookTokens(secrets_manager_fetch(secrets, "webhook"), clock, window=timedelta(hours=1))
    assert tokens.accepts("Bearer new-token") and tokens.accepts("Bearer old-token")
    assert not tokens.accepts("Bearer other") and not tokens.accepts(None) and not tokens.accepts("Basic new-token")
    clock.now += timedelta(hours=1)  # the window closed: the next read drops the previous token
    assert tokens.accepts("Bearer new-token") and not tokens.accepts("Bearer old-token")


def test_a_never_rotated_secret_accepts_its_one_token(secrets):
    tokens = WebhookTokens(secrets_manager_fetch(secrets, "webhook"), Clock(NOW))
    assert tokens.accepts("Bearer old-token") and not tokens.accepts("Bearer new-token")


def test_a_rotation_reaches_a_warm_cache_at_once(secrets):
    clock = Clock(datetime.now(timezone.utc))
    tokens = WebhookTokens(secrets_manager_fetch(secrets, "webhook"), clock)
    assert tokens.accepts("Bearer old-token")  # cached now, for max_age
    secrets.put_secret_value(SecretId="webhook", SecretString="new-token")
    clock.now += tokens.refresh_every  # well within max_age: the miss itself triggers the re-read
    assert tokens.accepts("Bearer new-token") and tokens.accepts("Bearer old-token")


def test_misses_do_not_read_the_secret_more_than_every_refresh_period():
    reads = []

    def fetch(stage):
        reads.append(stage)
        return ("token", NOW) if stage == "AWSCURRENT" else None
    clock = Clock(NOW + timedelta(days=1))
    tokens = WebhookTokens(fetch, clock)
    for _ in range(50):
        assert not tokens.accepts("Bearer guess")
    assert reads.count("AWSCURRENT") == 1
    clock.now += tokens.refresh_every
    tokens.accepts("Bearer guess")
    assert reads.count("AWSCURRENT") == 2


def test_the_route_uses_the_rotation(client, world):
    world.webhook_tokens = WebhookTokens(
        lambda stage: {"AWSCURRENT": ("new", NOW), "AWSPREVIOUS": (TOKEN, NOW - timedelta(days=30))}[stage],
        lambda: NOW + timedelta(minutes=5))
    assert post(client, "/admission/validate", sample("admission-pod-create.json"))[0] == 200
    assert post(client, "/admission/validate", sample("admission-pod-create.json"), token="new")[0] == 200
    world.webhook_tokens = WebhookTokens(world.webhook_tokens._fetch, lambda: NOW + timedelta(hours=2))
    assert post(client, "/admission/validate", sample("admission-pod-create.json"))[0] == 401


def test_odd_pods_no_longer_reach_the_decision_as_internal_errors(world):
    """The 47 odd shapes of the issue raised AttributeError/TypeError answered allowed:
    each of ours is now a BadPayload, and a good pod still is no error."""
    from chalicelib.usecases.admission_review import handle_admission
    from chalicelib.usecases.world import BadPayload

    for _, change, _ in ODD_PODS:
        with pytest.raises(BadPayload):
            handle_admission(world, json.dumps(_pod_review(change)).encode(), "validate")
    result = handle_admission(world, json.dumps(copy.deepcopy(sample("admission-pod-create.json"))).encode(),
                                       "validate")
    assert result.errors == []
