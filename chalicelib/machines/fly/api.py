"""The Machines API over HTTP: the calls lambdalet makes, errors and their
kinds, the client-side rate limit and retries. Never logs the token."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from ..contract import MachineError, MachineNotFound, PermanentMachineError, TransientMachineError
from .config import go_duration

class CapacityError(TransientMachineError):
    """No room for the machine in that region now: retry, or try another region."""



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


_CAPACITY_MARKERS = ("insufficient resources", "insufficient memory", "insufficient capacity",
                     "no capacity", "over the allowed quota", "capacity")


def is_capacity(status: int, body: Any) -> bool:
    """A capacity refusal: the spec's ``ErrorResponse.status`` is
    ``insufficient_capacity``, or (older shapes seen in production) 403/409/412
    whose error names exhausted capacity or quota."""
    if isinstance(body, Mapping) and body.get("status") == "insufficient_capacity":
        return True
    text = error_text(body).lower()
    return status in (403, 409, 412) and any(m in text for m in _CAPACITY_MARKERS)


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



class TokenBuckets:
    """Client-side limit: ``rate`` requests/s per key with ``burst``; waits for a token."""

    def __init__(self, rate: float = 1.0, burst: int = 3, *,
                 monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.rate, self.burst, self.monotonic, self.sleep = rate, burst, monotonic, sleep
        self._buckets: dict[tuple, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: tuple) -> float:
        """Take one token for ``key``, sleeping if none is left; the time slept."""
        with self._lock:
            now = self.monotonic()
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[key] = (tokens - 1 + wait * self.rate, now + wait)
        if wait > 0:
            self.sleep(wait)
        return wait


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
    ):
        import requests

        self.base = base_url.rstrip("/") + "/v1"
        self.app = app
        self.token_provider = token_provider
        self.session = session or requests.Session()
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self.buckets = buckets or TokenBuckets(sleep=sleep)
        self.sleep = sleep

    def _once(self, action: str, method: str, path: str, body: Any = None, params: dict | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token_provider()}", "Accept": "application/json"}
        kwargs: dict[str, Any] = {"headers": headers, "params": params, "timeout": self.timeout}
        if body is not None:
            kwargs["data"] = json.dumps(body)
            headers["Content-Type"] = "application/json"
        response = self.session.request(method, self.base + path, **kwargs)
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
             machine_id: str | None = None, retry_5xx: bool = True) -> Any:
        """One API call: rate-limited per (action, machine), retried on 429
        (and 5xx/connection errors when ``retry_5xx``) with jittered
        exponential back-off that honours Retry-After. Raises FlyApiError or
        a requests exception after the last attempt."""
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
                if machine_id is not None:
                    self.buckets.acquire((action, machine_id))
                return self._once(action, method, path, body, params)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- endpoints ---------------------------------------------------------

    def list_machines(self) -> list[dict]:
        return self.call("list", "GET", f"/apps/{self.app}/machines") or []

    def get_machine(self, machine_id: str) -> dict:
        return self.call("get", "GET", f"/apps/{self.app}/machines/{machine_id}", machine_id=machine_id)

    def create_machine(self, body: dict) -> dict:
        return self.call("create", "POST", f"/apps/{self.app}/machines", body=body, retry_5xx=False)

    def stop_machine(self, machine_id: str, signal: str, timeout_seconds: int) -> None:
        self.call("stop", "POST", f"/apps/{self.app}/machines/{machine_id}/stop",
                  body={"signal": signal, "timeout": go_duration(timeout_seconds)}, machine_id=machine_id)

    def destroy_machine(self, machine_id: str, force: bool = False) -> None:
        self.call("destroy", "DELETE", f"/apps/{self.app}/machines/{machine_id}",
                  params={"force": "true"} if force else None, machine_id=machine_id)

