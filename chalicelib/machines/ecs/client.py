"""The ECS client: its configuration, and every ECS error classified into
the contract's three kinds (transient, permanent, not found)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..contract import MachineError, PermanentMachineError, TransientMachineError

_THROTTLING = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "LimitExceededException",
}
_SERVER = {"ServerException", "InternalFailure", "InternalError", "ServiceUnavailable",
           "ServiceUnavailableException", "RequestTimeout", "RequestTimeoutException"}
# Operator-side problems: nothing is wrong with the pod, and it can start
# once someone fixes the account/IAM/cluster. Retried and shown, never fatal.
_OPERATOR = {
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "ExpiredToken",
    "ClusterNotFoundException",
    "BlockedException",
}
_PERMANENT = {
    "InvalidParameterException",
    "ClientException",
    "PlatformUnknownException",
    "PlatformTaskDefinitionIncompatibilityException",
    "UnsupportedFeatureException",
    "ConflictException",
    "ValidationException",
}
# ClientException and InvalidParameterException are also ECS's words for some
# passing conditions: under load RunTask answers InvalidParameterException
# "Error retrieving security group information for [sg-...]: Request limit
# exceeded. (ErrorCode: RequestLimitExceeded)" (the EC2 throttling behind the
# task's ENI; dask/dask-cloudprovider#56, reproio/wrapbox#32), beside
# ThrottlingException.
_TRANSIENT_CLIENT_MESSAGES = ("too many concurrent", "rate exceeded", "try again", "request limit exceeded")
# An invalid parameter about what the operator configured (network, roles, the
# cluster) is nothing the pod can fix: keep the pod waiting, say what to fix.
_OPERATOR_PARAMETERS = ("subnet", "securitygroup", "security group", "networkconfiguration",
                        "role", "cluster", "vpc")


def classify(error: BaseException, action: str = "ECS") -> MachineError:
    """The MachineError kind for any error raised by the ECS client."""
    if isinstance(error, MachineError):
        return error
    from botocore import exceptions as bx  # lazy: keep module import light

    if isinstance(error, bx.ClientError):
        err = error.response.get("Error", {})
        code = str(err.get("Code", "Unknown"))
        message = str(err.get("Message", "") or error)
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        text = f"ECS {action} failed: {code}: {message}"
        if code in _THROTTLING or code in _SERVER or status >= 500:
            return TransientMachineError(text)
        if code in ("ClientException", "InvalidParameterException") and any(
            m in message.lower() for m in _TRANSIENT_CLIENT_MESSAGES
        ):
            return TransientMachineError(text)
        if code in _OPERATOR or (code == "InvalidParameterException"
                                 and any(m in message.lower() for m in _OPERATOR_PARAMETERS)):
            return TransientMachineError(text + " (fix the lambdalet AWS setup; retrying)")
        if code in _PERMANENT or 400 <= status < 500:
            return PermanentMachineError(text)
        return TransientMachineError(text)
    if isinstance(error, (bx.ParamValidationError, bx.ValidationError)):
        return PermanentMachineError(f"ECS {action} rejected the request: {error}")
    if isinstance(
        error,
        (bx.ConnectionError, bx.HTTPClientError, bx.NoCredentialsError,
         bx.PartialCredentialsError, bx.CredentialRetrievalError),
    ):
        return TransientMachineError(f"ECS {action} could not reach AWS: {error}")
    return TransientMachineError(f"ECS {action} failed: {type(error).__name__}: {error}")


def failure_error(failures: list[dict]) -> MachineError:
    """RunTask ``failures`` (capacity, ENI, agent, ...) as a MachineError."""
    text = "; ".join(
        f"{f.get('reason', 'unknown')}" + (f" ({f['detail']})" if f.get("detail") else "")
        for f in failures
    )
    # ATTRIBUTE: a placement constraint no capacity can satisfy, for this task.
    if all(str(f.get("reason", "")).startswith("ATTRIBUTE") for f in failures):
        return PermanentMachineError(f"ECS RunTask could not place the task: {text}")
    return TransientMachineError(f"ECS RunTask could not start the task now: {text}")


def client_config(retries: int = 2, mode: str = "standard"):
    """botocore Config for the ECS client: the SDK's own retries (standard
    mode: exponential backoff with jitter) for throttling/5xx/connection
    errors. Few of them: a webhook must answer within its timeout, and the
    next reconcile pass is the real retry. Short timeouts for the same reason."""
    from botocore.config import Config

    # botocore's `max_attempts` counts retries, not the first attempt.
    return Config(
        retries={"mode": mode, "max_attempts": retries},
        connect_timeout=3,
        read_timeout=15,
    )


def make_client(region_name: str | None = None, **kwargs: Any):
    """An ECS client with ``client_config()``; ``kwargs`` go to boto3.client."""
    import boto3

    kwargs.setdefault("config", client_config())
    return boto3.client("ecs", region_name=region_name, **kwargs)


def _client_error_parts(e: BaseException) -> tuple[str, str]:
    response = getattr(e, "response", None)
    if not isinstance(response, Mapping):
        return "", ""
    err = response.get("Error") or {}
    return str(err.get("Code", "")), str(err.get("Message", ""))


def _is_missing_task_definition(e: BaseException) -> bool:
    code, message = _client_error_parts(e)
    m = message.lower()
    return code == "ClientException" and (
        "unable to describe task definition" in m or "not found" in m or "missing" in m
    )


def _is_missing_task(e: BaseException) -> bool:
    code, message = _client_error_parts(e)
    return code in ("InvalidParameterException", "ClientException") and (
        "not found" in message.lower() or "could not find" in message.lower()
    )


def conflicting_tasks(e: BaseException) -> list[str]:
    """The task ARNs of a RunTask ``ConflictException``: "The provided
    clientToken is already in use with a different RunTask request. The
    resourceIds are the existing task ARNs which are already associated with
    the clientToken" (RunTask API reference; botocore models ``resourceIds``
    as a member of the error, parsed into the response's top level)."""
    code, _ = _client_error_parts(e)
    if code != "ConflictException":
        return []
    response = getattr(e, "response", None) or {}
    ids = response.get("resourceIds") or (response.get("Error") or {}).get("resourceIds") or []
    return [str(i) for i in ids]
