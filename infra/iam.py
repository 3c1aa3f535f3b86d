"""The IAM policy of lambdalet's functions for one stage, from its stack's outputs (pure).

Each backend brings its own statements: an ECS-only deployment holds no Fly or
DynamoDB permission, a Fly-only one no ECS or PassRole permission. Resources are
the stack's own (infra/aws/lambdalet.yaml), never a wildcard where the API has
resource-level permissions. tests/test_iam_policy.py checks every AWS call the
code makes against the policy rendered from a stack created in moto: a new call
needs its statement here (resources from the outputs) and its resource in that
test's `resource_of`.
"""

from __future__ import annotations

from collections.abc import Mapping


def backends_of(outputs: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(b for b in outputs["Backends"].split(",") if b)


def function_policy(outputs: Mapping[str, str], *, region: str, account: str, partition: str = "aws") -> dict:
    stage = outputs["Stage"]
    backends = backends_of(outputs)
    arn = f"arn:{partition}:{{service}}:{region}:{account}:{{resource}}"
    statements: list[dict] = [
        {
            # Chalice names the functions lambdalet-<stage> (the API) and lambdalet-<stage>-<name>.
            "Sid": "OwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [arn.format(service="logs", resource=f"log-group:/aws/lambda/lambdalet-{stage}{suffix}")
                         for suffix in ("", ":*", "-*")],
        },
        {
            # Slow work handed to an asynchronous invocation (World.defer): only these two.
            "Sid": "HandOffToOwnFunctions",
            "Effect": "Allow",
            "Action": ["lambda:InvokeFunction"],
            "Resource": [arn.format(service="lambda", resource=f"function:lambdalet-{stage}-{name}")
                         for name in ("start_bound", "reconcile_node")],
        },
        {
            # The EKS mode has neither identity secret: its tokens are minted from the role itself,
            # which needs no permission (a presigned sts:GetCallerIdentity, always allowed).
            "Sid": "KubernetesTokens",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            # The stage's Kubernetes identity (ServiceAccount token or node certificate) and webhook token.
            "Resource": [outputs[k] for k in ("ServiceAccountTokenSecret", "NodeCertificateSecret", "WebhookTokenSecret")
                         if k in outputs],
        },
    ]
    if "ecs" in backends:
        statements += [
            {
                "Sid": "TasksOfOurCluster",
                "Effect": "Allow",
                "Action": ["ecs:RunTask", "ecs:StopTask", "ecs:DescribeTasks", "ecs:ListTasks", "ecs:TagResource"],
                "Resource": "*",
                "Condition": {"ArnEquals": {"ecs:cluster": outputs["EcsClusterArn"]}},
            },
            {
                # Task definitions are content-addressed and shared: no cluster to scope them by.
                "Sid": "TaskDefinitions",
                "Effect": "Allow",
                "Action": ["ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition"],
                "Resource": "*",
            },
            {
                # kubectl logs (chalicelib/machines/ecs/logs.py): the pods' output, nothing else.
                "Sid": "PodOutput",
                "Effect": "Allow",
                "Action": ["logs:GetLogEvents", "logs:DescribeLogStreams"],
                "Resource": [arn.format(service="logs", resource=f"log-group:{outputs['PodLogGroup']}{suffix}")
                             for suffix in ("", ":*")],
            },
            {
                # kubectl top (ecs/insights.py): GetMetricData has no resource-level permissions.
                "Sid": "PodMetrics",
                "Effect": "Allow",
                "Action": ["cloudwatch:GetMetricData"],
                "Resource": "*",
            },
            {
                # Pod Secret values mirrored for ECS (chalicelib/machines/secret_store.py): only under the
                # stack's prefix, which the execution role reads and nothing else of lambdalet's uses.
                "Sid": "PodSecretMirrors",
                "Effect": "Allow",
                "Action": ["secretsmanager:CreateSecret", "secretsmanager:DescribeSecret", "secretsmanager:TagResource",
                           "secretsmanager:UntagResource", "secretsmanager:RestoreSecret",
                           "secretsmanager:DeleteSecret"],
                "Resource": arn.format(service="secretsmanager", resource=f"secret:{outputs['PodSecretsPrefix']}*"),
            },
            {
                # ListSecrets has no resource-level permission; the sweep filters by name prefix and tag.
                "Sid": "PodSecretMirrorsListing",
                "Effect": "Allow",
                "Action": ["secretsmanager:ListSecrets"],
                "Resource": "*",
            },
            {
                "Sid": "PassTaskRoles",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": f"arn:{partition}:iam::{account}:role/lambdalet-{stage}-task-*",
                "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            },
        ]
    if "fly" in backends:
        statements += [
            {
                "Sid": "FlyApiToken",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": outputs["FlyTokenSecret"],
            },
            {
                "Sid": "FlyCreateClaims",
                "Effect": "Allow",
                "Action": ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
                "Resource": outputs["FlyClaimsTableArn"],
            },
        ]
    return {"Version": "2012-10-17", "Statement": statements}
