"""The simulator's workload API and controllers (ConfigMaps, Secrets, Deployments,
ReplicaSets, Jobs, garbage collection), its pod validation with the apiserver's
422 bodies, and the protobuf bodies kubectl's typed clients send."""
from __future__ import annotations

import base64
import json

from tests.world.kube_sim import protobuf
from tests.world.kube_sim.testing import node_body, pod_body, sim  # noqa: F401
from tests.world.kube_sim.workloads import HASH_LABEL

NS = "/api/v1/namespaces/default"
APPS = "/apis/apps/v1/namespaces/default"
BATCH = "/apis/batch/v1/namespaces/default"


def deployment(name="web", replicas=2, image="nginx:1.27"):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}}


def job(name="batch", **spec):
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {**spec, "template": {"spec": {"restartPolicy": "Never",
                                                   "containers": [{"name": "c", "image": "busybox"}]}}}}


def pods_of(sim, owner_uid):
    return [p for p in sim.api.store.list("pods", "default")
            if any(r["uid"] == owner_uid for r in p["metadata"].get("ownerReferences") or [])]


def set_phase(sim, pod, phase, ready=False):
    conds = [{"type": "Ready", "status": "True" if ready else "False"}]
    r = sim.request("PATCH", f"{NS}/pods/{pod['metadata']['name']}/status",
                    {"status": {"phase": phase, "conditions": conds}}, content_type="application/merge-patch+json")
    assert r.status == 200, r.body


# ---------------------------------------------------------------- deployments
def test_deployment_makes_a_replicaset_and_pods_owned_by_it(sim):
    r = sim.request("POST", f"{APPS}/deployments", deployment())
    assert r.status == 201, r.body
    d = r.body
    assert d["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert d["spec"]["template"]["spec"]["restartPolicy"] == "Always" and d["metadata"]["generation"] == 1
    sim.workloads.run_once()
    [rs] = sim.api.store.list("replicasets", "default")
    h = rs["metadata"]["labels"][HASH_LABEL]
    assert rs["metadata"]["name"] == f"web-{h}" and len(h) == 10
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: h}
    assert rs["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                                  "uid": d["metadata"]["uid"], "controller": True,
                                                  "blockOwnerDeletion": True}]
    sim.workloads.run_once()
    pods = pods_of(sim, rs["metadata"]["uid"])
    assert len(pods) == 2
    assert all(p["metadata"]["name"].startswith(f"web-{h}-") and p["metadata"]["labels"][HASH_LABEL] == h for p in pods)
    for p in pods:
        set_phase(sim, p, "Running", ready=True)
    sim.workloads.run_once()
    sim.workloads.run_once()
    d = sim.request("GET", f"{APPS}/deployments/web").body
    assert d["status"]["readyReplicas"] == 2 and d["status"]["availableReplicas"] == 2
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    conds = {c["type"]: c["reason"] for c in d["status"]["conditions"]}
    assert conds == {"Available": "MinimumReplicasAvailable", "Progressing": "NewReplicaSetAvailable"}


