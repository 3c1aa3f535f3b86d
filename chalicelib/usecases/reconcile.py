"""The scheduled reconcile: level-triggered convergence of every node (the source of truth)."""

from __future__ import annotations

import logging

from chalicelib import heartbeat as beats
from chalicelib.machines.contract import Machine, MachineBackend, MachinePhase
from chalicelib.plan import ORPHAN_GRACE, plan
from chalicelib.usecases.world import World, deadline, log_plan_errors

log = logging.getLogger("lambdalet.usecases")

# More nodes than this, and the scheduled reconcile hands each node to its own
# asynchronous invocation (World.defer): one invocation's budget holds a few
# nodes' listings and changes, not a hundred (bench: "many nodes").
FANOUT_NODES = 8


def reconcile(world: World, budget: float | None = None, only: list[str] | None = None) -> dict[str, dict]:
    """Level-triggered convergence of every node: O(pages) reads + O(changes) writes.

    ``budget``: seconds this invocation may still run (Lambda's remaining
    time); pods whose work would start too late are left to the next run
    (reported as ``deferred``).

    Machines are listed once per backend for all its nodes. Nodes are
    independent: one whose calls fail is reported and the others still
    converge; the next run (a minute later) retries it.
    """
    if only is None and world.defer is not None and len(world.nodes) > FANOUT_NODES:
        for name in world.nodes:
            world.defer("reconcile_node", {"node": name})
        return {name: {"handed_over": 1} for name in world.nodes}
    wanted = set(world.nodes if only is None else only) & set(world.nodes)
    report = {}
    until = deadline(budget)
    for backend in world.distinct_backends():
        names = [name for name in world.nodes if world.backend_for(name) is backend and name in wanted]
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
                report[name] = _reconcile_node(world, name, backend, listed[name], until)
            except Exception as err:  # noqa: BLE001 - one node's trouble must not starve the others
                log.exception("reconcile of %s failed", name)
                report[name] = {"error": f"{type(err).__name__}: {err}"}
            log.info("reconciled %s: %s", name, report[name])
        if only is not None:
            # A per-node run sees one node's machines: sweeping from it would take
            # what other nodes' pods still use. The full run sweeps.
            continue
        try:  # what the cloud keeps for machines that are gone (ECS: mirrored pod secrets)
            collected = backend.collect([m for name in names for m in listed[name]])
            if collected:
                log.info("collected %d leftovers of %s", collected, backend.name)
        except Exception:  # noqa: BLE001 - the next run sweeps again
            log.exception("collecting leftovers of %s failed", backend.name)
    return report


def _reconcile_node(world: World, name: str, backend: MachineBackend, machines: list, until: float | None) -> dict:
    pods = list(world.kube.list_node_pods(name))
    gone = _gone_pods(world, name, pods, machines)
    result = plan(name, pods, machines, world.clock(), reap_stopped=backend.keeps_stopped, gone=gone)
    log_plan_errors(result)
    done = world.converger(name).apply(result, deadline=until)
    return {"pods": len(pods), "machines": len(machines), **done, **({"skipped": len(result.errors)} if result.errors else {})}


def _gone_pods(world: World, node: str, pods: list[dict], machines: list[Machine]) -> set[str]:
    """UIDs of the pods of young orphans (live machines within the orphan grace
    whose pod is not listed on ``node``) that the API shows will never be ours:
    no pod by that name, another UID under it, or bound to another node. Their
    machines stop now; the grace stays for pods that may still be being bound.
    One pod read per young orphan: rare (a fast-path create racing the list, or
    a pod deleted before its binding showed)."""
    listed, now, gone = {p["metadata"]["uid"] for p in pods}, world.clock(), set()
    for machine in machines:
        if (machine.pod.uid in listed or machine.pod.uid in gone or now - machine.created_at >= ORPHAN_GRACE
                or machine.phase in (MachinePhase.STOPPED, MachinePhase.STOPPING)):
            continue
        try:
            pod = world.kube.get_pod(machine.pod.namespace, machine.pod.name)
        except Exception as err:  # noqa: BLE001 - unknown stays unknown: the grace applies
            log.warning("could not read %s/%s: %s", machine.pod.namespace, machine.pod.name, err)
            continue
        if pod is None or pod["metadata"]["uid"] != machine.pod.uid or pod["spec"].get("nodeName") not in (None, "", node):
            gone.add(machine.pod.uid)
    return gone
