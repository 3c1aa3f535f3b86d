"""Small helpers shared by the simulator: time formatting, ids, deep copy.

Every timestamp the simulator writes comes from the injected clock so a test can
swap in simulated time (see KubeSim(clock=...)).
"""
from __future__ import annotations

import copy
import datetime as dt
import random
import string
import uuid

UTC = dt.timezone.utc


def real_clock() -> dt.datetime:
    return dt.datetime.now(UTC)


def fmt_time(t: dt.datetime) -> str:
    """metav1.Time: RFC 3339, second precision (what the apiserver serialises)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_micro(t: dt.datetime) -> str:
    """metav1.MicroTime: RFC 3339 with exactly 6 fractional digits."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: str) -> dt.datetime:
    s = s.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    return dt.datetime.fromisoformat(s).astimezone(UTC)


def normalize_micro(s):
    """Re-serialise a MicroTime string with 6 digits, as the apiserver does."""
    if not isinstance(s, str):
        return s
    try:
        return fmt_micro(parse_time(s))
    except ValueError:
        return s


def new_uid() -> str:
    return str(uuid.uuid4())


_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s utilrand alphabet (no vowels)


def name_suffix(rng: random.Random | None = None, n: int = 5) -> str:
    r = rng or random
    return "".join(r.choice(_SUFFIX_ALPHABET) for _ in range(n))


def deepcopy(o):
    return copy.deepcopy(o)


def hex16(rng: random.Random | None = None) -> str:
    r = rng or random
    return "".join(r.choice(string.hexdigits[:16]) for _ in range(16))