def test_scale_subresource_and_a_new_template_replaces_the_replicaset(sim):
    sim.request("POST", f"{APPS}/deployments", deployment(replicas=1))
    sim.workloads.run_once()
    scale = sim.request("GET", f"{APPS}/deployments/web/scale").body
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 1} and scale["status"]["selector"] == "app=web"
    r = sim.request("PATCH", f"{APPS}/deployments/web/scale", {"spec": {"replicas": 3}},
                    content_type="application/merge-patch+json")
    assert r.status == 200 and r.body["spec"]["replicas"] == 3
    assert sim.request("PATCH", f"{APPS}/deployments/web/scale", {"spec": {"replicas": -1}},
                       content_type="application/merge-patch+json").status == 422
    for _ in range(2):
        sim.workloads.run_once()
    [rs] = sim.api.store.list("replicasets", "default")
    assert rs["spec"]["replicas"] == 3 and len(pods_of(sim, rs["metadata"]["uid"])) == 3
    new = deployment(replicas=3, image="nginx:1.28")
    r = sim.request("PATCH", f"{APPS}/deployments/web", {"spec": new["spec"]},
                    content_type="application/strategic-merge-patch+json")
    assert r.status == 200 and r.body["metadata"]["generation"] == 3
    for _ in range(3):
        sim.workloads.run_once()
    rss = {rs["metadata"]["name"]: rs for rs in sim.api.store.list("replicasets", "default")}
    assert sorted(rs["spec"]["replicas"] for rs in rss.values()) == [0, 3]
    newest = next(rs for rs in rss.values() if rs["spec"]["replicas"] == 3)
    assert newest["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert newest["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"


def test_deleting_a_deployment_collects_its_replicasets_and_pods(sim):
    sim.request("POST", f"{APPS}/deployments", deployment())
    for _ in range(2):
        sim.workloads.run_once()
    assert len(sim.api.store.list("pods", "default")) == 2
    r = sim.request("DELETE", f"{APPS}/deployments/web", {"propagationPolicy": "Background"})
    assert r.status == 200
    for _ in range(3):
        sim.workloads.run_once()
    assert sim.api.store.list("replicasets", "default") == []
    assert sim.api.store.list("pods", "default") == []


def test_orphan_propagation_keeps_the_dependents(sim):
    sim.request("POST", f"{APPS}/deployments", deployment(replicas=1))
    for _ in range(2):
        sim.workloads.run_once()
    sim.request("DELETE", f"{APPS}/deployments/web", {"propagationPolicy": "Orphan"})
    for _ in range(3):
        sim.workloads.run_once()
    [rs] = sim.api.store.list("replicasets", "default")
    assert not rs["metadata"].get("ownerReferences")
    assert len(sim.api.store.list("pods", "default")) == 1


def test_selector_must_match_the_template_labels(sim):
    bad = deployment()
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    r = sim.request("POST", f"{APPS}/deployments", bad)
    assert r.status == 422
    assert r.body["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "spec.template.metadata.labels",
                                            "message": 'Invalid value: map[string]string{"app":"other"}: '
                                                       '`selector` does not match template `labels`'}]


