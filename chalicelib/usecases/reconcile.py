"""The scheduled reconcile: level-triggered convergence of every node (the source of truth)."""

from __future__ import annotations

import logging

from chalicelib import heartbeat as beats
from chalicelib.machines.contract import MachineBackend
from chalicelib.plan import plan
from chalicelib.usecases.world import World, log_plan_errors

log = logging.getLogger("lambdalet.usecases")


def reconcile(world: World) -> dict[str, dict]:
    """Level-triggered convergence of every node: O(pages) reads + O(changes) writes.

    Machines are listed once per backend for all its nodes. Nodes are
    independent: one whose calls fail is reported and the others still
    converge; the next run (a minute later) retries it.
    """
    report = {}
    for backend in world.distinct_backends():
        names = [name for name in world.nodes if world.backend_for(name) is backend]
        if not names:
            continue
        for name in names:
            # One beat first (register, status when due, lease): the heartbeat function
            # keeps the lease fresh every ~10 s; this one registers a new node before
            # its pods are converged and is a safety net should that function fail.
            beats.beat_once(world.kube, world.nodes[name], world.clock())
        try:
            # Machines first, then pods: a machine created in between shows up as a
            # pod without machine (create is idempotent), never as an orphan.
            listed = backend.list_nodes(names)
        except Exception as err:  # noqa: BLE001 - other backends' nodes still converge
            log.exception("listing machines of %s failed", names)
            report.update({name: {"error": f"{type(err).__name__}: {err}"} for name in names})
            continue
        for name in names:
            try:
                report[name] = _reconcile_node(world, name, backend, listed[name])
            except Exception as err:  # noqa: BLE001 - one node's trouble must not starve the others
                log.exception("reconcile of %s failed", name)
                report[name] = {"error": f"{type(err).__name__}: {err}"}
            log.info("reconciled %s: %s", name, report[name])
    return report


def _reconcile_node(world: World, name: str, backend: MachineBackend, machines: list) -> dict:
    pods = list(world.kube.list_node_pods(name))
    result = plan(name, pods, machines, world.clock(), reap_stopped=backend.keeps_stopped)
    log_plan_errors(result)
    done = world.converger(name).apply(result)
    return {"pods": len(pods), "machines": len(machines), **done, **({"skipped": len(result.errors)} if result.errors else {})}
