"""The use cases behind each entry point: reconcile, audit batch, machine event.

Each builds the pods and machines it needs, asks ``plan`` what to do and lets
the Converger do it. The scheduled reconcile is the source of truth; audit and
cloud events only make it fast (DESIGN.md, invariant 1).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pydantic import ValidationError

from chalicelib import node as vnode
from chalicelib.converge import Converger
from chalicelib.kube.client import KubeClient
from chalicelib.kube.payloads import PodTouch, parse_batch, pod_touch
from chalicelib import pod_status as ps
from chalicelib.machines.contract import MachineBackend
from chalicelib.plan import plan

log = logging.getLogger("lambdalet.usecases")

class BadPayload(ValueError):
    """The request body is not what the endpoint takes: answer 400 with this message."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class World:
    """Everything a use case talks to. Built once per Lambda container (wiring.py)."""

    kube: KubeClient
    backend: MachineBackend
    nodes: dict[str, dict]  # node name -> the Node object we register
    clock: Callable[[], datetime] = field(default=utcnow)

    def converger(self, node: str) -> Converger:
        return Converger(node, self.kube, self.backend, self.clock)


def reconcile(world: World) -> dict[str, dict]:
    """Level-triggered convergence of every node: O(pages) reads + O(changes) writes."""
    report = {}
    for name, node_obj in world.nodes.items():
        vnode.heartbeat(world.kube, node_obj, world.clock())
        # Machines first, then pods: a machine created in between shows up as a
        # pod without machine (create is idempotent), never as an orphan.
        machines = world.backend.list(name)
        pods = list(world.kube.list_node_pods(name))
        done = world.converger(name).apply(plan(name, pods, machines, world.clock()))
        report[name] = {"pods": len(pods), "machines": len(machines), **done}
        log.info("reconciled %s: %s", name, report[name])
    return report


@dataclass
class AuditReport:
    events: int = 0
    malformed: list[str] = field(default_factory=list)
    pods: int = 0
    actions: Counter = field(default_factory=Counter)
    deferred: list[str] = field(default_factory=list)  # left to the reconciler, with why

    def body(self) -> dict:
        return {"events": self.events, "malformed": self.malformed, "pods": self.pods,
                "actions": dict(self.actions), "deferred": self.deferred}


def handle_audit(world: World, body: bytes) -> AuditReport:
    """An audit EventList: converge the pods it says were bound to or deleted from our nodes.

    Raises BadPayload when the body is not an EventList; a malformed event is
    reported and skipped, never losing its neighbours.
    """
    try:
        batch, events, malformed = parse_batch(body)
    except (ValidationError, ValueError) as err:
        raise BadPayload(f"expected an audit.k8s.io/v1 EventList: {_first_error(err)}") from None
    report = AuditReport(events=len(batch.items), malformed=malformed)
    for problem in malformed:
        log.warning("malformed audit event skipped: %s", problem)
    touched: dict[str, dict[tuple[str, str], PodTouch]] = defaultdict(dict)
    for event in events:
        touch = pod_touch(event)
        if touch is not None and (touch.node in world.nodes or touch.node is None):
            touched[touch.node or ""][(touch.namespace, touch.name)] = touch
    for node, touches in touched.items():
        try:
            report.actions.update(_converge_touched(world, node, list(touches.values()), report))
        except Exception as err:  # noqa: BLE001 - the reconciler catches up; never fail the batch
            log.exception("audit fast path failed for node %s", node)
            report.deferred.append(f"{node or 'deletes'}: {err}")
    return report


def _converge_touched(world: World, node: str, touches: list[PodTouch], report: AuditReport) -> Counter:
    pods, scope = [], set()
    for touch in touches:
        pod = world.kube.get_pod(touch.namespace, touch.name)
        if touch.uid:
            scope.add(touch.uid)
        if pod is None or (touch.uid and pod["metadata"]["uid"] != touch.uid):
            continue  # gone for good (or replaced): its machines are orphans now
        scope.add(pod["metadata"]["uid"])
        pods.append(pod)
    done: Counter = Counter()
    # A delete's pod names its node; a pod already gone may have been on any of ours.
    nodes = {node} if node else {p["spec"].get("nodeName") for p in pods} & set(world.nodes) or set(world.nodes)
    for name in nodes:
        mine = [p for p in pods if p["spec"].get("nodeName") == name]
        report.pods += len(mine)
        machines = world.backend.list(name)
        done.update(world.converger(name).apply(plan(name, mine, machines, world.clock(), scope=scope)))
    return done


def handle_machine_event(world: World, event: dict) -> dict:
    """A cloud event about one machine: refresh its pod's status right away.

    O(1) calls (read the pod, maybe patch it): no machine list. The event's
    machine is judged alone, so duplicates and other attempts are left to the
    reconciler; stale events (an earlier attempt, or a state the pod already
    shows as past) are dropped instead of rolling the pod back.
    """
    machine = world.backend.machine_from_event(event)
    if machine is None or machine.node not in world.nodes:
        return {"ignored": "not a lambdalet machine of this deployment"}
    pod = world.kube.get_pod(machine.pod.namespace, machine.pod.name)
    if pod is not None and pod["metadata"]["uid"] != machine.pod.uid:
        pod = None
    if pod is not None and ps.is_stale(pod, machine):
        return {"ignored": "stale event"}
    result = plan(machine.node, [pod] if pod else [], [machine], world.clock(), scope={machine.pod.uid})
    return dict(world.converger(machine.node).apply(result))


def _first_error(err: Exception) -> str:
    if isinstance(err, ValidationError):
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        return f"{where}: {first['msg']}"
    return str(err)
