"""The functions' IAM policy (infra/iam.py, rendered from the stack's outputs as ./dev deploy
does) allows every AWS call the app makes, on the stack's own resources, and nothing of a
backend the deployment does not use.

The calls are not listed by hand: a pod's lifecycle runs through the app's real entry
points and every botocore call it makes is recorded (before-call events on every client),
then judged against the policy, each on the resource the deployed stack gives it.
"""

from __future__ import annotations

from contextlib import contextmanager

import botocore.handlers
import pytest

from tests.aws_stack import allows, function_policy
from tests.world.stack import ACCOUNT, REGION, Stack, pod_sources, virtual_pod


@pytest.fixture(scope="module")
def ecs():
    return function_policy("ecs")


@pytest.fixture(scope="module")
def fly():
    return function_policy("fly")


# Services whose IAM action prefix is not their signing name.
IAM_PREFIX = {"monitoring": "cloudwatch"}


@contextmanager
def recorded_calls():
    """Every AWS call made through botocore meanwhile, as IAM action names. The hook is added
    the way moto adds its own (botocore's built-in handlers), so every session's clients have it,
    powertools' own included."""
    called: set[str] = set()

    def hook(model, **_):
        service = model.service_model.signing_name
        called.add(f"{IAM_PREFIX.get(service, service)}:{model.name}")

    handler = ("before-call", hook)
    botocore.handlers.BUILTIN_HANDLERS.append(handler)
    try:
        yield called
    finally:
        botocore.handlers.BUILTIN_HANDLERS.remove(handler)


