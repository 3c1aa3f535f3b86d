"""End to end through the admission webhooks: the simulator calls the webhook
configurations of infra/k8s/webhooks.yaml, whose URL reaches the app's
/admission/* routes; judged on what a user sees (the API's answers, the pod, the
ECS tasks)."""

from __future__ import annotations

import base64
import json

import pytest
from kubernetes.client.exceptions import ApiException

from tests.world.stack import NODE, OPT_IN, Stack, virtual_pod

SLEEP = ["sh", "-c", "sleep 100000"]
NS = "apps"  # a namespace opted in to the binding fast path


@pytest.fixture
def stack():
    with Stack(connect_audit=False) as s:  # admission + reconcile alone: a managed control plane
        s.reconcile()  # registers the virtual node
        s.core.create_namespace({"metadata": {"name": NS, "labels": OPT_IN}})
        yield s


def ours(name: str, **extra) -> dict:
    """A pod that targets our node and opted in to lambdalet's webhooks."""
    pod = virtual_pod(name, command=SLEEP, **extra)
    pod["metadata"].setdefault("labels", {}).update(OPT_IN)
    return pod


def refusal(call) -> ApiException:
    with pytest.raises(ApiException) as caught:
        call()
    return caught.value


def test_an_unsupported_pod_is_refused_at_creation_with_the_field_and_what_to_do(stack):
    err = refusal(lambda: stack.create_pod(ours("host", hostNetwork=True)))
    body = json.loads(err.body)
    assert err.status == 403 and body["reason"] == "Forbidden"
    assert body["message"].startswith(
        f'admission webhook "pods.validate.lambdalet.io" denied the request: lambdalet node {NODE} cannot run '
        "this pod: spec.hostNetwork: there is no host to share on a virtual node; remove it.")
    assert [c["field"] for c in body["details"]["causes"]] == ["spec.hostNetwork"]
    assert stack.pod("host") is None and stack.tasks() == []


def test_a_too_large_pod_is_refused_naming_the_largest_size(stack):
    err = refusal(lambda: stack.create_pod(ours("big", container={"resources": {"requests": {"cpu": "32"}}})))
    assert err.status == 403 and "the largest ECS Fargate machine is 16 vCPU / 120 GiB" in json.loads(err.body)["message"]


def test_an_opted_in_pod_gets_lambdalets_defaults_and_nothing_else(stack):
    created = stack.create_pod(ours("web"))
    assert created["metadata"]["annotations"] == {"lambdalet.io/backend": "ecs",
                                                  "lambdalet.io/defaulted-requests": "cpu,memory"}
    assert created["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "250m", "memory": "512Mi"}}
    assert created["status"]["qosClass"] == "Burstable"
    [mutate, validate] = stack.sim.admission_calls
    assert (mutate["webhook"], validate["webhook"]) == ("pods.mutate.lambdalet.io", "pods.validate.lambdalet.io")
    patch = json.loads(base64.b64decode(mutate["response"]["patch"]))
    assert {op["path"] for op in patch} == {"/metadata/annotations", "/spec/containers/0/resources/requests"}


def test_pods_outside_the_scope_never_reach_the_webhook_even_when_it_is_down(stack):
    stack.admission_down = True  # lambdalet's API is unreachable
    plain = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "other"},
             "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "nginx"}]}}
    assert stack.create_pod(plain)["metadata"]["name"] == "other"
    assert stack.create_pod(plain | {"metadata": {"name": "other"}}, namespace=NS)  # opted-in namespace, no label
    assert stack.sim.admission_calls == []  # neither pod was sent anywhere
    # an opted-in pod is refused while the webhook is down (failurePolicy Fail, scope = lambdalet's pods only)
    err = refusal(lambda: stack.create_pod(ours("mine")))
    assert err.status == 500 and 'failed calling webhook "pods.validate.lambdalet.io"' in json.loads(err.body)["message"]
    assert "connect: connection refused" in json.loads(err.body)["message"]


def test_a_labelled_pod_that_does_not_target_us_is_allowed_untouched(stack):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "elsewhere", "labels": dict(OPT_IN)},
           "spec": {"hostPID": True, "containers": [{"name": "c", "image": "nginx"}]}}
    created = stack.create_pod(pod)
    assert "annotations" not in created["metadata"] and created["spec"]["hostPID"] is True
    assert all("patch" not in call["response"] for call in stack.sim.admission_calls)


