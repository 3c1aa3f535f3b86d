"""`./dev deploy --stage NAME`: lambdalet onto AWS in one command.

1. checks what it needs before touching anything (AWS credentials and region, the
   cluster's API URL, the Fly app and region for Fly), naming what is missing;
2. creates or updates the CloudFormation stack `lambdalet-<stage>` (infra/aws/lambdalet.yaml);
3. writes the stage's settings into .chalice/config.json from the stack's outputs and the
   operator's flags, and the functions' IAM policy into .chalice/policy-<stage>.json
   (infra/iam.py: only the chosen backends' permissions);
4. runs `chalice deploy --stage <stage>`;
5. renders the cluster side as a kustomize overlay, infra/k8s-overlays/<stage>/, with the
   deployed API URL and the stage's node names, and prints `kubectl apply -k` last.

With --eks-cluster, the functions' own roles are their Kubernetes identity: the stack's EKS
access entries put them in the group lambdalet (made after step 4 on a first deploy: EKS
refuses an entry for a role that does not exist yet), the overlay binds the group, and no
ServiceAccount token is stored anywhere.

A second run needs only --stage: the flags default to what the stage already has.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

from infra import iam, overlay

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = Path("infra/aws/lambdalet.yaml")
BASE = Path("infra/k8s")
OVERLAYS = Path("infra/k8s-overlays")  # not inside the base: kustomize refuses the cycle

# stack output -> the function's setting it becomes
OUTPUT_SETTINGS = {
    "ServiceAccountTokenSecret": "LAMBDALET_K8S_TOKEN_SECRET",
    "NodeCertificateSecret": "LAMBDALET_K8S_CLIENT_CERT_SECRET",  # --identity node
    "WebhookTokenSecret": "LAMBDALET_WEBHOOK_TOKEN_SECRET",
    "EcsCluster": "LAMBDALET_ECS_CLUSTER",
    "EcsSubnets": "LAMBDALET_ECS_SUBNETS",
    "EcsSecurityGroups": "LAMBDALET_ECS_SECURITY_GROUPS",
    "EcsAssignPublicIp": "LAMBDALET_ECS_ASSIGN_PUBLIC_IP",
    "EcsExecutionRoleArn": "LAMBDALET_ECS_EXECUTION_ROLE_ARN",
    "EcsTaskRoleArn": "LAMBDALET_ECS_TASK_ROLE_ARN",
    "PodLogGroup": "LAMBDALET_ECS_LOG_GROUP",
    "PodSecretsPrefix": "LAMBDALET_ECS_SECRETS_PREFIX",  # the execution role reads the pods' Secrets there
    "FlyTokenSecret": "LAMBDALET_FLY_TOKEN_SECRET",
    "FlyClaimsTable": "LAMBDALET_FLY_CLAIMS_TABLE",
}
# flag -> the function's setting it sets
FLAG_SETTINGS = {
    "k8s_api_url": "LAMBDALET_K8S_API_URL",
    "nodes": "LAMBDALET_NODE_NAMES",
    "backend": "LAMBDALET_BACKEND",
    "fly_app": "LAMBDALET_FLY_APP",
    "fly_region": "LAMBDALET_FLY_REGION",
    "eks_cluster": "LAMBDALET_K8S_EKS_CLUSTER_NAME",
}
# flag -> the stack parameter it sets (unset: the stack keeps its previous value)
FLAG_PARAMETERS = {
    "cluster": "ClusterName",
    "subnets": "Subnets",
    "security_groups": "SecurityGroups",
    "assign_public_ip": "AssignPublicIp",
}


class DeployError(RuntimeError):
    """The deploy cannot go on; the message says what to give or fix."""


# -- pure: what to write ----------------------------------------------------------------------


def stack_name(stage: str) -> str:
    return f"lambdalet-{stage}"


def backends(env: Mapping[str, str]) -> str:
    """The stack's Backends parameter: the default backend and every node override's."""
    used = {env.get("LAMBDALET_BACKEND") or "ecs"}
    overrides = json.loads(env.get("LAMBDALET_NODE_OVERRIDES") or "{}")
    used |= {o["backend"] for o in overrides.values() if o.get("backend")}
    return ",".join(b for b in ("ecs", "fly") if b in used)


def stage_environment(current: Mapping[str, str], flags: Mapping[str, str | None]) -> dict[str, str]:
    """The operator's settings: the stage's current ones, overridden by the flags given."""
    env = dict(current)
    for flag, variable in FLAG_SETTINGS.items():
        if flags.get(flag):
            env[variable] = flags[flag]
    if flags.get("webhook_token") == "off":  # "" is the app's "no check"; kept on later runs
        env["LAMBDALET_WEBHOOK_TOKEN_SECRET"] = ""
    elif flags.get("webhook_token") == "on":
        env.pop("LAMBDALET_WEBHOOK_TOKEN_SECRET", None)
    if flags.get("identity") == "node":  # the certificate from ./dev node-identity instead of the SA token
        env["LAMBDALET_K8S_TOKEN_SECRET"] = ""
        env.setdefault("LAMBDALET_K8S_CLIENT_CERT_SECRET", "")  # the stack's NodeCertificateSecret
    elif flags.get("identity") == "service-account":
        env.pop("LAMBDALET_K8S_TOKEN_SECRET", None)
        env.pop("LAMBDALET_K8S_CLIENT_CERT_SECRET", None)
    if flags.get("identity"):  # another identity than the EKS role
        env.pop("LAMBDALET_K8S_EKS_CLUSTER_NAME", None)
    if env.get("LAMBDALET_K8S_EKS_CLUSTER_NAME"):  # the EKS mode: the role is the identity, no stored credential
        env.pop("LAMBDALET_K8S_TOKEN_SECRET", None)
        env.pop("LAMBDALET_K8S_CLIENT_CERT_SECRET", None)
    if flags.get("k8s_ca_bundle") is not None:
        env["LAMBDALET_K8S_CA_BUNDLE"] = flags["k8s_ca_bundle"]
    env.setdefault("LAMBDALET_K8S_CA_BUNDLE", "")
    env.setdefault("LAMBDALET_BACKEND", "ecs")
    env.setdefault("LAMBDALET_NODE_NAMES", f"lambdalet-{env['LAMBDALET_BACKEND']}")
    return env


def missing(env: Mapping[str, str], flags: Mapping[str, str | None]) -> list[str]:
    """What the operator must still give, as the flags to give it with."""
    wanted = ["k8s_api_url"] + (["fly_app", "fly_region"] if "fly" in backends(env) else [])
    gaps = [f"--{flag.replace('_', '-')} ({FLAG_SETTINGS[flag]})" for flag in wanted if not env.get(FLAG_SETTINGS[flag])]
    if node_identity(env) and len([n for n in env.get("LAMBDALET_NODE_NAMES", "").split(",") if n]) != 1:
        gaps.append("--nodes with one node name (a node identity is one node's: one node per stage)")
    if bool(flags.get("subnets")) != bool(flags.get("security_groups")):
        gaps.append("--subnets and --security-groups together (or neither: a VPC is created)")
    if flags.get("eks_cluster") and flags.get("identity"):
        gaps.append("--eks-cluster or --identity, not both (the EKS role is an identity of its own)")
    return gaps


def node_identity(env: Mapping[str, str]) -> bool:
    """The stage authenticates as its node (--identity node), not as the ServiceAccount."""
    return "LAMBDALET_K8S_CLIENT_CERT_SECRET" in env


def with_outputs(env: Mapping[str, str], outputs: Mapping[str, str]) -> dict[str, str]:
    """The stage's settings: the operator's, then what the stack created (one identity's secret)."""
    merged = dict(env)
    skip = {"ServiceAccountTokenSecret" if node_identity(env) else "NodeCertificateSecret"}
    if merged.get("LAMBDALET_WEBHOOK_TOKEN_SECRET") == "":
        skip.add("WebhookTokenSecret")
    for output, variable in OUTPUT_SETTINGS.items():
        if output in outputs and output not in skip:
            merged[variable] = outputs[output]
    if merged.get("LAMBDALET_K8S_EKS_CLUSTER_NAME"):  # one identity (Settings._one_identity)
        merged.pop("LAMBDALET_K8S_TOKEN_SECRET", None)
    return merged


def eks_roles(template: str, stage: str) -> dict[str, tuple[str, ...]]:
    """The role names the template's EKS access entries map, for ``stage``, with their groups (pure)."""
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, tag, node: loader.construct_scalar(node)
                                 if isinstance(node, yaml.ScalarNode) else None)  # CloudFormation's short tags
    resources = yaml.load(template, Loader=Loader)["Resources"]
    return {r["Properties"]["PrincipalArn"].rsplit(":role/", 1)[1].replace("${Stage}", stage):
            tuple(r["Properties"]["KubernetesGroups"])
            for r in resources.values() if r["Type"] == "AWS::EKS::AccessEntry"}


