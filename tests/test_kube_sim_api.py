"""Semantics of the simulated kube-apiserver, through the official `kubernetes` client:
the contracts lambdalet relies on (conflicts, status subresource, graceful deletion,
selectors, paging, patch types, watch, schema validation, auth)."""
from __future__ import annotations

import json
import threading
import time

import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from tests.world.kube_sim import KubeSim
from tests.world.kube_sim.testing import core, node_body, pod_body, sim  # noqa: F401


def err(e: ApiException) -> dict:
    return json.loads(e.body)


def bind(sim, name, node, ns="default"):
    return sim.request("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding",
                       {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                        "target": {"kind": "Node", "name": node}})


# ---------------------------------------------------------------- create / get
def test_create_defaults_and_generate_name(core):
    p = core.create_namespaced_pod("default", {**pod_body(""), "metadata": {"generateName": "web-"}})
    assert p.metadata.name.startswith("web-") and len(p.metadata.name) == len("web-") + 5
    assert p.metadata.generation == 1 and p.metadata.uid and p.metadata.resource_version.isdigit()
    assert p.spec.dns_policy == "ClusterFirst" and p.spec.scheduler_name == "default-scheduler"
    assert p.spec.service_account_name == "default" and p.spec.priority == 0
    assert p.spec.containers[0].image_pull_policy == "Always"
    assert [t.key for t in p.spec.tolerations] == ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]
    assert len(p.spec.volumes[0].projected.sources) == 3
    assert (p.status.phase, p.status.qos_class) == ("Pending", "BestEffort")


def test_duplicate_missing_and_missing_namespace(core):
    core.create_namespaced_pod("default", pod_body("a"))
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod("default", pod_body("a"))
    assert e.value.status == 409 and err(e.value)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod("nope", "default")
    assert err(e.value) == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": 'pods "nope" not found', "reason": "NotFound",
                            "details": {"name": "nope", "kind": "pods"}, "code": 404}
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod("ghost", pod_body("a"))
    assert e.value.status == 404 and err(e.value)["message"] == 'namespaces "ghost" not found'


def test_invalid_pod_rejected_with_causes(core):
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod("default", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"},
                                               "spec": {"containers": []}})
    b = err(e.value)
    assert e.value.status == 422 and b["reason"] == "Invalid"
    assert [c["field"] for c in b["details"]["causes"]] == ["metadata.name", "spec.containers"]


def test_schema_type_error_is_bad_request(sim):
    r = sim.request("POST", "/api/v1/namespaces/default/pods",
                    {**pod_body("x"), "spec": {"containers": [{"name": "c", "image": 5}]}})
    assert r.status == 400 and "cannot be handled as a Pod" in r.body["message"]


def test_unknown_fields_strict_and_warn(sim):
    body = pod_body("u")
    body["spec"]["containers"][0]["bogusField"] = "x"
    r = sim.request("POST", "/api/v1/namespaces/default/pods", body, query={"fieldValidation": "Strict"})
    assert r.status == 400 and 'unknown field "spec.containers[0].bogusField"' in r.body["message"]
    r = sim.request("POST", "/api/v1/namespaces/default/pods", body)
    assert r.status == 201 and "bogusField" not in r.body["spec"]["containers"][0]
    assert r.headers["Warning"] == ['299 - "unknown field \\"spec.containers[0].bogusField\\""']


# ---------------------------------------------------------------- update / conflicts / status
def test_stale_resource_version_conflicts(core):
    p = core.create_namespaced_pod("default", pod_body("a"))
    p.metadata.labels = {"x": "1"}
    fresh = core.replace_namespaced_pod("a", "default", p)
    assert int(fresh.metadata.resource_version) > int(p.metadata.resource_version)
    assert fresh.metadata.generation == 1  # label-only change
    p.metadata.labels = {"x": "2"}
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_pod("a", "default", p)  # still the old resourceVersion
    assert e.value.status == 409 and "the object has been modified" in err(e.value)["message"]


