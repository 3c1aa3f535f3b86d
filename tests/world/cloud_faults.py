"""Failing cloud calls for the chaos run: every AWS call lambdalet makes (ECS,
Secrets Manager, CloudWatch Logs, DynamoDB, Lambda) and every Fly Machines call
fails with a given probability, the way those services fail, and an invocation
can be killed right after the cloud accepted a create.

AWS: botocore event hooks on every client created while installed (as moto
installs its own stubber: ``botocore.handlers.BUILTIN_HANDLERS``).
``before-call`` answers instead of the service, so nothing runs there:

* throttled: the service's throttling error, with the status it sends
  (``ThrottlingException`` 400 for ECS, Secrets Manager and CloudWatch Logs;
  DynamoDB ``ProvisionedThroughputExceededException`` 400; Lambda
  ``TooManyRequestsException`` 429 with ``Retry-After``, the only one of these
  whose botocore model has that header: ``retryAfterSeconds``);
* a 5xx (``ServerException``, ``InternalServiceError``, ``ServiceUnavailableException``,
  ``InternalServerError``, ``ServiceException``);
* a connect timeout (botocore ``ConnectTimeoutError``: the request never left).

and ``after-call`` raises a ``ReadTimeoutError`` after the service did the
work: the answer was lost (the caller cannot tell whether it happened).
A failed call here is one whose SDK retries are all spent: the hooks sit
above botocore's retry loop (the SDK's own retries are tested with the
Fargate plane's limits, tests/test_fargate_plane.py).

Fly: the fake (``FlyFake.chaos``) answers 429 with ``Retry-After``, 5xx, 409
(a lease held by someone else on stop/delete: the Machines API's
``/machines/{id}/lease``, taken by flyctl deploys) or executes the call and
drops the connection (the answer lost); ``fly_kill_hook`` is the requests
response hook that kills after a create.

``Killed`` is what a Lambda timeout or OOM kill is to the code: it stops
wherever it is, and nothing after it runs. It derives from BaseException, so
no ``except Exception`` of lambdalet's catches it; only the chaos driver does.
Once one call is killed the invocation is dead: every later cloud call of it
raises ``Killed`` too, until the driver ``revive()``s the world for the next
invocation. (The hooks cannot tell invocations apart: two running at once die
together, and a killed invocation's Kubernetes calls still go through until its
next cloud call.)
"""

from __future__ import annotations

import random
import threading
from collections import Counter

# (throttling code, status, headers), (5xx code, status) per botocore service id.
AWS_ERRORS: dict[str, tuple[tuple[str, int, dict], tuple[str, int]]] = {
    "ecs": (("ThrottlingException", 400, {}), ("ServerException", 500)),
    "secrets-manager": (("ThrottlingException", 400, {}), ("InternalServiceError", 500)),
    "cloudwatch-logs": (("ThrottlingException", 400, {}), ("ServiceUnavailableException", 500)),
    "dynamodb": (("ProvisionedThroughputExceededException", 400, {}), ("InternalServerError", 500)),
    "lambda": (("TooManyRequestsException", 429, {"Retry-After": "1"}), ("ServiceException", 500)),
}
CREATES = {("ecs", "RunTask")}


class Killed(BaseException):
    """The Lambda runtime ended the invocation (timeout, out of memory)."""