def stack_parameters(stage: str, env: Mapping[str, str], flags: Mapping[str, str | None],
                     previous: Mapping[str, str], *, role_exists: bool = True) -> list[dict]:
    """The flags given set their parameter; the others keep the value the stack has (`previous`,
    as DescribeStacks lists it: none is NoEcho, so the value itself is passed again), or take
    the template's default. The EKS cluster is the stage's setting; its access entry waits
    until the functions' role exists (``role_exists``)."""
    params = [{"ParameterKey": "Stage", "ParameterValue": stage},
              {"ParameterKey": "Backends", "ParameterValue": backends(env)},
              {"ParameterKey": "EksClusterName", "ParameterValue": env.get("LAMBDALET_K8S_EKS_CLUSTER_NAME", "")},
              {"ParameterKey": "EksAccessEntry", "ParameterValue": "true" if role_exists else "false"}]
    for flag, key in FLAG_PARAMETERS.items():
        if flags.get(flag) is not None:
            params.append({"ParameterKey": key, "ParameterValue": flags[flag]})
        elif key in previous:
            params.append({"ParameterKey": key, "ParameterValue": previous[key]})
    return params


def with_stage(config: dict, stage: str, env: Mapping[str, str]) -> dict:
    """config.json with this stage's settings (other stages and keys untouched)."""
    config = json.loads(json.dumps(config))
    entry = config.setdefault("stages", {}).setdefault(stage, {})
    entry.setdefault("api_gateway_stage", "api")
    # Chalice names the functions lambdalet-<stage>-<name>: where World.defer sends work.
    env = {"LAMBDALET_FUNCTION_PREFIX": f"lambdalet-{stage}", **env}
    entry["environment_variables"] = dict(sorted(env.items()))
    return config


