"""A stage's kustomize overlay over infra/k8s (pure): the webhooks point at the deployed
API, the RBAC names the stage's nodes. `kubectl apply -k infra/k8s-overlays/<stage>`.

The patches are JSON 6902 with a `test` before each `replace`: if the base moves (a
webhook or rule reordered), kustomize refuses to render instead of patching the wrong
entry.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import yaml

PLACEHOLDER_HOST = "LAMBDALET_API_HOST"  # infra/k8s/webhooks.yaml
# The Kubernetes group of the functions' IAM role on EKS: its access entry's kubernetesGroups
# (infra/aws/lambdalet.yaml, the *AccessEntry resources, one per function role). EKS does not check that a binding names it:
# the overlay's bindings do (RBAC subject kind Group).
EKS_GROUP = "lambdalet"


def _api_path(url: str) -> str:
    """`https://LAMBDALET_API_HOST/api/admission/mutate` -> `admission/mutate` (after the API stage)."""
    parts = urlsplit(url)
    if parts.hostname != PLACEHOLDER_HOST.lower():
        raise ValueError(f"webhook url {url!r} does not use the {PLACEHOLDER_HOST} placeholder")
    return parts.path.strip("/").split("/", 1)[1]


def _target(doc: dict) -> dict:
    meta = doc["metadata"]
    group, _, version = doc["apiVersion"].rpartition("/")
    target = {"group": group, "version": version, "kind": doc["kind"], "name": meta["name"]}
    if meta.get("namespace"):
        target["namespace"] = meta["namespace"]
    return target


def _patch(doc: dict, ops: list[dict]) -> dict:
    return {"target": _target(doc), "patch": yaml.safe_dump(ops, sort_keys=False)}


def kustomization(base_docs: list[dict], *, base: str, api_url: str, node_names: list[str],
                  eks: bool = False) -> dict:
    """The overlay's kustomization.yaml. `base` is the path of infra/k8s relative to the overlay.
    ``eks``: the bindings name EKS_GROUP too, and the ServiceAccount's long-lived token Secret
    is left out (nothing reads it: the role is the identity)."""
    api = api_url.rstrip("/") + "/"
    patches = []
    for doc in base_docs:
        ops: list[dict] = []
        if doc["kind"] in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            for i, hook in enumerate(doc["webhooks"]):
                url = hook["clientConfig"]["url"]
                ops += [{"op": "test", "path": f"/webhooks/{i}/clientConfig/url", "value": url},
                        {"op": "replace", "path": f"/webhooks/{i}/clientConfig/url", "value": api + _api_path(url)}]
        elif doc["kind"] in ("ClusterRole", "Role"):
            for i, rule in enumerate(doc["rules"]):
                if "resourceNames" in rule:  # the node and Lease rules: one name per node
                    ops += [{"op": "test", "path": f"/rules/{i}/resourceNames", "value": rule["resourceNames"]},
                            {"op": "replace", "path": f"/rules/{i}/resourceNames", "value": list(node_names)}]
        elif eks and doc["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            ops.append({"op": "add", "path": "/subjects/-",
                        "value": {"kind": "Group", "name": EKS_GROUP, "apiGroup": "rbac.authorization.k8s.io"}})
        elif eks and doc["kind"] == "Secret" and doc.get("type") == "kubernetes.io/service-account-token":
            gone = {"$patch": "delete", "apiVersion": doc["apiVersion"], "kind": doc["kind"], "metadata": doc["metadata"]}
            patches.append({"patch": yaml.safe_dump(gone, sort_keys=False)})
        if ops:
            patches.append(_patch(doc, ops))
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [base],
        "patches": patches,
    }
