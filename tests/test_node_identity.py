"""lambdalet as a kubelet: under a node identity (system:node:<name> in system:nodes, a
client certificate from the kubernetes.io/kube-apiserver-client-kubelet signer, minted as
./dev node-identity does and read from Secrets Manager through the settings, over https),
every call of lambdalet's entry points (heartbeat, reconcile, the audit webhook, the binding
fast path, machine events) for a pod lifecycle that uses a ConfigMap and a Secret succeeds,
judged by the simulator's Node authorizer + NodeRestriction
(tests/world/kube_sim/node_authorizer.py), and what a kubelet may not do is refused. The
ServiceAccount mode's side: a call outside infra/k8s/rbac.yaml is refused too."""

from __future__ import annotations

import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api
from kubernetes.client.exceptions import ApiException

from chalicelib.kube.client import api_client
from tests.world.stack import NODE, OPT_IN, SA_TOKEN, SA_USER, Stack, pod_sources, virtual_pod


def as_node(stack: Stack) -> CoreV1Api:
    """The node's own credential, as lambdalet holds it: the minted certificate + key."""
    return CoreV1Api(api_client(stack.sim.url, None, stack.sim.ca_pem, client_pem=stack.node_pem))


def client(stack: Stack, token: str) -> CoreV1Api:
    config = Configuration(host=stack.sim.url)
    config.api_key = {"BearerToken": token}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    return CoreV1Api(ApiClient(config))


def refused(call) -> bool:
    with pytest.raises(ApiException) as err:
        call()
    return err.value.status == 403


@pytest.fixture
def node_stack():
    with Stack(node_identity=True) as stack:
        assert stack.sim.url.startswith("https://")
        yield stack


def test_a_pod_lifecycle_under_the_node_identity_makes_only_allowed_calls(node_stack):
    stack = node_stack
    api = stack.sim.api
    stack.heartbeat()  # registers its own Node, creates and renews its own Lease
    stack.reconcile()
    pod_sources(stack.core)
    stack.core.patch_namespace("default", {"metadata": {"labels": OPT_IN}})  # the binding fast path's scope
    stack.create_pod(virtual_pod("app", metadata={"labels": dict(OPT_IN)},  # admission's scope
                                 command=["sh", "-c", "sleep 100000"], container={"env": [
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "MODE"}}},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "password"}}}]}))
    stack.settle(rounds=8, reconcile=True)
    assert stack.pod("app")["status"]["phase"] == "Running"
    stack.core.delete_namespaced_pod("app", "default")
    stack.settle(rounds=10, seconds=5, reconcile=True)
    assert stack.pod("app") is None
    stack.advance(300)
    stack.heartbeat()  # the node status is due again (nodeStatusReportFrequency)
    node_user = f"system:node:{NODE}"
    calls = {(verb, res) for (user, verb, res) in api.calls if user == node_user}
    assert {("get", "secrets"), ("get", "configmaps"), ("list", "pods"), ("patch", "pods/status"),
            ("delete", "pods"), ("create", "events"), ("patch", "nodes/status"), ("update", "leases")} <= calls
    denied = [e for e in stack.audit.events if e["user"]["username"] == node_user and e["stage"] == "ResponseComplete"
              and e["responseStatus"]["code"] == 403]
    assert denied == []
    assert SA_USER not in {user for (user, _, _) in api.calls}
    # the webhooks' entry points ran (and answered) too: the binding fast path, the audit batches
    assert stack.admission_answers and set(stack.admission_answers) == {200}
    assert any(c["request"].get("subResource") == "binding" for c in stack.sim.admission_calls)
    assert stack.audit_answers and set(stack.audit_answers) == {200}


def test_what_a_kubelet_may_not_do_is_refused(node_stack):
    stack = node_stack
    stack.reconcile()
    pod_sources(stack.core)
    stack.core.create_namespaced_secret("default", {"metadata": {"name": "unrelated"}, "stringData": {"k": "v"}})
    node = as_node(stack)
    assert refused(lambda: node.read_namespaced_secret("unrelated", "default"))  # no pod of ours uses it
    assert refused(lambda: node.read_namespaced_secret("app-secret", "default"))  # not yet either
    assert refused(lambda: node.list_namespaced_secret("default"))
    assert refused(lambda: node.list_pod_for_all_namespaces())  # only with spec.nodeName=<itself>
    assert node.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={NODE}").items == []
    assert refused(lambda: node.read_node("some-other-node"))
    assert refused(lambda: node.patch_node_status("some-other-node", {"status": {"phase": "Running"}}))
    assert refused(lambda: node.patch_node("some-other-node", {"metadata": {"labels": {"mine": "yes"}}}))
    stack.create_pod(virtual_pod("app", command=["sh", "-c", "sleep 100000"], container={"env": [
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "password"}}}]}))
    stack.settle(rounds=6, reconcile=True)
    assert node.read_namespaced_secret("app-secret", "default").metadata.name == "app-secret"  # now a pod on it does
    assert refused(lambda: node.read_namespaced_secret("unrelated", "default"))
    stack.core.create_namespaced_pod("default", {"metadata": {"name": "elsewhere"}, "spec": {
        "nodeName": "worker-1", "containers": [{"name": "c", "image": "busybox"}]}})
    assert refused(lambda: node.read_namespaced_pod("elsewhere", "default"))
    assert refused(lambda: node.patch_namespaced_pod_status("elsewhere", "default", {"status": {"phase": "Failed"}}))


def test_the_service_account_mode_is_refused_what_rbac_yaml_does_not_grant():
    with Stack() as stack:
        stack.reconcile()
        pod_sources(stack.core)
        as_sa = client(stack, SA_TOKEN)
        assert as_sa.read_namespaced_secret("app-secret", "default").metadata.name == "app-secret"  # get by name
        assert refused(lambda: as_sa.list_namespaced_secret("default"))  # never list/watch
        assert refused(lambda: as_sa.read_node("some-other-node"))  # resourceNames: its own nodes only
        assert refused(lambda: as_sa.delete_namespaced_secret("app-secret", "default"))


def test_the_node_identity_authenticates_by_client_certificate_not_a_token():
    from pathlib import Path

    from chalicelib.kube.client import api_client

    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n"
    config = api_client("https://k8s.example:6443", None, client_pem=pem).configuration
    assert config.cert_file == config.key_file and Path(config.cert_file).read_text() == pem
    assert "BearerToken" not in config.auth_settings() or not config.api_key.get("BearerToken")
