"""`./dev deploy` (infra/deploy.py) against moto: the stack, the stage's settings and policy,
`chalice deploy` itself (its own process, as an operator runs it, against a moto server:
functions, API, schedules, event rule), and the cluster overlay with the deployed URL.

What moto cannot stand in for: the functions are created but never run, so the copy of
the project deployed here has an empty requirements.txt (bundling the libraries would only
download them from PyPI; chalice's packaging of them is chalice's own, unchanged).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import boto3
import pytest
import yaml

from infra import deploy, iam, overlay
from tests.world import moto_gaps  # noqa: F401  (what moto lacks for the stack and chalice deploy)
from tests.world.stack import REGION, REPO

KUBECTL = shutil.which("kubectl")
API = "https://k8s.example:6443"


def project_copy(tmp_path):
    work = tmp_path / "lambdalet"
    for name in ("app.py", "chalicelib", ".chalice/config.json", "infra/aws", "infra/k8s"):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, work / name)
    (work / "requirements.txt").write_text("")
    return work


@pytest.fixture
def moto_server(monkeypatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    yield f"http://{host}:{port}"
    server.stop()


def aws(service: str):
    return boto3.client(service, region_name=REGION)


def test_deploy_creates_the_stack_the_functions_the_api_the_schedules_and_the_overlay(moto_server, tmp_path, capsys):
    work = project_copy(tmp_path)
    code = deploy.main(["--stage", "test", "--k8s-api-url", API, "--nodes", "vk-a,vk-b", "--project-dir", str(work)])
    out = capsys.readouterr().out
    assert code == 0, out

    # the stack and the settings written from its outputs
    [stack] = aws("cloudformation").describe_stacks(StackName="lambdalet-test")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    env = json.loads((work / ".chalice/config.json").read_text())["stages"]["test"]["environment_variables"]
    assert env["LAMBDALET_K8S_API_URL"] == API and env["LAMBDALET_NODE_NAMES"] == "vk-a,vk-b"
    assert env["LAMBDALET_ECS_CLUSTER"] == "lambdalet-test" and env["LAMBDALET_ECS_LOG_GROUP"] == "/lambdalet/test/pods"
    assert env["LAMBDALET_K8S_TOKEN_SECRET"] == outputs["ServiceAccountTokenSecret"]
    assert env["LAMBDALET_ECS_SUBNETS"] == outputs["EcsSubnets"] and "LAMBDALET_FLY_APP" not in env
    policy = json.loads((work / ".chalice/policy-test.json").read_text())
    assert policy == iam.function_policy(outputs, region=REGION, account="123456789012")

    # chalice deploy: the functions with the stage's settings and the policy, the API, the rules
    functions = {f["FunctionName"]: f for f in aws("lambda").list_functions()["Functions"]}
    assert set(functions) == {"lambdalet-test", "lambdalet-test-reconcile", "lambdalet-test-heartbeat",
                              "lambdalet-test-on_machine_event", "lambdalet-test-start_bound",
                              "lambdalet-test-reconcile_node"}
    assert env["LAMBDALET_FUNCTION_PREFIX"] == "lambdalet-test"
    for function in functions.values():
        assert function["Environment"]["Variables"]["LAMBDALET_ECS_CLUSTER"] == "lambdalet-test"
    role = functions["lambdalet-test-reconcile"]["Role"].rsplit("/", 1)[1]
    [name] = aws("iam").list_role_policies(RoleName=role)["PolicyNames"]
    assert aws("iam").get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"] == policy
    [api] = aws("apigateway").get_rest_apis()["items"]
    paths = {r["path"] for r in aws("apigateway").get_resources(restApiId=api["id"])["items"]}
    assert {"/audit", "/admission/validate", "/admission/mutate"} <= paths
    rules = {r["Name"]: r for r in aws("events").list_rules()["Rules"]}
    schedules = sorted(n for n, r in rules.items() if r.get("ScheduleExpression") == "rate(1 minute)")
    assert schedules == ["lambdalet-test-heartbeat-event", "lambdalet-test-reconcile-event"]
    [ecs_rule] = [r for r in rules.values() if "EventPattern" in r]
    assert json.loads(ecs_rule["EventPattern"]) == {"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"]}
    [target] = aws("events").list_targets_by_rule(Rule=ecs_rule["Name"])["Targets"]
    assert target["Arn"] == functions["lambdalet-test-on_machine_event"]["FunctionArn"]

    # the overlay, and `kubectl apply -k` as the last thing said
    url = json.loads((work / ".chalice/deployed/test.json").read_text())
    [api_url] = [r["rest_api_url"] for r in url["resources"] if r["resource_type"] == "rest_api"]
    assert api["id"] in api_url
    assert out.rstrip().splitlines()[-1].strip() == "kubectl apply -k infra/k8s-overlays/test"
    if KUBECTL:
        rendered = render(work / "infra/k8s-overlays/test")
        hooks = [h for d in rendered if "webhooks" in d for h in d["webhooks"]]
        assert sorted(h["clientConfig"]["url"] for h in hooks) == sorted(
            [api_url + "admission/mutate", api_url + "admission/validate", api_url + "admission/validate"])
        names = [r["resourceNames"] for d in rendered if d["kind"] in ("ClusterRole", "Role")
                 for r in d["rules"] if "resourceNames" in r]
        assert names and all(n == ["vk-a", "vk-b"] for n in names)

    # a second run needs only the stage: the settings are the stage's own now
    assert deploy.main(["--stage", "test", "--project-dir", str(work)]) == 0
    again = json.loads((work / ".chalice/config.json").read_text())["stages"]["test"]["environment_variables"]
    assert again == env


def render(path) -> list[dict]:
    out = subprocess.run([KUBECTL, "kustomize", str(path)], check=True, capture_output=True, text=True, timeout=60)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_the_overlay_refuses_to_render_over_a_base_that_moved(tmp_path):
    work = project_copy(tmp_path)
    base = work / "infra/k8s"
    docs = [d for p in sorted(base.glob("*.yaml")) if p.name != "kustomization.yaml"
            for d in yaml.safe_load_all(p.read_text()) if d]
    target = work / "infra/k8s-overlays/x"
    target.mkdir(parents=True)
    kustomization = overlay.kustomization(docs, base="../../k8s", api_url="https://abc.example/api/", node_names=["n1"])
    (target / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    assert any(h["clientConfig"]["url"] == "https://abc.example/api/admission/mutate"
               for d in render(target) for h in d.get("webhooks", []))
    rbac = (base / "rbac.yaml").read_text()
    (base / "rbac.yaml").write_text(rbac.replace("resourceNames: [lambdalet-ecs]", "resourceNames: [moved]", 1))
    with pytest.raises(subprocess.CalledProcessError):
        render(target)


@pytest.mark.parametrize("argv,env,needs", [
    (["--stage", "x"], {}, "--k8s-api-url (LAMBDALET_K8S_API_URL)"),
    (["--stage", "x", "--k8s-api-url", API, "--backend", "fly"], {}, "--fly-app (LAMBDALET_FLY_APP)"),
    (["--stage", "x", "--k8s-api-url", API, "--subnets", "subnet-1"], {}, "--subnets and --security-groups together"),
    (["--stage", "x", "--k8s-api-url", API], {"AWS_DEFAULT_REGION": REGION}, "no AWS credentials"),
    (["--stage", "x", "--k8s-api-url", API], {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}, "no AWS region"),
])
def test_deploy_fails_early_naming_what_is_missing(tmp_path, monkeypatch, capsys, argv, env, needs):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
                "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    work = project_copy(tmp_path)
    before = (work / ".chalice/config.json").read_text()
    assert deploy.main([*argv, "--project-dir", str(work)]) == 2
    assert needs in capsys.readouterr().err
    assert (work / ".chalice/config.json").read_text() == before  # nothing written


def test_the_webhook_token_can_be_turned_off_for_managed_control_planes_and_stays_off():
    outputs = {"WebhookTokenSecret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:lambdalet/x/webhook-token-A"}
    off = deploy.with_outputs(deploy.stage_environment({}, {"k8s_api_url": API, "webhook_token": "off"}), outputs)
    assert off["LAMBDALET_WEBHOOK_TOKEN_SECRET"] == ""  # the app's "no check"
    again = deploy.with_outputs(deploy.stage_environment(off, {}), outputs)
    assert again["LAMBDALET_WEBHOOK_TOKEN_SECRET"] == ""
    on = deploy.with_outputs(deploy.stage_environment(again, {"webhook_token": "on"}), outputs)
    assert on["LAMBDALET_WEBHOOK_TOKEN_SECRET"] == outputs["WebhookTokenSecret"]
    first = deploy.with_outputs(deploy.stage_environment({}, {"k8s_api_url": API}), outputs)
    assert first["LAMBDALET_WEBHOOK_TOKEN_SECRET"] == outputs["WebhookTokenSecret"]


@pytest.mark.filterwarnings("ignore:Tried to parse AWS.EKS.AccessEntry")
def test_an_eks_deploy_makes_the_access_entry_once_the_role_exists_and_binds_its_group(moto_server, tmp_path, capsys):
    work = project_copy(tmp_path)  # stage eks: moto's state is the process's, other tests deploy stage test
    code = deploy.main(["--stage", "eks", "--k8s-api-url", API, "--eks-cluster", "prod-1", "--project-dir", str(work)])
    out = capsys.readouterr().out
    assert code == 0, out
    # first the stack without the entry (EKS refuses one for a missing role), then with it
    assert out.count("creating stack lambdalet-eks") == 1 and out.count("updating stack lambdalet-eks") == 1
    assert out.index("creating stack") < out.index("chalice deploy --stage eks") < out.index("updating stack")
    # the entries name exactly the roles chalice deploy made for the functions
    deployed = json.loads((work / ".chalice/deployed/eks.json").read_text())
    roles = {r["role_name"] for r in deployed["resources"] if r["resource_type"] == "iam_role"}
    assert roles == set(deploy.eks_roles((work / deploy.TEMPLATE).read_text(), "eks"))
    [stack] = aws("cloudformation").describe_stacks(StackName="lambdalet-eks")["Stacks"]
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert (params["EksClusterName"], params["EksAccessEntry"]) == ("prod-1", "true")
    assert "ServiceAccountTokenSecret" not in {o["OutputKey"] for o in stack["Outputs"]}
    env = json.loads((work / ".chalice/config.json").read_text())["stages"]["eks"]["environment_variables"]
    assert env["LAMBDALET_K8S_EKS_CLUSTER_NAME"] == "prod-1" and "LAMBDALET_K8S_TOKEN_SECRET" not in env
    if KUBECTL:
        rendered = render(work / "infra/k8s-overlays/eks")
        bindings = [d for d in rendered if d["kind"] in ("ClusterRoleBinding", "RoleBinding")]
        assert len(bindings) == 2 and all(
            {"kind": "Group", "name": overlay.EKS_GROUP, "apiGroup": "rbac.authorization.k8s.io"} in d["subjects"]
            for d in bindings)
        assert not [d for d in rendered if d["kind"] == "Secret"]  # no long-lived ServiceAccount token
    # a second run: the role exists, one update (or none), the entry stays
    assert deploy.main(["--stage", "eks", "--project-dir", str(work)]) == 0
    assert "creating stack" not in capsys.readouterr().out
    [stack] = aws("cloudformation").describe_stacks(StackName="lambdalet-eks")["Stacks"]
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}["EksAccessEntry"] == "true"


def test_switching_a_stage_to_eks_and_back_keeps_one_identity():
    current = {"LAMBDALET_K8S_API_URL": API, "LAMBDALET_K8S_TOKEN_SECRET": "", "LAMBDALET_K8S_CLIENT_CERT_SECRET": "c"}
    env = deploy.with_outputs(deploy.stage_environment(current, {"eks_cluster": "prod-1"}), {})  # an EKS stack's
    assert env["LAMBDALET_K8S_EKS_CLUSTER_NAME"] == "prod-1"
    assert {"LAMBDALET_K8S_TOKEN_SECRET", "LAMBDALET_K8S_CLIENT_CERT_SECRET"}.isdisjoint(env)
    assert deploy.stage_environment(env, {})["LAMBDALET_K8S_EKS_CLUSTER_NAME"] == "prod-1"  # kept on later runs
    outputs = {"ServiceAccountTokenSecret": "arn:...:service-account-token", "NodeCertificateSecret": "arn:...:cert"}
    back = deploy.with_outputs(deploy.stage_environment(env, {"identity": "service-account"}), outputs)
    assert "LAMBDALET_K8S_EKS_CLUSTER_NAME" not in back and back["LAMBDALET_K8S_TOKEN_SECRET"] == "arn:...:service-account-token"
    assert "LAMBDALET_K8S_CLIENT_CERT_SECRET" not in back
    assert deploy.missing(deploy.stage_environment({}, {"k8s_api_url": API}), {"eks_cluster": "x", "identity": "node"}) \
        == ["--eks-cluster or --identity, not both (the EKS role is an identity of its own)"]
