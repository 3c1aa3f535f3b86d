"""The simulator calls admission webhooks the way kube-apiserver does
(tests/world/kube_sim/admission.py): which requests reach which webhook, what the
AdmissionReview looks like next to the real samples, patches, refusals,
failurePolicy, timeouts, dryRun."""

from __future__ import annotations

import base64
import json
import socket

import pytest

from tests.samples import sample
from tests.world.kube_sim import KubeSim
from tests.world.kube_sim.admission import rule_matches, selector_matches

URL = "https://hooks.example/"
POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "p", "labels": {"app": "x"}},
       "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def config(kind: str, name: str = "hooks", **hook) -> dict:
    rules = hook.pop("rules", [{"operations": ["CREATE", "DELETE"], "apiGroups": [""], "apiVersions": ["v1"],
                                "resources": ["pods", "pods/binding"]}])
    webhook = {"name": f"{name}.hooks.example", "clientConfig": {"url": URL + name}, "rules": rules,
               "sideEffects": "None", "admissionReviewVersions": ["v1"], **hook}
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": name},
            "webhooks": [webhook]}


class Hook:
    """A webhook endpoint: records reviews, answers with ``decide(request) -> response fields``."""

    def __init__(self, decide=None):
        self.reviews: list[dict] = []
        self.decide = decide or (lambda request: {"allowed": True})

    def __call__(self, url, body, timeout):
        review = json.loads(body)
        self.reviews.append(review)
        answer = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                  "response": {"uid": review["request"]["uid"], **self.decide(review["request"])}}
        return 200, json.dumps(answer).encode()

    @property
    def requests(self) -> list[dict]:
        return [r["request"] for r in self.reviews]


@pytest.fixture
def sim():
    with KubeSim() as s:
        yield s


def create(sim, pod=POD, ns="default", query=None):
    return sim.request("POST", f"/api/v1/namespaces/{ns}/pods", pod, query=query)


def patch_of(*ops) -> dict:
    return {"patchType": "JSONPatch", "patch": base64.b64encode(json.dumps(list(ops)).encode()).decode()}


def test_create_review_has_the_fields_of_the_real_sample(sim):
    hook = Hook()
    sim.connect_webhook(URL, hook)
    sim.add_webhook_configuration(config("ValidatingWebhookConfiguration"))
    assert create(sim).status == 201
    [request] = hook.requests
    real = sample("admission-pod-create.json")["request"]
    assert list(request) == list(real)
    assert {k: request[k] for k in ("kind", "resource", "requestKind", "requestResource", "operation")} == \
        {k: real[k] for k in ("kind", "resource", "requestKind", "requestResource", "operation")}
    assert request["name"] == "p" and request["namespace"] == "default" and request["oldObject"] is None
    assert request["userInfo"]["username"] == "admin" and request["dryRun"] is False
    assert request["options"] == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
    obj = request["object"]
    assert obj["metadata"]["uid"] and obj["metadata"]["creationTimestamp"]  # validating: after BeforeCreate
    assert obj["spec"]["volumes"][0]["name"].startswith("kube-api-access-")  # after the ServiceAccount plugin
    assert sim.admission_calls[0]["url"] == URL + "hooks?timeout=10s"


