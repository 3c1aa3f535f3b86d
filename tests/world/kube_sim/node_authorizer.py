"""The apiserver's Node authorizer and NodeRestriction admission, for node identities.

A user ``system:node:<name>`` in the group ``system:nodes`` (a kubelet's client
certificate from the ``kubernetes.io/kube-apiserver-client-kubelet`` signer) is
judged here instead of by RBAC rules, as kube-apiserver does with
``--authorization-mode=Node,RBAC`` and ``--enable-admission-plugins=NodeRestriction``.
Learnt from kubernetes ``plugin/pkg/auth/authorizer/node/node_authorizer.go``
(``Authorize``, ``authorizeReadNamespacedObject``, ``authorizePod``,
``authorizeNode``, ``authorizeLease``; AuthorizeNodeWithSelectors on, as from
1.32), ``plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go``
(``NodeRules``) and ``plugin/pkg/admission/noderestriction/admission.go``:

- secrets, configmaps: get/list/watch of one named object in a namespace, only
  when a pod bound to the node references it (env, envFrom, volumes,
  projected volumes, imagePullSecrets): the graph ``node <- pod <- secret``;
- pods: get of a pod bound to the node; list/watch only with the field selector
  ``spec.nodeName=<node>``; create/delete (mirror pods); status update/patch of
  a pod bound to the node (NodeRestriction);
- nodes: get/list/watch of its own Node only; create/update/patch and status of
  its own Node (NodeRestriction);
- leases in ``kube-node-lease``: get/create/update/patch/delete of its own;
- the static NodeRules otherwise (events create/update/patch; services and
  endpoints read; ...): nothing else.

The graph is read from the store at each request (the apiserver keeps it
current from informers): what is true now is what is allowed.
"""

from __future__ import annotations

NODE_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"
LEASE_NAMESPACE = "kube-node-lease"
# NodeRules (bootstrappolicy) that concern what the simulator serves, besides the subdivided resources.
STATIC_RULES = {
    ("", "events"): {"create", "update", "patch"},
    ("events.k8s.io", "events"): {"create", "update", "patch"},
    ("", "services"): {"get", "list", "watch"},
    ("", "endpoints"): {"get", "list", "watch"},
    # a kubelet renews its own client certificate
    ("certificates.k8s.io", "certificatesigningrequests"): {"create", "get", "list", "watch"},
}


def node_name(user: dict) -> str | None:
    """The node a user is, or None when it is no node identity (NodeIdentity)."""
    name = str(user.get("username") or "")
    if NODE_GROUP not in (user.get("groups") or []) or not name.startswith(NODE_PREFIX):
        return None
    return name[len(NODE_PREFIX):]


def referenced(pod: dict, kind: str) -> set[str]:
    """Names of the ConfigMaps (``kind`` = "configmaps") or Secrets a pod references."""
    spec = pod.get("spec") or {}
    out: set[str] = set()
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or []),
              *(spec.get("ephemeralContainers") or [])]:
        for e in c.get("env") or []:
            source = e.get("valueFrom") or {}
            ref = source.get("configMapKeyRef" if kind == "configmaps" else "secretKeyRef")
            if ref and ref.get("name"):
                out.add(ref["name"])
        for e in c.get("envFrom") or []:
            ref = e.get("configMapRef" if kind == "configmaps" else "secretRef")
            if ref and ref.get("name"):
                out.add(ref["name"])
    for v in spec.get("volumes") or []:
        if kind == "configmaps" and (v.get("configMap") or {}).get("name"):
            out.add(v["configMap"]["name"])
        if kind == "secrets" and (v.get("secret") or {}).get("secretName"):
            out.add(v["secret"]["secretName"])
        for src in (v.get("projected") or {}).get("sources") or []:
            ref = src.get("configMap" if kind == "configmaps" else "secret")
            if ref and ref.get("name"):
                out.add(ref["name"])
    if kind == "secrets":
        out |= {s.get("name") for s in spec.get("imagePullSecrets") or [] if s.get("name")}
    return out


def _bound(store, node: str, namespace: str | None = None) -> list[dict]:
    return [p for p in store.list("pods", namespace) if (p.get("spec") or {}).get("nodeName") == node]


def decide(store, user: dict, verb: str, group: str, resource: str, subresource: str, namespace: str,
           name: str, field_selector: str = "") -> tuple[bool, str]:
    """(allowed, why not) for a node identity's request."""
    node = node_name(user)
    if not node:
        return False, f'unknown node for user "{user.get("username")}"'
    if group == "" and resource in ("secrets", "configmaps"):
        if verb not in ("get", "list", "watch") or subresource:
            return False, "can only read resources of this type"
        if not namespace or not name:
            return False, "can only read namespaced object of this type" if not namespace else "No Object name found"
        if any(name in referenced(p, resource) for p in _bound(store, node, namespace)):
            return True, ""
        return False, f"no relationship found between node '{node}' and this object"
    if group == "" and resource == "pods":
        if subresource == "status":
            if verb not in ("update", "patch"):
                return False, ""
            pod = store.get("pods", namespace, name)  # NodeRestriction: only pods bound to itself
            ok = pod is not None and (pod.get("spec") or {}).get("nodeName") == node
            return ok, "" if ok else f"node '{node}' can only update pod status for pods with spec.nodeName set to itself"
        if subresource == "eviction":
            return verb == "create", ""
        if subresource:
            return False, ""
        if verb == "get":
            pod = store.get("pods", namespace, name)
            ok = pod is not None and (pod.get("spec") or {}).get("nodeName") == node
            return ok, "" if ok else f"no relationship found between node '{node}' and this object"
        if verb in ("list", "watch"):
            wanted = f"spec.nodeName={node}"
            ok = wanted in [part.strip().replace("==", "=") for part in field_selector.split(",")]
            return ok, "" if ok else "can only list/watch pods with spec.nodeName field selector"
        if verb == "delete":  # NodeRestriction: pods bound to itself
            pod = store.get("pods", namespace, name)
            ok = pod is None or (pod.get("spec") or {}).get("nodeName") == node
            return ok, "" if ok else f"node '{node}' can only delete pods with spec.nodeName set to itself"
        return verb == "create", ""
    if group == "" and resource == "nodes":
        if subresource == "status":
            ok = verb in ("update", "patch") and name == node  # NodeRestriction: its own Node
            return ok, "" if ok else f"node '{node}' is not allowed to modify node '{name}'"
        if subresource:
            return False, ""
        if verb in ("get", "list", "watch"):
            ok = name == node
            return ok, "" if ok else f"node '{node}' cannot read '{name or 'all nodes'}', only its own Node object"
        if verb in ("create", "update", "patch"):
            ok = not name or name == node  # create: NodeRestriction checks the object's name
            return ok, "" if ok else f"node '{node}' is not allowed to modify node '{name}'"
        return False, ""
    if group == "coordination.k8s.io" and resource == "leases":
        if verb not in ("get", "create", "update", "patch", "delete"):
            return False, "can only get, create, update, patch, or delete a node lease"
        if namespace != LEASE_NAMESPACE:
            return False, f'can only access leases in the "{LEASE_NAMESPACE}" system namespace'
        if verb != "create" and name != node:
            return False, "can only access node lease with the same name as the requesting node"
        return True, ""
    return verb in STATIC_RULES.get((group, resource), set()), ""
