"""The cluster-side manifests: they render, they are valid Kubernetes objects, and
the RBAC they grant is exactly what lambdalet's code uses -- no more, no less.

The calls are not listed by hand: a scenario runs the app through its real entry
points against the simulator (every path that talks to Kubernetes: heartbeat,
reconcile, audit fast path, machine events, finalizing, event aggregation), with
the service account temporarily unrestricted, and every request it made is then
judged against the rendered rules.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter

import pytest
import yaml

from tests.world.stack import REPO, SA_TOKEN, SA_USER, Stack, pod_sources, virtual_pod

KUBECTL = shutil.which("kubectl")
kubectl_only = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


def rendered() -> list[dict]:
    out = subprocess.run([KUBECTL, "kustomize", str(REPO / "infra" / "k8s")], check=True,
                         capture_output=True, text=True, timeout=60)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    return rendered()


@kubectl_only
def test_every_rendered_object_is_valid_against_the_newest_kubernetes_schema(objects):
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    assert tuple(int(p) for p in version.split(".")[:2]) >= (1, 36)
    kinds = Counter(o["kind"] for o in objects)
    assert {"Namespace", "ServiceAccount", "Secret", "ClusterRole", "ClusterRoleBinding", "Role",
            "RoleBinding"} <= set(kinds)
    problems = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {err.message} at {list(err.path)}")
    assert problems == []


@kubectl_only
def test_the_validation_can_fail():
    import kubernetes_validate

    bad = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "x"},
           "rules": [{"apiGroups": [""], "resources": ["pods"], "verb": ["get"]}]}  # "verb": a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, kubernetes_validate.latest_version(), strict=True)


# -- RBAC: exactly the calls the code makes ------------------------------------------------


def rules_of(objects: list[dict]) -> list[dict]:
    """Every rule granted to lambdalet's service account, with the namespace it applies in (None: all)."""
    bound = set()
    for o in objects:
        if o["kind"] in ("ClusterRoleBinding", "RoleBinding") and any(
                s.get("kind") == "ServiceAccount" and s["name"] == "lambdalet" and s.get("namespace") == "lambdalet"
                for s in o.get("subjects") or []):
            ns = o["metadata"].get("namespace") if o["kind"] == "RoleBinding" else None
            bound.add((o["roleRef"]["kind"], o["roleRef"]["name"], ns))
    rules = []
    for o in objects:
        for kind, name, ns in bound:
            if o["kind"] == kind and o["metadata"]["name"] == name and (
                    kind == "ClusterRole" or o["metadata"].get("namespace") == ns):
                rules += [{**r, "namespace": ns} for r in o["rules"]]
    return rules


def allowed(rules: list[dict], call: tuple) -> bool:
    verb, group, resource, namespace, name = call
    for r in rules:
        if verb in r["verbs"] and group in r["apiGroups"] and resource in r["resources"] and \
                (r["namespace"] is None or r["namespace"] == namespace) and \
                ("resourceNames" not in r or name in r["resourceNames"]):
            return True
    return False


def run_everything(stack: Stack) -> tuple[Counter, set[tuple]]:
    """Drive every Kubernetes-facing path of the app; return its calls (Counter) and their targets."""
    api = stack.sim.api
    targets: set[tuple] = set()
    enforce = api._authorize

    def record(ctx):
        if ctx.user.get("username") == SA_USER:
            resource = ctx.rt.plural + ("/" + ctx.subresource if ctx.subresource else "")
            targets.add((ctx.verb, ctx.rt.group, resource, ctx.namespace or None, ctx.name or None))
        return enforce(ctx)

    api.tokens[SA_TOKEN]["rules"] = None  # see what the code asks for, not only what it may do
    api._authorize = record
    before = Counter({k: v for k, v in api.calls.items() if k[0] == SA_USER})
    stack.heartbeat()  # registers the node, creates and renews the lease
    stack.reconcile()
    stack.create_pod(virtual_pod("web", command=["sh", "-c", "sleep 100000"]))
    stack.create_pod(virtual_pod("crash", command=["sh", "-c", "exit 3"]))
    pod_sources(stack.core)  # a pod using a ConfigMap and a Secret: lambdalet reads them, by name
    stack.create_pod(virtual_pod("configured", command=["sh", "-c", "sleep 100000"], container={"env": [
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "MODE"}}},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "password"}}}]}))
    stack.settle(rounds=8)  # audit fast path + machine events
    for _ in range(6):  # crash loop: repeated events are aggregated (get + patch)
        stack.settle(rounds=2, seconds=20, reconcile=True)
    stack.core.delete_namespaced_pod("web", "default")
    stack.settle(rounds=10, seconds=5, reconcile=True)  # stop the task (30 s grace), then finalize the pod
    stack.advance(300)
    stack.heartbeat()  # the node status is due again (nodeStatusReportFrequency)
    after = Counter({k: v for k, v in api.calls.items() if k[0] == SA_USER})
    return Counter({(verb, res): n for (_, verb, res), n in (after - before).items()}), targets