def test_binding_and_delete_reviews_have_the_fields_of_the_real_samples(sim):
    hook = Hook()
    sim.connect_webhook(URL, hook)
    sim.add_webhook_configuration(config("ValidatingWebhookConfiguration"))
    uid = create(sim).body["metadata"]["uid"]
    binding = {"kind": "Binding", "apiVersion": "v1", "metadata": {"name": "p", "uid": uid},
               "target": {"kind": "Node", "name": "vk-test"}}
    assert sim.request("POST", "/api/v1/namespaces/default/pods/p/binding", binding).status == 201
    assert sim.request("DELETE", "/api/v1/namespaces/default/pods/p", {"gracePeriodSeconds": 30}).status == 200
    assert sim.request("DELETE", "/api/v1/namespaces/default/pods/p",
                       {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}).status == 200
    _, bind, graceful, final = hook.requests
    real_bind = sample("admission-pods-binding-create.json")["request"]
    assert list(bind) == list(real_bind)
    assert bind["subResource"] == bind["requestSubResource"] == "binding" and bind["kind"]["kind"] == "Binding"
    assert bind["object"]["target"] == {"kind": "Node", "name": "vk-test"}
    assert bind["object"]["metadata"] == {"name": "p", "namespace": "default", "uid": uid}
    real_delete = sample("admission-pod-delete.json")["request"]
    for request in (graceful, final):
        assert list(request) == list(real_delete)
        assert request["operation"] == "DELETE" and request["object"] is None
        assert request["oldObject"]["metadata"]["uid"] == uid
    assert graceful["options"] == {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "gracePeriodSeconds": 30}
    assert final["options"]["preconditions"] == {"uid": uid}
    assert final["oldObject"]["metadata"]["deletionTimestamp"]  # the second call sees the terminating pod
    assert len({r["uid"] for r in hook.requests}) == 4  # every call has its own review uid


def test_a_denial_is_the_apiservers_error_with_the_webhooks_status(sim):
    sim.connect_webhook(URL, Hook(lambda r: {"allowed": False, "status": {
        "code": 403, "reason": "Forbidden", "message": "spec.hostNetwork: no", "details": {"causes": [
            {"field": "spec.hostNetwork", "message": "no"}]}}}))
    sim.add_webhook_configuration(config("ValidatingWebhookConfiguration"))
    r = create(sim)
    assert r.status == 403 and r.body["reason"] == "Forbidden"
    assert r.body["message"] == 'admission webhook "hooks.hooks.example" denied the request: spec.hostNetwork: no'
    assert r.body["details"]["causes"][0]["field"] == "spec.hostNetwork"
    assert sim.request("GET", "/api/v1/namespaces/default/pods/p").status == 404