def test_status_subresource_separation(core):
    core.create_namespaced_pod("default", pod_body("a"))
    p = core.patch_namespaced_pod_status("a", "default", {"spec": {"activeDeadlineSeconds": 5},
                                                          "metadata": {"labels": {"via": "status"}},
                                                          "status": {"phase": "Running", "podIP": "10.0.0.1"}})
    assert p.status.phase == "Running" and p.spec.active_deadline_seconds is None
    assert p.status.pod_ips[0].ip == "10.0.0.1" and not (p.metadata.labels or {}).get("via")
    p = core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"k": "v"}}, "status": {"phase": "Failed"}})
    assert p.status.phase == "Running" and p.metadata.labels["k"] == "v"


def test_status_validation_qos_immutable_and_lastState(core):
    core.create_namespaced_pod("default", pod_body("a"))
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_pod_status("a", "default", {"status": {"qosClass": "Guaranteed"}})
    assert err(e.value)["details"]["causes"][0]["field"] == "status.qosClass"
    p = core.patch_namespaced_pod_status("a", "default", {"status": {"containerStatuses": [
        {"name": "main", "ready": False, "restartCount": 0, "image": "busybox", "imageID": "",
         "state": {"waiting": {"reason": "ContainerCreating"}}}]}})
    raw = core.api_client.sanitize_for_serialization(p)
    assert raw["status"]["containerStatuses"][0]["lastState"] == {}


def test_condition_types_are_qualified_names_prefix_allowed(core):
    core.create_namespaced_pod("default", pod_body("q"))
    ok = {"type": "example.com/feature-1", "status": "True"}  # as readiness gates name them
    core.patch_namespaced_pod_status("q", "default", {"status": {"conditions": [ok]}})
    for bad in ("Bad_Prefix/feature", "example.com/", "not a valid type!"):
        with pytest.raises(ApiException) as e:
            core.patch_namespaced_pod_status("q", "default", {"status": {"conditions": [{"type": bad, "status": "True"}]}})
        assert e.value.status == 422 and err(e.value)["details"]["causes"][0]["field"] == "status.conditions[0].Type"


def test_spec_update_forbidden_beyond_mutable_fields(core):
    core.create_namespaced_pod("default", pod_body("a"))
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_pod("a", "default", {"spec": {"restartPolicy": "Never"}})
    assert e.value.status == 422 and "pod updates may not change fields" in err(e.value)["message"]
    p = core.patch_namespaced_pod("a", "default", {"spec": {"containers": [{"name": "main", "image": "busybox:2"}]}})
    assert p.spec.containers[0].image == "busybox:2" and p.metadata.generation == 2


