"""Kubernetes resource quantities ("250m", "1Gi", "1e9") and the error that
names a pod field a user must change. Pure."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any


class UnsupportedPod(ValueError):
    """The pod uses something this version cannot run. ``str()`` is for users:
    it names each offending field and what to do instead."""

    def __init__(self, violations: list[tuple[str, str]]):
        self.violations = violations
        super().__init__(
            "; ".join(f"{field}: {why}" for field, why in violations)
        )


# --------------------------------------------------------------------------
# Quantities
# --------------------------------------------------------------------------

_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:\d+\.?\d*|\.\d+))"
    r"(?:(?P<exp>[eE][+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$"
)


# Beyond 10^±30 no machine size is meant (E is 10^18); also keeps Decimal from
# overflowing on "1e999999999".
MAX_EXPONENT = 30


def parse_quantity(value: Any, field: str = "quantity") -> Decimal:
    """A Kubernetes resource.Quantity ("250m", "1Gi", "1e9", 2) as a Decimal
    in base units (cores, bytes). Raises UnsupportedPod naming ``field``."""
    if isinstance(value, bool):
        raise UnsupportedPod([(field, f"{value!r} is not a quantity")])
    if isinstance(value, (int, float)):
        value = str(value)  # JSON numbers go through the same checks as strings
    m = _QUANTITY.match(str(value).strip())
    if not m:
        raise UnsupportedPod(
            [(field, f"{value!r} is not a Kubernetes quantity (e.g. 250m, 1, 512Mi, 1Gi)")]
        )
    try:
        num = Decimal(m["num"])
    except InvalidOperation:  # pragma: no cover - the regex only admits numbers
        raise UnsupportedPod([(field, f"{value!r} is not a number")]) from None
    if m["exp"] and abs(int(m["exp"][1:])) > MAX_EXPONENT:
        raise UnsupportedPod([(field, f"{value!r} is out of range for a resource quantity")])
    quantity = num * (Decimal(10) ** int(m["exp"][1:]) if m["exp"] else _SUFFIX[m["suffix"] or ""])
    if quantity < 0:  # as kube-apiserver's validation (ValidateNonnegativeQuantity)
        raise UnsupportedPod([(field, f"{value!r} is negative: a resource quantity must be 0 or more")])
    return quantity


def cpu_millis(value: Any, field: str = "cpu") -> int:
    """CPU quantity -> millicores, rounded up ("250m" -> 250, "0.5" -> 500)."""
    return math.ceil(parse_quantity(value, field) * 1000)


def memory_mib(value: Any, field: str = "memory") -> int:
    """Memory quantity -> MiB, rounded up ("1G" -> 954, "1Gi" -> 1024)."""
    return math.ceil(parse_quantity(value, field) / (2**20))