def test_refused_pod_creates_show_on_the_replicaset(sim):
    sim.request("POST", f"{APPS}/deployments", deployment(replicas=1))
    # Pods that cannot be created: a validating webhook refuses every pod.
    sim.add_webhook_configuration({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "deny"}, "webhooks": [{
            "name": "deny.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"url": "https://deny.example.com/"},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}]})
    sim.connect_webhook("https://deny.example.com/", lambda url, body, timeout: (200, json.dumps({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {"uid": json.loads(body)["request"]["uid"], "allowed": False,
                     "status": {"code": 403, "message": "no pods here"}}}).encode()))
    for _ in range(2):
        sim.workloads.run_once()
    [rs] = sim.api.store.list("replicasets", "default")
    [cond] = rs["status"]["conditions"]
    assert cond["type"] == "ReplicaFailure" and cond["reason"] == "FailedCreate" and "no pods here" in cond["message"]
    events = [e for e in sim.api.store.list("events", "default") if e["reason"] == "FailedCreate"]
    assert len(events) == 1, "creates back off after a refusal"
    assert events[0]["type"] == "Warning" and "no pods here" in events[0]["message"]


# ---------------------------------------------------------------- jobs
def test_job_runs_pods_to_its_completions(sim):
    r = sim.request("POST", f"{BATCH}/jobs", job(completions=2))
    assert r.status == 201, r.body
    j = r.body
    uid = j["metadata"]["uid"]
    assert j["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert j["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "batch"
    assert (j["spec"]["parallelism"], j["spec"]["backoffLimit"], j["spec"]["completionMode"]) == (1, 6, "NonIndexed")
    for _ in range(2):
        sim.workloads.run_once()
        [pod] = [p for p in pods_of(sim, uid) if p["status"]["phase"] == "Pending"]
        set_phase(sim, pod, "Succeeded")
    sim.workloads.run_once()
    j = sim.request("GET", f"{BATCH}/jobs/batch").body
    assert j["status"]["succeeded"] == 2 and j["status"].get("active", 0) == 0
    assert [c["type"] for c in j["status"]["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert j["status"]["completionTime"] and len(pods_of(sim, uid)) == 2


def test_job_fails_past_its_backoff_limit(sim):
    uid = sim.request("POST", f"{BATCH}/jobs", job(backoffLimit=1)).body["metadata"]["uid"]
    for _ in range(2):
        sim.workloads.run_once()
        [pod] = [p for p in pods_of(sim, uid) if p["status"]["phase"] == "Pending"]
        set_phase(sim, pod, "Failed")
    sim.workloads.run_once()
    j = sim.request("GET", f"{BATCH}/jobs/batch").body
    assert j["status"]["failed"] == 2
    failed = [c for c in j["status"]["conditions"] if c["type"] == "Failed"]
    assert failed[0]["reason"] == "BackoffLimitExceeded"
    sim.workloads.run_once()
    assert len(pods_of(sim, uid)) == 2, "no new pod after the job failed"


def test_job_template_restart_policy_must_be_never_or_on_failure(sim):
    bad = job()
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    r = sim.request("POST", f"{BATCH}/jobs", bad)
    assert r.status == 422
    assert {"reason": "FieldValueNotSupported", "field": "spec.template.spec.restartPolicy",
            "message": 'Unsupported value: "Always": supported values: "OnFailure", "Never"'} in r.body["details"]["causes"]


# ---------------------------------------------------------------- configmaps, secrets
def test_configmaps_and_secrets(sim):
    assert sim.request("POST", f"{NS}/configmaps", {"metadata": {"name": "cfg"}, "data": {"a": "1"}}).status == 201
    r = sim.request("POST", f"{NS}/secrets", {"metadata": {"name": "s"}, "stringData": {"pw": "hunter2"}})
    assert r.status == 201
    assert r.body["type"] == "Opaque" and "stringData" not in r.body
    assert base64.b64decode(r.body["data"]["pw"]) == b"hunter2"
    assert sim.request("GET", f"{NS}/configmaps/cfg").body["data"] == {"a": "1"}


# ---------------------------------------------------------------- pod validation
def _causes(sim, **spec):
    r = sim.request("POST", f"{NS}/pods", pod_body("p", **spec))
    assert r.status == 422, r.body
    assert r.body["reason"] == "Invalid" and r.body["details"]["kind"] == "Pod"
    return {c["field"]: (c["reason"], c["message"]) for c in r.body["details"]["causes"]}


def test_pod_validation_answers_422_with_the_apiservers_causes(sim):
    neg = [{"name": "main", "image": "busybox", "resources": {"requests": {"cpu": "-1"}}}]
    assert _causes(sim, containers=neg) == {"spec.containers[0].resources.requests[cpu]": (
        "FieldValueInvalid", 'Invalid value: "-1": must be greater than or equal to 0')}
    over = [{"name": "main", "image": "busybox", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]
    assert _causes(sim, containers=over)["spec.containers[0].resources.requests"] == (
        "FieldValueInvalid", 'Invalid value: "2": must be less than or equal to cpu limit of 1')
    assert _causes(sim, restartPolicy="Sometimes") == {"spec.restartPolicy": (
        "FieldValueNotSupported", 'Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure"')}
    dup = [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]
    assert _causes(sim, containers=dup) == {"spec.containers[1].name": ("FieldValueDuplicate", 'Duplicate value: "a"')}
    vols = [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]
    mounts = [{"name": "main", "image": "x", "volumeMounts": [{"name": "w", "mountPath": "/w"}]}]
    got = _causes(sim, volumes=vols, containers=mounts)
    assert got["spec.volumes[1].name"] == ("FieldValueDuplicate", 'Duplicate value: "v"')
    assert got["spec.containers[0].volumeMounts[0].name"] == ("FieldValueNotFound", 'Not found: "w"')
    ports = [{"name": "main", "image": "x", "ports": [{"containerPort": 70000, "protocol": "HTTP"}]}]
    got = _causes(sim, containers=ports)
    assert got["spec.containers[0].ports[0].containerPort"] == (
        "FieldValueInvalid", "Invalid value: 70000: must be between 1 and 65535, inclusive")
    assert got["spec.containers[0].ports[0].protocol"][0] == "FieldValueNotSupported"
    bad_name = [{"name": "Bad_Name", "image": "x"}]
    assert _causes(sim, containers=bad_name)["spec.containers[0].name"][0] == "FieldValueInvalid"
    r = sim.request("POST", f"{NS}/pods", pod_body("p", containers=neg))
    assert r.body["message"] == ('Pod "p" is invalid: spec.containers[0].resources.requests[cpu]: '
                                 'Invalid value: "-1": must be greater than or equal to 0')
    assert sim.request("GET", f"{NS}/pods/p").status == 404, "nothing stored"


def test_an_undecodable_quantity_is_a_400_at_decoding(sim):
    c = [{"name": "main", "image": "x", "resources": {"limits": {"memory": "lots"}}}]
    r = sim.request("POST", f"{NS}/pods", pod_body("p", containers=c))
    assert r.status == 400 and r.body["reason"] == "BadRequest"
    assert r.body["message"].startswith('Pod in version "v1" cannot be handled as a Pod: quantities must match')


# ---------------------------------------------------------------- protobuf
def _varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def _field(num, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _envelope(api_version, kind, raw):
    tm = _field(1, api_version.encode()) + _field(2, kind.encode())
    return protobuf.MAGIC + _field(1, tm) + _field(2, raw)


def test_protobuf_namespace_is_decoded_and_an_unknown_field_is_415(sim):
    meta = _field(1, b"other") + _field(11, _field(1, b"team") + _field(2, b"a"))
    r = sim.request("POST", "/api/v1/namespaces", _envelope("v1", "Namespace", _field(1, meta)),
                    content_type=protobuf.MEDIA_TYPE)
    assert r.status == 201, r.body
    assert r.body["metadata"]["name"] == "other" and r.body["metadata"]["labels"]["team"] == "a"
    weird = _field(1, _field(1, b"x")) + _field(99, b"?")
    r = sim.request("POST", "/api/v1/namespaces", _envelope("v1", "Namespace", weird), content_type=protobuf.MEDIA_TYPE)
    assert r.status == 415 and r.body["reason"] == "UnsupportedMediaType"
    assert r.body["message"].startswith("the body of the request was in an unknown format - accepted media types include")
    assert sim.request("GET", "/api/v1/namespaces/x").status == 404


def test_tables_print_the_real_columns(sim):
    sim.request("POST", "/api/v1/nodes", node_body("n1", labels={"node-role.kubernetes.io/control-plane": ""}))
    sim.request("POST", f"{APPS}/deployments", deployment())
    sim.request("POST", f"{NS}/secrets", {"metadata": {"name": "s"}, "data": {"a": "YQ==", "b": "Yg=="}})
    accept = {"accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}

    def table(path):
        t = sim.request("GET", path, headers=accept).body
        assert t["kind"] == "Table"
        return [c["name"] for c in t["columnDefinitions"]], [r["cells"] for r in t["rows"]]
    cols, rows = table("/api/v1/nodes")
    assert cols == ["Name", "Status", "Roles", "Age", "Version", "Internal-IP", "External-IP", "OS-Image",
                    "Kernel-Version", "Container-Runtime"]
    assert rows[0][:3] == ["n1", "Ready", "control-plane"]
    cols, rows = table(f"{APPS}/deployments")
    assert cols == ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]
    assert rows[0][1] == "0/2" and rows[0][5:] == ["c", "nginx:1.27", "app=web"]
    cols, rows = table(f"{NS}/secrets")
    assert cols == ["Name", "Type", "Data", "Age"] and rows[0][:3] == ["s", "Opaque", 2]
    cols, _ = table(f"{NS}/events")
    assert cols[:4] == ["Last Seen", "Type", "Reason", "Object"]
    cols, rows = table("/api/v1/namespaces")
    assert cols == ["Name", "Status", "Age"] and ["default", "Active"] == rows[0][:2]
    assert json.loads(json.dumps(rows))  # cells are JSON values
