"""`./dev lint`: the infrastructure code checked as infrastructure code is.

cfn-lint and checkov (from .venv-lint, requirements-lint.txt) run on the stack's template
(infra/aws/lambdalet.yaml) and on what `chalice package` makes of the app (the functions,
API, schedules, event rule and their role, as a SAM template). The package is made from a
throwaway copy of the project with a stage `lint` written as ./dev deploy writes one (both
backends, example outputs), and an empty requirements.txt: the template does not depend on
the bundled libraries, and bundling them would download them.

Accepted checkov findings are skipped where they are, each with its reason (inline in the
template; infra/aws/checkov-chalice.yaml for the generated package) and listed in
infra/aws/ACCEPTED_FINDINGS.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from infra import deploy, iam

REPO = deploy.REPO
LINT_BIN = REPO / ".venv-lint" / "bin"
ACCOUNT, REGION = "123456789012", "us-east-1"
EXAMPLE_OUTPUTS = {
    "Stage": "lint",
    "Backends": "ecs,fly",
    "ServiceAccountTokenSecret": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:lambdalet/lint/service-account-token-AbCdEf",
    "NodeCertificateSecret": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:lambdalet/lint/node-client-certificate-AbCdEf",
    "WebhookTokenSecret": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:lambdalet/lint/webhook-token-AbCdEf",
    "EcsCluster": "lambdalet-lint",
    "EcsClusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/lambdalet-lint",
    "EcsSubnets": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
    "EcsSecurityGroups": "sg-0123456789abcdef0",
    "EcsAssignPublicIp": "true",
    "EcsExecutionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/lambdalet-lint-task-execution",
    "EcsTaskRoleArn": f"arn:aws:iam::{ACCOUNT}:role/lambdalet-lint-task-default",
    "PodLogGroup": "/lambdalet/lint/pods",
    "PodLogGroupArn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/lambdalet/lint/pods",
    "PodSecretsPrefix": "lambdalet/lint/pod-secrets/",
    "FlyTokenSecret": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:lambdalet/lint/fly-api-token-AbCdEf",
    "FlyClaimsTable": "lambdalet-lint-claims",
    "FlyClaimsTableArn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/lambdalet-lint-claims",
}


def chalice_package(out: Path) -> Path:
    """`chalice package` of a copy of the project with a `lint` stage; returns the SAM template."""
    work = Path(tempfile.mkdtemp(prefix="lambdalet-package-"))
    try:
        for name in ("app.py", "chalicelib", ".chalice/config.json"):
            target = work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, target)
        (work / "requirements.txt").write_text("")
        env = deploy.with_outputs(deploy.stage_environment({}, {
            "k8s_api_url": "https://kubernetes.example:6443", "fly_app": "lambdalet-pods", "fly_region": "ams",
            "nodes": "lambdalet-ecs,lambdalet-fly"}), EXAMPLE_OUTPUTS)
        env["LAMBDALET_NODE_OVERRIDES"] = json.dumps({"lambdalet-fly": {"backend": "fly"}})
        config = json.loads((work / ".chalice/config.json").read_text())
        (work / ".chalice/config.json").write_text(json.dumps(deploy.with_stage(config, "lint", env)))
        policy = iam.function_policy(EXAMPLE_OUTPUTS, region=REGION, account=ACCOUNT)
        (work / ".chalice/policy-lint.json").write_text(json.dumps(policy))
        chalice = Path(sys.executable).parent / "chalice"
        # chalice package names the region in ARNs: the example's, whatever the caller's setup
        env = {**os.environ, "AWS_DEFAULT_REGION": REGION}
        subprocess.run([str(chalice), "package", "--stage", "lint", str(out)], cwd=work, env=env, check=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out / "sam.json"


def main() -> int:
    template = REPO / "infra" / "aws" / "lambdalet.yaml"
    with tempfile.TemporaryDirectory(prefix="lambdalet-lint-") as tmp:
        sam = chalice_package(Path(tmp) / "package")
        checkov = ["checkov", "--quiet", "--compact", "--skip-download", "--framework", "cloudformation", "-f"]
        runs = {
            "cfn-lint infra/aws/lambdalet.yaml": ["cfn-lint", str(template)],
            "cfn-lint chalice package": ["cfn-lint", str(sam)],
            "checkov infra/aws/lambdalet.yaml": [*checkov, str(template)],
            "checkov chalice package": [*checkov, str(sam),
                                        "--config-file", str(REPO / "infra" / "aws" / "checkov-chalice.yaml")],
        }
        failed = []
        for label, run in runs.items():
            print(f"lint: {label}", flush=True)
            if subprocess.run([str(LINT_BIN / run[0]), *run[1:]], cwd=REPO).returncode:
                failed.append(label)
    if failed:
        print("lint: failed:", "; ".join(failed), file=sys.stderr)
        return 1
    print("lint: cfn-lint and checkov pass on infra/aws/lambdalet.yaml and on chalice package's template")
    return 0


if __name__ == "__main__":
    sys.exit(main())
