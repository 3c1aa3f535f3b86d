"""Admission decisions (chalicelib/admission.py) on the real AdmissionReviews of
tests/fixtures and variants of them. Pure: no I/O."""

from __future__ import annotations

import base64
import copy
import json
from datetime import datetime, timezone

import jsonpatch
import pytest

from chalicelib import admission as A
from chalicelib.kube.admission_payloads import AdmissionRequest, parse_review, review_response
from chalicelib.machines.fargate_sizes import SIZES as FARGATE
from chalicelib.machines.fargate_sizes import fit
from chalicelib.node import node_object
from chalicelib.pod_spec import pod_size
from tests.samples import sample

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
CAPACITY = {"cpu": "1000", "memory": "4Ti", "pods": "1000"}
# The sample's node is "vk-test" and its pod tolerates virtual-kubelet.io/provider=test.
NODES = {"vk-test": node_object("vk-test", "test", "us-east-1", CAPACITY, NOW)}


def request(name: str) -> AdmissionRequest:
    return parse_review(json.dumps(sample(name))).request


def create(mutate=None) -> AdmissionRequest:
    review = sample("admission-pod-create.json")
    if mutate:
        mutate(review["request"]["object"])
    return parse_review(json.dumps(review)).request


def validate(req: AdmissionRequest) -> A.Decision:
    return A.validate(req, NODES, {"vk-test": FARGATE})


def mutate(req: AdmissionRequest) -> A.Decision:
    return A.mutate(req, NODES, {"vk-test": FARGATE})


def spec(pod):
    return pod["spec"]


def c0(pod):
    return pod["spec"]["containers"][0]


# -- the samples as they are -------------------------------------------------

def test_sample_pod_create_targets_our_node_and_is_allowed():
    decision = validate(request("admission-pod-create.json"))
    assert decision.allowed and decision.node == "vk-test" and decision.binding is None


def test_sample_pod_create_gets_requests_and_backend_annotation():
    req = request("admission-pod-create.json")
    decision = mutate(req)
    assert decision.allowed and decision.node == "vk-test"
    patched = jsonpatch.apply_patch(req.object, decision.patch)
    assert patched["metadata"]["annotations"] == {
        "lambdalet.io/backend": "test", "lambdalet.io/defaulted-requests": "cpu,memory"}
    assert c0(patched)["resources"] == {"requests": {"cpu": "250m", "memory": "512Mi"}}
    # nothing else changed
    assert {k: v for k, v in patched.items() if k != "metadata"} | {"spec": None} == \
        {k: v for k, v in req.object.items() if k != "metadata"} | {"spec": None}
    patched["metadata"].pop("annotations")
    c0(patched)["resources"] = {}
    assert patched == req.object


def test_sample_binding_to_our_node_is_allowed_and_names_the_pod():
    decision = validate(request("admission-pods-binding-create.json"))
    assert decision.allowed and decision.patch == []
    assert decision.binding == A.Binding(namespace="demo", name="demo-pod",
                                         uid="1bd47beb-026c-4a60-95f6-3df9c511fb9c", node="vk-test")


def test_binding_to_another_node_is_not_ours():
    review = sample("admission-pods-binding-create.json")
    review["request"]["object"]["target"]["name"] = "worker-1"
    decision = validate(parse_review(json.dumps(review)).request)
    assert decision.allowed and decision.binding is None and decision.node is None


@pytest.mark.parametrize("name", ["admission-pod-delete.json", "admission-pod-delete-grace0-final.json"])
def test_deletes_are_always_allowed_untouched_even_for_pods_we_cannot_run(name):
    review = sample(name)
    spec(review["request"]["oldObject"])["hostNetwork"] = True
    req = parse_review(json.dumps(review)).request
    assert req.object is None and req.oldObject["metadata"]["name"] == "demo-pod"
    for decision in (validate(req), mutate(req)):
        assert decision.allowed and decision.patch == [] and decision.binding is None


# -- refusals ------------------------------------------------------------------

