"""The Machines API over HTTP: the calls lambdalet makes, errors and their
kinds, the client-side rate limit and retries. Never logs the token."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from ..contract import MachineError, MachineNotFound, PermanentMachineError, TransientMachineError
from ..pacing import TokenBuckets as _TokenBuckets
from .config import go_duration

DEFAULT_PLATFORM_URL = "https://api.fly.io"
LOG_RETENTION_DAYS = 7  # what Fly keeps of an app's logs (issue 8, item 8: flyctl's `fly logs`)


class CapacityError(TransientMachineError):
    """No room for the machine in that region now: retry, or try another region."""


class NameTaken(TransientMachineError):
    """A create whose machine name exists already: the machine of this
    (uid, attempt) was created by an earlier call (names are per app)."""



class FlyApiError(Exception):
    """A non-2xx answer of the Machines API (never carries the token)."""

    def __init__(self, action: str, status: int, body: Any, retry_after: float | None = None):
        self.action, self.status, self.body, self.retry_after = action, status, body, retry_after
        super().__init__(f"Fly {action} failed: HTTP {status}: {error_text(body)}")


def error_text(body: Any) -> str:
    if isinstance(body, Mapping):
        text = str(body.get("error") or body.get("message") or "") or json.dumps(body)[:300]
        if body.get("status") and body.get("status") != "unknown":
            text += f" ({body['status']})"
        return text
    return str(body or "")[:300]


_CAPACITY_MARKERS = ("insufficient resources", "insufficient memory", "insufficient cpu", "insufficient capacity",
                     "could not reserve resource", "no capacity", "over the allowed quota", "capacity")
# Statuses a capacity refusal has been reported with (issue 8, item 2): not only
# the spec's 412 but 409 and 422 too; 403 for an exhausted org quota.
_CAPACITY_STATUSES = (403, 409, 412, 422)


def body_status(body: Any) -> str:
    """``ErrorResponse.status``: the machine-readable reason (``insufficient_capacity``, ``name_taken``...)."""
    return str(body.get("status") or "") if isinstance(body, Mapping) else ""


def is_capacity(status: int, body: Any) -> bool:
    """A capacity refusal: ``ErrorResponse.status`` is ``insufficient_capacity``
    (whatever the HTTP status), or a 403/409/412/422 whose error names exhausted
    capacity, a resource that could not be reserved, or a quota (texts such as
    "could not reserve resource for machine: insufficient memory available")."""
    if body_status(body) == "insufficient_capacity":
        return True
    text = error_text(body).lower()
    return status in _CAPACITY_STATUSES and any(m in text for m in _CAPACITY_MARKERS)


def is_name_taken(status: int, body: Any) -> bool:
    return body_status(body) == "name_taken" or (status in (409, 422) and "already taken" in error_text(body).lower())


def is_manifest_unknown(status: int, body: Any) -> bool:
    """The registry has no such image (yet): Fly resolves the image at create
    and answers 4xx with the registry's ``MANIFEST_UNKNOWN`` in the text; right
    after a push it is often transient (issue 8, item 4)."""
    text = error_text(body)
    return 400 <= status < 500 and ("MANIFEST_UNKNOWN" in text or "manifest unknown" in text.lower())


def classify(error: BaseException, action: str = "request") -> MachineError:
    """The MachineError kind for anything the Fly client raised.

    Transient: 429 (rate limited), 5xx, 408, capacity (``CapacityError``),
    401/403 (the operator's token or org: retried and shown, never fatal),
    connection errors and timeouts. Not found: 404 (the machine, or for a
    create the app: transient, fix the setup). Permanent: any other 4xx (the
    request can never succeed as it is, e.g. an image that does not exist).
    """
    if isinstance(error, MachineError):
        return error
    if isinstance(error, FlyApiError):
        status, text = error.status, str(error)
        if is_capacity(status, error.body):
            return CapacityError(text)
        if is_name_taken(status, error.body):
            return NameTaken(text)
        if is_manifest_unknown(status, error.body):
            return PermanentMachineError(
                text + " (the image was still unknown to the registry after retries: check the name and tag)")
        if status == 429 or status == 408 or status >= 500:
            return TransientMachineError(text)
        if status in (401, 403):
            return TransientMachineError(text + " (fix the lambdalet Fly token/app; retrying)")
        if status == 404:
            if action == "create":
                return TransientMachineError(text + " (does the Fly app exist? retrying)")
            return MachineNotFound(text)
        if 400 <= status < 500:
            return PermanentMachineError(text)
        return TransientMachineError(text)
    import requests  # lazy: keep module import light

    if isinstance(error, requests.RequestException):
        return TransientMachineError(f"Fly {action} could not reach the Machines API: {type(error).__name__}")
    return TransientMachineError(f"Fly {action} failed: {type(error).__name__}: {error}")



# Fly's documented Machines API limits (issue 8, item 3; Fly's "Machines API
# rate limits" docs): per action and per identifier, 1 request/s with a burst
# of 3; Get Machine 5/s, burst 10. The identifier is the machine id for
# actions on one machine and the app for creates and lists.
RATE_LIMITS: dict[str, tuple[float, int]] = {"get": (5.0, 10)}
DEFAULT_RATE_LIMIT = (1.0, 3)
APP_SCOPED = frozenset({"create", "list"})


class TokenBuckets(_TokenBuckets):
    """Fly's documented limits (``RATE_LIMITS``, else 1/s with a burst of 3) unless told otherwise."""

    def __init__(self, rate: float = DEFAULT_RATE_LIMIT[0], burst: int = DEFAULT_RATE_LIMIT[1], *,
                 limits: Mapping[str, tuple[float, int]] | None = None, **kwargs):
        super().__init__(rate, burst, limits=RATE_LIMITS if limits is None else limits, **kwargs)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None


class FlyApi:
    """The few Machines API calls lambdalet makes, with limits and retries.

    ``token_provider``: returns the API token (Secrets Manager, cached by the
    caller); called per request so a rotated token is picked up.
    """

    def __init__(
        self,
        base_url: str,
        app: str,
        token_provider: Callable[[], str],
        *,
        session: Any = None,
        timeout: tuple[float, float] = (3.0, 15.0),
        max_attempts: int = 4,
        max_wait: float = 8.0,
        buckets: TokenBuckets | None = None,
        sleep: Callable[[float], None] = time.sleep,
        platform_url: str = DEFAULT_PLATFORM_URL,
        manifest_retries: int = 3,
    ):
        import requests

        self.base = base_url.rstrip("/") + "/v1"
        self.platform = platform_url.rstrip("/")
        self.manifest_retries = manifest_retries
        self.app = app
        self.token_provider = token_provider
        self.session = session or requests.Session()
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self.buckets = buckets or TokenBuckets(sleep=sleep)
        self.sleep = sleep

    def _once(self, action: str, method: str, path: str, body: Any = None, params: dict | None = None,
              base: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token_provider()}", "Accept": "application/json"}
        kwargs: dict[str, Any] = {"headers": headers, "params": params, "timeout": self.timeout}
        if body is not None:
            kwargs["data"] = json.dumps(body)
            headers["Content-Type"] = "application/json"
        response = self.session.request(method, (base or self.base) + path, **kwargs)
        if 200 <= response.status_code < 300:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                return None
        try:
            payload = response.json()
        except ValueError:
            payload = response.text
        raise FlyApiError(action, response.status_code, payload, _retry_after(response.headers.get("Retry-After")))

    def call(self, action: str, method: str, path: str, *, body: Any = None, params: dict | None = None,
             machine_id: str | None = None, retry_5xx: bool = True, base: str | None = None) -> Any:
        """One API call: rate-limited per (action, machine id) or, for creates
        and lists, per (action, app); retried on 429 (and 5xx/connection
        errors when ``retry_5xx``) with jittered exponential back-off that
        honours Retry-After. Raises FlyApiError or a requests exception after
        the last attempt."""
        import requests
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

        jitter = wait_random_exponential(multiplier=0.25, max=self.max_wait)

        def retryable(e: BaseException) -> bool:
            if isinstance(e, FlyApiError):
                return e.status == 429 or (retry_5xx and e.status >= 500)
            return retry_5xx and isinstance(e, (requests.ConnectionError, requests.Timeout))

        def wait(state) -> float:
            e = state.outcome.exception()
            return min(self.max_wait, max(getattr(e, "retry_after", None) or 0.0, jitter(state)))

        for attempt in Retrying(stop=stop_after_attempt(self.max_attempts), wait=wait,
                                retry=retry_if_exception(retryable), sleep=self.sleep, reraise=True):
            with attempt:
                identifier = self.app if action in APP_SCOPED else machine_id
                if identifier is not None:
                    self.buckets.acquire((action, identifier))
                return self._once(action, method, path, body, params, base)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- endpoints ---------------------------------------------------------

    def list_machines(self, metadata: Mapping[str, str] | None = None, *, include_deleted: bool = False) -> list[dict]:
        """``GET /machines``, filtered server-side by ``metadata.<key>=<value>``
        (documented in Fly's Machines resource reference)."""
        params = {f"metadata.{k}": v for k, v in (metadata or {}).items()}
        if include_deleted:
            params["include_deleted"] = "true"
        return self.call("list", "GET", f"/apps/{self.app}/machines", params=params or None) or []

    def get_machine(self, machine_id: str) -> dict:
        return self.call("get", "GET", f"/apps/{self.app}/machines/{machine_id}", machine_id=machine_id)

    def create_machine(self, body: dict) -> dict:
        """POST create. A ``MANIFEST_UNKNOWN`` refusal is retried with back-off
        (``manifest_retries`` times: right after a push the registry may not
        serve the image yet), then left to ``classify`` (permanent)."""
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

        for attempt in Retrying(stop=stop_after_attempt(1 + self.manifest_retries),
                                wait=wait_exponential(multiplier=0.5, max=self.max_wait),
                                retry=retry_if_exception(
                                    lambda e: isinstance(e, FlyApiError) and is_manifest_unknown(e.status, e.body)),
                                sleep=self.sleep, reraise=True):
            with attempt:
                return self.call("create", "POST", f"/apps/{self.app}/machines", body=body, retry_5xx=False)
        raise AssertionError("unreachable")  # pragma: no cover

    def stop_machine(self, machine_id: str, signal: str, timeout_seconds: int) -> None:
        self.call("stop", "POST", f"/apps/{self.app}/machines/{machine_id}/stop",
                  body={"signal": signal, "timeout": go_duration(timeout_seconds)}, machine_id=machine_id)

    def destroy_machine(self, machine_id: str, force: bool = False) -> None:
        self.call("destroy", "DELETE", f"/apps/{self.app}/machines/{machine_id}",
                  params={"force": "true"} if force else None, machine_id=machine_id)

    def machine_logs(self, machine_id: str, next_token: str = "") -> tuple[list[dict], str]:
        """One page of a machine's logs: ``(entries, next_token)``.

        Fly keeps an app's logs for about ``LOG_RETENTION_DAYS`` days and serves
        them on its platform API (not the Machines API), ``GET
        {platform_url}/api/v1/apps/{app}/logs?instance=<machine id>&next_token=``,
        as ``fly logs -i`` reads them (flyctl ``GetAppLogs``; undocumented but
        stable). Each entry: ``timestamp`` (ISO), ``message``, ``level``,
        ``instance``, ``region``, ``meta``. Pass the returned ``next_token`` to
        read on from where this page ended; an empty page means nothing newer
        yet. Lines older than the retention are gone.
        """
        out = self.call("logs", "GET", f"/api/v1/apps/{self.app}/logs",
                        params={"instance": machine_id, "next_token": next_token},
                        machine_id=machine_id, base=self.platform) or {}
        entries = [dict(d.get("attributes") or {}) for d in out.get("data") or [] if isinstance(d, Mapping)]
        return entries, str((out.get("meta") or {}).get("next_token") or "")
