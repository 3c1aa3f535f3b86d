"""EKS authentication tokens minted from the function's own IAM role (no stored secret).

What ``aws eks get-token`` does (awscli ``customizations/eks/get_token.py``: TokenGenerator,
STSClientFactory) and what aws-iam-authenticator's ``pkg/token/token.go`` (Generator.GetWithSTS)
does the same way: a presigned STS ``GetCallerIdentity`` GET URL, with the header
``x-k8s-aws-id: <cluster name>`` signed into it (so the token is good for that cluster only),
valid 60 s for presigning (``X-Amz-Expires=60``); the token is ``k8s-aws-v1.`` + the URL in
base64url without padding. The apiserver's authenticator calls the URL and learns the role.

EKS accepts a token for 15 minutes after its X-Amz-Date (token.go: presignedURLExpiration),
whatever X-Amz-Expires says; awscli reports an expiry of 14 minutes (TOKEN_EXPIRATION_MINS).
A warm Lambda container keeps one token and mints a new one after 14 minutes.

Presigning is a local computation with the role's credentials: no API call, and no IAM
permission (sts:GetCallerIdentity needs none; it is always allowed).
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable

TOKEN_PREFIX = "k8s-aws-v1."
CLUSTER_HEADER = "x-k8s-aws-id"
URL_EXPIRES = 60  # seconds, awscli URL_TIMEOUT
REUSE_FOR = 14 * 60  # seconds: awscli TOKEN_EXPIRATION_MINS; the server's limit is 15 min


def token_from_url(url: str) -> str:
    """The bearer token for a presigned URL (pure)."""
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def url_from_token(token: str) -> str:
    """The presigned URL inside a token (pure); ValueError if it is not one."""
    if not token.startswith(TOKEN_PREFIX):
        raise ValueError(f"not a {TOKEN_PREFIX} token")
    body = token[len(TOKEN_PREFIX):]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def sts_client(session, region: str):
    """An STS client that signs for ``x-k8s-aws-id``, as awscli's STSClientFactory registers it:
    the cluster name travels as a parameter to the signer, which adds it as a header before
    signing. The real regional endpoint even where AWS_ENDPOINT_URL points elsewhere: the token
    is a URL the apiserver's authenticator calls, not one we call."""
    from botocore.config import Config

    sts = session.client("sts", region_name=region, config=Config(ignore_configured_endpoint_urls=True))

    def keep_cluster(params, context, **_):
        if CLUSTER_HEADER in params:
            context[CLUSTER_HEADER] = params.pop(CLUSTER_HEADER)

    def sign_cluster(request, **_):
        if CLUSTER_HEADER in request.context:
            request.headers[CLUSTER_HEADER] = request.context[CLUSTER_HEADER]

    sts.meta.events.register("provide-client-params.sts.GetCallerIdentity", keep_cluster)
    sts.meta.events.register("before-sign.sts.GetCallerIdentity", sign_cluster)
    return sts


def mint(sts, cluster: str) -> str:
    """A fresh token for ``cluster`` from an ``sts_client``."""
    url = sts.generate_presigned_url("get_caller_identity", Params={CLUSTER_HEADER: cluster},
                                     ExpiresIn=URL_EXPIRES, HttpMethod="GET")
    return token_from_url(url)


class EksTokens:
    """The token callable ``api_client`` asks before every request: one token per
    ``REUSE_FOR`` seconds, minted from the session's credentials (in Lambda: the function's role)."""

    # Wall-clock age: the token expires 15 min after its X-Amz-Date, and a suspended Lambda
    # container's monotonic clock may stand still while the wall clock runs on.
    def __init__(self, cluster: str, region: str, session=None, clock: Callable[[], float] = time.time):
        if session is None:
            import boto3

            session = boto3.session.Session()
        self.cluster, self.clock = cluster, clock
        self._sts = sts_client(session, region)
        self._token, self._minted = "", 0.0
        self._lock = threading.Lock()  # the converger's threads share the client

    def __call__(self) -> str:
        with self._lock:
            now = self.clock()
            if not self._token or now - self._minted >= REUSE_FOR:
                self._token, self._minted = mint(self._sts, self.cluster), now
            return self._token
