"""The simulator as an https apiserver: x509 client certificates authenticate as kube-apiserver's
x509 authenticator does (CN = user, O = groups, verified against the client CA), and
certificates.k8s.io/v1 CSRs for the kubelet client signer are validated, approved and signed
as a cluster does (tests/world/kube_sim/authn.py, certificates.py; infra/node_identity.py
drives them as an operator would)."""

from __future__ import annotations

import base64
import json
import datetime as dt
import ssl
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

from chalicelib.kube.client import api_client
from infra.node_identity import MintError, csr_object, mint, request_pem
from tests.world.certs import Authority
from tests.world.kube_sim import KubeSim
from tests.world.kube_sim.authn import authenticate

CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


@pytest.fixture
def sim(tmp_path):
    with KubeSim(pki=Authority(tmp_path)) as sim:
        yield sim


def as_cert(sim: KubeSim, pair) -> CoreV1Api:
    return CoreV1Api(api_client(sim.url, None, sim.ca_pem, client_pem=pair.cert.read_text() + pair.key.read_text()))


def message(err) -> str:
    return json.loads(err.value.body)["message"]


def users(sim: KubeSim) -> set[str]:
    return {user for (user, _, _) in sim.api.calls}


def test_a_client_certificate_is_its_common_name_in_its_organizations(sim):
    node = sim.pki.client("system:node:n1", ("system:nodes",))
    as_cert(sim, node).create_node({"metadata": {"name": "n1"}})
    assert "system:node:n1" in users(sim)
    with pytest.raises(ApiException) as err:  # the Node authorizer judges it: its own Node only
        as_cert(sim, node).read_node("n2")
    assert err.value.status == 403 and 'User "system:node:n1"' in message(err)
    with pytest.raises(ApiException) as err:  # any other certificate user is granted nothing here
        as_cert(sim, sim.pki.client("jane", ("developers",))).list_namespace()
    assert err.value.status == 403 and 'User "jane"' in message(err)
    admin = sim.pki.client("kubernetes-admin", ("system:masters",))
    assert as_cert(sim, admin).read_node("n1").metadata.name == "n1"
    assert CoreV1Api(sim.api_client()).read_node("n1")  # a bearer token over https still works


def test_a_certificate_of_another_ca_gets_nowhere(sim, tmp_path):
    stranger = Authority(tmp_path / "other", name="other").client("system:node:n1", ("system:nodes",))
    context = ssl.create_default_context(cafile=str(sim.pki.pair.cert))
    context.load_cert_chain(str(stranger.cert), str(stranger.key))
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):  # refused at the handshake
        urllib.request.urlopen(sim.url + "/api/v1/nodes", context=context, timeout=5).read()
    assert "system:node:n1" not in users(sim)


