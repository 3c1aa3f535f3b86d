"""The EKS mode: lambdalet authenticates with tokens minted from its own IAM role
(chalicelib/kube/eks_token.py), the simulator verifies them as EKS does (STS, here moto, says
who signed; the role's access entry names the group; tests/world/kube_sim/eks_auth.py) and
RBAC binds the group to infra/k8s/rbac.yaml's rules. What is not such a token is refused 401."""

from __future__ import annotations

import base64
import time
import urllib.parse

import boto3
import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api
from kubernetes.client.exceptions import ApiException

from chalicelib.kube import eks_token
from tests.world.kube_sim.eks_auth import TokenRejected, check
from tests.world.stack import ACCOUNT, EKS_CLUSTER, EKS_GROUP, REGION, SA_USER, Stack, virtual_pod

ROLE_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/lambdalet-dev-reconcile/lambdalet-dev-reconcile"


def as_token(stack: Stack, token: str) -> CoreV1Api:
    config = Configuration(host=stack.sim.url)
    config.api_key = {"BearerToken": token}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    return CoreV1Api(ApiClient(config))


def status_of(call) -> int:
    try:
        call()
    except ApiException as err:
        return err.status
    return 200


def role_session(role: str) -> boto3.session.Session:
    """Credentials of an assumed role (moto issues them), as Lambda gives a function its role's."""
    iam, sts = boto3.client("iam", region_name=REGION), boto3.client("sts", region_name=REGION)
    arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    creds = sts.assume_role(RoleArn=arn, RoleSessionName=role)["Credentials"]
    return boto3.session.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                                 aws_session_token=creds["SessionToken"], region_name=REGION)


def own_session() -> boto3.session.Session:
    return boto3.session.Session(region_name=REGION)  # the environment's: lambdalet's role (Stack._start_eks)


@pytest.fixture(scope="module")
def eks_stack():
    with Stack(eks=True) as stack:
        yield stack


def test_reconcile_and_the_audit_webhook_work_as_the_access_entrys_group(eks_stack):
    stack = eks_stack
    api = stack.sim.api
    stack.reconcile()  # registers the node
    stack.create_pod(virtual_pod("app", command=["sh", "-c", "sleep 100000"]))
    stack.settle(rounds=8)  # no reconcile: the audit webhook's binding starts the machine, the ECS events the rest
    assert stack.pod("app")["status"]["phase"] == "Running"
    calls = {(verb, res) for (user, verb, res) in api.calls if user == ROLE_SESSION}
    assert {("create", "nodes"), ("list", "pods"), ("get", "pods"), ("patch", "pods/status"),
            ("create", "events")} <= calls
    assert SA_USER not in {user for (user, _, _) in api.calls}  # no ServiceAccount token anywhere
    denied = [e for e in stack.audit.events if e["user"]["username"] == ROLE_SESSION
              and e["stage"] == "ResponseComplete" and e["responseStatus"]["code"] in (401, 403)]
    assert denied == [] and api.auth_failures == []
    [user] = {e["user"]["username"]: e["user"] for e in stack.audit.events
              if e["user"]["username"] == ROLE_SESSION}.values()
    assert EKS_GROUP in user["groups"]
    stack.core.delete_namespaced_pod("app", "default")
    stack.settle(rounds=10, seconds=5, reconcile=True)
    assert stack.pod("app") is None and ("delete", "pods") in {
        (verb, res) for (user, verb, res) in api.calls if user == ROLE_SESSION}


def test_the_group_has_only_rbac_yamls_rights(eks_stack):
    lambdalet = as_token(eks_stack, eks_token.EksTokens(EKS_CLUSTER, REGION, own_session())())
    assert lambdalet.list_pod_for_all_namespaces(field_selector="spec.nodeName=lambdalet-ecs").items is not None
    assert status_of(lambda: lambdalet.list_namespaced_secret("default")) == 403  # authenticated, not authorized


def refused(stack: Stack, token: str) -> str:
    """401 for ``token``; the reason the apiserver logged."""
    before = len(stack.sim.api.auth_failures)
    assert status_of(lambda: as_token(stack, token).list_namespace()) == 401
    [reason] = stack.sim.api.auth_failures[before:]
    return reason


def test_a_token_of_a_role_without_an_access_entry_is_refused(eks_stack):
    token = eks_token.EksTokens(EKS_CLUSTER, REGION, role_session("someone-else"))()
    assert "ARN is not mapped: arn:aws:sts::123456789012:assumed-role/someone-else/" in refused(eks_stack, token)


def test_a_token_for_another_cluster_is_refused(eks_stack):
    """The cluster name is signed, not stated: STS refuses the signature for our cluster's header."""
    token = eks_token.EksTokens("another-cluster", REGION, own_session())()
    assert refused(eks_stack, token) == "sts getCallerIdentity failed: error from AWS (expected 200, got 403)"


def test_an_expired_token_is_refused(eks_stack, monkeypatch):
    token = eks_token.EksTokens(EKS_CLUSTER, REGION, own_session())()
    assert status_of(lambda: as_token(eks_stack, token).list_namespace()) == 403  # good now (no RBAC on namespaces)
    monkeypatch.setattr(eks_stack.eks_auth, "now", lambda: time.time() + 15 * 60 + 5)  # its X-Amz-Date is now too old
    assert "X-Amz-Date parameter is expired" in refused(eks_stack, token)


def tampered(token: str, change) -> str:
    url = urllib.parse.urlsplit(eks_token.url_from_token(token))
    return eks_token.token_from_url(change(url).geturl())


