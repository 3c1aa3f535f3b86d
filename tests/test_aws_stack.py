"""infra/aws/lambdalet.yaml, created in moto's CloudFormation: the resources and outputs the
functions need are there, only the chosen backends' resources exist, and the settings
`./dev deploy` writes from the outputs are ones the app accepts."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from infra import deploy
from tests.aws_stack import allows, create
from tests.world.stack import REGION


@pytest.fixture
def aws(monkeypatch):
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


def client(service: str):
    return boto3.client(service, region_name=REGION)


def document(value) -> dict:
    """A policy document as IAM returns it. moto's CloudFormation stores a role's inline policy
    as the repr of its dict (boto3 then hands back that string): read it back as the dict."""
    if isinstance(value, dict):
        return value
    import ast

    return ast.literal_eval(value)


def app_settings(monkeypatch, outputs: dict, **flags):
    """The app's own settings model, loaded from what ./dev deploy writes for this stack."""
    from chalicelib import settings

    env = deploy.with_outputs(deploy.stage_environment({}, {"k8s_api_url": "https://k8s.example:6443", **flags}),
                              outputs)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_REGION", REGION)
    return settings.load_settings()


def test_an_ecs_stack_has_the_cluster_log_group_roles_secrets_and_a_vpc_and_nothing_of_fly(aws, monkeypatch):
    outputs = create("ecs")
    [cluster] = client("ecs").describe_clusters(clusters=[outputs["EcsCluster"]])["clusters"]
    assert cluster["clusterName"] == "lambdalet-dev" and cluster["clusterArn"] == outputs["EcsClusterArn"]
    [group] = client("logs").describe_log_groups(logGroupNamePrefix=outputs["PodLogGroup"])["logGroups"]
    assert group["logGroupName"] == "/lambdalet/dev/pods" and group["retentionInDays"] == 30
    subnets = outputs["EcsSubnets"].split(",")
    described = client("ec2").describe_subnets(SubnetIds=subnets)["Subnets"]
    assert len(described) == 2 and len({s["AvailabilityZone"] for s in described}) == 2
    [sg] = client("ec2").describe_security_groups(GroupIds=[outputs["EcsSecurityGroups"]])["SecurityGroups"]
    assert sg["IpPermissions"] == [] and sg["VpcId"] == described[0]["VpcId"]
    assert outputs["EcsAssignPublicIp"] == "true"  # public subnets without NAT
    assert {"FlyTokenSecret", "FlyClaimsTable", "FlyClaimsTableArn"}.isdisjoint(outputs)
    assert client("dynamodb").list_tables()["TableNames"] == []
    names = {s["Name"] for s in client("secretsmanager").list_secrets()["SecretList"]}
    assert names == {"lambdalet/dev/service-account-token", "lambdalet/dev/node-client-certificate",
                     "lambdalet/dev/webhook-token"}

    config = app_settings(monkeypatch, outputs)
    assert config.backend == "ecs" and config.ecs_cluster == "lambdalet-dev"
    assert config.ecs_subnets == tuple(subnets) and config.ecs_assign_public_ip is True
    assert config.ecs_execution_role_arn == outputs["EcsExecutionRoleArn"]
    assert config.ecs_task_role_arn == outputs["EcsTaskRoleArn"]
    assert config.k8s_token_secret == outputs["ServiceAccountTokenSecret"]
    assert config.webhook_token_secret == outputs["WebhookTokenSecret"]


def test_the_task_roles_are_passable_and_the_execution_role_writes_pod_logs_and_reads_pod_secrets(aws):
    outputs = create("ecs")
    iam = client("iam")
    execution = outputs["EcsExecutionRoleArn"].rsplit("/", 1)[1]
    task = outputs["EcsTaskRoleArn"].rsplit("/", 1)[1]
    assert {execution, task} == {"lambdalet-dev-task-execution", "lambdalet-dev-task-default"}  # PassRole's pattern
    for name in (execution, task):
        trust = document(iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"])
        assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "ecs-tasks.amazonaws.com"}]
    assert iam.list_role_policies(RoleName=task)["PolicyNames"] == []  # the pods get nothing by default
    [policy_name] = iam.list_role_policies(RoleName=execution)["PolicyNames"]
    policy = document(iam.get_role_policy(RoleName=execution, PolicyName=policy_name)["PolicyDocument"])
    group = client("logs").describe_log_groups(logGroupNamePrefix=outputs["PodLogGroup"])["logGroups"][0]["arn"]
    stream = group.removesuffix(":*") + ":log-stream:web/web/0123"
    assert allows(policy, "logs:PutLogEvents", stream) and allows(policy, "logs:CreateLogStream", stream)
    secret = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:lambdalet/dev/pod-secrets/default/db-AbCdEf"
    assert allows(policy, "secretsmanager:GetSecretValue", secret)
    assert not allows(policy, "secretsmanager:GetSecretValue", outputs["ServiceAccountTokenSecret"])
    assert not allows(policy, "logs:PutLogEvents", stream.replace("/lambdalet/dev/pods", "/other"))
    assert outputs["PodSecretsPrefix"] == "lambdalet/dev/pod-secrets/"
    assert outputs["PodLogGroupArn"].removesuffix(":*") == group.removesuffix(":*")