@pytest.fixture(scope="module")
def used():
    with Stack() as stack:
        yield run_everything(stack)


@kubectl_only
def test_every_call_the_code_makes_is_granted(objects, used):
    calls, targets = used
    rules = rules_of(objects)
    assert {("get", "pods"), ("list", "pods"), ("patch", "pods/status"), ("delete", "pods"),
            ("create", "events"), ("get", "nodes"), ("create", "nodes"), ("patch", "nodes/status"),
            ("create", "leases"), ("update", "leases")} <= set(calls), calls
    denied = sorted(t for t in targets if not allowed(rules, t))
    assert denied == []


@kubectl_only
def test_nothing_is_granted_that_the_code_does_not_use(objects, used):
    calls, targets = used
    granted = {(verb, resource) for r in rules_of(objects) for verb in r["verbs"] for resource in r["resources"]}
    assert "*" not in {v for v, _ in granted} | {r for _, r in granted}
    assert granted - set(calls) == set(), "granted but never used"


@kubectl_only
def test_nodes_and_leases_are_granted_by_name_only(objects):
    for r in rules_of(objects):
        if set(r["resources"]) & {"nodes", "nodes/status", "leases"} and r["verbs"] != ["create"]:
            # create cannot be limited by name (the name is not in the URL); all else must be
            assert r.get("resourceNames") == ["lambdalet-ecs"], r
        if "leases" in r["resources"]:
            assert r["namespace"] == "kube-node-lease", r


# -- the apiserver's audit policy --------------------------------------------------------------


def test_audit_policy_records_bindings_and_pod_deletes_at_request_response_and_nothing_else():
    policy = yaml.safe_load((REPO / "infra" / "apiserver" / "audit-policy.yaml").read_text())
    assert (policy["apiVersion"], policy["kind"]) == ("audit.k8s.io/v1", "Policy")
    assert set(policy) <= {"apiVersion", "kind", "metadata", "rules", "omitStages", "omitManagedFields"}
    levels = {"None", "Metadata", "Request", "RequestResponse"}
    stages = {"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"}
    assert set(policy.get("omitStages") or []) <= stages and "ResponseComplete" not in (policy.get("omitStages") or [])
    rules = policy["rules"]
    for rule in rules:
        assert rule["level"] in levels
        assert set(rule) <= {"level", "users", "userGroups", "verbs", "resources", "namespaces",
                             "nonResourceURLs", "omitStages", "omitManagedFields"}, rule
        for gr in rule.get("resources") or []:
            assert set(gr) <= {"group", "resources", "resourceNames"}, gr

    def level_of(verb: str, group: str, resource: str) -> str:
        for rule in rules:  # first match wins, as in kube-apiserver
            if rule.get("verbs") and verb not in rule["verbs"]:
                continue
            if rule.get("nonResourceURLs"):
                continue
            grs = rule.get("resources")
            if grs and not any(gr.get("group", "") == group and (not gr.get("resources") or resource in gr["resources"])
                               for gr in grs):
                continue
            return rule["level"]
        return "None"

    recorded = {("create", "", "pods/binding"), ("delete", "", "pods")}
    for call in recorded:
        assert level_of(*call) == "RequestResponse", call
    others = [(verb, group, res) for verb in ("get", "list", "watch", "create", "update", "patch", "delete",
                                              "deletecollection")
              for group, res in (("", "pods"), ("", "pods/status"), ("", "pods/binding"), ("", "nodes"),
                                 ("", "secrets"), ("", "events"), ("coordination.k8s.io", "leases"),
                                 ("apps", "deployments"))]
    assert [c for c in others if c not in recorded and level_of(*c) != "None"] == []
    assert rules[-1] == {"level": "None"}  # the catch-all: nothing else is recorded
    json.dumps(policy)