# ---------------------------------------------------------------- patch types
def test_strategic_merges_conditions_merge_patch_replaces(sim, core):
    core.create_namespaced_pod("default", pod_body("a"))
    conds = [{"type": t, "status": "True"} for t in ("Initialized", "Ready", "ContainersReady")]
    core.patch_namespaced_pod_status("a", "default", {"status": {"conditions": conds}})
    smp = core.patch_namespaced_pod_status("a", "default", {"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    assert [(c.type, c.status) for c in smp.status.conditions] == [
        ("Initialized", "True"), ("Ready", "False"), ("ContainersReady", "True")]
    out = sim.request("PATCH", "/api/v1/namespaces/default/pods/a/status",
                      {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                      content_type="application/merge-patch+json").body
    assert [c["type"] for c in out["status"]["conditions"]] == ["Ready"]


def test_json_patch_and_failed_test_op(sim, core):
    core.create_namespaced_pod("default", pod_body("a"))
    ops = [{"op": "test", "path": "/status/phase", "value": "Pending"},
           {"op": "replace", "path": "/status/phase", "value": "Running"}]
    r = sim.request("PATCH", "/api/v1/namespaces/default/pods/a/status", ops, content_type="application/json-patch+json")
    assert r.status == 200 and r.body["status"]["phase"] == "Running"
    r = sim.request("PATCH", "/api/v1/namespaces/default/pods/a/status", ops, content_type="application/json-patch+json")
    assert r.status == 422 and r.body["details"] == {}


# ---------------------------------------------------------------- deletion
def test_graceful_delete_then_final_with_uid_precondition(sim, core):
    p = core.create_namespaced_pod("default", pod_body("a"))
    assert bind(sim, "a", "n1").status == 201
    d = core.delete_namespaced_pod("a", "default")
    assert d.metadata.deletion_grace_period_seconds == 30 and d.metadata.generation == 2
    assert (d.metadata.deletion_timestamp - d.metadata.creation_timestamp).total_seconds() >= 29
    assert core.read_namespaced_pod("a", "default").metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_pod("a", "default", body=kubernetes.client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=kubernetes.client.V1Preconditions(uid="WRONG")))
    assert e.value.status == 409 and "the UID in the precondition (WRONG)" in err(e.value)["message"]
    core.delete_namespaced_pod("a", "default", body=kubernetes.client.V1DeleteOptions(
        grace_period_seconds=0, preconditions=kubernetes.client.V1Preconditions(uid=p.metadata.uid)))
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod("a", "default")
    assert e.value.status == 404


def test_unbound_and_terminal_pods_go_at_once(sim, core):
    core.create_namespaced_pod("default", pod_body("unbound"))
    d = core.delete_namespaced_pod("unbound", "default")
    assert d.metadata.deletion_grace_period_seconds == 0
    core.create_namespaced_pod("default", pod_body("done"))
    bind(sim, "done", "n1")
    core.patch_namespaced_pod_status("done", "default", {"status": {"phase": "Succeeded"}})
    core.delete_namespaced_pod("done", "default", grace_period_seconds=10)
    assert [p.metadata.name for p in core.list_namespaced_pod("default").items] == []


def test_delete_preconditions_resource_version(sim, core):
    p = core.create_namespaced_pod("default", pod_body("a"))
    core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"x": "y"}}})
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_pod("a", "default", body=kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(resource_version=p.metadata.resource_version)))
    assert e.value.status == 409


def test_finalizers_hold_deletion(sim, core):
    core.create_namespaced_pod("default", {**pod_body("f"), "metadata": {"name": "f", "finalizers": ["x/y"]}})
    core.delete_namespaced_pod("f", "default")
    assert core.read_namespaced_pod("f", "default").metadata.deletion_timestamp is not None
    core.patch_namespaced_pod("f", "default", {"metadata": {"finalizers": None}})
    assert core.list_namespaced_pod("default").items == []


