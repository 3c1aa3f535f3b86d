"""Time as the APIs write it: Kubernetes Time/MicroTime out, ISO 8601 in."""

from __future__ import annotations

import re
from datetime import datetime, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # sorts "no time given" first


def rfc3339(moment: datetime) -> str:
    """A Kubernetes Time: seconds, Z."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime as the apiserver writes it: six decimals, Z."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str | None) -> datetime | None:
    """An ISO 8601 / RFC 3339 stamp as an aware datetime (UTC when no zone is
    given); None for empty text and Go's zero time. Nanoseconds (Go) are cut
    to microseconds."""
    if not text or text.startswith("0001-01-01"):
        return None
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