HOST_PATH = {"name": "host", "hostPath": {"path": "/var/run/docker.sock"}}
CASES = [
    ("hostNetwork", lambda p: spec(p).update(hostNetwork=True), "spec.hostNetwork"),
    ("hostPID", lambda p: spec(p).update(hostPID=True), "spec.hostPID"),
    ("hostPath", lambda p: spec(p)["volumes"].append(HOST_PATH), "spec.volumes[1]"),
    ("persistentVolumeClaim", lambda p: spec(p)["volumes"].append({"name": "data", "persistentVolumeClaim": {"claimName": "d"}}),
     "spec.volumes[1]"),
    ("privileged", lambda p: c0(p).update(securityContext={"privileged": True}),
     "spec.containers[0].securityContext.privileged"),
    ("sidecar initContainers", lambda p: spec(p).update(initContainers=[{"name": "i", "image": "busybox",
                                                                          "restartPolicy": "Always"}]),
     "spec.initContainers[0].restartPolicy"),
    ("podIP env", lambda p: c0(p).update(env=[{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]),
     "spec.containers[0].env[0].valueFrom.fieldRef"),
    ("too much cpu", lambda p: c0(p).update(resources={"requests": {"cpu": "17"}}), "spec.containers[].resources"),
    ("too much memory", lambda p: c0(p).update(resources={"limits": {"memory": "121Gi"}}),
     "spec.containers[].resources"),
]


@pytest.mark.parametrize("what,change,field", CASES, ids=[c[0] for c in CASES])
def test_unsupported_pod_targeting_us_is_refused_naming_the_field(what, change, field):
    decision = validate(create(change))
    assert not decision.allowed
    assert decision.code == 403 and decision.reason == "Forbidden"
    assert field in decision.message and "vk-test" in decision.message
    assert "virtual-kubelet.io/provider" in decision.message  # says how to keep the pod off our node
    assert field in [c["field"] for c in decision.causes]
    body = review_response("u-1", **decision.response_fields())
    assert body["response"]["allowed"] is False and body["response"]["status"]["code"] == 403
    assert body["response"]["status"]["message"] == decision.message


def test_size_refusal_says_what_was_asked_and_the_largest_size():
    decision = validate(create(lambda p: c0(p).update(resources={"requests": {"cpu": "20", "memory": "1Gi"}})))
    assert "20 vCPU / 1 GiB" in decision.message and "16 vCPU / 120 GiB" in decision.message


def test_largest_size_is_allowed_and_a_backend_without_sizes_has_no_size_check():
    big = create(lambda p: c0(p).update(resources={"requests": {"cpu": "16", "memory": "120Gi"}}))
    assert validate(big).allowed
    bigger = create(lambda p: c0(p).update(resources={"requests": {"cpu": "64"}}))
    assert not validate(bigger).allowed
    assert A.validate(bigger, NODES, {}).allowed


def test_every_problem_is_listed_at_once():
    def many(p):
        spec(p).update(hostNetwork=True, hostPID=True)
        spec(p)["volumes"].append(HOST_PATH)
    decision = validate(create(many))
    assert [c["field"] for c in decision.causes] == ["spec.volumes[1]", "spec.hostNetwork", "spec.hostPID"]


# -- who is "ours" -------------------------------------------------------------

def untargeted(p):
    spec(p).pop("nodeSelector")
    spec(p)["tolerations"] = [t for t in spec(p)["tolerations"] if t["key"] != "virtual-kubelet.io/provider"]


TARGETING = [
    ("the sample: nodeSelector type + provider toleration", lambda p: None, True),
    ("nodeName is our node", lambda p: (untargeted(p), spec(p).update(nodeName="vk-test")), True),
    ("nodeName is another node, even with our toleration",
     lambda p: spec(p).update(nodeName="worker-1"), False),
    ("provider toleration alone (may land on us)", lambda p: spec(p).pop("nodeSelector"), True),
    ("no toleration: the scheduler can never put it on us", lambda p: spec(p).pop("tolerations"), False),
    ("toleration of another provider's taint value",
     lambda p: spec(p)["tolerations"][0].update(value="fly"), False),
    ("tolerates everything but asks for nothing virtual",
     lambda p: (untargeted(p), spec(p)["tolerations"].append({"operator": "Exists"})), False),
    ("tolerates everything and selects our hostname",
     lambda p: (untargeted(p), spec(p)["tolerations"].append({"operator": "Exists"}),
                spec(p).update(nodeSelector={"kubernetes.io/hostname": "vk-test"})), True),
    ("our toleration but a nodeSelector only other nodes match",
     lambda p: spec(p).update(nodeSelector={"pool": "gpu"}), False),
    ("required affinity on our name (DaemonSet style matchFields)",
     lambda p: (spec(p).pop("nodeSelector"), spec(p)["tolerations"][0].update(operator="Exists", value=None),
                spec(p).update(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchFields": [
                        {"key": "metadata.name", "operator": "In", "values": ["vk-test"]}]}]}}})), True),
    ("required affinity excluding virtual nodes",
     lambda p: spec(p).update(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
         "nodeSelectorTerms": [{"matchExpressions": [
             {"key": "type", "operator": "NotIn", "values": ["virtual-kubelet"]}]}]}}}), False),
    ("no toleration, required affinity on lambdalet.io/backend",
     lambda p: (untargeted(p), spec(p)["tolerations"].append({"operator": "Exists", "effect": "NoSchedule"}),
                spec(p).update(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "lambdalet.io/backend", "operator": "In", "values": ["test"]}]}]}}})), True),
]


