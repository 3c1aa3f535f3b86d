"""A cloud event about one machine: the fast status path."""

from __future__ import annotations

from chalicelib import pod_status as ps
from chalicelib.plan import plan
from chalicelib.usecases.world import World


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
    gone = set() if pod else {machine.pod.uid}  # no such pod (or another under its name): stop it now
    result = plan(machine.node, pods, [machine], world.clock(), scope={machine.pod.uid}, gone=gone)
    # A Finalize here is on the word of the pod's current attempt (an earlier
    # attempt's event is stale, above): nothing else of the pod can run (one
    # machine per (pod UID, attempt), the create's idempotency token; a deleting
    # pod gets no new attempt), so a deleted pod costs no listing of its node.
    return dict(world.converger(machine.node).apply(result))
