"""EKS's webhook token authenticator, as the simulator's bearer-token authenticator for
``k8s-aws-v1.`` tokens: aws-iam-authenticator's ``pkg/token/token.go`` (tokenVerifier.Verify)
and EKS access entries.

Verify, in its order: the token is at most 4 KiB (maxTokenLenBytes) and starts with
``k8s-aws-v1.``; the rest is base64url without padding of an https URL whose host is an STS
endpoint (sts.amazonaws.com, sts.<region>.amazonaws.com[.cn], with or without ``-fips``:
verifyHost / verifySTSHostnameFormat; the dual-stack api.aws hosts are not modelled), path
``/``; only the whitelisted query parameters (parameterWhitelist), each once and in one
spelling (validateDuplicateParameters); Action=GetCallerIdentity; ``x-k8s-aws-id`` among
X-Amz-SignedHeaders (hasSignedClusterIDHeader); 0 <= X-Amz-Expires <= 900; X-Amz-Date present
and at most 15 minutes old (presignedURLExpiration). Then it GETs the URL with
``x-k8s-aws-id: <its own cluster>`` and ``Accept: application/json``: STS checks the signature,
so a token signed for another cluster fails there. A non-200 answer, or an answer without an
ARN, is a refusal. The ARN is canonicalized (pkg/arn: assumed-role/<role>/<session> ->
role/<role>) and looked up in the access entries (EKS: principalArn -> username,
kubernetesGroups; the default username of a role is the session ARN, EKS user guide,
"access entries"). No entry: not authenticated (401).

Every refusal is a TokenRejected with the reason; the apiserver answers 401 "Unauthorized"
(its body never says why) and logs the reason, as the simulator does in ``Api.auth_failures``.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

PREFIX = "k8s-aws-v1."
CLUSTER_HEADER = "x-k8s-aws-id"
MAX_TOKEN_BYTES = 1024 * 4  # token.go maxTokenLenBytes
URL_LIFETIME = 15 * 60  # token.go presignedURLExpiration
STS_HOST = re.compile(r"^sts(-fips)?(\.[a-z0-9-]+)?\.amazonaws\.com(\.cn)?$")
WHITELIST = {"action", "version", "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires",
             "x-amz-security-token", "x-amz-signature", "x-amz-signedheaders"}  # token.go parameterWhitelist
ASSUMED_ROLE = re.compile(r"^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/[^/]+$")


class TokenRejected(Exception):
    """The token does not authenticate; the message says why (for the apiserver's log)."""


@dataclass(frozen=True)
class AccessEntry:
    """EKS CreateAccessEntry's principalArn, username and kubernetesGroups."""
    principal_arn: str
    groups: tuple[str, ...] = ()
    username: str = ""  # empty: EKS's default for a role, the session's ARN


def check(token: str, now: float) -> urllib.parse.SplitResult:
    """The presigned URL of a well-formed, unexpired token (pure)."""
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenRejected("token is too large")
    if not token.startswith(PREFIX):
        raise TokenRejected(f'token is missing expected "{PREFIX}" prefix')
    body = token[len(PREFIX):]
    try:
        if "=" in body:
            raise ValueError("padding")
        url = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True).decode()
        parts = urllib.parse.urlsplit(url)
    except (ValueError, binascii.Error) as err:
        raise TokenRejected(f"token is not base64url without padding of a URL: {err}") from None
    if parts.scheme != "https":
        raise TokenRejected(f'unexpected scheme "{parts.scheme}" in pre-signed URL')
    if not STS_HOST.match(parts.netloc):
        raise TokenRejected(f'unexpected hostname "{parts.netloc}" in pre-signed URL')
    if parts.path != "/":
        raise TokenRejected("unexpected path in pre-signed URL")
    grouped: dict[str, list[str]] = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        grouped.setdefault(key, []).append(value)
    lowered = [key.lower() for key in grouped]
    for key in grouped:  # validateDuplicateParameters: the same name in two spellings
        if lowered.count(key.lower()) > 1:
            raise TokenRejected(f'duplicate query parameter found: "{key}"')
    query: dict[str, str] = {}
    for key, values in grouped.items():
        if key.lower() not in WHITELIST:
            raise TokenRejected(f'non-whitelisted query parameter "{key}"')
        if len(values) != 1:
            raise TokenRejected("query parameter with multiple values not supported")
        query[key.lower()] = values[0]
    if query.get("action") != "GetCallerIdentity":
        raise TokenRejected("unexpected action parameter in pre-signed URL")
    if CLUSTER_HEADER not in query.get("x-amz-signedheaders", "").split(";"):
        raise TokenRejected(f"client did not sign the {CLUSTER_HEADER} header in the pre-signed URL")
    expires = query.get("x-amz-expires", "")
    if not expires.isdigit() or int(expires) > 900:
        raise TokenRejected(f"invalid X-Amz-Expires parameter in pre-signed URL: {expires!r}")
    if not query.get("x-amz-date"):
        raise TokenRejected("X-Amz-Date parameter must be present in pre-signed URL")
    try:
        signed = datetime.strptime(query["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise TokenRejected(f"error parsing X-Amz-Date parameter {query['x-amz-date']!r}") from None
    if now > signed.timestamp() + URL_LIFETIME:
        raise TokenRejected(f"X-Amz-Date parameter is expired (15 minute expiration) {query['x-amz-date']}")
    return parts


def caller_arn(status: int, body: str) -> str:
    """The ARN of STS's GetCallerIdentity answer, JSON as STS sends it for Accept: application/json."""
    if status != 200:
        raise TokenRejected(f"sts getCallerIdentity failed: error from AWS (expected 200, got {status})")
    try:
        arn = json.loads(body)["GetCallerIdentityResponse"]["GetCallerIdentityResult"]["Arn"]
    except (ValueError, KeyError, TypeError) as err:
        raise TokenRejected(f"sts getCallerIdentity failed: {err!r}") from None
    if not isinstance(arn, str) or not arn:
        raise TokenRejected("sts getCallerIdentity failed: no Arn")
    return arn


def canonical(arn: str) -> str:
    """pkg/arn Canonicalize: an assumed-role session ARN is its role's ARN."""
    m = ASSUMED_ROLE.match(arn)
    return f"arn:{m[1]}:iam::{m[2]}:role/{m[3]}" if m else arn


@dataclass
class EksAuthenticator:
    """``sts(url, headers) -> (status, body)`` performs STS's part (the test world: moto)."""
    cluster: str
    sts: Callable[[str, dict], tuple[int, str]]
    entries: dict[str, AccessEntry] = field(default_factory=dict)
    now: Callable[[], float] = time.time  # presigned URLs are signed on the wall clock
    accepted: list[str] = field(default_factory=list)  # every token that authenticated (a leak check looks for them)

    def add_entry(self, entry: AccessEntry) -> None:
        self.entries[entry.principal_arn] = entry

    def authenticate(self, token: str) -> dict:
        parts = check(token, self.now())
        arn = caller_arn(*self.sts(parts.geturl(), {CLUSTER_HEADER: self.cluster, "accept": "application/json"}))
        entry = self.entries.get(canonical(arn))
        if entry is None:
            raise TokenRejected(f"ARN is not mapped: {arn}")
        username = entry.username or arn
        if token not in self.accepted:  # one per token (a token is reused for 14 minutes)
            self.accepted.append(token)
        return {"username": username, "uid": f"aws-iam-authenticator:{canonical(arn)}",
                "groups": [*entry.groups, "system:authenticated"], "extra": {"arn": [arn]}}
