"""How the simulator knows who calls: kube-apiserver's authenticators, in its order.

kube-apiserver (``pkg/kubeapiserver/authenticator/config.go``) puts the x509
client-certificate authenticator before the bearer-token ones in one union: the
first that recognises the request names the user; when none does and one of them
failed, the answer is 401, even with anonymous access on (``union.NewFailOnError``).

x509, after k8s ``staging/src/k8s.io/apiserver/pkg/authentication/request/x509/x509.go``:
the presented chain is verified against the client CA (``--client-ca-file``) with
``KeyUsages: [ClientAuth]`` at the current time, then ``CommonNameUserConversion``
makes the user: name = the Subject's CommonName (a certificate without one is not
recognised), groups = the Subject's Organization values, uid = the Subject attribute
1.3.6.1.4.1.57683.2 when present (AllowParsingUserUIDFromCertAuth, beta and on since 1.34). Node identities
(``system:node:<name>`` in ``system:nodes``) are then judged by the Node authorizer
(node_authorizer.py), anyone else in ``system:masters`` may do everything, and any
other certificate user is granted nothing (the simulator keeps no RBAC objects).

A difference we accept: Python's ``ssl`` can only request a client certificate by
verifying it in the handshake (no "request, verify later" mode as Go's
``tls.RequestClientCert``), so a certificate of another CA is refused at the
handshake here instead of with a 401. The verification below still runs, so an
in-process request (``Request.client_cert``) is judged as over the wire.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import errors as E
from .node_authorizer import node_name

AUTHENTICATED = "system:authenticated"
UID_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57683.2")


def unauthorized() -> E.ApiError:
    return E.ApiError(401, "Unauthorized", "Unauthorized")


def x509_user(der: bytes, client_ca: x509.Certificate, now: dt.datetime) -> dict | None:
    """The user a client certificate names; None when it names none (no CN); 401 when it does not verify."""
    try:
        leaf = x509.load_der_x509_certificate(der)
        leaf.verify_directly_issued_by(client_ca)
    except (ValueError, TypeError, InvalidSignature):
        raise unauthorized() from None
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise unauthorized()  # "x509: certificate has expired or is not yet valid"
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None  # Go: no EKU extension means any usage
    if usages is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise unauthorized()  # "x509: certificate specifies an incompatible key usage"
    names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or not names[0].value:
        return None
    cn = str(names[0].value)
    groups = [str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    user = {"username": cn, "groups": [*groups, AUTHENTICATED]}
    uids = leaf.subject.get_attributes_for_oid(UID_OID)
    if uids:
        user["uid"] = str(uids[0].value)
    if node_name(user):
        user["rules"] = "node"  # the Node authorizer's, not RBAC
    elif "system:masters" not in groups:
        user["rules"] = []  # no RBAC objects here: nothing is granted
    return user


def authenticate(headers: dict, client_cert: bytes | None, *, client_ca: x509.Certificate | None,
                 token_user: Callable[[str], dict | None], allow_anonymous: bool, now: dt.datetime) -> dict:
    """The request's user (a dict: username, groups, rules), or a 401 ApiError. ``token_user``: the
    bearer-token authenticators (static tokens, the webhook token authenticator) in one."""
    failed = False
    if client_cert and client_ca is not None:
        try:
            user = x509_user(client_cert, client_ca, now)
        except E.ApiError:
            user, failed = None, True
        if user is not None:
            return user
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        user = token_user(auth[7:].strip())
        if user is not None:
            return user
        failed = True
    if failed or not allow_anonymous:
        raise unauthorized()
    return {"username": "system:anonymous", "groups": ["system:unauthenticated"]}