def test_secret_values_are_the_operators_the_webhook_token_is_generated(aws):
    outputs = create("ecs")
    sm = client("secretsmanager")
    assert "VersionIdsToStages" not in sm.describe_secret(SecretId=outputs["ServiceAccountTokenSecret"])
    token = sm.get_secret_value(SecretId=outputs["WebhookTokenSecret"])["SecretString"]
    assert len(token) == 48 and token.isalnum()
    template = (deploy.REPO / deploy.TEMPLATE).read_text()
    assert " SecretString:" not in template  # no value is ever written in the template


def test_a_fly_stack_has_the_claims_table_and_token_and_nothing_of_ecs(aws, monkeypatch):
    outputs = create("fly")
    table = client("dynamodb").describe_table(TableName=outputs["FlyClaimsTable"])["Table"]
    assert table["TableName"] == "lambdalet-dev-claims" and table["TableArn"] == outputs["FlyClaimsTableArn"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    # moto's CloudFormation does not apply TimeToLiveSpecification: read it from the stack's template
    body = client("cloudformation").get_template(StackName="lambdalet-dev")["TemplateBody"]
    assert "TimeToLiveSpecification:\n        AttributeName: ttl\n        Enabled: true" in body
    assert [o for o in outputs if o.startswith(("Ecs", "Pod"))] == []
    assert client("ecs").list_clusters()["clusterArns"] == []
    assert client("ec2").describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["lambdalet-dev"]}])["Vpcs"] == []
    assert [r["RoleName"] for r in client("iam").list_roles()["Roles"] if r["RoleName"].startswith("lambdalet")] == []

    config = app_settings(monkeypatch, outputs, backend="fly", fly_app="lambdalet-pods", fly_region="ams")
    assert config.backend == "fly" and config.fly_claims_table == "lambdalet-dev-claims"
    assert config.fly_token_secret == outputs["FlyTokenSecret"]


def test_operators_subnets_and_cluster_are_used_as_given_and_no_vpc_is_created(aws):
    outputs = create("ecs,fly", stage="prod", ClusterName="shared", Subnets="subnet-1,subnet-2",
                     SecurityGroups="sg-1", AssignPublicIp="false")
    assert outputs["EcsCluster"] == "shared" and outputs["EcsClusterArn"].endswith(":cluster/shared")
    assert (outputs["EcsSubnets"], outputs["EcsSecurityGroups"], outputs["EcsAssignPublicIp"]) == \
        ("subnet-1,subnet-2", "sg-1", "false")
    assert client("ecs").list_clusters()["clusterArns"] == []
    assert client("ec2").describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["lambdalet-prod"]}])["Vpcs"] == []
    assert outputs["FlyClaimsTable"] == "lambdalet-prod-claims"  # both backends: both sides exist
    assert outputs["PodLogGroup"] == "/lambdalet/prod/pods"


def test_every_output_the_deploy_maps_exists_in_the_template():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # CloudFormation's short tags
    template = yaml.load((deploy.REPO / deploy.TEMPLATE).read_text(), Loader=Loader)
    assert set(deploy.OUTPUT_SETTINGS) <= set(template["Outputs"])
    for output, variable in deploy.OUTPUT_SETTINGS.items():
        assert template["Outputs"][output]["Description"] == variable, output


def test_the_linters_example_outputs_are_the_stacks_outputs(aws):
    """./dev lint packages the app with a policy made from example outputs: they must
    name every output a real ecs,fly stack gives, or the policy cannot be built."""
    from infra.lint import EXAMPLE_OUTPUTS

    assert set(EXAMPLE_OUTPUTS) == set(create("ecs,fly"))


