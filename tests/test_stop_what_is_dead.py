"""A machine whose pod is known deleted stops at once, not after the orphan
grace (plan.ORPHAN_GRACE, 60 s): an audit DELETE says so, a pod read finds no
pod or another UID under the name, the machine event's pod is gone. The grace
stays for machines whose pod may still be being bound. Against a real v1.36
apiserver a pod deleted with ``--grace-period=0 --force`` kept its task ~60 s."""

from __future__ import annotations

import json

import pytest

from tests.samples import sample
from tests.world.stack import NODE, OPT_IN, WEBHOOK_HEADERS, Stack, virtual_pod

SLEEP_FOREVER = ["sh", "-c", "sleep 100000"]


def tags(task: dict) -> dict:
    """The task's identity: its tags, or (StopTask deletes them) its group."""
    from chalicelib.machines.ecs.identity import identity_from_task

    return {**(identity_from_task(task) or {}), **{t["key"]: t["value"] for t in task.get("tags", [])}}


def force_delete(stack: Stack, name: str) -> None:
    """kubectl delete pod --grace-period=0 --force: the object is gone at once."""
    stack.core.delete_namespaced_pod(name, "default", grace_period_seconds=0)
    assert stack.pod(name) is None


def opt_in(stack: Stack) -> None:
    """The default namespace gets the binding fast path (its admission webhook is namespace-scoped)."""
    stack.core.patch_namespace("default", {"metadata": {"labels": OPT_IN}})


def stop_wanted(stack: Stack, uid: str) -> bool:
    [task] = [t for t in stack.tasks() if tags(t)["lambdalet.io/pod-uid"] == uid]
    return task["desiredStatus"] == "STOPPED"


def test_a_force_deleted_pod_stops_its_task_through_the_audit_delete():
    with Stack() as stack:
        stack.reconcile()
        uid = stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER))["metadata"]["uid"]
        stack.settle(rounds=4)
        assert stack.pod("web")["status"]["phase"] == "Running"
        force_delete(stack, "web")
        stack.settle(rounds=2)  # audit batches and cloud steps only: ~2 s, no reconcile
        assert stop_wanted(stack, uid)


@pytest.mark.parametrize("replaced", [False, True], ids=["gone", "same-name-other-uid"])
def test_the_reconcile_stops_a_young_machine_whose_pod_the_api_shows_gone(replaced):
    # No audit: the binding fast path (admission) started the task, the pod went before any reconcile.
    with Stack(connect_audit=False) as stack:
        opt_in(stack)
        stack.reconcile()
        uid = stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER))["metadata"]["uid"]
        stack.sim.scheduler.run_once()
        assert [tags(t)["lambdalet.io/pod-uid"] for t in stack.tasks()] == [uid]
        force_delete(stack, "web")
        if replaced:  # a new pod under the same name, not bound yet
            stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER))
        stack.advance(5)  # well within the orphan grace
        stack.reconcile()
        assert stop_wanted(stack, uid)


def test_a_young_machine_whose_pod_is_still_being_bound_keeps_its_grace():
    with Stack(connect_audit=False) as stack:
        stack.reconcile()
        pod = stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER))
        uid = pod["metadata"]["uid"]
        # The apiserver asks about a binding (the fast path starts the task); the
        # binding itself is not stored yet: the pod is unbound when the reconcile runs.
        review = sample("admission-pods-binding-create.json")
        review["request"].update(name="web", namespace="default")
        review["request"]["object"]["metadata"].update(name="web", namespace="default", uid=uid)
        review["request"]["object"]["target"]["name"] = NODE
        answer = stack.client.http.post("/admission/validate", headers=WEBHOOK_HEADERS, body=json.dumps(review))
        assert answer.status_code == 200 and [tags(t)["lambdalet.io/pod-uid"] for t in stack.tasks()] == [uid]
        assert not stack.pod("web")["spec"].get("nodeName")
        stack.advance(5)
        stack.reconcile()
        assert not stop_wanted(stack, uid)  # may still be bound: the grace applies
        stack.advance(60)
        stack.reconcile()
        assert stop_wanted(stack, uid)  # never bound within the grace: an orphan


def test_a_machine_event_for_a_deleted_pod_stops_the_machine():
    with Stack(connect_audit=False) as stack:
        opt_in(stack)
        stack.reconcile()
        uid = stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER))["metadata"]["uid"]
        stack.sim.scheduler.run_once()
        force_delete(stack, "web")
        stack.cloud_step()  # the task's next state change reaches on_machine_event
        stack.cloud_step()
        assert stop_wanted(stack, uid)
