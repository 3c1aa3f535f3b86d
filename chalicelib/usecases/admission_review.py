"""An admission review: refusals, defaults, and the binding fast path."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field, replace

from chalicelib.usecases.world import BadPayload, World, first_error

log = logging.getLogger("lambdalet.usecases")


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
    never on dryRun, and only when the caller proved it is our apiserver — a
    webhook token is configured): the pod is read, planned as if already bound
    and created.
    Creating is idempotent on (pod UID, attempt), so a repeated or later-refused
    binding is harmless: the reconciler stops machines whose pod never got bound
    to us (plan.ORPHAN_GRACE).
    """
    from chalicelib import admission
    from chalicelib.kube.admission_payloads import parse_review, review_response

    try:
        review = parse_review(body)
    except ValueError as err:
        raise BadPayload(f"expected an admission.k8s.io/v1 AdmissionReview: {first_error(err)}") from None
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
    if decision.binding is not None and not request.dryRun and world.webhook_tokens is not None:
        try:
            if world.defer is not None:  # O(1) here: the create runs in its own invocation
                world.defer("start_bound", asdict(decision.binding))
            else:
                _start_bound(world, decision.binding)
        except Exception as err:  # noqa: BLE001 - the audit path and the reconciler catch up
            log.exception("binding fast path failed for %s/%s", decision.binding.namespace, decision.binding.name)
            result.errors.append(f"binding: {err!r}")
    result.body = review_response(request.uid, **decision.response_fields())
    return result


def _sizes(world: World) -> dict:
    return {name: world.backend_for(name).sizes for name in world.nodes}


def start_bound(world: World, payload: dict) -> dict:
    """The binding fast path's create, handed over by the webhook (``World.defer``).

    Runs after the webhook answered, so the binding may already be stored: the
    reconcile may meet the pod without machine first. Both creates are the same
    idempotent (pod UID, attempt) create, so no second machine is started.
    """
    from chalicelib.admission import Binding

    return dict(_start_bound(world, Binding(**payload)))


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
    from chalicelib.plan import Create, Plan, plan

    if admission.targeted_node(pod, world.nodes) != binding.node:
        return Counter(skipped=1)  # only pods that asked for our node start early (a forged review starts nothing else)
    bound = {**pod, "spec": {**pod["spec"], "nodeName": binding.node}}
    uid = pod["metadata"]["uid"]
    planned = plan(binding.node, [bound], [], world.clock(), scope={uid})
    # Only the create: the binding may still be refused later in the chain, so
    # the pod's status is left for the paths that see it bound (audit, reconcile).
    creates = [replace(action, status=None) for action in planned.of(Create)]
    return world.converger(binding.node).apply(Plan(creates))