# ---------------------------------------------------------------- binding
def test_binding_sets_node_and_condition_second_binding_conflicts(sim, core):
    core.create_namespaced_pod("default", pod_body("a", scheduler="manual"))
    r = bind(sim, "a", "n1")
    assert (r.status, r.body) == (201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
    p = core.read_namespaced_pod("a", "default")
    assert p.spec.node_name == "n1" and [(c.type, c.status) for c in p.status.conditions] == [("PodScheduled", "True")]
    r = bind(sim, "a", "n2")
    assert r.status == 409 and 'already assigned to node "n1"' in r.body["message"]


# ---------------------------------------------------------------- selectors and paging
def test_field_and_label_selectors(sim, core):
    for name, lab in (("a", {"app": "x", "tier": "web"}), ("b", {"app": "y"}), ("c", {"app": "x"})):
        core.create_namespaced_pod("default", pod_body(name, labels=lab))
    bind(sim, "a", "vk")
    names = lambda lst: [p.metadata.name for p in lst.items]  # noqa: E731
    assert names(core.list_pod_for_all_namespaces(field_selector="spec.nodeName=vk")) == ["a"]
    assert names(core.list_namespaced_pod("default", field_selector="spec.nodeName!=vk,status.phase=Pending")) == ["b", "c"]
    assert names(core.list_namespaced_pod("default", field_selector="spec.nodeName==")) == ["b", "c"]
    assert names(core.list_namespaced_pod("default", label_selector="app in (x),!tier")) == ["c"]
    assert names(core.list_namespaced_pod("default", label_selector="app notin (x)")) == ["b"]
    assert names(core.list_namespaced_pod("default", label_selector="tier,app=x")) == ["a"]
    with pytest.raises(ApiException) as e:
        core.list_namespaced_pod("default", field_selector="spec.dnsPolicy=ClusterFirst")
    assert e.value.status == 400 and err(e.value)["message"] == "field label not supported: spec.dnsPolicy"


def test_pagination(core):
    for i in range(5):
        core.create_namespaced_pod("default", pod_body(f"p{i}"))
    seen, token, pages = [], None, 0
    while True:
        page = core.list_namespaced_pod("default", limit=2, _continue=token)
        pages += 1
        seen += [p.metadata.name for p in page.items]
        token = page.metadata._continue
        if not token:
            assert page.metadata.remaining_item_count is None
            break
        assert page.metadata.remaining_item_count == 5 - len(seen)
    assert seen == [f"p{i}" for i in range(5)] and pages == 3
    full = core.list_namespaced_pod("default")
    raw = core.api_client.sanitize_for_serialization(full)
    assert "kind" not in raw["items"][0] and full.metadata.resource_version.isdigit()


# ---------------------------------------------------------------- watch
def test_watch_streams_changes_and_delete(sim, core):
    rv = core.list_namespaced_pod("default").metadata.resource_version
    events = []

    def run():
        w = kubernetes.watch.Watch()
        for ev in w.stream(core.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=5,
                           field_selector="metadata.name=w"):
            events.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                w.stop()
    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.2)
    core.create_namespaced_pod("default", pod_body("other"))
    core.create_namespaced_pod("default", pod_body("w"))
    core.patch_namespaced_pod("w", "default", {"metadata": {"labels": {"a": "b"}}})
    core.delete_namespaced_pod("w", "default")
    t.join(5)
    assert events == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


# ---------------------------------------------------------------- nodes, namespaces, leases, events
def test_node_create_keeps_status_and_adds_not_ready_taint(core):
    n = core.create_node(node_body("n1", taints=[{"key": "vk", "value": "x", "effect": "NoSchedule"}]))
    assert [t.key for t in n.spec.taints] == ["vk", "node.kubernetes.io/not-ready"]
    assert n.status.conditions[0].type == "Ready"
    n = core.patch_node_status("n1", {"status": {"conditions": [{"type": "Ready", "status": "False"}]},
                                      "spec": {"unschedulable": True}})
    assert [(c.type, c.status) for c in n.status.conditions] == [("Ready", "False")] and not n.spec.unschedulable


def test_namespace_defaults(core):
    ns = core.create_namespace({"metadata": {"name": "team"}})
    assert ns.metadata.labels == {"kubernetes.io/metadata.name": "team"} and ns.status.phase == "Active"
    assert {n.metadata.name for n in core.list_namespace().items} >= {"default", "kube-node-lease", "team"}