def test_the_node_identity_mode_points_the_functions_at_the_node_certificate(aws, monkeypatch):
    """./dev deploy --identity node: the functions read the stack's node certificate secret, not the
    ServiceAccount token (the app takes exactly one), and --identity service-account goes back."""
    outputs = create("ecs")
    assert client("secretsmanager").describe_secret(SecretId=outputs["NodeCertificateSecret"])["Name"] == \
        "lambdalet/dev/node-client-certificate"
    config = app_settings(monkeypatch, outputs, identity="node", nodes="lambdalet-ecs")
    assert config.k8s_client_cert_secret == outputs["NodeCertificateSecret"] and not config.k8s_token_secret
    node_env = deploy.with_outputs(deploy.stage_environment({}, {"k8s_api_url": "https://k8s.example:6443",
                                                                 "identity": "node"}), outputs)
    kept = deploy.with_outputs(deploy.stage_environment(node_env, {}), outputs)  # a second run keeps the mode
    assert kept["LAMBDALET_K8S_CLIENT_CERT_SECRET"] == outputs["NodeCertificateSecret"]
    assert kept["LAMBDALET_K8S_TOKEN_SECRET"] == ""
    back = deploy.with_outputs(deploy.stage_environment(kept, {"identity": "service-account"}), outputs)
    assert back["LAMBDALET_K8S_TOKEN_SECRET"] == outputs["ServiceAccountTokenSecret"]
    assert "LAMBDALET_K8S_CLIENT_CERT_SECRET" not in back
    assert deploy.missing(deploy.stage_environment({}, {"k8s_api_url": "https://k8s.example:6443", "identity": "node",
                                                         "nodes": "a,b"}), {}) == [
        "--nodes with one node name (a node identity is one node's: one node per stage)"]


def test_node_identity_mints_into_the_stacks_secret(aws, tmp_path, capsys):
    """`./dev node-identity --stage dev`: a CSR through the operator's kubeconfig, approved, signed,
    and the certificate + key in the stack's secret, which then authenticates as the node."""
    from kubernetes.client import CoreV1Api

    from chalicelib.kube.client import api_client
    from infra import node_identity
    from tests.world.certs import Authority
    from tests.world.kube_sim import KubeSim

    outputs = create("ecs")
    with KubeSim(pki=Authority(tmp_path / "pki")) as sim:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        args = ["--stage", "dev", "--node", "lambdalet-ecs", "--kubeconfig", kubeconfig, "--region", REGION]
        assert node_identity.main(args) == 0, capsys.readouterr().err
        pem = client("secretsmanager").get_secret_value(SecretId=outputs["NodeCertificateSecret"])["SecretString"]
        assert "BEGIN CERTIFICATE" in pem and "PRIVATE KEY" in pem
        CoreV1Api(api_client(sim.url, None, sim.ca_pem, client_pem=pem)).create_node(
            {"metadata": {"name": "lambdalet-ecs"}})
        assert ("system:node:lambdalet-ecs", "create", "nodes") in sim.api.calls
        assert "valid until" in capsys.readouterr().out
    assert node_identity.main(["--stage", "other", "--node", "n", "--kubeconfig", kubeconfig,
                               "--region", REGION]) == 2  # no such stack: says so
    assert "--identity node first" in capsys.readouterr().err


def template_resources() -> dict:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: {suffix: loader.construct_scalar(node)}
                                 if isinstance(node, yaml.ScalarNode) else None)
    return yaml.load((deploy.REPO / deploy.TEMPLATE).read_text(), Loader=Loader)["Resources"]


@pytest.mark.filterwarnings("ignore:Tried to parse AWS.EKS.AccessEntry")
def test_an_eks_stack_keeps_no_service_account_token_and_its_access_entry_names_the_overlays_group(aws, monkeypatch):
    from infra import iam, overlay

    outputs = create("ecs", EksClusterName="prod-1")
    assert {"ServiceAccountTokenSecret", "NodeCertificateSecret"}.isdisjoint(outputs)
    names = {s["Name"] for s in client("secretsmanager").list_secrets()["SecretList"]}
    assert names == {"lambdalet/dev/webhook-token"}
    config = app_settings(monkeypatch, outputs, eks_cluster="prod-1")
    assert config.k8s_eks_cluster_name == "prod-1" and config.k8s_token_secret == ""
    policy = iam.function_policy(outputs, region=REGION, account="123456789012")
    [tokens] = [s for s in policy["Statement"] if s["Sid"] == "KubernetesTokens"]
    assert tokens["Resource"] == [outputs["WebhookTokenSecret"]]  # minting needs no permission
    # moto's CloudFormation skips AWS::EKS::AccessEntry (unsupported): the template says what EKS gets
    entries = [r for r in template_resources().values() if r["Type"] == "AWS::EKS::AccessEntry"]
    assert len(entries) == 6 and all(r["Condition"] == "Eks" for r in entries)
    for entry in entries:
        props = entry["Properties"]
        assert props["KubernetesGroups"] == [overlay.EKS_GROUP] and props["Type"] == "STANDARD"
        assert props["PrincipalArn"]["Sub"].startswith("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/lambdalet-${Stage}-")
    # one per function role chalice deploy makes: tests/test_deploy.py compares them with a real deploy
    assert set(deploy.eks_roles((deploy.REPO / deploy.TEMPLATE).read_text(), "dev")) == {
        f"lambdalet-dev-{f}" for f in ("reconcile", "reconcile_node", "start_bound", "heartbeat", "on_machine_event",
                                       "api_handler")}
