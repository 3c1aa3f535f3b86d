"""Container output on ECS: the awslogs driver writes it to CloudWatch Logs.

Every container definition logs with ``awslogs`` to ``LAMBDALET_ECS_LOG_GROUP``
with the stream prefix ``lambdalet``. The driver names each stream
``<prefix>/<container name>/<ECS task id>`` (the awslogs ``awslogs-stream-prefix``
option: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using_awslogs.html).
A task is one attempt of one pod (its ``group`` names the pod UID and attempt),
so (pod UID, attempt, container) -> task id -> stream: ``kubectl logs
--previous`` reads the previous attempt's task. The prefix stays fixed
because task definitions are shared by identical pod templates and must not
carry a pod's identity; the task id does.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..contract import LogLine, LogsUnavailable
from .client import classify

STREAM_PREFIX = "lambdalet"
MAX_BYTES = 1_000_000  # what one response carries; GetLogEvents returns at most 1 MB per call
_PAGE = 10_000  # GetLogEvents' largest limit


def log_configuration(log_group: str, region: str) -> dict[str, Any]:
    """A container definition's ``logConfiguration``: awslogs to ``log_group``."""
    return {"logDriver": "awslogs", "options": {
        "awslogs-group": log_group, "awslogs-region": region, "awslogs-stream-prefix": STREAM_PREFIX}}


def stream_name(task_arn: str, container: str) -> str:
    return f"{STREAM_PREFIX}/{container}/{task_arn.rsplit('/', 1)[-1]}"


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def read(logs_client: Any, log_group: str, task_arn: str, container: str, *,
         since: datetime | None = None, tail: int | None = None) -> list[LogLine]:
    """The container's lines, oldest first (see ``MachineBackend.read_logs``)."""
    if not log_group:
        raise LogsUnavailable("container output is not kept: the operator set no LAMBDALET_ECS_LOG_GROUP "
                              "(the tasks log with the awslogs driver only when it is set)")
    stream = stream_name(task_arn, container)
    kwargs: dict[str, Any] = {"logGroupName": log_group, "logStreamName": stream}
    if since is not None:
        kwargs["startTime"] = _ms(since)
    events: list[dict] = []
    try:
        if tail is not None:  # the newest `tail` events: read backwards from the end
            kwargs.update(startFromHead=False, limit=max(1, min(tail, _PAGE)))
            events = (logs_client.get_log_events(**kwargs).get("events") or [])[-tail:] if tail else []
        else:
            kwargs["startFromHead"] = True
            size, token = 0, None
            while size < MAX_BYTES:
                page = logs_client.get_log_events(**kwargs, **({"nextToken": token} if token else {}))
                batch = page.get("events") or []
                events += batch
                size += sum(len(e.get("message", "")) for e in batch)
                if not batch or page.get("nextForwardToken") in (None, token):
                    break
                token = page["nextForwardToken"]
    except Exception as err:  # noqa: BLE001 - classified below
        code = str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))
        if code == "ResourceNotFoundException":
            if _group_missing(logs_client, log_group, stream):
                raise LogsUnavailable(f"the log group {log_group} does not exist (LAMBDALET_ECS_LOG_GROUP)") from None
            return []  # the driver creates the stream when the container starts: nothing written yet
        raise classify(err, "GetLogEvents") from err
    lines = [LogLine(time=datetime.fromtimestamp(e["timestamp"] / 1000, tz=timezone.utc), text=e.get("message", ""))
             for e in events]
    while lines and sum(len(x.text) + 1 for x in lines) > MAX_BYTES:  # keep the newest
        lines = lines[len(lines) // 10 + 1:]
    return lines


def _group_missing(logs_client: Any, log_group: str, stream: str) -> bool:
    """After a ResourceNotFoundException: is it the group (misconfigured) or only the stream
    (nothing written yet)? DescribeLogStreams on the group tells, within the group's permissions."""
    try:
        logs_client.describe_log_streams(logGroupName=log_group, logStreamNamePrefix=stream, limit=1)
    except Exception as err:  # noqa: BLE001 - classified by code
        return str(getattr(err, "response", {}).get("Error", {}).get("Code", "")) == "ResourceNotFoundException"
    return False