# -- the steps (I/O) ---------------------------------------------------------------------------


def aws_session(region: str | None):
    import boto3
    import botocore.exceptions

    try:
        session = boto3.Session(region_name=region)
    except botocore.exceptions.ProfileNotFound as err:
        raise DeployError(f"AWS profile: {err}") from None
    if not session.region_name:
        raise DeployError("no AWS region: give --region or set AWS_REGION (or the profile's region)")
    if session.get_credentials() is None:
        raise DeployError("no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    return session


def apply_stack(cfn, name: str, template: str, parameters: list[dict], say) -> dict[str, str]:
    """Create or update the stack, wait, return its outputs; a failure names the failed resources."""
    from botocore.exceptions import ClientError, WaiterError

    exists = _stack(cfn, name) is not None
    kwargs = dict(StackName=name, TemplateBody=template, Parameters=parameters,
                  Capabilities=["CAPABILITY_NAMED_IAM"], Tags=[{"Key": "app", "Value": "lambdalet"}])
    try:
        if exists:
            say(f"updating stack {name} ...")
            cfn.update_stack(**kwargs)
            waiter = "stack_update_complete"
        else:
            say(f"creating stack {name} ...")
            cfn.create_stack(**kwargs)
            waiter = "stack_create_complete"
        cfn.get_waiter(waiter).wait(StackName=name, WaiterConfig={"Delay": 5, "MaxAttempts": 360})
    except ClientError as err:
        if "No updates are to be performed" not in str(err):
            raise DeployError(f"stack {name}: {err.response['Error']['Message']}") from None
        say(f"stack {name} is up to date")
    except WaiterError:
        raise DeployError(f"stack {name} failed: {_failures(cfn, name)}") from None
    stack = _stack(cfn, name)
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _stack(cfn, name: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return cfn.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as err:
        if "does not exist" in str(err):
            return None
        raise


def _failures(cfn, name: str) -> str:
    events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    failed = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}" for e in events
              if e["ResourceStatus"].endswith("_FAILED")]
    return "; ".join(failed) or "see the stack's events"