@pytest.mark.parametrize("what,change,ours", TARGETING, ids=[t[0] for t in TARGETING])
def test_targeting(what, change, ours):
    def and_host_network(p):
        change(p)
        spec(p)["hostNetwork"] = True
    req = create(and_host_network)
    assert (A.targeted_node(req.object, NODES) == "vk-test") is ours
    v, m = validate(req), mutate(req)
    assert v.allowed is not ours  # refused exactly when ours (it asks for hostNetwork)
    assert bool(m.patch) is ours  # defaults only for our pods
    if not ours:
        assert v.causes == [] and v.message == "" and m.patch == []


def test_other_resources_and_subresources_are_never_judged():
    review = sample("admission-pod-create.json")
    spec(review["request"]["object"])["hostNetwork"] = True
    for change in ({"subResource": "status"}, {"operation": "UPDATE"}, {"operation": "CONNECT"},
                   {"resource": {"group": "apps", "version": "v1", "resource": "pods"}}):
        r = copy.deepcopy(review)
        r["request"].update(change)
        req = parse_review(json.dumps(r)).request
        assert validate(req).allowed and mutate(req).patch == []


# -- the mutation ------------------------------------------------------------

def test_pointer_escapes_slash_and_tilde():
    assert A.pointer("metadata", "annotations", "lambdalet.io/backend") == "/metadata/annotations/lambdalet.io~1backend"
    assert A.pointer("a~/b") == "/a~0~1b"


def test_existing_annotations_and_requests_are_kept_and_added_to_key_by_key():
    def some(p):
        p["metadata"]["annotations"] = {"team": "a", "x/y~z": "1"}
        c0(p)["resources"] = {"requests": {"cpu": "2"}}
    req = create(some)
    ops = mutate(req).patch
    assert {"op": "add", "path": "/metadata/annotations/lambdalet.io~1backend", "value": "test"} in ops
    assert {"op": "add", "path": "/spec/containers/0/resources/requests/memory", "value": "512Mi"} in ops
    patched = jsonpatch.apply_patch(req.object, ops)
    assert patched["metadata"]["annotations"] == {"team": "a", "x/y~z": "1", "lambdalet.io/backend": "test",
                                                  "lambdalet.io/defaulted-requests": "memory"}
    assert c0(patched)["resources"]["requests"] == {"cpu": "2", "memory": "512Mi"}


def test_a_pod_that_asks_for_both_gets_only_the_annotation():
    req = create(lambda p: c0(p).update(resources={"limits": {"cpu": "1", "memory": "2Gi"}}))
    assert mutate(req).patch == [{"op": "add", "path": "/metadata/annotations", "value": {"lambdalet.io/backend": "test"}}]


@pytest.mark.parametrize("containers", [1, 2, 3])
def test_the_defaults_never_change_the_machine_size(containers):
    def more(p):
        spec(p)["containers"] = [dict(c0(p), name=f"c{i}") for i in range(containers)]
        for c in spec(p)["containers"]:
            c.pop("resources")
    req = create(more)
    patched = jsonpatch.apply_patch(req.object, mutate(req).patch)
    assert fit(*pod_size(patched)) == fit(*pod_size(req.object)) == (256, 512)
    assert [("resources" in c) for c in spec(patched)["containers"]] == [True] + [False] * (containers - 1)


def test_mutation_is_idempotent_under_reinvocation():
    req = create()
    patched = jsonpatch.apply_patch(req.object, mutate(req).patch)
    again = parse_review(json.dumps({**sample("admission-pod-create.json"),
                                     "request": {**sample("admission-pod-create.json")["request"], "object": patched}}))
    assert mutate(again.request).patch == []


def test_fargate_sizes_come_from_the_fargate_table():
    assert fit(250, 512) == (256, 512)  # the smallest size is exactly what the defaults ask
    assert (FARGATE.largest_cpu_millis, FARGATE.largest_memory_mib) == (16000, 120 * 1024)
    assert "16 vCPU / 120 GiB" in next(f.note for f in A.pod_spec.FEATURES if f.field == "spec.containers[].resources")


