"""What every use case talks to (the World), and what they share."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # kept off the import path: the admission entry point needs neither
    from chalicelib.converge import Converger
    from chalicelib.kube.client import KubeClient
    from chalicelib.machines.contract import MachineBackend
    from chalicelib.plan import Plan
    from chalicelib.webhook_guard import WebhookTokens

log = logging.getLogger("lambdalet.usecases")


class BadPayload(ValueError):
    """The request body is not what the endpoint takes: answer 400 with this message."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class World:
    """Everything a use case talks to. Built once per Lambda container (wiring.py)."""

    kube: KubeClient
    backends: dict[str, MachineBackend]  # node name -> its backend (nodes with the same settings share one)
    nodes: dict[str, dict]  # node name -> the Node object we register
    clock: Callable[[], datetime] = field(default=utcnow)
    sleep: Callable[[float], None] = field(default=time.sleep)  # the heartbeat loop's waits
    # The bearer tokens kube-apiserver may present to our webhooks; None: no check (the
    # sandbox, managed control planes). Without them the binding fast path is off: a
    # review nobody can vouch for starts no machine.
    webhook_tokens: WebhookTokens | None = None
    # Hand work to an asynchronous invocation of one of our functions: defer(function, payload).
    # At-least-once, later, maybe twice: only idempotent work goes there. None: do it inline.
    defer: Callable[[str, dict], None] | None = None

    def backend_for(self, node: str) -> MachineBackend:
        return self.backends[node]

    def distinct_backends(self) -> list[MachineBackend]:
        found = list(self.backends.values())
        return [b for i, b in enumerate(found) if all(b is not other for other in found[:i])]

    def converger(self, node: str) -> Converger:
        from chalicelib.converge import Converger

        return Converger(node, self.kube, self.backend_for(node), self.clock)


# Seconds kept free at the end of an invocation: the pods' work already started
# finishes (a create with its SDK retries, a status patch, an event) and the
# answer goes out. No pod's work starts later than this before the end.
RESERVE = 10.0


def deadline(budget: float | None, reserve: float = RESERVE) -> float | None:
    """The ``time.monotonic()`` after which no new work starts, for an
    invocation that may still run ``budget`` seconds (None: no limit)."""
    if budget is None:
        return None
    return time.monotonic() + max(budget - reserve, budget / 2)


def caller_allowed(world: World, authorization: str | None) -> bool:
    """Is this webhook call from our kube-apiserver (the bearer token of its webhook kubeconfigs)?"""
    return world.webhook_tokens is None or world.webhook_tokens.accepts(authorization)


def log_plan_errors(result: Plan) -> None:
    for error in result.errors:
        log.error("pod skipped by the planner: %s", error)


def first_error(err: Exception) -> str:
    """The first problem of a pydantic ValidationError (or the error's text), for a 400 answer."""
    from pydantic import ValidationError

    if isinstance(err, ValidationError):
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        return f"{where}: {first['msg']}"
    return str(err)
