"""Webhook transport as kube-apiserver does it: the audit kubeconfig template
is https (system trust store, or a CA), the simulator reads it as client-go
does (no credentials over http), and the README warns about http URLs."""

from __future__ import annotations

import yaml

from tests.samples import REPO
from tests.world.kube_sim.webhook_kubeconfig import client_for
from tests.world.stack import WEBHOOK_TOKEN, Stack, audit_kubeconfig, virtual_pod

TEMPLATE = REPO / "infra" / "apiserver" / "audit-webhook.kubeconfig.tmpl"


def test_the_template_is_https_with_the_token():
    config = yaml.safe_load(TEMPLATE.read_text())
    assert config["clusters"][0]["cluster"]["server"].startswith("https://")
    assert config["users"][0]["user"]["token"] == "${LAMBDALET_WEBHOOK_TOKEN}"
    assert client_for(audit_kubeconfig()).headers["Authorization"] == f"Bearer {WEBHOOK_TOKEN}"


def test_over_http_client_go_reads_no_credentials_and_no_ca():
    config = audit_kubeconfig("http")
    config["clusters"][0]["cluster"]["certificate-authority-data"] = "LS0tLS1CRUdJTi..."
    client = client_for(config)
    assert client.url.startswith("http://") and "Authorization" not in client.headers and client.ca_data is None
    config["clusters"][0]["cluster"]["server"] = "lambdalet.example/api/audit"  # no scheme: http for client-go
    assert "Authorization" not in client_for(config).headers
    config["clusters"][0]["cluster"]["server"] = "https://lambdalet.example/api/audit"
    assert client_for(config).ca_data == "LS0tLS1CRUdJTi..."


def test_an_http_audit_url_reaches_lambdalet_without_the_token_and_is_refused():
    with Stack(audit_scheme="http") as stack:
        stack.reconcile()
        stack.create_pod(virtual_pod("web", command=["sh", "-c", "sleep 1000"]))
        stack.settle(rounds=3, deliver_events=False)
        assert stack.audit_answers and set(stack.audit_answers) == {401}
        assert stack.audit.sent == []


def test_the_readme_says_an_http_url_drops_the_token():
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "an `http://` URL drops the token" in readme