def test_response_carries_the_patch_base64_with_its_type():
    body = review_response("u-2", **mutate(create()).response_fields())
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    response = body["response"]
    assert response["uid"] == "u-2" and response["allowed"] is True and response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"]))[0]["path"] == "/metadata/annotations"
    assert "status" not in response
    assert "patch" not in review_response("u-3", allowed=True)["response"]


def test_more_containers_than_a_machine_runs_are_refused_at_admission():
    from chalicelib.machines.fly.guest import SIZES as FLY

    pod = {"metadata": {"name": "many"}, "spec": {"containers": [
        {"name": f"c{i}", "image": "busybox"} for i in range(11)]}}
    found = A.problems(pod, FLY)
    assert [field for field, _ in found] == ["spec.containers"]
    assert "Fly Machines runs at most 10 per machine" in found[0][1]
    pod["spec"]["containers"] = pod["spec"]["containers"][:2]
    assert A.problems(pod, FLY) == [] and A.problems(pod, FARGATE) == []
    assert (FLY.smallest_cpu, FLY.smallest_memory) == ("62m", "256Mi")
    assert (FLY.largest_cpu_millis, FLY.largest_memory_mib) == (16000, 131072)


def test_each_node_is_judged_by_its_own_backends_sizes():
    from chalicelib.machines.fly.guest import SIZES as FLY

    nodes = {"vk-ecs": node_object("vk-ecs", "ecs", "us-east-1", CAPACITY, NOW),
             "vk-fly": node_object("vk-fly", "fly", "ams", CAPACITY, NOW)}
    sizes = {"vk-ecs": FARGATE, "vk-fly": FLY}

    def containers_on(node, n):
        def change(p):
            p["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
            p["spec"]["tolerations"] = [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}]
            p["spec"]["containers"] += [{"name": f"side{i}", "image": "busybox"} for i in range(n - 1)]
        return create(change)

    assert A.validate(containers_on("vk-ecs", 2), nodes, sizes).allowed
    assert A.validate(containers_on("vk-fly", 2), nodes, sizes).allowed  # multi-container machines
    refused = A.validate(containers_on("vk-fly", 11), nodes, sizes)
    assert not refused.allowed and "Fly Machines runs at most 10" in refused.message
    patch = A.mutate(create(lambda p: p["spec"].update(
        nodeSelector={"kubernetes.io/hostname": "vk-fly"},
        tolerations=[{"key": "virtual-kubelet.io/provider", "operator": "Exists"}])), nodes, sizes).patch
    assert {"op": "add", "path": "/spec/containers/0/resources/requests",
            "value": {"cpu": "62m", "memory": "256Mi"}} in patch
    assert any(op.get("value", {}).get("lambdalet.io/backend") == "fly" for op in patch if isinstance(op.get("value"), dict))


def test_workload_features_are_judged_by_the_nodes_backend():
    """imagePullSecrets run on ECS, subPath on Fly; the other node refuses them, saying what to do."""
    nodes = {"vk-ecs": node_object("vk-ecs", "ecs", "us-east-1", CAPACITY, NOW),
             "vk-fly": node_object("vk-fly", "fly", "ams", CAPACITY, NOW)}
    from chalicelib.machines.fly.guest import SIZES as FLY

    sizes = {"vk-ecs": FARGATE, "vk-fly": FLY}

    def on(node, change):
        def both(p):
            p["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
            p["spec"]["tolerations"] = [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}]
            change(p)
        return create(both)

    init = lambda p: spec(p).update(initContainers=[{"name": "migrate", "image": "busybox"}])  # noqa: E731
    pull = lambda p: spec(p).update(imagePullSecrets=[{"name": "regcred"}])  # noqa: E731
    sub = lambda p: (spec(p)["volumes"].append({"name": "conf", "configMap": {"name": "c"}}),  # noqa: E731
                     c0(p).update(volumeMounts=[{"name": "conf", "mountPath": "/etc/x.conf", "subPath": "x.conf"}]))
    env = lambda p: c0(p).update(  # noqa: E731
        env=[{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        envFrom=[{"configMapRef": {"name": "c"}, "prefix": "C_"}])
    for change in (init, pull, env):
        assert A.validate(on("vk-ecs", change), nodes, sizes).allowed
    for change in (env, sub, init):
        assert A.validate(on("vk-fly", change), nodes, sizes).allowed
    refused = A.validate(on("vk-fly", pull), nodes, sizes)
    assert not refused.allowed and "registry.fly.io" in refused.message
    refused = A.validate(on("vk-ecs", sub), nodes, sizes)
    assert not refused.allowed and "volumeMounts[0].subPath" in refused.message
