"""Cold start (issue 12 goal 1): a fresh process answering one admission review through
the app's entry point, its bearer token checked against Secrets Manager (a moto server),
loads only what that path needs: not boto3 (nor s3transfer), not the kubernetes client,
not pydantic-settings, not powertools (nothing to count when all went well)."""

import json
import logging
import os
import subprocess
import sys

import boto3
import pytest
from chalice.config import Config
from chalice.local import LocalGateway
from moto.server import ThreadedMotoServer

from tests.world.stack import REPO

TOKEN = "cold-path-token-5f1e"

CHILD = """import json, sys
import app
answer = app.app(json.loads(sys.stdin.read()), None)
review = json.loads(answer["body"])
assert answer["statusCode"] == 200 and review["response"]["allowed"] is True, answer
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


@pytest.fixture
def secrets_manager():
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=url, aws_access_key_id="k",
                 aws_secret_access_key="s").create_secret(Name="webhook", SecretString=TOKEN)
    yield url
    server.stop()


def test_an_admission_review_loads_only_what_it_needs(secrets_manager):
    import app

    review = (REPO / "tests/fixtures/kube-apiserver-1.36/admission-pod-create.json").read_bytes()
    event = LocalGateway(app.app, Config(chalice_stage="local"))._generate_lambda_event(
        "POST", "/admission/validate", {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}",
                                        "Content-Length": str(len(review))}, review)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDALET_", "AWS_"))}
    env.update(LAMBDALET_K8S_API_URL="https://k8s.example:6443", LAMBDALET_K8S_TOKEN_SECRET="k8s",
               LAMBDALET_NODE_NAMES="vk", LAMBDALET_ECS_CLUSTER="c", LAMBDALET_ECS_SUBNETS="subnet-1",
               LAMBDALET_ECS_SECURITY_GROUPS="sg-1", LAMBDALET_WEBHOOK_TOKEN_SECRET="webhook",
               AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s",
               AWS_ENDPOINT_URL=secrets_manager)
    out = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps({**event, "body": event["body"].decode()}),
                         cwd=REPO, env=env, capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert {"app", "chalice", "chalicelib", "pydantic", "botocore"} <= loaded  # the path did run
    assert not loaded & {"boto3", "s3transfer", "kubernetes", "pydantic_settings", "aws_lambda_powertools"}
