"""The use cases behind each entry point: reconcile, heartbeat, audit batch,
machine event, admission review.

Each builds the pods and machines it needs, asks ``plan`` what to do and lets
the Converger do it. The scheduled reconcile is the source of truth; audit and
cloud events only make it fast (DESIGN.md, invariant 1).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from pydantic import ValidationError

from chalicelib import heartbeat as beats
from chalicelib import pod_status as ps
from chalicelib.converge import Converger
from chalicelib.kube.client import KubeClient
from chalicelib.kube.payloads import PodTouch, parse_batch, pod_touch
from chalicelib.machines.contract import MachineBackend
from chalicelib.plan import Create, Finalize, Plan, plan

log = logging.getLogger("lambdalet.usecases")


class BadPayload(ValueError):
    """The request body is not what the endpoint takes: answer 400 with this message."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class World:
    """Everything a use case talks to. Built once per Lambda container (wiring.py)."""

    kube: KubeClient
    backend: MachineBackend  # the nodes' backend (the default where backends names none)
    nodes: dict[str, dict]  # node name -> the Node object we register
    clock: Callable[[], datetime] = field(default=utcnow)
    sleep: Callable[[float], None] = field(default=time.sleep)  # the heartbeat loop's waits
    # The bearer token kube-apiserver presents to our webhooks; None: no check (the sandbox).
    webhook_token: Callable[[], str] | None = None
    # Nodes whose machines run elsewhere (LAMBDALET_NODE_OVERRIDES): node name -> backend.
    backends: dict[str, MachineBackend] = field(default_factory=dict)

    def backend_for(self, node: str) -> MachineBackend:
        return self.backends.get(node, self.backend)

    def distinct_backends(self) -> list[MachineBackend]:
        found = [self.backend, *self.backends.values()]
        return [b for i, b in enumerate(found) if all(b is not other for other in found[:i])]

    def converger(self, node: str) -> Converger:
        return Converger(node, self.kube, self.backend_for(node), self.clock)


def caller_allowed(world: World, authorization: str | None) -> bool:
    """Is this webhook call from our kube-apiserver (the bearer token of its webhook kubeconfigs)?"""
    if world.webhook_token is None:
        return True
    scheme, _, presented = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), world.webhook_token().encode())


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
    _log_plan_errors(result)
    done = world.converger(name).apply(result)
    return {"pods": len(pods), "machines": len(machines), **done, **({"skipped": len(result.errors)} if result.errors else {})}


def _log_plan_errors(result: Plan) -> None:
    for error in result.errors:
        log.error("pod skipped by the planner: %s", error)


def heartbeat(world: World, budget: float | None = None) -> dict[str, dict]:
    """Keep every node Ready for most of a minute: lease renewed every ~10 s, status when due.

    ``budget``: seconds this invocation may still run (Lambda's remaining time).
    """
    report = beats.keep_alive(world.kube, world.nodes, world.clock, world.sleep, budget=budget)
    log.info("heartbeat: %s", report)
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
    pods, scope = [], set()
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
            continue  # gone for good (or replaced): its machines are orphans now
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
        result = plan(name, mine, machines, world.clock(), scope=scope, reap_stopped=backend.keeps_stopped)
        _log_plan_errors(result)
        done.update(world.converger(name).apply(result))
    return done


def handle_machine_event(world: World, event: dict) -> dict:
    """A cloud event about one machine: refresh its pod's status right away.

    O(1) calls (read the pod, maybe patch it): no machine list. The event's
    machine is judged alone, so duplicates and other attempts are left to the
    reconciler; stale events (an earlier attempt, or a state the pod already
    shows as past) are dropped instead of rolling the pod back.
    """
    machine = next(filter(None, (b.machine_from_event(event) for b in world.distinct_backends())), None)
    if machine is None or machine.node not in world.nodes:
        return {"ignored": "not a lambdalet machine of this deployment"}
    pod = world.kube.get_pod(machine.pod.namespace, machine.pod.name)
    if pod is not None and pod["metadata"]["uid"] != machine.pod.uid:
        pod = None
    if pod is not None and ps.is_stale(pod, machine):
        return {"ignored": "stale event"}
    pods = [pod] if pod else []
    result = plan(machine.node, pods, [machine], world.clock(), scope={machine.pod.uid})
    if result.of(Finalize):
        # Finalizing on one machine's word could leave a duplicate running:
        # look at all of the pod's machines first (rare: once per deleted pod).
        others = [m for m in world.backend_for(machine.node).list(machine.node)
                  if m.pod.uid == machine.pod.uid and m.id != machine.id]
        result = plan(machine.node, pods, [machine, *others], world.clock(), scope={machine.pod.uid})
    return dict(world.converger(machine.node).apply(result))


