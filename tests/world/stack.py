"""The whole test world in one object: Kubernetes simulator + moto + the Fargate
data plane + lambdalet's Chalice app, wired as in production.

The app is driven only through its real entry points (chalice.test.Client):
the audit webhook over the app's HTTP route, the schedule and the ECS event
handler as Lambda invocations. Its settings come from the environment, like in
Lambda, and point at the simulator and moto. One manual clock drives the
simulator, the data plane and the app, so time-dependent behaviour (back-off,
grace periods) is deterministic; ``advance()`` moves it.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from contextlib import ExitStack
from pathlib import Path

import boto3
import yaml
from chalice.test import Client
from kubernetes.client import CoreV1Api

from infra import overlay
from tests.world.fargate_plane import Clock, FargatePlane, Limits, make_network
from tests.world.kube_sim import KubeSim

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT = "123456789012"
CLUSTER = "lambdalet"
NODE = "lambdalet-ecs"  # the name infra/k8s/rbac.yaml grants
WEBHOOK_URL_PLACEHOLDER = "https://LAMBDALET_API_HOST/api"  # infra/k8s/webhooks.yaml
OPT_IN = {"lambdalet.io/enabled": "true"}  # the label that puts pods (and namespaces) in the webhooks' scope
SA_TOKEN = "sa-token-5f0c2e9a7b41"
SA_USER = "system:serviceaccount:lambdalet:lambdalet"
TOKEN_SECRET = "lambdalet/service-account-token"
WEBHOOK_TOKEN = "webhook-token-91d4c7e2aa60"  # what the apiserver's webhook kubeconfigs present
WEBHOOK_TOKEN_SECRET = "lambdalet/webhook-token"
TRANSCRIPTS: list[str] = []  # one per stopped Stack (see Stack._keep_transcript)
WEBHOOK_HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {WEBHOOK_TOKEN}"}
FLY_APP = "lambdalet"
FLY_REGION = "iad"
FLY_TOKEN = "fly-token-c3a8e61f0d57"
FLY_TOKEN_SECRET = "lambdalet/fly-api-token"
FLY_CLAIMS_TABLE = "lambdalet-claims"
# A value of a pod's Secret (workload tests: env and secret volumes); lambdalet hands it
# only to the cloud's secret store (ECS) or the machine's own config (Fly).
POD_SECRET = "pod-db-password-7d41c09e"
# Every secret value the test world hands lambdalet (distinct from the secrets' names):
# none may show in logs, Events or answers (tests/conftest.py).
SECRET_VALUES = (SA_TOKEN, WEBHOOK_TOKEN, FLY_TOKEN, POD_SECRET)
# The same for values made while the world runs: the EKS mode's role credentials and the tokens lambdalet presented.
RUNTIME_SECRETS: list[str] = []
NODE_CERT_SECRET = "lambdalet/node-client-certificate"  # Stack(node_identity=True): minted by infra/node_identity.py
LOG_GROUP = "/lambdalet/dev/pods"  # LAMBDALET_ECS_LOG_GROUP, as infra/aws/lambdalet.yaml names it
EXECUTION_ROLE = f"arn:aws:iam::{ACCOUNT}:role/lambdalet-dev-task-execution"  # awslogs, pods' Secrets
METRICS_SERVER = "metrics-server"  # the CN of metrics-server's kubelet client certificate
# LAMBDALET_KUBELET_CLIENTS: the apiserver's kubelet client everywhere, metrics-server its two paths
KUBELET_CLIENTS = {"kube-apiserver-kubelet-client": ["*"], METRICS_SERVER: ["stats", "metrics"]}
POD_SECRETS_PREFIX = "lambdalet/dev/pod-secrets/"
# The EKS mode (Stack(eks=True)): the role lambdalet runs as, as Chalice names a function's role
# (<app>-<stage>-<function>; every function of the world runs in this one process, as reconcile),
# the cluster it mints tokens for, and the group the access entries of infra/aws/lambdalet.yaml
# give the functions' roles (infra/overlay.py binds it to lambdalet's roles).
FUNCTIONS_ROLE = f"arn:aws:iam::{ACCOUNT}:role/lambdalet-dev-reconcile"
EKS_CLUSTER = "lambdalet-test"
EKS_GROUP = overlay.EKS_GROUP  # "lambdalet"


def rbac_rules(path: Path = REPO / "infra" / "k8s" / "rbac.yaml", nodes: tuple[str, ...] = (NODE,)) -> list[dict]:
    """The (Cluster)Role rules of our manifest, in the simulator's rule format.
    ``nodes``: the node names, as an operator's overlay lists them in resourceNames."""
    rules = []
    for doc in yaml.safe_load_all(path.read_text()):
        if doc["kind"] not in ("ClusterRole", "Role"):
            continue
        scope = {"namespaces": [doc["metadata"]["namespace"]]} if doc["kind"] == "Role" else {}
        for rule in doc["rules"]:
            if rule.get("resourceNames") == [NODE]:
                rule = {**rule, "resourceNames": list(nodes)}
            rules.append({**rule, **scope})
    return rules


