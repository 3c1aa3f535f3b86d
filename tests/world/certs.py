"""Throwaway PKI for the kubelet API's mutual TLS, made at test time (``cryptography``,
which moto already brings): the cluster CA, the kubelet endpoint's serving
certificate, and client certificates.

As kubeadm issues them: the apiserver's kubelet client certificate
(``--kubelet-client-certificate``) has CN ``kube-apiserver-kubelet-client`` and
O ``kubeadm:cluster-admins``, signed by the cluster CA (the CA kubelets trust
with ``--client-ca-file``). Nothing is written outside the directory given.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

APISERVER_KUBELET_CLIENT = ("kube-apiserver-kubelet-client", ("kubeadm:cluster-admins",))


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path

    @property
    def pem(self) -> str:
        return self.cert.read_text()


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
                     + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(directory: Path, stem: str, cert: x509.Certificate, key) -> Pair:
    directory.mkdir(parents=True, exist_ok=True)
    pair = Pair(directory / f"{stem}.crt", directory / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return pair


class Authority:
    """A CA that issues server and client certificates into ``directory``."""

    def __init__(self, directory: Path, name: str = "kubernetes"):
        self.directory = Path(directory)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pair = _write(self.directory, name + "-ca", self.cert, self.key)

    def _issue(self, stem: str, subject: x509.Name, usage, sans=None) -> Pair:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(self.key_id(), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return _write(self.directory, stem, builder.sign(self.key, hashes.SHA256()), key)

    def key_id(self) -> x509.AuthorityKeyIdentifier:
        """What Go's x509.CreateCertificate puts in every certificate it issues (and strict verifiers,
        cryptography's among them, require): the issuer's key id."""
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())

    def server(self, host: str = "localhost") -> Pair:
        sans = [x509.DNSName(host), x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        return self._issue(f"server-{host}", _name(host), ExtendedKeyUsageOID.SERVER_AUTH, sans)

    def client(self, cn: str, orgs: tuple[str, ...] = ()) -> Pair:
        return self._issue(f"client-{cn.replace(':', '_')}", _name(cn, orgs), ExtendedKeyUsageOID.CLIENT_AUTH)