def test_dry_run_creates_nothing(stack):
    created = json.loads(stack.core.create_namespaced_pod(NS, ours("dry"), dry_run="All", _preload_content=False).data)
    assert created["metadata"]["annotations"]["lambdalet.io/backend"] == "ecs"  # the defaults show in a dry run
    assert all(call["request"]["dryRun"] for call in stack.sim.admission_calls)
    err = refusal(lambda: stack.core.create_namespaced_pod(NS, ours("dry-bad", hostPID=True), dry_run="All"))
    assert err.status == 403
    # a dry-run binding to our node starts nothing
    stack.create_pod(ours("real"), namespace=NS)
    uid = stack.pod("real", NS)["metadata"]["uid"]
    r = stack.sim.request("POST", f"/api/v1/namespaces/{NS}/pods/real/binding", {
        "kind": "Binding", "apiVersion": "v1", "metadata": {"name": "real", "uid": uid},
        "target": {"kind": "Node", "name": NODE}}, query={"dryRun": "All"})
    assert r.status == 201 and stack.sim.admission_calls[-1]["request"]["dryRun"] is True
    assert stack.pod("dry", NS) is None and stack.pod("real", NS)["spec"].get("nodeName") is None
    assert stack.tasks() == []


def test_the_binding_starts_the_task_before_any_audit_or_reconcile(stack):
    stack.create_pod(ours("fast"), namespace=NS)
    assert stack.sim.scheduler.run_once() == 1  # the scheduler binds: pods/binding CREATE reaches our webhook
    [task] = stack.tasks()  # no audit webhook in this world, no reconcile since the pod was created
    pod = stack.pod("fast", NS)
    assert {t["key"]: t["value"] for t in task["tags"]}["lambdalet.io/pod-uid"] == pod["metadata"]["uid"]
    assert pod["spec"]["nodeName"] == NODE
    assert any(e["reason"] == "Created" for e in stack.events_of("fast", NS))
    assert stack.admission_answers and all(code == 200 for code in stack.admission_answers)
    stack.settle(rounds=6)  # ECS events alone take it to Running
    assert stack.pod("fast", NS)["status"]["phase"] == "Running"
    assert len(stack.tasks()) == 1
    stack.reconcile()  # the source of truth agrees: no duplicate
    assert len(stack.tasks()) == 1


def test_a_binding_refused_later_in_the_chain_leaves_a_machine_the_reconciler_stops(stack):
    refused = []

    def policy(url, body, timeout):  # another cluster policy, called after ours (name order), refusing the binding
        request = json.loads(body)["request"]
        refused.append(request["name"])
        response = {"uid": request["uid"], "allowed": False,
                    "status": {"code": 403, "reason": "Forbidden", "message": "binding frozen"}}
        return 200, json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                "response": response}).encode()

    stack.sim.connect_webhook("https://policy.example/", policy)
    stack.sim.add_webhook_configuration({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "zz-policy"},
        "webhooks": [{"name": "bindings.policy.example", "clientConfig": {"url": "https://policy.example/"},
                      "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                 "resources": ["pods/binding"]}],
                      "sideEffects": "None", "admissionReviewVersions": ["v1"]}]})
    stack.create_pod(ours("orphan"), namespace=NS)
    assert stack.sim.scheduler.run_once() == 0  # the binding was refused
    assert refused == ["orphan"] and stack.pod("orphan", NS)["spec"].get("nodeName") is None
    [task] = stack.tasks()  # our webhook had already started it
    assert task["desiredStatus"] == "RUNNING"
    # ... but wrote nothing on the pod: it was never ours
    assert "containerStatuses" not in stack.pod("orphan", NS)["status"]
    stack.cloud_step()
    stack.reconcile()  # within plan.ORPHAN_GRACE: a fast path may have created it for a binding not listed yet
    assert stack.tasks()[0]["desiredStatus"] == "RUNNING"
    stack.advance(61)
    stack.reconcile()  # the pod is not bound to us: its machine is stopped
    assert stack.tasks()[0]["desiredStatus"] == "STOPPED"