def chalice_deploy(project: Path, stage: str, region: str) -> str:
    """`chalice deploy` (in the stack's region), then the REST API's URL from .chalice/deployed/<stage>.json."""
    chalice = shutil.which("chalice", path=str(Path(sys.executable).parent)) or shutil.which("chalice")
    if chalice is None:
        raise DeployError("chalice is not installed (run through ./dev, which installs it)")
    env = {**os.environ, "AWS_DEFAULT_REGION": region, "AWS_REGION": region}
    result = subprocess.run([chalice, "deploy", "--stage", stage], cwd=project, env=env)
    if result.returncode:
        raise DeployError(f"chalice deploy --stage {stage} failed (exit {result.returncode})")
    deployed = json.loads((project / ".chalice" / "deployed" / f"{stage}.json").read_text())
    urls = [r["rest_api_url"] for r in deployed["resources"] if r.get("resource_type") == "rest_api"]
    if not urls:
        raise DeployError(f".chalice/deployed/{stage}.json has no REST API")
    return urls[0]


def _role_exists(session, role: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        session.client("iam").get_role(RoleName=role)
    except ClientError as err:
        if err.response["Error"]["Code"] == "NoSuchEntity":
            return False
        raise
    return True


def write_overlay(project: Path, stage: str, api_url: str, node_names: list[str], eks: bool = False) -> Path:
    base_docs = [doc for path in sorted((project / BASE).glob("*.yaml")) if path.name != "kustomization.yaml"
                 for doc in yaml.safe_load_all(path.read_text()) if doc]
    target = project / OVERLAYS / stage
    target.mkdir(parents=True, exist_ok=True)
    kustomization = overlay.kustomization(base_docs, base="../../k8s", api_url=api_url, node_names=node_names,
                                          eks=eks)
    header = f"# Generated by ./dev deploy --stage {stage}: the webhooks at {api_url}, the stage's nodes.\n"
    (target / "kustomization.yaml").write_text(header + yaml.safe_dump(kustomization, sort_keys=False))
    return target.relative_to(project)


def deploy(args: argparse.Namespace, say=print) -> Path:
    project = Path(args.project_dir).resolve()
    stage = args.stage
    flags = {k: getattr(args, k) for k in (*FLAG_SETTINGS, *FLAG_PARAMETERS, "webhook_token", "identity")}
    if args.k8s_ca_file:
        flags["k8s_ca_bundle"] = Path(args.k8s_ca_file).read_text()
    config_path = project / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    current = config.get("stages", {}).get(stage, {}).get("environment_variables", {})
    env = stage_environment(current, flags)
    gaps = missing(env, flags)
    if gaps:
        raise DeployError(f"stage {stage} needs: {'; '.join(gaps)}")
    session = aws_session(args.region)

    cfn = session.client("cloudformation")
    name = stack_name(stage)
    existing = _stack(cfn, name) or {}
    previous = {p["ParameterKey"]: p["ParameterValue"] for p in existing.get("Parameters", [])}
    eks = env.get("LAMBDALET_K8S_EKS_CLUSTER_NAME", "")
    template = (project / TEMPLATE).read_text()
    role_exists = not eks or all(_role_exists(session, role) for role in eks_roles(template, stage))
    parameters = stack_parameters(stage, env, flags, previous, role_exists=role_exists)
    outputs = apply_stack(cfn, name, template, parameters, say)

    account = session.client("sts").get_caller_identity()["Account"]
    policy = iam.function_policy(outputs, region=session.region_name, account=account,
                                 partition=session.get_partition_for_region(session.region_name))
    (project / ".chalice" / f"policy-{stage}.json").write_text(json.dumps(policy, indent=2) + "\n")
    env = with_outputs(env, outputs)
    config_path.write_text(json.dumps(with_stage(config, stage, env), indent=2) + "\n")
    say(f"wrote stage {stage} into .chalice/config.json and .chalice/policy-{stage}.json")

    say(f"chalice deploy --stage {stage} ...")
    api_url = chalice_deploy(project, stage, session.region_name)
    if not role_exists:  # the functions' roles exist now: their EKS access entries can be made
        parameters = stack_parameters(stage, env, flags, previous, role_exists=True)
        apply_stack(cfn, name, template, parameters, say)
    path = write_overlay(project, stage, api_url, env["LAMBDALET_NODE_NAMES"].split(","), eks=bool(eks))
    empty = _empty_secrets(session, outputs, env)
    say(f"\nlambdalet {stage} is deployed: {api_url}")
    if empty:
        say("Secrets still without a value (README, Deploying): " + ", ".join(empty))
    if node_identity(env) and outputs.get("NodeCertificateSecret") in empty:
        say(f"Mint the node's client certificate into it: ./dev node-identity --stage {stage}")
    say(f"Last step, on the cluster:\n  kubectl apply -k {path}")
    return path


def _empty_secrets(session, outputs: Mapping[str, str], env: Mapping[str, str]) -> list[str]:
    from botocore.exceptions import ClientError

    sm = session.client("secretsmanager")
    empty = []
    identity = "NodeCertificateSecret" if node_identity(env) else "ServiceAccountTokenSecret"
    for key in (identity, "FlyTokenSecret"):
        if key in outputs:
            try:
                if not sm.describe_secret(SecretId=outputs[key]).get("VersionIdsToStages"):
                    empty.append(outputs[key])
            except ClientError:
                pass  # only a hint: never fail a finished deploy for it
    return empty


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="./dev deploy", description=__doc__.split("\n\n")[0])
    p.add_argument("--stage", required=True, help="the Chalice stage (and the stack's suffix)")
    p.add_argument("--region", help="AWS region (default: AWS_REGION / the profile's)")
    p.add_argument("--k8s-api-url", help="the cluster's API server URL (LAMBDALET_K8S_API_URL)")
    p.add_argument("--k8s-ca-file", help="PEM file of the API server's CA (LAMBDALET_K8S_CA_BUNDLE)")
    p.add_argument("--nodes", help="comma-separated virtual node names (default lambdalet-<backend>)")
    p.add_argument("--backend", choices=["ecs", "fly"], help="where pods run (default ecs)")
    p.add_argument("--fly-app", help="the Fly app machines are created in (Fly)")
    p.add_argument("--fly-region", help="the Fly region of new machines (Fly)")
    p.add_argument("--cluster", help="an existing ECS cluster (default: the stack creates lambdalet-<stage>)")
    p.add_argument("--subnets", help="existing subnet ids, comma-separated (default: the stack creates a VPC)")
    p.add_argument("--security-groups", help="existing security group ids, comma-separated (with --subnets)")
    p.add_argument("--assign-public-ip", choices=["true", "false"], help="public IPs for tasks in your subnets")
    p.add_argument("--eks-cluster", help="an EKS cluster: authenticate with the functions' IAM role through an "
                   "access entry (LAMBDALET_K8S_EKS_CLUSTER_NAME) instead of a stored ServiceAccount token")
    p.add_argument("--webhook-token", choices=["on", "off"],
                   help="off where the apiserver cannot present one (managed control planes: EKS, GKE, AKS)")
    p.add_argument("--identity", choices=["service-account", "node"],
                   help="how the functions authenticate to the cluster: the ServiceAccount's token (default), or "
                        "the node's own client certificate (one node per stage; then ./dev node-identity)")
    p.add_argument("--project-dir", default=str(REPO), help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        deploy(args)
    except DeployError as err:
        print(f"deploy: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
