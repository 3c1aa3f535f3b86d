"""`./dev node-identity --stage NAME [--node NODE]`: lambdalet's node identity, minted as a
kubelet's client certificate is.

1. generates a private key (ECDSA P-256, as kubelet's) and a certificate request for
   ``CN=system:node:<node>, O=system:nodes``, no SANs;
2. submits it as a ``certificates.k8s.io/v1`` CertificateSigningRequest for the signer
   ``kubernetes.io/kube-apiserver-client-kubelet`` with the usages digital signature and
   client auth (ECDSA keys need no key encipherment), through the official client and
   the operator's kubeconfig;
3. approves it (the ``/approval`` subresource: the operator needs ``approve`` on that
   signer, as cluster admins have) and waits for kube-controller-manager's signer to
   issue the certificate;
4. stores certificate + key (one PEM bundle) in the stage's Secrets Manager secret, the
   stack output ``NodeCertificateSecret`` (LAMBDALET_K8S_CLIENT_CERT_SECRET), which
   ``./dev deploy --identity node`` points the functions at.

The certificate expires (``--cluster-signing-duration``, one year by default, or
``--expiration-seconds`` if shorter): run this again before then (README, "Node identity").
The private key never leaves this process except into the secret.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from infra import deploy

SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
USAGES = ["digital signature", "client auth"]


class MintError(RuntimeError):
    """The certificate could not be minted; the message says why."""


# -- pure: what to ask for ----------------------------------------------------------------------


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def request_pem(key: ec.EllipticCurvePrivateKey, node: str) -> bytes:
    """The PKCS#10 request a kubelet sends for its client certificate."""
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def csr_object(node: str, pem: bytes, expiration_seconds: int | None = None) -> dict:
    import base64

    digest = hashlib.sha256(pem).hexdigest()[:12]
    spec = {"request": base64.b64encode(pem).decode(), "signerName": SIGNER, "usages": USAGES}
    if expiration_seconds:
        spec["expirationSeconds"] = expiration_seconds
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": f"lambdalet-{node}-{digest}", "labels": {"app.kubernetes.io/name": "lambdalet"}},
            "spec": spec}


def bundle(certificate_pem: str, key: ec.EllipticCurvePrivateKey) -> str:
    """Certificate + key in one PEM, what LAMBDALET_K8S_CLIENT_CERT_SECRET holds."""
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return certificate_pem.rstrip("\n") + "\n" + key_pem


def expiry(pem: str):
    return x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc


# -- the steps (I/O) ---------------------------------------------------------------------------


def _conditions(csr: dict) -> dict:
    return {c.get("type"): c for c in (csr.get("status") or {}).get("conditions") or []}


def mint(api_client, node: str, *, expiration_seconds: int | None = None, timeout: float = 300,
         poll: float = 2.0, say=print) -> str:
    """Submit, approve and wait: the PEM bundle (certificate + key) of ``system:node:<node>``."""
    import base64

    from kubernetes.client import CertificatesV1Api
    from kubernetes.client.exceptions import ApiException

    api = CertificatesV1Api(api_client)
    key = new_key()
    body = csr_object(node, request_pem(key, node), expiration_seconds)
    name = body["metadata"]["name"]

    def read() -> dict:
        return json.loads(api.read_certificate_signing_request(name, _preload_content=False).data)

    try:
        api.create_certificate_signing_request(body, _preload_content=False)
        say(f"submitted CertificateSigningRequest {name} ({SIGNER}, CN=system:node:{node}, O=system:nodes)")
        csr = read()
        csr.setdefault("status", {})["conditions"] = [*(csr["status"].get("conditions") or []), {
            "type": "Approved", "status": "True", "reason": "LambdaletNodeIdentity",
            "message": f"approved by ./dev node-identity for lambdalet's node {node}"}]
        api.replace_certificate_signing_request_approval(name, csr, _preload_content=False)
        say(f"approved {name}; waiting for the signer ...")
        deadline = time.monotonic() + timeout
        while True:
            csr = read()
            certificate = (csr.get("status") or {}).get("certificate")
            if certificate:
                pem = base64.b64decode(certificate).decode()
                break
            bad = _conditions(csr).get("Failed") or _conditions(csr).get("Denied")
            if bad:
                raise MintError(f"{name} {bad['type']}: {bad.get('reason', '')}: {bad.get('message', '')}")
            if time.monotonic() > deadline:
                raise MintError(f"{name}: no certificate after {timeout:.0f}s: is the cluster's signer for "
                                f"{SIGNER} running (kube-controller-manager --cluster-signing-*)?")
            time.sleep(poll)
    except ApiException as err:
        raise MintError(f"CertificateSigningRequest {name}: {err.status} {err.reason}: {err.body}") from None
    say(f"issued: valid until {expiry(pem):%Y-%m-%d %H:%M} UTC")
    return bundle(pem, key)


def store(secretsmanager, secret_id: str, pem_bundle: str) -> None:
    secretsmanager.put_secret_value(SecretId=secret_id, SecretString=pem_bundle)


def stage_node(project: Path, stage: str) -> str | None:
    """The stage's one node, from .chalice/config.json (None when it has none or several)."""
    config = json.loads((project / ".chalice" / "config.json").read_text())
    env = config.get("stages", {}).get(stage, {}).get("environment_variables", {})
    nodes = [n for n in (env.get("LAMBDALET_NODE_NAMES") or "").split(",") if n]
    return nodes[0] if len(nodes) == 1 else None


def run(args: argparse.Namespace, say=print) -> str:
    """Mint and store; returns the secret's id."""
    import kubernetes

    node = args.node or stage_node(Path(args.project_dir), args.stage)
    if not node:
        raise MintError(f"stage {args.stage} does not name one node: give --node (a node identity is one node's)")
    session = deploy.aws_session(args.region)
    stack = deploy._stack(session.client("cloudformation"), deploy.stack_name(args.stage))
    outputs = {o["OutputKey"]: o["OutputValue"] for o in (stack or {}).get("Outputs", [])}
    if "NodeCertificateSecret" not in outputs:
        raise MintError(f"stack {deploy.stack_name(args.stage)} has no NodeCertificateSecret output: "
                        f"run ./dev deploy --stage {args.stage} --identity node first")
    client = kubernetes.config.new_client_from_config(config_file=args.kubeconfig, context=args.context)
    pem_bundle = mint(client, node, expiration_seconds=args.expiration_seconds, say=say)
    store(session.client("secretsmanager"), outputs["NodeCertificateSecret"], pem_bundle)
    say(f"stored in {outputs['NodeCertificateSecret']}; lambdalet reads it as system:node:{node}")
    return outputs["NodeCertificateSecret"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="./dev node-identity", description=__doc__.split("\n\n")[0])
    p.add_argument("--stage", required=True, help="the deployed stage (its stack holds the secret)")
    p.add_argument("--node", help="the virtual node's name (default: the stage's only node)")
    p.add_argument("--kubeconfig", help="the operator's kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--context", help="the kubeconfig context (default: its current one)")
    p.add_argument("--region", help="AWS region (default: AWS_REGION / the profile's)")
    p.add_argument("--expiration-seconds", type=int,
                   help="ask for a shorter life than the cluster's signing duration (at least 600)")
    p.add_argument("--project-dir", default=str(deploy.REPO), help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        run(args)
    except (MintError, deploy.DeployError) as err:
        print(f"node-identity: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