def test_lease_microtime_and_conflict(sim):
    coord = kubernetes.client.CoordinationV1Api(sim.api_client())
    body = {"metadata": {"name": "n1", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": "2026-11-27T12:45:29.5Z"}}
    r = sim.request("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", body)
    assert r.body["spec"]["renewTime"] == "2026-11-27T12:45:29.500000Z"
    lease = coord.read_namespaced_lease("n1", "kube-node-lease")
    lease.spec.renew_time = lease.spec.renew_time.replace(second=40)
    renewed = coord.replace_namespaced_lease("n1", "kube-node-lease", lease)
    assert renewed.metadata.resource_version != lease.metadata.resource_version
    with pytest.raises(ApiException) as e:
        coord.replace_namespaced_lease("n1", "kube-node-lease", lease)
    assert e.value.status == 409 and err(e.value)["details"]["group"] == "coordination.k8s.io"


def test_events_one_store_two_views(sim, core):
    ev1 = kubernetes.client.EventsV1Api(sim.api_client())
    core.create_namespaced_event("default", {"metadata": {"name": "e1"}, "reason": "Started", "message": "hi",
                                             "type": "Normal", "count": 2,
                                             "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}})
    ev1.create_namespaced_event("default", {"metadata": {"name": "e2"}, "reason": "Pulled", "note": "n",
                                            "type": "Warning", "action": "Pulling",
                                            "eventTime": "2026-11-27T12:00:00.000001Z",
                                            "reportingController": "lambdalet", "reportingInstance": "vk",
                                            "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}})
    core_list = core.list_namespaced_event("default", field_selector="involvedObject.name=p")
    assert [(e.reason, e.message, e.reporting_component) for e in core_list.items] == [
        ("Started", "hi", ""), ("Pulled", "n", "lambdalet")]
    # Raw JSON: like the real server, a core-created event has eventTime null in the
    # events.k8s.io view, which the typed EventsV1Event model refuses.
    raw = ev1.list_namespaced_event("default", field_selector="regarding.name=p,type=Normal", _preload_content=False)
    items = json.loads(raw.data)["items"]
    assert [(e["note"], e["deprecatedCount"], e["eventTime"]) for e in items] == [("hi", 2, None)]


# ---------------------------------------------------------------- auth
def test_tokens_and_rbac_rules(sim):
    sim.add_token("vk-token", "system:serviceaccount:kube-system:lambdalet",
                  rules=[{"verbs": ["get", "list", "patch"], "resources": ["pods", "pods/status"]}])
    limited = kubernetes.client.CoreV1Api(sim.api_client("vk-token"))
    assert limited.list_namespaced_pod("default").items == []
    with pytest.raises(ApiException) as e:
        limited.delete_namespaced_pod("x", "default")
    b = err(e.value)
    assert e.value.status == 403 and b["message"] == (
        'pods "x" is forbidden: User "system:serviceaccount:kube-system:lambdalet" cannot delete resource '
        '"pods" in API group "" in the namespace "default"')
    with pytest.raises(ApiException) as e:
        kubernetes.client.CoreV1Api(sim.api_client("bad-token")).list_namespaced_pod("default")
    assert e.value.status == 401


def test_kube_config_loads_with_official_loader(sim, tmp_path):
    path = sim.write_kubeconfig(tmp_path / "kc")
    client = kubernetes.config.new_client_from_config(config_file=path)
    assert kubernetes.client.CoreV1Api(client).read_namespace("default").metadata.name == "default"


def test_clock_is_injectable():
    import datetime as dt
    t0 = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    with KubeSim(clock=lambda: t0) as s:
        r = s.request("POST", "/api/v1/namespaces/default/pods", pod_body("a"))
        assert r.body["metadata"]["creationTimestamp"] == "2030-01-02T03:04:05Z"
        bind(s, "a", "n")
        d = s.request("DELETE", "/api/v1/namespaces/default/pods/a", {"gracePeriodSeconds": 7})
        assert d.body["metadata"]["deletionTimestamp"] == "2030-01-02T03:04:12Z"


def test_a_burst_of_connections_is_queued_not_reset(sim):
    """200 clients connecting at once (a burst of bindings) are all answered: the server
    listens with a real backlog, as kube-apiserver does, not socketserver's 5."""
    import socket
    from concurrent.futures import ThreadPoolExecutor

    host, port = sim.url.removeprefix("http://").split(":")
    start = threading.Barrier(200)

    def get(_):
        start.wait()
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(b"GET /version HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n")
            return s.recv(12)

    with ThreadPoolExecutor(max_workers=200) as pool:
        answers = list(pool.map(get, range(200)))
    assert answers.count(b"HTTP/1.1 200") == 200
