"""The scheduled heartbeat: every node's Lease renewed every ~10 s for most of a minute."""

from __future__ import annotations

import logging

from chalicelib import heartbeat as beats
from chalicelib.usecases.world import World

log = logging.getLogger("lambdalet.usecases")


def heartbeat(world: World, budget: float | None = None) -> dict[str, dict]:
    """Keep every node Ready for most of a minute: lease renewed every ~10 s, status when due.

    ``budget``: seconds this invocation may still run (Lambda's remaining time).
    """
    report = beats.keep_alive(world.kube, world.nodes, world.clock, world.sleep, budget=budget)
    log.info("heartbeat: %s", report)
    return report