def test_garbage_and_malformed_tokens_are_refused_with_a_reason(eks_stack):
    good = eks_token.EksTokens(EKS_CLUSTER, REGION, own_session())()
    cases = {
        "k8s-aws-v1.": "unexpected scheme",
        "k8s-aws-v1.%%%not-base64%%%": "not base64url",
        "k8s-aws-v1." + "A" * 4100: "token is too large",
        good + "=": "not base64url",  # padding: token.go decodes RawURLEncoding
        "k8s-aws-v1." + base64.urlsafe_b64encode(b"\xff\xfe").decode().rstrip("="): "not base64url",
        tampered(good, lambda u: u._replace(netloc="sts.evil.example.com")): "unexpected hostname",
        tampered(good, lambda u: u._replace(scheme="http")): "unexpected scheme",
        tampered(good, lambda u: u._replace(path="/x")): "unexpected path",
        tampered(good, lambda u: u._replace(query=u.query.replace("GetCallerIdentity", "AssumeRole"))):
            "unexpected action",
        tampered(good, lambda u: u._replace(query=u.query + "&Foo=1")): "non-whitelisted query parameter",
        tampered(good, lambda u: u._replace(query=u.query + "&Action=GetCallerIdentity")): "multiple values",
        tampered(good, lambda u: u._replace(query=u.query + "&action=GetCallerIdentity")): "duplicate query parameter",
        tampered(good, lambda u: u._replace(query=u.query.replace("x-k8s-aws-id", "x-other"))): "did not sign",
        tampered(good, lambda u: u._replace(query=u.query.replace("X-Amz-Expires=60", "X-Amz-Expires=901"))):
            "invalid X-Amz-Expires",
        tampered(good, lambda u: u._replace(query=u.query.replace("X-Amz-Date=", "X-Amz-Date=x"))):
            "error parsing X-Amz-Date",
        tampered(good, lambda u: u._replace(query=u.query.replace("X-Amz-Expires=60", "X-Amz-Expires=59"))):
            "got 403",  # well formed, but no longer what was signed
    }
    for token, reason in cases.items():
        assert reason in refused(eks_stack, token), token[:60]
    before = len(eks_stack.sim.api.auth_failures)
    assert status_of(lambda: as_token(eks_stack, "not-a-token").list_namespace()) == 401  # not EKS's to judge
    assert len(eks_stack.sim.api.auth_failures) == before


def test_lambdalet_is_refused_once_its_access_entry_is_gone(eks_stack, monkeypatch):
    monkeypatch.setattr(eks_stack.eks_auth, "entries", {})
    assert "401 Unauthorized" in str(eks_stack.reconcile())  # the node's pass fails; the next one retries
    assert "ARN is not mapped: " + ROLE_SESSION in eks_stack.sim.api.auth_failures[-1]


# -- minting (pure parts and the cache) -------------------------------------------------------

def static_session() -> boto3.session.Session:
    return boto3.session.Session(aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="secret",
                                 aws_session_token="session", region_name="eu-west-1")


def test_a_token_is_a_presigned_regional_get_caller_identity_url_for_the_cluster(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")  # ignored: the token names the real STS
    token = eks_token.mint(eks_token.sts_client(static_session(), "eu-west-1"), "prod-1")
    assert token.startswith("k8s-aws-v1.") and "=" not in token
    url = urllib.parse.urlsplit(eks_token.url_from_token(token))
    query = dict(urllib.parse.parse_qsl(url.query))
    assert (url.scheme, url.netloc, url.path) == ("https", "sts.eu-west-1.amazonaws.com", "/")
    assert query["Action"] == "GetCallerIdentity" and query["X-Amz-Expires"] == "60"
    assert query["X-Amz-SignedHeaders"] == "host;x-k8s-aws-id"
    assert query["X-Amz-Credential"].startswith("AKIAEXAMPLE/") and query["X-Amz-Security-Token"] == "session"
    assert check(token, time.time()).netloc == "sts.eu-west-1.amazonaws.com"  # what the authenticator accepts
    with pytest.raises(TokenRejected, match="expired"):
        check(token, time.time() + 15 * 60 + 5)


def test_a_warm_container_reuses_its_token_for_14_minutes_then_mints_anew():
    now = [1000.0]
    tokens = eks_token.EksTokens("prod-1", "eu-west-1", static_session(), clock=lambda: now[0])
    first = tokens()
    now[0] += 14 * 60 - 1
    assert tokens() == first
    now[0] += 1
    time.sleep(1.01)  # a new X-Amz-Date second: a different URL
    assert tokens() != first


def test_the_eks_mode_reads_no_secret(monkeypatch):
    """build_kube in the EKS mode: the token callable mints, Secrets Manager is never asked."""
    from chalicelib import wiring
    from chalicelib.settings import Settings

    monkeypatch.setattr(wiring, "secret", lambda secret_id: pytest.fail(f"read secret {secret_id}"))
    config = Settings(k8s_api_url="https://k8s.example", k8s_eks_cluster_name="prod-1", node_names=("vk",),
                      ecs_cluster="c", ecs_subnets=("s",), ecs_security_groups=("g",), AWS_REGION="eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    kube = wiring.build_kube(config)
    conf = kube.core.api_client.configuration
    conf.refresh_api_key_hook(conf)
    assert conf.api_key["BearerToken"].startswith("k8s-aws-v1.")
    assert check(conf.api_key["BearerToken"], time.time()).netloc == "sts.eu-west-1.amazonaws.com"
