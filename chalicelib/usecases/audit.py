"""An audit webhook batch: converge the pods it says were bound to or deleted from our nodes."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from pydantic import ValidationError

from chalicelib.kube.payloads import PodTouch, parse_batch, pod_touch
from chalicelib.plan import plan
from chalicelib.usecases.world import BadPayload, World, first_error, log_plan_errors

log = logging.getLogger("lambdalet.usecases")


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
        raise BadPayload(f"expected an audit.k8s.io/v1 EventList: {first_error(err)}") from None
    report = AuditReport(events=len(batch.items), malformed=malformed)
    for problem in malformed:
        log.warning("malformed audit event skipped: %s", problem)
    touched: dict[str, dict[tuple[str, str], PodTouch]] = defaultdict(dict)
    for event in events:
        try:
            touch = pod_touch(event)
        except (ValidationError, TypeError, AttributeError) as err:  # e.g. a Binding whose target is no object
            report.malformed.append(f"auditID {event.auditID}: {err}")
            log.warning("malformed audit event skipped: %s", report.malformed[-1])
            continue
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
    pods, scope, gone = [], set(), set()
    for touch in touches:
        try:
            pod = world.kube.get_pod(touch.namespace, touch.name)
        except Exception as err:  # noqa: BLE001 - unread pods stay out of scope: the reconciler has them
            log.warning("audit fast path could not read %s/%s: %s", touch.namespace, touch.name, err)
            report.deferred.append(f"{touch.namespace}/{touch.name}: {err}")
            continue
        if touch.uid:
            scope.add(touch.uid)
        if pod is None or (touch.uid and pod["metadata"]["uid"] != touch.uid):
            if touch.uid:
                gone.add(touch.uid)  # deleted for good (or replaced): its machines stop now
            continue
        scope.add(pod["metadata"]["uid"])
        pods.append(pod)
    done: Counter = Counter()
    # A delete's pod names its node; a pod already gone may have been on any of ours.
    nodes = {node} if node else {p["spec"].get("nodeName") for p in pods} & set(world.nodes) or set(world.nodes)
    for name in nodes:
        mine = [p for p in pods if p["spec"].get("nodeName") == name]
        report.pods += len(mine)
        backend = world.backend_for(name)
        machines = backend.list(name)
        result = plan(name, mine, machines, world.clock(), scope=scope, reap_stopped=backend.keeps_stopped,
                      gone=gone)
        log_plan_errors(result)
        done.update(world.converger(name).apply(result))
    return done
