"""Who may call lambdalet's webhooks, and how much they may send.

Body size: refused (413) from the Content-Length header or the body's length,
before anything parses it. kube-apiserver itself takes at most 3 MiB per
request (genericapiserver's MaxRequestBodyBytes) and etcd keeps objects under
~1.5 MiB, so an AdmissionReview (object + oldObject of an UPDATE) fits in
4 MiB. An audit batch holds pod deletes and bindings only (our audit policy);
5 MiB is far beyond 400 of them and under Lambda's 6 MB payload limit. A
refused audit batch loses nothing: the apiserver retries, the reconcile
converges anyway.

Tokens: the bearer token of the apiserver's webhook kubeconfigs, from Secrets
Manager. The ``AWSCURRENT`` version is accepted; the ``AWSPREVIOUS`` one too,
for ``window`` after the current version was created, so an apiserver still
presenting the old token keeps working while a rotation reaches it. A token
matching neither forces a fresh read (at most every ``refresh_every``), so a
rotation reaches a warm container at once, not after the cache's age.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

MAX_BODY = {"audit": 5 * 2**20, "admission": 4 * 2**20}

# (token, created) of one staged version of the secret, or None when there is none.
Fetch = Callable[[str], "tuple[str, datetime] | None"]


def too_large(kind: str, content_length: str | None, body: Callable[[], bytes]) -> str | None:
    """Why the request is too large for the ``kind`` webhook, or None. The
    declared Content-Length is judged first: the body is not even decoded then."""
    limit = MAX_BODY[kind]
    try:
        size = int(content_length or 0)
    except ValueError:
        size = 0
    if size <= limit:
        size = len(body() or b"")
    if size > limit:
        return f"the {kind} webhook takes at most {limit} bytes; this request has {size}"
    return None


def bearer(authorization: str | None) -> str | None:
    scheme, _, presented = (authorization or "").partition(" ")
    return presented.strip() if scheme.lower() == "bearer" and presented.strip() else None


class WebhookTokens:
    """The tokens our webhooks accept (see the module docstring)."""

    def __init__(self, fetch: Fetch, clock: Callable[[], datetime], *, window: timedelta = timedelta(hours=1),
                 max_age: timedelta = timedelta(minutes=5), refresh_every: timedelta = timedelta(seconds=10)):
        self._fetch, self._clock = fetch, clock
        self.window, self.max_age, self.refresh_every = window, max_age, refresh_every
        self._tokens: tuple[str, ...] = ()
        self._read_at: datetime | None = None
        self._lock = threading.Lock()

    def accepts(self, authorization: str | None) -> bool:
        presented = bearer(authorization)
        if presented is None:
            return False
        now = self._clock()
        with self._lock:
            if self._read_at is None or now - self._read_at >= self.max_age:
                self._read(now)
            if _matches(presented, self._tokens):
                return True
            if now - self._read_at >= self.refresh_every:  # rotated since we read? look once more
                self._read(now)
                return _matches(presented, self._tokens)
        return False

    def _read(self, now: datetime) -> None:
        current = self._fetch("AWSCURRENT")
        if current is None:
            raise LookupError("the webhook token secret has no AWSCURRENT version")
        tokens = [current[0]]
        if now - current[1] < self.window:
            previous = self._fetch("AWSPREVIOUS")
            if previous is not None:
                tokens.append(previous[0])
        self._tokens, self._read_at = tuple(tokens), now


def _matches(presented: str, tokens: tuple[str, ...]) -> bool:
    # Constant-time per token, and every token compared: no early exit tells which.
    return sum(hmac.compare_digest(presented.encode(), t.encode()) for t in tokens) > 0


def secrets_manager_fetch(client, secret_id: str) -> Fetch:
    """``Fetch`` over a boto3 Secrets Manager client: one staged version of ``secret_id``."""

    def fetch(stage: str) -> tuple[str, datetime] | None:
        try:
            found = client.get_secret_value(SecretId=secret_id, VersionStage=stage)
        except client.exceptions.ResourceNotFoundException:
            if stage == "AWSCURRENT":
                raise
            return None  # never rotated: there is no previous version
        return found["SecretString"], found["CreatedDate"]

    return fetch