class CloudFaults:
    """``rate``: the share of calls that fail. Off until ``armed``. An invocation
    ``revive(doomed=True)`` announced is killed right after its first create the
    cloud accepts."""

    def __init__(self, rng: random.Random, rate: float):
        self.rng, self.rate = rng, rate
        self.armed = False
        self.dying = False
        self.doomed = False
        self.counts: Counter = Counter()
        self.killed_creates: list[str] = []  # machines whose create returned to an invocation then killed
        self._lock = threading.Lock()
        self._handlers = [("before-call", self._before), ("after-call", self._after)]

    # -- life cycle ----------------------------------------------------------
    def install(self) -> "CloudFaults":
        import boto3
        from botocore.handlers import BUILTIN_HANDLERS

        BUILTIN_HANDLERS.extend(self._handlers)
        boto3.DEFAULT_SESSION = None  # the next boto3.client() builds a session with the hooks
        return self

    def uninstall(self) -> None:
        import boto3
        from botocore.handlers import BUILTIN_HANDLERS

        for handler in self._handlers:
            if handler in BUILTIN_HANDLERS:
                BUILTIN_HANDLERS.remove(handler)
        boto3.DEFAULT_SESSION = None

    def __enter__(self) -> "CloudFaults":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()

    def revive(self, doomed: bool = False) -> None:
        """A new invocation (the killed one is gone); ``doomed``: it dies after its first accepted create."""
        self.dying, self.doomed = False, doomed

    def kill_now(self) -> None:
        """The runtime ends the running invocation at its next cloud call (its time is up)."""
        self.dying = True

    # -- decisions -----------------------------------------------------------
    def _roll(self, rate: float) -> float | None:
        with self._lock:
            value = self.rng.random()
        return value if value < rate else None

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def fly_fault(self, action: str) -> tuple[int, str, dict] | None:
        """The Fly fake's ``chaos`` hook: what this call answers instead, if anything.
        Status 0: do the call, then drop the connection."""
        if not self.armed or self._roll(self.rate) is None:
            return None
        with self._lock:
            kind = self.rng.choice(["throttled", "5xx", "lost", "lease"] if action in ("stop", "delete")
                                   else ["throttled", "5xx", "lost"])
            retry_after = self.rng.choice([0, 1, 2])
        self.count(f"fly {action} {kind}")
        if kind == "throttled":  # Fly's per-app / per-machine limits (fly_fake RATE_LIMITS)
            return 429, "rate limit exceeded", {"Retry-After": str(retry_after)}
        if kind == "5xx":
            return 503, "service unavailable", {}
        if kind == "lease":
            return 409, "machine lease currently held by another client, expires soon", {}
        return 0, "", {}

    def fly_kill_hook(self, response, *args, **kwargs):
        """requests response hook on lambdalet's Fly session: killed once a create came back 200."""
        if self.armed and response.request.method == "POST" and response.request.path_url.rstrip("/").endswith(
                "/machines") and response.status_code == 200 and self.doomed:
            self.count("killed after Fly create")
            self.killed_creates.append(str(response.json().get("id")))
            self.dying, self.doomed = True, False
            raise Killed("after Fly create")
        if self.armed and self.dying:
            self.count("killed: calls of a dead invocation")
            raise Killed("invocation already killed")
        return response

    # -- botocore hooks ------------------------------------------------------
    def _before(self, model, params, context, event_name, **kwargs):
        if not self.armed:
            return None
        if self.dying:
            self.count("killed: calls of a dead invocation")
            raise Killed("invocation already killed")
        service = event_name.split(".")[1]
        if self._roll(self.rate) is None:
            return None
        with self._lock:
            kind = self.rng.choice(["throttled", "5xx", "connect timeout", "read timeout"])
        self.count(f"aws {service} {model.name} {kind}")
        if kind == "read timeout":
            context["chaos_read_timeout"] = True  # done by the service, answer lost (after-call)
            return None
        if kind == "connect timeout":
            from botocore.exceptions import ConnectTimeoutError

            raise ConnectTimeoutError(endpoint_url=f"https://{service}.us-east-1.amazonaws.com")
        throttled, server = AWS_ERRORS.get(service, (("ThrottlingException", 400, {}), ("InternalFailure", 500)))
        code, status, headers = throttled if kind == "throttled" else (*server, {})
        return _error_response(code, status, headers)

    def _after(self, http_response, parsed, model, context, event_name, **kwargs):
        if not self.armed:
            return
        service = event_name.split(".")[1]
        if context.get("chaos_read_timeout"):
            from botocore.exceptions import ReadTimeoutError

            raise ReadTimeoutError(endpoint_url=f"https://{service}.us-east-1.amazonaws.com")
        if ((service, model.name) in CREATES and http_response.status_code == 200
                and not parsed.get("failures") and self.doomed):
            self.count(f"killed after {model.name}")
            self.killed_creates += [task["taskArn"] for task in parsed.get("tasks") or []]
            self.dying, self.doomed = True, False
            raise Killed(f"after {model.name}")


def _error_response(code: str, status: int, headers: dict):
    """What botocore's parser makes of a service's error answer: (http, parsed)."""
    from botocore.awsrequest import AWSResponse

    headers = {"x-amzn-RequestId": "chaos", **headers}
    parsed = {"Error": {"Code": code, "Message": "Rate exceeded" if status in (400, 429) else "Internal failure"},
              "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers, "RetryAttempts": 0}}
    if "Retry-After" in headers:
        parsed["retryAfterSeconds"] = headers["Retry-After"]
    return AWSResponse("https://chaos.invalid", status, headers, None), parsed