def resource_of(action: str, outputs: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The resource (and request context) a call of the app is made on, in the deployed stack."""
    service, name = action.split(":")
    if service == "ecs" and name in ("RegisterTaskDefinition", "DescribeTaskDefinition"):
        return "*", {}
    if service == "ecs":
        return "*", {"ecs:cluster": outputs["EcsClusterArn"]}
    if service == "iam":
        return outputs["EcsTaskRoleArn"], {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    if service == "dynamodb":
        return outputs["FlyClaimsTableArn"], {}
    if action == "secretsmanager:GetSecretValue":
        return outputs["ServiceAccountTokenSecret"], {}
    if service == "logs" and name in ("GetLogEvents", "DescribeLogStreams"):  # the pods' output (kubectl logs)
        return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{outputs['PodLogGroup']}:log-stream:lambdalet/main/t", {}
    if action == "cloudwatch:GetMetricData":  # kubectl top; no resource-level permissions
        return "*", {}
    if action == "secretsmanager:ListSecrets":  # the sweep of pod secret mirrors: no resource-level permission
        return "*", {}
    if service == "secretsmanager":  # a pod Secret value's mirror (secret_store.py), under the stack's prefix
        return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{outputs['PodSecretsPrefix']}0123abcd-AbCdEf", {}
    raise AssertionError(f"{action}: a call test_iam_policy does not know the resource of; add it here "
                         f"and to infra/iam.py")


def test_no_statement_allows_every_action_of_a_service(ecs, fly):
    for policy, _ in (ecs, fly):
        actions = [a for s in policy["Statement"] for a in s["Action"]]
        assert not [a for a in actions if a.endswith(":*") or a == "*"]


def test_every_aws_call_of_an_ecs_pod_lifecycle_is_allowed_on_the_stacks_resources(ecs):
    policy, outputs = ecs
    with recorded_calls() as called, Stack() as stack:
        called.clear()  # the test world's own set-up (the app's clients make no call until used)
        stack.reconcile()
        pod_sources(stack.core)  # the pod's Secret value is mirrored into Secrets Manager
        stack.create_pod(virtual_pod("web", command=["sh", "-c", "sleep 1000"], container={"env": [
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "password"}}}]}))
        stack.settle(rounds=5, reconcile=True)
        stack.core.delete_namespaced_pod("web", "default")
        stack.settle(rounds=3, reconcile=True)
        stack.advance(3600)  # past the mirror's grace: the sweep deletes it
        stack.settle(rounds=2, reconcile=True)
    assert {"ecs:RunTask", "ecs:StopTask", "ecs:ListTasks", "ecs:DescribeTasks"} <= called
    assert {"secretsmanager:CreateSecret", "secretsmanager:ListSecrets", "secretsmanager:DeleteSecret"} <= called
    denied = [a for a in sorted(called) if not allows(policy, a, *resource_of(a, outputs))]
    assert denied == []
    for secret in (outputs["ServiceAccountTokenSecret"], outputs["NodeCertificateSecret"], outputs["WebhookTokenSecret"]):
        assert allows(policy, "secretsmanager:GetSecretValue", secret)  # either identity's, and the webhook token
    assert allows(policy, "iam:PassRole", outputs["EcsExecutionRoleArn"],
                  {"iam:PassedToService": "ecs-tasks.amazonaws.com"})


def test_every_aws_call_of_the_kubelet_api_is_allowed_on_the_stacks_resources(ecs):
    """kubectl logs (current, previous, absent stream) and the stats metrics-server scrapes."""
    from tests.test_kubelet_api import kubelet_get

    policy, outputs = ecs
    with recorded_calls() as called, Stack() as stack:
        called.clear()
        stack.reconcile()
        stack.create_pod(virtual_pod("web", command=["sh", "-c", "echo up; sleep 1000"]))
        stack.settle(rounds=6)
        stack.advance(120)
        stack.settle(rounds=1)
        for path in ("/containerLogs/default/web/main", "/containerLogs/default/web/main?previous=true",
                     "/stats/summary", "/metrics/resource"):
            assert kubelet_get(stack, path, stack.apiserver_client)[0] in (200, 400), path
    assert {"logs:GetLogEvents", "cloudwatch:GetMetricData"} <= called
    denied = [a for a in sorted(called) if not allows(policy, a, *resource_of(a, outputs))]
    assert denied == []
    # only the pods' log group
    assert not allows(policy, "logs:GetLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/x:log-stream:y")


def test_an_ecs_deployment_holds_no_fly_or_dynamodb_permission(ecs):
    policy, _ = ecs
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert not [a for a in actions if a.startswith("dynamodb:")]
    assert not allows(policy, "secretsmanager:GetSecretValue",
                      "arn:aws:secretsmanager:us-east-1:123456789012:secret:lambdalet/dev/fly-api-token-AbCdEf")


def test_a_fly_deployment_holds_no_ecs_or_passrole_permission(fly):
    policy, outputs = fly
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert not [a for a in actions if a.startswith(("ecs:", "iam:"))]
    assert allows(policy, "dynamodb:PutItem", outputs["FlyClaimsTableArn"])
    assert allows(policy, "secretsmanager:GetSecretValue", outputs["FlyTokenSecret"])
    assert not allows(policy, "dynamodb:PutItem", outputs["FlyClaimsTableArn"].replace("-claims", "-other"))


def test_the_judge_can_say_no(ecs):
    policy, outputs = ecs
    assert not allows(policy, "ecs:RunTask", "*", {"ecs:cluster": outputs["EcsClusterArn"] + "-other"})
    assert not allows(policy, "ecs:RunTask", "*")  # no cluster in the request: the condition fails
    assert not allows(policy, "iam:PassRole", outputs["EcsTaskRoleArn"], {"iam:PassedToService": "lambda.amazonaws.com"})
    assert not allows(policy, "ecs:DeleteCluster", "*", {"ecs:cluster": outputs["EcsClusterArn"]})


def test_no_policy_file_is_kept_beside_the_generated_one():
    """The functions' policy is rendered per stage by ./dev deploy from infra/iam.py (checked
    above); a policy file kept in .chalice/ would be one nothing checks. Statements for new
    calls go into infra/iam.py."""
    import subprocess

    from tests.world.stack import REPO

    if (REPO / ".git").exists():
        kept = subprocess.run(["git", "ls-files", ".chalice"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.split()
    else:  # a copy of the tracked files (.ci/run)
        kept = [str(p.relative_to(REPO)) for p in (REPO / ".chalice").glob("*")]
    assert [k for k in kept if k.startswith(".chalice/policy")] == []


def test_the_hand_over_may_invoke_its_own_two_functions_and_nothing_else(ecs):
    """World.defer invokes <prefix>-<function> (./dev deploy's prefix: lambdalet-<stage>) for the
    app's two lambda functions, the per-node reconcile and the binding's create: exactly those
    ARNs are allowed, not the scheduled functions, not the API's, not another stage's."""
    import app

    policy, outputs = ecs
    stage = outputs["Stage"]

    def arn(name: str, stage: str = stage) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:lambdalet-{stage}-{name}"

    handed_to = sorted(f.name for f in app.app.pure_lambda_functions)
    assert handed_to == ["reconcile_node", "start_bound"]
    assert all(allows(policy, "lambda:InvokeFunction", arn(name)) for name in handed_to)
    refused = [arn("reconcile"), arn("heartbeat"), arn("on_machine_event"), arn("reconcile_node", "other"),
               f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:lambdalet-{stage}", "*"]
    assert not [r for r in refused if allows(policy, "lambda:InvokeFunction", r)]