@dataclass
class AdmissionResult:
    body: dict  # the AdmissionReview to answer
    errors: list[str] = field(default_factory=list)  # internal errors (logged; the answer allowed)


def handle_admission(world: World, body: bytes, webhook: str) -> AdmissionResult:
    """One AdmissionReview for the ``validate`` or ``mutate`` webhook (chalicelib/admission.py).

    Raises BadPayload when the body is not an AdmissionReview v1. An internal
    error answers allowed (and is reported), so a lambdalet bug never blocks
    pods; a refusal is only ever the pure decision on the pod itself. A
    ``pods/binding`` CREATE for our node starts the machine now (validate only,
    never on dryRun): the pod is read, planned as if already bound and created.
    Creating is idempotent on (pod UID, attempt), so a repeated or later-refused
    binding is harmless: the reconciler stops machines whose pod never got bound
    to us (plan.ORPHAN_GRACE).
    """
    from chalicelib import admission
    from chalicelib.kube.admission_payloads import parse_review, review_response

    try:
        review = parse_review(body)
    except ValueError as err:
        raise BadPayload(f"expected an admission.k8s.io/v1 AdmissionReview: {_first_error(err)}") from None
    request, result = review.request, AdmissionResult(body={})
    try:
        if webhook == "mutate":
            decision = admission.mutate(request, world.nodes, _sizes(world))
        else:
            decision = admission.validate(request, world.nodes, _sizes(world))
    except Exception as err:  # noqa: BLE001 - allow rather than block on our own bug
        log.exception("admission %s failed for %s %s/%s", webhook, request.operation, request.namespace, request.name)
        result.errors.append(f"{webhook}: {err!r}")
        decision = admission.Decision()
    if decision.binding is not None and not request.dryRun:
        try:
            _start_bound(world, decision.binding)
        except Exception as err:  # noqa: BLE001 - the audit path and the reconciler catch up
            log.exception("binding fast path failed for %s/%s", decision.binding.namespace, decision.binding.name)
            result.errors.append(f"binding: {err!r}")
    result.body = review_response(request.uid, **decision.response_fields())
    return result


def _sizes(world: World) -> dict:
    return {name: world.backend_for(name).sizes for name in world.nodes}


def _start_bound(world: World, binding) -> Counter:
    """Create the machine of a pod being bound to our node, before the binding is stored.

    O(1) calls: one pod read, then the converger's create (idempotent per pod UID
    and attempt, so no machine list is needed to avoid a duplicate).
    """
    pod = world.kube.get_pod(binding.namespace, binding.name)
    if pod is None or (binding.uid and pod["metadata"]["uid"] != binding.uid):
        return Counter(skipped=1)
    if pod["metadata"].get("deletionTimestamp") or pod["spec"].get("nodeName") not in (None, "", binding.node):
        return Counter(skipped=1)
    from chalicelib import admission

    if admission.targeted_node(pod, world.nodes) != binding.node:
        return Counter(skipped=1)  # only pods that asked for our node start early (a forged review starts nothing else)
    bound = {**pod, "spec": {**pod["spec"], "nodeName": binding.node}}
    uid = pod["metadata"]["uid"]
    planned = plan(binding.node, [bound], [], world.clock(), scope={uid})
    # Only the create: the binding may still be refused later in the chain, so
    # the pod's status is left for the paths that see it bound (audit, reconcile).
    creates = [replace(action, status=None) for action in planned.of(Create)]
    return world.converger(binding.node).apply(Plan(creates))


def _first_error(err: Exception) -> str:
    if isinstance(err, ValidationError):
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        return f"{where}: {first['msg']}"
    return str(err)
