"""The stack of infra/aws/lambdalet.yaml, created in moto's CloudFormation (inside an active
mock_aws or against a moto server): its outputs, and the IAM policy rendered from them."""

from __future__ import annotations

from fnmatch import fnmatch

import boto3

from infra import iam
from tests.world import moto_gaps  # noqa: F401  (what moto lacks for the stack and chalice deploy)
from tests.world.stack import ACCOUNT, REGION, REPO

TEMPLATE = (REPO / "infra" / "aws" / "lambdalet.yaml").read_text()


def create(backends: str, stage: str = "dev", **parameters: str) -> dict[str, str]:
    """Create the stack (in the active moto) and return its outputs."""
    cfn = boto3.client("cloudformation", region_name=REGION)
    params = {"Stage": stage, "Backends": backends, **parameters}
    cfn.create_stack(StackName=f"lambdalet-{stage}", TemplateBody=TEMPLATE,
                     Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
                     Capabilities=["CAPABILITY_NAMED_IAM"])
    [stack] = cfn.describe_stacks(StackName=f"lambdalet-{stage}")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def function_policy(backends: str) -> tuple[dict, dict[str, str]]:
    """The functions' policy for a stack of these backends (created in a moto of its own)."""
    from moto import mock_aws

    with mock_aws():
        outputs = create(backends)
    return iam.function_policy(outputs, region=REGION, account=ACCOUNT), outputs


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def allows(policy: dict, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """IAM's answer for an identity policy with Allow statements only: some statement matches the
    action (wildcards as IAM's, case-insensitive), the resource, and each condition key it names
    (ArnEquals/ArnLike/StringEquals; a key missing from the request's context does not match)."""
    context = context or {}
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        if not any(fnmatch(action.lower(), a.lower()) for a in _listed(statement["Action"])):
            continue
        if not any(fnmatch(resource, r) for r in _listed(statement["Resource"])):
            continue
        conditions = statement.get("Condition", {})
        if all(key in context and any(fnmatch(context[key], v) if op in ("ArnLike", "StringLike")
                                      else context[key] == v for v in _listed(value))
               for op, pairs in conditions.items() for key, value in pairs.items()):
            return True
    return False