def lambda_timeout(function: str, stage: str = "dev") -> int:
    """The function's Lambda timeout (seconds) as .chalice/config.json deploys it."""
    from chalice.config import Config

    config = json.loads((REPO / ".chalice" / "config.json").read_text())
    return Config(chalice_stage=stage, function_name=function, config_from_disk=config).lambda_timeout


def aws_env(endpoint_url: str | None = None) -> dict[str, str]:
    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
    }
    if endpoint_url:
        env["AWS_ENDPOINT_URL"] = endpoint_url
    return env


class Stack:
    """Start with ``with Stack() as s:``; see the module docstring."""

    def __init__(self, *, nodes: tuple[str, ...] = (NODE,), moto_endpoint: str | None = None,
                 clock=None, audit: dict | None = None, connect_audit: bool = True,
                 anonymous: bool = False, backend: str = "ecs", fly_fallback_regions: tuple[str, ...] = (),
                 admission: bool = True, node_overrides: dict | None = None, audit_scheme: str = "https",
                 async_invoke: bool = False, eks: bool = False, node_identity: bool = False):
        assert backend in ("ecs", "fly"), backend
        assert not (eks and moto_endpoint), "the EKS mode's STS is moto in-process (tests/world/moto_sts.py)"
        self.eks = eks  # True: lambdalet mints EKS tokens from its role; the simulator verifies them (eks_auth.py)
        # True: the simulator serves https with the cluster CA, and lambdalet authenticates as
        # system:node:<node> with a client certificate minted as an operator does (./dev node-identity)
        assert not (node_identity and len(nodes) != 1), "a node identity is one node's"
        self.node_identity = node_identity
        self._ca = None
        self.node_overrides = node_overrides or {}  # LAMBDALET_NODE_OVERRIDES: nodes on other backends
        self.backend = backend  # "fly": the Fly fake instead of the Fargate plane, no EventBridge
        self.fly_fallback_regions = fly_fallback_regions
        self.nodes = nodes
        self.clock = clock or Clock()
        self.moto_endpoint = moto_endpoint  # None: moto in-process (mock_aws)
        self.audit_options = audit or {}
        self.audit_scheme = audit_scheme  # "http": the template's URL rewritten to plain http (the token is dropped)
        self._connect_audit = connect_audit
        self._connect_admission = admission  # infra/k8s/webhooks.yaml registered, its URL served by the app
        self.anonymous = anonymous  # the sandbox allows it: kubectl sends no token over plain http
        # True: World.defer queues asynchronous invocations (as Lambda's Event invoke does);
        # run_deferred() (and settle()) invoke them through the app's lambda functions.
        self.async_invoke = async_invoke
        self.deferred: list[tuple[str, dict]] = []
        self._exit = ExitStack()
        self.transcript: list[str] = []  # the app's answers, then Events and pods (_keep_transcript)
        self._saved_env: dict[str, str | None] = {}

    # -- life cycle ----------------------------------------------------------
    def __enter__(self) -> "Stack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        from aws_lambda_powertools.utilities.parameters import base

        base.DEFAULT_PROVIDERS.clear()  # powertools keeps a client per process: it may point at an old moto
        self._setenv(aws_env(self.moto_endpoint))
        if self.moto_endpoint is None:
            from moto import mock_aws

            self._exit.enter_context(mock_aws())
        self.sim = self._exit.enter_context(KubeSim(clock=self.clock, pki=self.cluster_ca if self.node_identity else None))
        # lambdalet gets exactly the rights infra/k8s/rbac.yaml grants it, and
        # nobody gets in without a token, so a missing or unscoped call fails here.
        self.sim.add_token(SA_TOKEN, SA_USER, ["system:serviceaccounts"], rules=rbac_rules(nodes=self.nodes))
        self.sim.api.allow_anonymous = self.anonymous
        if self.eks:
            self._start_eks()
        self.core = CoreV1Api(self.sim.api_client())

        boto3.client("secretsmanager", region_name=REGION).create_secret(Name=TOKEN_SECRET, SecretString=SA_TOKEN)
        boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name=WEBHOOK_TOKEN_SECRET, SecretString=WEBHOOK_TOKEN)
        if self.node_identity:
            self._mint_node_certificate()
        self._setenv({
            "LAMBDALET_K8S_API_URL": self.sim.url,
            "LAMBDALET_K8S_CA_BUNDLE": self.sim.ca_pem,
            "LAMBDALET_K8S_TOKEN_SECRET": "" if self.eks or self.node_identity else TOKEN_SECRET,
            "LAMBDALET_K8S_CLIENT_CERT_SECRET": NODE_CERT_SECRET if self.node_identity else "",
            "LAMBDALET_WEBHOOK_TOKEN_SECRET": "" if self.anonymous else WEBHOOK_TOKEN_SECRET,
            "LAMBDALET_NODE_NAMES": ",".join(self.nodes),
            "LAMBDALET_BACKEND": self.backend,
            "LAMBDALET_NODE_OVERRIDES": json.dumps(self.node_overrides),
            "POWERTOOLS_METRICS_DISABLED": "true",
        })
        backends = {self.backend} | {o.get("backend", self.backend) for o in self.node_overrides.values()}
        if "fly" in backends:
            self._start_fly()
        if "ecs" in backends:
            network = make_network(boto3.client("ec2", region_name=REGION))
            boto3.client("ecs", region_name=REGION).create_cluster(clusterName=CLUSTER)
            # Without AWS's rate limits: the stack's clock only moves between
            # rounds, while the SDK's retries wait real time. Rates are tested in
            # test_fargate_plane/test_ecs_backend; ``plane.set_limits(Limits())`` turns them on.
            self.plane = FargatePlane(account_id=ACCOUNT, region=REGION, cluster=CLUSTER, clock=self.clock,
                                      limits=Limits.unlimited())
            self._exit.callback(self.plane.close)
            boto3.client("logs", region_name=REGION).create_log_group(logGroupName=LOG_GROUP)
            self._setenv({
                "LAMBDALET_ECS_LOG_GROUP": LOG_GROUP,
                "LAMBDALET_ECS_EXECUTION_ROLE_ARN": EXECUTION_ROLE,
                "LAMBDALET_ECS_CLUSTER": CLUSTER,
                "LAMBDALET_ECS_SUBNETS": ",".join(network["subnets"]),
                "LAMBDALET_ECS_SECURITY_GROUPS": ",".join(network["security_groups"]),
                "LAMBDALET_ECS_SECRETS_PREFIX": POD_SECRETS_PREFIX,  # the execution role resolves pods' Secrets there
            })
        from chalicelib import wiring

        import app as lambdalet

        self._start_kubelet_endpoint(lambdalet.app)
        wiring.reset()
        self.app = lambdalet.app
        self.client = self._exit.enter_context(Client(self.app, stage_name="local", project_dir=str(REPO)))
        wiring.world().clock = self.clock
        if self.async_invoke:
            wiring.world().defer = lambda function, payload: self.deferred.append((function, payload))
        for backend in wiring.world().backends.values():  # the pod secret mirrors' grace runs on the world's clock too
            if getattr(backend, "secrets", None) is not None:
                backend.secrets.clock = lambda: self.clock().timestamp()
            if getattr(backend, "claims", None) is not None:  # Fly's create-claim leases too
                backend.claims.clock = lambda: self.clock().timestamp()
        self.audit_answers: list[int] = []
        if self._connect_audit:
            self.connect_audit(self.deliver_audit, kubeconfig=audit_kubeconfig(self.audit_scheme))
        self.admission_answers: list[int] = []
        self.admission_down = False  # True: the webhook URL refuses connections (a lambdalet outage)
        if self._connect_admission:
            self.connect_admission()

    def _start_eks(self) -> None:
        """As on EKS: the functions run with their role's session credentials (Lambda puts them in
        the environment), the cluster's authenticator asks STS (moto) who signed a token, and the
        role's access entry names its group, bound to the rules of infra/k8s/rbac.yaml."""
        from tests.world.kube_sim.eks_auth import AccessEntry, EksAuthenticator
        from tests.world.moto_sts import get_caller_identity

        boto3.client("iam", region_name=REGION).create_role(
            RoleName=FUNCTIONS_ROLE.rsplit("/", 1)[1], AssumeRolePolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                        "Principal": {"Service": "lambda.amazonaws.com"}}]}))
        # Lambda names the role session after the function
        creds = boto3.client("sts", region_name=REGION).assume_role(
            RoleArn=FUNCTIONS_ROLE, RoleSessionName="lambdalet-dev-reconcile")["Credentials"]
        self._setenv({"AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
                      "AWS_SESSION_TOKEN": creds["SessionToken"], "LAMBDALET_K8S_EKS_CLUSTER_NAME": EKS_CLUSTER})
        self.eks_auth = EksAuthenticator(EKS_CLUSTER, get_caller_identity, accepted=RUNTIME_SECRETS)
        RUNTIME_SECRETS.extend((creds["SecretAccessKey"], creds["SessionToken"]))
        from infra.deploy import eks_roles

        for role, groups in eks_roles((REPO / "infra" / "aws" / "lambdalet.yaml").read_text(), "dev").items():
            self.eks_auth.add_entry(AccessEntry(f"arn:aws:iam::{ACCOUNT}:role/{role}", groups))
        assert FUNCTIONS_ROLE in self.eks_auth.entries, "the template maps no such role"
        self.sim.enable_eks(self.eks_auth)
        self.sim.bind_group(EKS_GROUP, rbac_rules(nodes=self.nodes))

    @property
    def cluster_ca(self):
        """The throwaway cluster CA (tests/world/certs.py), made on first use: it signs the kubelet
        endpoint's certificates and, with node_identity, the simulator's serving certificate and the
        node's client certificate, as kubeadm's one CA does."""
        if self._ca is None:
            import shutil
            import tempfile

            from tests.world.certs import Authority

            pki_dir = tempfile.mkdtemp(prefix="lambdalet-pki-")
            self._exit.callback(shutil.rmtree, pki_dir, True)
            self._ca = Authority(Path(pki_dir))
        return self._ca

    def _mint_node_certificate(self) -> None:
        """What an operator does with ./dev node-identity: CSR, approval, the signer's certificate,
        certificate + key into Secrets Manager (the key joins the values the leak check looks for)."""
        from infra.node_identity import mint

        self.node_pem = mint(self.sim.api_client(), self.nodes[0], poll=0.02, say=lambda _: None)
        boto3.client("secretsmanager", region_name=REGION).create_secret(Name=NODE_CERT_SECRET,
                                                                        SecretString=self.node_pem)
        key_body = self.node_pem.split("PRIVATE KEY-----")[1].strip().splitlines()[0]
        RUNTIME_SECRETS.append(key_body)

    def _start_kubelet_endpoint(self, app) -> None:
        """The kubelet API as the apiserver reaches it: a throwaway cluster CA, the mTLS
        front (API Gateway's custom domain with a truststore) before the app's routes, the
        node advertising it, and the simulator holding the apiserver's kubelet client
        certificate (and metrics-server's)."""
        from chalice.cli.factory import CLIFactory

        from tests.world.certs import APISERVER_KUBELET_CLIENT
        from tests.world.kube_sim.kubelet_proxy import KubeletClient, MetricsServer
        from tests.world.kubelet_front import KubeletFront

        self.ca = self.cluster_ca
        server = self.ca.server("localhost")
        self.apiserver_client = self.ca.client(*APISERVER_KUBELET_CLIENT)
        self.metrics_client = self.ca.client(METRICS_SERVER)
        config = CLIFactory(str(REPO)).create_config_obj(chalice_stage_name="local")
        self.front = KubeletFront(app, config, (str(server.cert), str(server.key)), str(self.ca.pair.cert)).start()
        self._exit.callback(self.front.stop)
        self.sim.api.kubelet.client = KubeletClient(str(self.apiserver_client.cert), str(self.apiserver_client.key))
        self.sim.api.kubelet.metrics = MetricsServer(KubeletClient(str(self.metrics_client.cert),
                                                                   str(self.metrics_client.key)))
        self._setenv({"LAMBDALET_KUBELET_ENDPOINT": f"localhost:{self.front.port}",
                      "LAMBDALET_KUBELET_CLIENTS": json.dumps(KUBELET_CLIENTS),
                      "LAMBDALET_KUBELET_FOLLOW_SECONDS": "4"})

    def kubectl(self, *args: str, timeout: float = 60) -> "subprocess.CompletedProcess":
        """The real kubectl against the simulator, as its admin."""
        import subprocess
        import tempfile

        if not hasattr(self, "_kubeconfig"):
            directory = tempfile.mkdtemp(prefix="lambdalet-kubectl-")
            self._exit.callback(__import__("shutil").rmtree, directory, True)
            self._kubeconfig = self.sim.write_kubeconfig(str(Path(directory) / "kubeconfig"))
        return subprocess.run(["kubectl", "--kubeconfig", self._kubeconfig, *args],
                              capture_output=True, text=True, timeout=timeout)

    def _start_fly(self) -> None:
        """The Fly fake on loopback, its token in Secrets Manager, the claims table in DynamoDB."""
        from tests.world.fly_fake import FlyFake

        self.fly = self._exit.enter_context(FlyFake(apps={FLY_APP}, token=FLY_TOKEN, clock=self.clock,
                                                    default_region=FLY_REGION))
        boto3.client("secretsmanager", region_name=REGION).create_secret(Name=FLY_TOKEN_SECRET, SecretString=FLY_TOKEN)
        create_claims_table(boto3.client("dynamodb", region_name=REGION), FLY_CLAIMS_TABLE)
        self._setenv({
            "LAMBDALET_FLY_API_URL": self.fly.url,
            "LAMBDALET_FLY_PLATFORM_URL": self.fly.url,  # the fake serves the logs endpoint too
            "LAMBDALET_FLY_APP": FLY_APP,
            "LAMBDALET_FLY_REGION": FLY_REGION,
            "LAMBDALET_FLY_FALLBACK_REGIONS": ",".join(self.fly_fallback_regions),
            "LAMBDALET_FLY_TOKEN_SECRET": FLY_TOKEN_SECRET,
            "LAMBDALET_FLY_CLAIMS_TABLE": FLY_CLAIMS_TABLE,
        })

    def connect_admission(self, sink=None, path: Path = REPO / "infra" / "k8s" / "webhooks.yaml") -> None:
        """Register our webhook configurations in the simulator; their URL reaches the app's
        routes through ``sink(url, body, timeout)`` (default: in-process, ``deliver_admission``)."""
        for config in yaml.safe_load_all(path.read_text()):
            self.sim.add_webhook_configuration(config)
        self.sim.connect_webhook(WEBHOOK_URL_PLACEHOLDER, sink or self.deliver_admission)

    def connect_audit(self, sink, kubeconfig: dict | None = None) -> None:
        """Point the simulator's audit webhook at ``sink`` (a URL or a callable); with
        ``kubeconfig``, calls carry its credentials as kube-apiserver sends them."""
        self.audit = self.sim.add_audit_webhook(sink, kubeconfig=kubeconfig, **self.audit_options)

    def stop(self) -> None:
        self._keep_transcript()
        self._exit.close()
        from chalicelib import wiring

        wiring.reset()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def _keep_transcript(self) -> None:
        """What users and operators could read, for tests/conftest.py's secret check:
        every Event and pod status the run left, and the app's answers (TRANSCRIPTS)."""
        if getattr(self, "sim", None) is None:
            return
        for path in ("/api/v1/events", "/api/v1/pods"):
            try:
                self.transcript.append(json.dumps(self.sim.request("GET", path).body))
            except Exception as err:  # noqa: BLE001 - a half-started stack has less to show
                self.transcript.append(f"{path}: {err}")
        TRANSCRIPTS.append("\n".join(self.transcript))

    def _record(self, what: str, body) -> None:
        self.transcript.append(f"{what}: {body if isinstance(body, str) else json.dumps(body, default=str)}")

    def _setenv(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    # -- the app's entry points ---------------------------------------------
    def deliver_audit(self, body: bytes, headers: dict[str, str]) -> int:
        """The audit webhook's HTTP call, into the app's /audit route, with the headers
        the simulated apiserver sends from the rendered audit kubeconfig."""
        response = self.client.http.post("/audit", headers=headers, body=body)
        self._record(f"/audit {response.status_code}", response.body.decode(errors="replace"))
        self.audit_answers.append(response.status_code)
        return response.status_code

    def deliver_admission(self, url: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        """An admission webhook's HTTP call, into the app's /admission/* routes (API Gateway stage /api)."""
        if self.admission_down:
            raise ConnectionRefusedError(url)
        path = urllib.parse.urlsplit(url).path.removeprefix("/api")
        response = self.client.http.post(path, headers=WEBHOOK_HEADERS, body=body)
        self._record(f"{path} {response.status_code}", response.body.decode(errors="replace"))
        self.admission_answers.append(response.status_code)
        return response.status_code, response.body

    def reconcile(self):
        from functools import partial
        from unittest import mock

        from chalice.local import LambdaContext

        event = self.client.events.generate_cw_event(
            source="aws.events", detail_type="Scheduled Event", detail={}, resources=[], region=REGION)
        # chalice.test gives every invocation 3 s; Lambda gives the configured timeout.
        context = partial(LambdaContext, max_runtime_ms=lambda_timeout("reconcile") * 1000)
        with mock.patch("chalice.test.LambdaContext", context):
            payload = self.client.lambda_.invoke("reconcile", event).payload
        self._record("reconcile", payload)
        return payload

    def heartbeat(self, sleep=None):
        """One invocation of the heartbeat function (about 50 s of renewals).

        Its waits go to ``sleep(seconds)``, by default advancing the simulated
        clock; pass one that also runs controllers to interleave them."""
        from functools import partial
        from unittest import mock

        from chalice.local import LambdaContext

        from chalicelib import wiring

        wiring.world().sleep = sleep or self.advance
        event = self.client.events.generate_cw_event(
            source="aws.events", detail_type="Scheduled Event", detail={}, resources=[], region=REGION)
        # chalice.test gives every invocation 3 s; Lambda gives the configured timeout.
        context = partial(LambdaContext, max_runtime_ms=lambda_timeout("heartbeat") * 1000)
        with mock.patch("chalice.test.LambdaContext", context):
            payload = self.client.lambda_.invoke("heartbeat", event).payload
        self._record("heartbeat", payload)
        return payload

    def run_deferred(self) -> list:
        """Lambda runs the queued asynchronous invocations (each through the app's function)."""
        done = []
        while self.deferred:
            function, payload = self.deferred.pop(0)
            done.append(self.client.lambda_.invoke(function, payload).payload)
        return done

    def machine_events(self, events: list[dict]) -> list:
        payloads = [self.client.lambda_.invoke("on_machine_event", event).payload for event in events]
        self._record("on_machine_event", payloads)
        return payloads

    # -- moving the world ----------------------------------------------------
    def cloud_step(self, deliver: bool = True) -> list[dict]:
        """One step of every Fargate task (or Fly machine); ECS state-change events go to the app."""
        if hasattr(self, "fly"):
            self.fly.step()  # Fly has no EventBridge: the reconcile reads the machines
        if not hasattr(self, "plane"):
            return []
        events = self.plane.step()
        if deliver:
            self.machine_events(events)
        return events

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def settle(self, *, rounds: int = 12, seconds: float = 1.0, reconcile: bool = False,
               deliver_events: bool = True) -> None:
        """Let the world run: schedule, audit, cloud steps (and the reconcile if asked)."""
        for _ in range(rounds):
            self.sim.scheduler.run_once()
            self.run_deferred()
            if self._connect_audit:
                self.audit.flush()
            self.cloud_step(deliver=deliver_events)
            if reconcile:
                self.reconcile()
            self.advance(seconds)

    # -- looking at it ------------------------------------------------------
    def create_pod(self, manifest: dict, namespace: str = "default") -> dict:
        return json.loads(self.core.create_namespaced_pod(namespace, manifest, _preload_content=False).data)

    def pod(self, name: str, namespace: str = "default") -> dict | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return json.loads(self.core.read_namespaced_pod(name, namespace, _preload_content=False).data)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def tasks(self, desired: str | None = None) -> list[dict]:
        ecs = boto3.client("ecs", region_name=REGION)
        statuses = [desired] if desired else ["RUNNING", "STOPPED"]
        arns = [a for s in statuses for a in ecs.list_tasks(cluster=CLUSTER, desiredStatus=s)["taskArns"]]
        if not arns:
            return []
        return ecs.describe_tasks(cluster=CLUSTER, tasks=arns, include=["TAGS"])["tasks"]

    def events_of(self, name: str, namespace: str = "default") -> list[dict]:
        found = self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}", _preload_content=False)
        return json.loads(found.data)["items"]


def audit_kubeconfig(scheme: str = "https", host: str = "lambdalet.example") -> dict:
    """infra/apiserver/audit-webhook.kubeconfig.tmpl rendered as the README says (envsubst);
    ``scheme="http"``: what an operator gets by pointing it at a plain-http URL."""
    text = (REPO / "infra" / "apiserver" / "audit-webhook.kubeconfig.tmpl").read_text()
    text = text.replace("${LAMBDALET_API_HOST}", host).replace("${LAMBDALET_WEBHOOK_TOKEN}", WEBHOOK_TOKEN)
    config = yaml.safe_load(text)
    if scheme != "https":
        cluster = config["clusters"][0]["cluster"]
        cluster["server"] = cluster["server"].replace("https://", f"{scheme}://", 1)
    return config


def create_claims_table(dynamodb, name: str = FLY_CLAIMS_TABLE) -> None:
    """The create-claims table as infra would make it: key ``pk``, TTL on ``ttl``."""
    dynamodb.create_table(TableName=name, AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
    dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})


def pod_sources(core, namespace: str = "default") -> None:
    """The ConfigMap ``app-config`` and the Secret ``app-secret`` (password = POD_SECRET) workload pods use."""
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "app-config"},
                                                  "data": {"MODE": "fast", "app.conf": "listen 8080\n"}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "app-secret"}, "stringData": {"password": POD_SECRET}})


def virtual_pod(name: str, *, command: list[str] | None = None, restart: str = "Always",
                image: str = "public.ecr.aws/docker/library/busybox:1.36", node: str = NODE, **extra) -> dict:
    """A pod that targets the virtual node the way a user would write it."""
    container = {"name": "main", "image": image}
    if command:
        container["command"] = command
    container.update(extra.pop("container", {}))
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, **extra.pop("metadata", {})},
        "spec": {
            "restartPolicy": restart,
            "nodeSelector": {"type": "virtual-kubelet", "kubernetes.io/hostname": node},
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [container],
            **extra,
        },
    }