def test_mutating_runs_first_without_uid_and_its_patch_is_stored_and_validated(sim):
    mutator = Hook(lambda r: {"allowed": True, **patch_of(
        {"op": "add", "path": "/metadata/annotations", "value": {"a.example/b": "1"}},
        {"op": "add", "path": "/spec/containers/0/resources", "value": {"requests": {"cpu": "250m"}}})})
    validator = Hook()
    sim.connect_webhook(URL + "m", mutator)
    sim.connect_webhook(URL + "v", validator)
    sim.add_webhook_configuration(config("ValidatingWebhookConfiguration", "v"))
    sim.add_webhook_configuration(config("MutatingWebhookConfiguration", "m"))
    stored = create(sim).body
    assert "uid" not in mutator.requests[0]["object"]["metadata"]
    assert validator.requests[0]["object"]["metadata"]["annotations"] == {"a.example/b": "1"}
    assert stored["metadata"]["annotations"] == {"a.example/b": "1"}
    assert stored["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "250m"}}
    assert stored["status"]["qosClass"] == "Burstable"  # computed after the mutation


def test_a_validating_webhook_may_not_patch(sim):
    sim.connect_webhook(URL, Hook(lambda r: {"allowed": True, **patch_of({"op": "remove", "path": "/spec"})}))
    sim.add_webhook_configuration(config("ValidatingWebhookConfiguration"))
    r = create(sim)
    assert r.status == 500 and "validating webhook may not return a patch" in r.body["message"]


def test_dry_run_is_sent_and_stores_nothing(sim):
    hook = Hook()
    sim.connect_webhook(URL, hook)
    sim.add_webhook_configuration(config("ValidatingWebhookConfiguration"))
    assert create(sim, query={"dryRun": "All"}).status == 201
    assert hook.requests[0]["dryRun"] is True and hook.requests[0]["options"]["dryRun"] == ["All"]
    assert sim.request("GET", "/api/v1/namespaces/default/pods/p").status == 404


# -- scoping --------------------------------------------------------------------

def test_object_selector_selects_pods_by_label_and_never_a_binding(sim):
    hook = Hook()
    sim.connect_webhook(URL, hook)
    sim.add_webhook_configuration(config("ValidatingWebhookConfiguration", objectSelector={
        "matchLabels": {"lambdalet.io/enabled": "true"}}))
    create(sim)  # no label: not sent
    labelled = json.loads(json.dumps(POD))
    labelled["metadata"] |= {"name": "q", "labels": {"lambdalet.io/enabled": "true"}}
    uid = create(sim, labelled).body["metadata"]["uid"]
    binding = {"kind": "Binding", "apiVersion": "v1", "metadata": {"name": "q", "uid": uid},
               "target": {"kind": "Node", "name": "n"}}
    sim.request("POST", "/api/v1/namespaces/default/pods/q/binding", binding)
    sim.request("DELETE", "/api/v1/namespaces/default/pods/q")  # the old object carries the label
    assert [(r["operation"], r.get("subResource"), r["name"]) for r in hook.requests] == [
        ("CREATE", None, "q"), ("DELETE", None, "q")]


def test_namespace_selector_selects_by_the_namespaces_labels(sim):
    hook = Hook()
    sim.connect_webhook(URL, hook)
    sim.request("POST", "/api/v1/namespaces", {"metadata": {"name": "in", "labels": {"lambdalet.io/enabled": "true"}}})
    sim.request("POST", "/api/v1/namespaces", {"metadata": {"name": "out"}})
    sim.add_webhook_configuration(config("ValidatingWebhookConfiguration", namespaceSelector={
        "matchExpressions": [{"key": "lambdalet.io/enabled", "operator": "In", "values": ["true"]}]}))
    for ns in ("in", "out", "default"):
        assert create(sim, ns=ns).status == 201
    uid = sim.request("GET", "/api/v1/namespaces/in/pods/p").body["metadata"]["uid"]
    sim.request("POST", "/api/v1/namespaces/in/pods/p/binding", {"kind": "Binding", "apiVersion": "v1",
                "metadata": {"name": "p", "uid": uid}, "target": {"kind": "Node", "name": "n"}})
    assert [(r["namespace"], r.get("subResource")) for r in hook.requests] == [("in", None), ("in", "binding")]


@pytest.mark.parametrize("resources,sub,matches", [
    (["pods"], "", True), (["pods"], "binding", False), (["pods/binding"], "binding", True),
    (["pods/binding"], "", False), (["pods/*"], "binding", True), (["pods/*"], "", False),
    (["*"], "", True), (["*"], "binding", False), (["*/*"], "binding", True), (["*/*"], "", True),
    (["*/binding"], "binding", True), (["nodes"], "", False),
])
def test_rule_resources(resources, sub, matches):
    rule = {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": resources}
    assert rule_matches(rule, "CREATE", "", "v1", "pods", sub, True) is matches


def test_rule_operations_groups_and_scope():
    rule = {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}
    assert not rule_matches(rule, "DELETE", "", "v1", "pods", "", True)
    assert not rule_matches(rule, "CREATE", "apps", "v1", "pods", "", True)
    assert not rule_matches(rule | {"scope": "Cluster"}, "CREATE", "", "v1", "pods", "", True)
    assert rule_matches(rule | {"operations": ["*"]}, "DELETE", "", "v1", "pods", "", True)


def test_label_selectors():
    assert selector_matches({}, {}) and selector_matches(None, {"a": "b"})
    assert not selector_matches({"matchLabels": {"a": "b"}}, {})
    assert selector_matches({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]}, {})
    assert not selector_matches({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"b": "1"})
    assert selector_matches({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"b": "1"})


# -- failures -------------------------------------------------------------------

def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
def test_unreachable_webhook_follows_the_failure_policy(sim, policy):
    cfg = config("ValidatingWebhookConfiguration", failurePolicy=policy)
    url = f"https://127.0.0.1:{closed_port()}/admission"
    cfg["webhooks"][0]["clientConfig"]["url"] = url
    sim.add_webhook_configuration(cfg)
    r = create(sim)
    if policy == "Ignore":
        assert r.status == 201 and sim.admission_calls[0]["ignored"]
    else:
        assert r.status == 500 and r.body["reason"] == "InternalError"
        assert r.body["message"] == (f'Internal error occurred: failed calling webhook "hooks.hooks.example": failed to '
                                     f'call webhook: Post "{url}?timeout=10s": dial tcp {url.split("/")[2]}: '
                                     f'connect: connection refused')


def test_a_webhook_slower_than_its_timeout_fails_with_deadline_exceeded(sim):
    listener = socket.socket()  # accepts, never answers
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        cfg = config("ValidatingWebhookConfiguration", timeoutSeconds=1)
        cfg["webhooks"][0]["clientConfig"]["url"] = f"http://127.0.0.1:{port}/admission"
        sim.add_webhook_configuration(cfg)
        r = create(sim)
    finally:
        listener.close()
    assert r.status == 500
    assert r.body["message"].endswith(f'Post "http://127.0.0.1:{port}/admission?timeout=1s": context deadline exceeded')


def test_a_callable_answering_late_counts_as_timed_out(sim, monkeypatch):
    import tests.world.kube_sim.admission as adm
    ticks = iter([0.0, 11.0])
    monkeypatch.setattr(adm.time, "monotonic", lambda: next(ticks))
    sim.connect_webhook(URL, Hook())
    sim.add_webhook_configuration(config("ValidatingWebhookConfiguration"))
    r = create(sim)
    assert r.status == 500 and "context deadline exceeded" in r.body["message"]


@pytest.mark.parametrize("answer,why", [
    (lambda url, body, t: (500, b"boom"), 'an error on the server ("boom")'),
    (lambda url, body, t: (200, b"{}"), "not an admission.k8s.io/v1 AdmissionReview"),
    (lambda url, body, t: (200, json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                            "response": {"uid": "other", "allowed": True}}).encode()),
     'expected response.uid='),
])
def test_a_bad_answer_is_a_webhook_failure(sim, answer, why):
    sim.connect_webhook(URL, answer)
    sim.add_webhook_configuration(config("ValidatingWebhookConfiguration"))
    r = create(sim)
    assert r.status == 500 and why in r.body["message"]


# -- the configurations themselves ---------------------------------------------

def test_configurations_are_defaulted_like_the_real_api(sim):
    stored = sim.add_webhook_configuration(config("MutatingWebhookConfiguration"))
    hook = stored["webhooks"][0]
    assert (hook["failurePolicy"], hook["timeoutSeconds"], hook["reinvocationPolicy"], hook["matchPolicy"]) == \
        ("Fail", 10, "Never", "Equivalent")
    assert hook["namespaceSelector"] == {} and hook["objectSelector"] == {} and hook["rules"][0]["scope"] == "*"
    listed = sim.request("GET", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations").body
    assert [c["metadata"]["name"] for c in listed["items"]] == ["hooks"]


@pytest.mark.parametrize("change,field", [
    ({"sideEffects": "Some"}, "sideEffects"),
    ({"timeoutSeconds": 31}, "timeoutSeconds"),
    ({"admissionReviewVersions": ["v1beta1"]}, "admissionReviewVersions"),
    ({"matchConditions": [{"name": "x", "expression": "true"}]}, "matchConditions"),
])
def test_invalid_configurations_are_refused(sim, change, field):
    r = sim.request("POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
                    config("ValidatingWebhookConfiguration", **change))
    assert r.status == 422 and field in r.body["message"]