def test_the_authenticator_refuses_what_does_not_verify(sim, tmp_path):
    """In-process, as x509.go's Verify: wrong issuer, expired, not for client auth -> 401; no CN -> not recognised."""
    now = dt.datetime.now(dt.timezone.utc)

    def der(pair):
        return x509.load_pem_x509_certificate(pair.cert.read_bytes()).public_bytes(serialization.Encoding.DER)

    def judged(cert_der, headers=None):
        try:
            return authenticate(headers or {}, cert_der, client_ca=sim.pki.cert, token_user={"t": {"username": "tok"}}.get,
                                allow_anonymous=True, now=now)
        except Exception as err:  # noqa: BLE001 - the ApiError's code is what is asserted
            return getattr(err, "code", err)

    node = der(sim.pki.client("system:node:n1", ("system:nodes", "extra")))
    assert judged(node) == {"username": "system:node:n1", "groups": ["system:nodes", "extra", "system:authenticated"],
                            "rules": "node"}
    assert judged(der(Authority(tmp_path / "x", name="x").client("system:node:n1", ("system:nodes",)))) == 401
    with pytest.raises(Exception) as err:  # two days later the certificate has expired
        authenticate({}, node, client_ca=sim.pki.cert, token_user={}.get, allow_anonymous=True,
                      now=now + dt.timedelta(days=2))
    assert err.value.code == 401
    assert judged(der(sim.pki.server("localhost"))) == 401  # serverAuth only: an incompatible key usage
    with_uid = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jane"),
                          x509.NameAttribute(x509.ObjectIdentifier("1.3.6.1.4.1.57683.2"), "uid-7")])
    key = ec.generate_private_key(ec.SECP256R1())
    jane = (x509.CertificateBuilder().subject_name(with_uid).issuer_name(sim.pki.cert.subject)
            .public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(hours=1))
            .sign(sim.pki.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    assert judged(jane) == {"username": "jane", "groups": ["system:authenticated"], "uid": "uid-7", "rules": []}
    key = ec.generate_private_key(ec.SECP256R1())
    no_cn = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "o")]))
             .issuer_name(sim.pki.cert.subject).public_key(key.public_key()).serial_number(1)
             .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(hours=1))
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
             .sign(sim.pki.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    assert judged(no_cn, {"authorization": "Bearer t"}) == {"username": "tok"}  # not recognised: the token decides
    assert judged(no_cn)["username"] == "system:anonymous"


def csr(sim, body, user=None):
    return sim.request("POST", CSRS, body, user=user)


def test_a_csr_records_its_requester_and_is_validated_at_creation(sim):
    key = ec.generate_private_key(ec.SECP256R1())
    body = csr_object("n1", request_pem(key, "n1"))
    body["spec"]["username"] = "system:node:someone-else"  # never taken from the body
    created = csr(sim, body, user={"username": "alice", "uid": "u-1", "groups": ["ops", "system:authenticated"]})
    assert created.status == 201, created.body
    assert created.body["spec"]["username"] == "alice" and created.body["spec"]["groups"] == ["ops", "system:authenticated"]
    assert created.body["status"] == {}
    bad = csr_object("n2", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    bad["spec"]["usages"] = []
    bad["spec"]["expirationSeconds"] = 60
    answer = csr(sim, bad)
    assert answer.status == 422
    fields = {c["field"]: c["message"] for c in answer.body["details"]["causes"]}
    assert "PEM block type must be CERTIFICATE REQUEST" in fields["spec.request"]
    assert fields["spec.usages"] == "Required value"
    assert "600 seconds" in fields["spec.expirationSeconds"]


def approve(sim, name):
    current = sim.request("GET", f"{CSRS}/{name}").body
    current["status"]["conditions"] = [{"type": "Approved", "status": "True", "reason": "Test", "message": "ok"}]
    return sim.request("PUT", f"{CSRS}/{name}/approval", current)


def test_the_signer_issues_a_kubelet_client_certificate_once_approved(sim):
    key = ec.generate_private_key(ec.SECP256R1())
    body = csr_object("n1", request_pem(key, "n1"), expiration_seconds=3600)
    name = body["metadata"]["name"]
    assert csr(sim, body).status == 201
    assert sim.csr_signer.run_once() == 0  # not approved: nothing
    status_add = sim.request("GET", f"{CSRS}/{name}").body
    status_add["status"]["conditions"] = [{"type": "Approved", "status": "True"}]
    refused = sim.request("PUT", f"{CSRS}/{name}/status", status_add)
    assert refused.status == 422 and 'may not add a condition of type "Approved"' in refused.body["message"]
    assert approve(sim, name).status == 200
    sim.csr_signer.run_once()
    issued = sim.request("GET", f"{CSRS}/{name}").body["status"]["certificate"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(issued))
    assert cert.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"
    assert cert.issuer == sim.pki.cert.subject
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(minutes=60) <= life <= dt.timedelta(minutes=66)  # expirationSeconds, backdated 5 minutes
    again = approve(sim, name)  # the certificate stays what it is
    assert again.status == 200 and again.body["status"]["certificate"] == issued


@pytest.mark.parametrize("orgs,cn,usages,why", [
    (("system:masters",), "system:node:n1", ["digital signature", "client auth"], "subject organization is not system:nodes"),
    (("system:nodes",), "admin", ["digital signature", "client auth"], "subject common name does not begin with system:node:"),
    (("system:nodes",), "system:node:n1", ["digital signature", "server auth"], "usages did not match"),
])
def test_the_signer_fails_what_is_no_kubelet_client_request(sim, orgs, cn, usages, why):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs),
                         x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    pem = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM)
    body = csr_object("n1", pem)
    body["spec"]["usages"] = usages
    assert csr(sim, body).status == 201
    assert approve(sim, body["metadata"]["name"]).status == 200
    sim.csr_signer.run_once()
    status = sim.request("GET", f"{CSRS}/{body['metadata']['name']}").body["status"]
    failed = [c for c in status["conditions"] if c["type"] == "Failed"]
    assert not status.get("certificate")
    assert failed and failed[0]["reason"] == "SignerValidationFailure" and failed[0]["message"].startswith(why)


def test_the_operator_command_mints_a_certificate_the_node_authorizer_knows(sim):
    pem = mint(sim.api_client(), "n1", poll=0.05, say=lambda _: None)
    node = CoreV1Api(api_client(sim.url, None, sim.ca_pem, client_pem=pem))
    node.create_node({"metadata": {"name": "n1"}})
    assert "system:node:n1" in users(sim)
    with pytest.raises(ApiException) as err:
        node.list_pod_for_all_namespaces()
    assert err.value.status == 403


def test_the_operator_command_says_why_no_certificate_came(tmp_path):
    with KubeSim() as no_signer:  # a cluster whose signer does not run
        with pytest.raises(MintError, match="no certificate after"):
            mint(no_signer.api_client(), "n1", timeout=0.3, poll=0.05, say=lambda _: None)


def test_kubectl_over_https_lists_and_approves_csrs(sim, tmp_path):
    """The real kubectl with a kubeconfig holding the cluster CA: `get csr` with the server's
    columns, `certificate approve` (a protobuf PUT to /approval), then the signer issues."""
    import shutil
    import subprocess

    if not shutil.which("kubectl"):
        pytest.skip("kubectl not installed")
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    body = csr_object("n1", request_pem(ec.generate_private_key(ec.SECP256R1()), "n1"), expiration_seconds=3600)
    name = body["metadata"]["name"]
    assert csr(sim, body).status == 201

    def kubectl(*args):
        done = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert kubectl("get", "csr").split("\n")[0].split() == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR",
                                                            "REQUESTEDDURATION", "CONDITION"]
    assert kubectl("get", "csr", name, "--no-headers").split()[2:] == [
        "kubernetes.io/kube-apiserver-client-kubelet", "admin", "60m", "Pending"]
    assert f"certificatesigningrequest.certificates.k8s.io/{name} approved" in kubectl("certificate", "approve", name)
    sim.csr_signer.run_once()
    assert kubectl("get", "csr", name, "--no-headers").split()[-1] == "Approved,Issued"
