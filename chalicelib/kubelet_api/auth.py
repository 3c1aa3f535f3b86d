"""Who may call the kubelet API, decided as a kubelet decides it (pure).

Authentication: an X.509 client certificate, the way kubelet's ``--client-ca-file``
works: the subject's CN is the user, its O values the groups. The certificate
reaches us verified by the front:

- API Gateway custom domain with mutual TLS (its truststore: the cluster CA).
  The handshake fails without a certificate chaining to that CA; the verified
  certificate is in the Lambda event's ``requestContext.identity.clientCert``
  (``subjectDN``, ``issuerDN``, ``validity``, ``clientCertPem``). Nothing a
  caller sends can put it there.
- A front that terminates mTLS itself but cannot pass the certificate into the
  event (an ALB or nginx in front of a Function URL, a service mesh gateway):
  it sends the subject it verified in ``X-Lambdalet-Client-Subject`` and proves
  it is the front with ``X-Lambdalet-Front-Token`` (a Secrets Manager secret,
  compared in constant time). What is trusted there is the front, its CA
  check and the secrecy of that token; without the token the header is ignored.

Anything else is anonymous: 401, nothing read (kubelet ``--anonymous-auth=false``).

Authorization: the kubelet's request attributes (kubelet ``pkg/kubelet/server/auth.go``;
the table in the Kubernetes docs "Kubelet authentication/authorization", with
``KubeletFineGrainedAuthz``): the HTTP method gives the verb, the path the
subresource of ``nodes``: /stats -> stats, /metrics -> metrics, /logs -> log,
/spec -> spec, /checkpoint -> checkpoint, /pods and /runningPods -> pods (or
proxy), /healthz -> healthz (or proxy), /configz -> configz (or proxy),
everything else (containerLogs, exec, attach, portForward, run) -> proxy.
Instead of a SubjectAccessReview per call (one more apiserver request, and an
RBAC grant), ``LAMBDALET_KUBELET_CLIENTS`` lists each allowed CN with the
subresources it may use; the apiserver's kubelet client gets all of them, a
metrics scraper ``stats`` and ``metrics``. Anyone else: 403.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

SUBJECT_HEADER = "x-lambdalet-client-subject"
FRONT_TOKEN_HEADER = "x-lambdalet-front-token"

_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_SUBRESOURCES = (("/stats", "stats"), ("/metrics", "metrics"), ("/logs", "log"), ("/spec", "spec"),
                 ("/checkpoint", "checkpoint"))
# Fine-grained subresources, each with proxy as the fallback a kubelet also accepts.
_FINE = (("/pods", "pods"), ("/runningPods", "pods"), ("/healthz", "healthz"), ("/configz", "configz"))


@dataclass(frozen=True)
class Caller:
    user: str
    groups: tuple[str, ...] = ()
    via: str = "mtls"  # "mtls" (API Gateway's verified certificate) or "front"


def parse_dn(dn: str) -> dict[str, list[str]]:
    """An RFC 4514 distinguished name (``CN=a,O=b,O=c``; ``\\,`` escapes a comma)
    as attribute -> values. A bare name without ``=`` is taken as the CN."""
    out: dict[str, list[str]] = {}
    for part in re.split(r"(?<!\\),|(?<!\\)\+|/(?=[A-Za-z]+=)", dn or ""):
        part = part.strip()
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq:
            key, value = "CN", key
        out.setdefault(key.strip().upper(), []).append(re.sub(r"\\(.)", r"\1", value.strip()))
    return out


def caller_from_subject(dn: str, via: str) -> Caller | None:
    attrs = parse_dn(dn)
    cn = (attrs.get("CN") or [""])[0]
    return Caller(user=cn, groups=tuple(attrs.get("O") or ()), via=via) if cn else None


def authenticate(request_context: Mapping | None, headers: Mapping[str, str],
                 front_token: str | None) -> Caller | None:
    """The caller, or None (anonymous).

    ``request_context``: the Lambda event's ``requestContext``; ``headers`` with
    lower-case names; ``front_token``: the token a trusted front presents, None
    when no such front is configured."""
    cert = ((request_context or {}).get("identity") or {}).get("clientCert") or {}
    if cert.get("subjectDN"):
        return caller_from_subject(str(cert["subjectDN"]), "mtls")
    presented = headers.get(FRONT_TOKEN_HEADER)
    subject = headers.get(SUBJECT_HEADER)
    if front_token and presented and subject and hmac.compare_digest(presented.encode(), front_token.encode()):
        return caller_from_subject(subject, "front")
    return None


def attributes(method: str, path: str) -> tuple[str, tuple[str, ...]]:
    """(verb, acceptable subresources of ``nodes``) for a kubelet API request,
    as kubelet's authorizer derives them; any one of the subresources suffices."""
    verb = _VERBS.get(method.upper(), method.lower())
    for prefix, sub in _SUBRESOURCES:
        if path == prefix or path.startswith(prefix + "/"):
            return verb, (sub,)
    for prefix, sub in _FINE:
        if path == prefix or path.startswith(prefix + "/"):
            return verb, (sub, "proxy")
    return verb, ("proxy",)


def allowed(caller: Caller, subresources: tuple[str, ...], clients: Mapping[str, tuple[str, ...] | list[str]]) -> bool:
    """May ``caller`` use one of ``subresources``? (``LAMBDALET_KUBELET_CLIENTS``)"""
    granted = set(clients.get(caller.user) or ())
    return "*" in granted or bool(granted & set(subresources))
