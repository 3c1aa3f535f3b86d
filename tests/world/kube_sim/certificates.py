"""certificates.k8s.io/v1 CertificateSigningRequests, and the signer for kubelet client
certificates (kube-controller-manager's csrsigning controller), enough for a node's
client certificate to be minted as a cluster mints it.

Learnt from kubernetes:
- ``pkg/registry/certificates/certificates/strategy.go``: on create the requester's
  user info (username, uid, groups) is recorded in the spec and any status dropped;
  an update of the object changes neither spec nor status; ``/approval`` changes only
  the conditions; ``/status`` leaves the spec alone;
- ``pkg/apis/certificates/validation/validation.go``: the request must be a PEM
  ``CERTIFICATE REQUEST`` with a valid signature, ``usages`` are required and known,
  ``signerName`` is a qualified name, ``expirationSeconds`` at least 600; Approved and
  Denied exclude each other, only with status True, and neither is added or removed
  through ``/status``; an issued certificate is never replaced;
- ``pkg/controller/certificates/signer/signer.go`` (``handle``) with
  ``pkg/apis/certificates/v1/helpers.go`` (``ValidateKubeletClientCSR``): an Approved,
  not Failed request for ``kubernetes.io/kube-apiserver-client-kubelet`` is checked
  (Subject O exactly ``system:nodes``, no SANs, CN ``system:node:<name>``, usages
  exactly {digital signature, client auth} or {digital signature, key encipherment,
  client auth}); a bad one gets the condition Failed/SignerValidationFailure with the
  helper's message, a good one its certificate in ``status.certificate``, valid for
  ``--cluster-signing-duration`` (default 8760h) or ``spec.expirationSeconds`` if shorter,
  backdated 5 minutes (``authority.Sign``).

Not modelled: the ``approve`` permission on ``signers`` (CertificateApproval admission;
the simulator's admin has it), the csrapproving auto-approver, CSR garbage collection.
Certificate validity uses the real time, not the injected clock: TLS checks real time.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import errors as E

KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
# certificates.KeyUsage values (k8s.io/api/certificates/v1 types.go)
USAGES = ("signing", "digital signature", "content commitment", "key encipherment", "key agreement",
          "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth",
          "client auth", "code signing", "email protection", "s/mime", "ipsec end system", "ipsec tunnel",
          "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc")
KUBELET_CLIENT_USAGES = ({"digital signature", "client auth"},
                         {"digital signature", "key encipherment", "client auth"})
SIGNING_DURATION = dt.timedelta(hours=8760)  # kube-controller-manager --cluster-signing-duration default
BACKDATE = dt.timedelta(minutes=5)
SIGNER_USER = {"username": "system:serviceaccount:kube-system:certificate-controller",
               "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]}
APPROVAL_TYPES = ("Approved", "Denied")


def parse_request(spec: dict) -> x509.CertificateSigningRequest:
    """The spec's request (base64 of PEM, as JSON carries []byte), or ValueError with the apiserver's reason."""
    try:
        pem = base64.b64decode(spec.get("request") or "", validate=True)
    except ValueError:
        raise ValueError("PEM block type must be CERTIFICATE REQUEST") from None
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in pem:
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    csr = x509.load_pem_x509_csr(pem)
    if not csr.is_signature_valid:
        raise ValueError("x509: ECDSA verification failure" if "EC" in type(csr.public_key()).__name__
                         else "crypto/rsa: verification error")
    return csr


def kubelet_client_problem(csr: x509.CertificateSigningRequest, usages: list[str]) -> str:
    """ValidateKubeletClientCSR's error message, or "" when the request is a kubelet client's."""
    orgs = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if orgs != ["system:nodes"]:
        return "subject organization is not system:nodes"
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = None
    if sans is not None:
        for kind, what in ((x509.DNSName, "DNS"), (x509.RFC822Name, "Email"), (x509.IPAddress, "IP"),
                           (x509.UniformResourceIdentifier, "URI")):
            if sans.get_values_for_type(kind):
                return f"{what} subjectAltNames are not allowed"
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns or not str(cns[0].value).startswith("system:node:"):
        return "subject common name does not begin with system:node:"
    if set(usages) not in KUBELET_CLIENT_USAGES:
        return "usages did not match [client auth digital signature key encipherment]"
    return ""


def conditions(obj: dict) -> list[dict]:
    return list((obj.get("status") or {}).get("conditions") or [])


def has_condition(obj: dict, type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions(obj))


class CsrSigner:
    """The csrsigning controller for the kubelet client signer, with the cluster CA
    (``ca``: an object with ``cert`` and ``key``, tests/world/certs.py's Authority).
    Runs in its own thread, as kube-controller-manager's loops do, or ``run_once()``."""

    def __init__(self, api, ca, duration: dt.timedelta = SIGNING_DURATION):
        self.api, self.ca, self.duration = api, ca, duration
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        done = 0
        for csr in self.api.store.list("certificatesigningrequests"):
            spec = csr.get("spec") or {}
            if (spec.get("signerName") != KUBELET_CLIENT_SIGNER or not has_condition(csr, "Approved") or has_condition(csr, "Failed")
                    or (csr.get("status") or {}).get("certificate")):
                continue
            status = dict(csr.get("status") or {})
            try:
                request = parse_request(spec)
                problem = kubelet_client_problem(request, spec.get("usages") or [])
            except ValueError:
                continue  # "unable to parse csr": the controller logs and retries; creation refused it anyway
            if problem:
                status["conditions"] = conditions(csr) + [{
                    "type": "Failed", "status": "True", "reason": "SignerValidationFailure", "message": problem,
                    "lastUpdateTime": _now_text(), "lastTransitionTime": _now_text()}]
            else:
                status["certificate"] = base64.b64encode(self.sign(request, spec)).decode()
            self._update_status(csr, status)
            done += 1
        return done

    def sign(self, request: x509.CertificateSigningRequest, spec: dict) -> bytes:
        now = dt.datetime.now(dt.timezone.utc)
        ttl = self.duration
        if spec.get("expirationSeconds"):
            ttl = min(ttl, dt.timedelta(seconds=spec["expirationSeconds"]))
        not_after = min(now + ttl, self.ca.cert.not_valid_after_utc)
        usages = set(spec.get("usages") or [])
        cert = (x509.CertificateBuilder().subject_name(request.subject).issuer_name(self.ca.cert.subject)
                .public_key(request.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - BACKDATE).not_valid_after(not_after)
                .add_extension(x509.KeyUsage(digital_signature="digital signature" in usages,
                                             key_encipherment="key encipherment" in usages, content_commitment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                             crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca.key.public_key()),
                               critical=False)
                .sign(self.ca.key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM)

    def _update_status(self, csr: dict, status: dict) -> None:
        from .api import Request

        body = {**csr, "status": status}
        path = f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{csr['metadata']['name']}/status"
        self.api.handle(Request("PUT", path, {}, {"content-type": "application/json", "accept": "application/json"},
                                json.dumps(body).encode(), user=SIGNER_USER))

    def start(self, interval: float = 0.1) -> None:
        def loop():
            while not self.api.stopping.wait(interval):
                try:
                    self.run_once()
                except Exception:  # keep signing; a test waiting for its certificate will notice
                    import traceback
                    traceback.print_exc()
        self._thread = threading.Thread(target=loop, name="kube-sim-csrsigning", daemon=True)
        self._thread.start()


def _now_text() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
