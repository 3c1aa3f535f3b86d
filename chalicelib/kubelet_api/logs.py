"""``/containerLogs/{namespace}/{pod}/{container}``: the query and the body (pure).

The query is the apiserver's ``PodLogOptions`` as it forwards them to a kubelet
(``follow``, ``previous``, ``timestamps``, ``tailLines``, ``sinceSeconds``,
``sinceTime``, ``limitBytes``), checked as the apiserver's validation checks them
(``tailLines`` >= 0, ``limitBytes`` >= 1, ``sinceSeconds`` >= 1, not both since*).
The body is what a kubelet writes: the lines, each ending in a newline, with
``timestamps`` prefixed by RFC 3339 time with nine fixed decimals and a space
(kubelet's ``RFC3339NanoFixed``), ``tailLines`` applied first, then cut to
``limitBytes``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone

from pydantic import BaseModel, ConfigDict

from chalicelib.machines.contract import LogLine
from chalicelib.timefmt import parse_iso

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}  # Go's strconv.ParseBool
_FALSE = {"0", "f", "F", "FALSE", "false", "False", ""}


class BadLogQuery(ValueError):
    """The query cannot be honoured: answer 400 with this message."""


class LogOptions(BaseModel):
    model_config = ConfigDict(frozen=True)

    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since: datetime | None = None
    limit_bytes: int | None = None


def _bool(query: Mapping[str, str], key: str) -> bool:
    value = query.get(key)
    if value is None or value in _FALSE:
        return False
    if value in _TRUE:
        return True
    raise BadLogQuery(f"{key}: invalid boolean {value!r}")


def _int(query: Mapping[str, str], key: str, minimum: int) -> int | None:
    value = query.get(key)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise BadLogQuery(f"{key}: invalid integer {value!r}") from None
    if number < minimum:
        raise BadLogQuery(f"{key}: must be greater than or equal to {minimum}")
    return number


def options(query: Mapping[str, str] | None, now: datetime) -> LogOptions:
    """The options of a ``/containerLogs`` query string; BadLogQuery when invalid."""
    query = query or {}
    since_seconds = _int(query, "sinceSeconds", 1)
    since_time = query.get("sinceTime")
    if since_seconds is not None and since_time:
        raise BadLogQuery("at most one of sinceTime or sinceSeconds may be specified")
    since = None
    if since_seconds is not None:
        since = now - timedelta(seconds=since_seconds)
    elif since_time:
        since = parse_iso(since_time)
        if since is None:
            raise BadLogQuery(f"sinceTime: invalid RFC 3339 time {since_time!r}")
    return LogOptions(follow=_bool(query, "follow"), previous=_bool(query, "previous"),
                      timestamps=_bool(query, "timestamps"), tail_lines=_int(query, "tailLines", 0),
                      since=since, limit_bytes=_int(query, "limitBytes", 1))


def stamp(moment: datetime) -> str:
    """kubelet's RFC3339NanoFixed: nine decimals, always."""
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}000Z"


def body(lines: Iterable[LogLine], opts: LogOptions) -> bytes:
    """The response body for ``lines`` (oldest first) under ``opts``."""
    chosen = [line for line in lines if opts.since is None or line.time >= opts.since]
    if opts.tail_lines is not None:
        chosen = chosen[len(chosen) - opts.tail_lines:] if opts.tail_lines else []
    out = b"".join(
        ((stamp(line.time) + " ") if opts.timestamps else "").encode() + line.text.encode() + b"\n"
        for line in chosen
    )
    return out[: opts.limit_bytes] if opts.limit_bytes is not None else out
