"""Admission decisions: AdmissionRequest → what to answer. Pure, no I/O.

Two webhooks share this module (app.py: ``/admission/mutate`` and
``/admission/validate``):

- ``mutate``: for a pod that targets one of our nodes, the defaults lambdalet
  needs as a JSONPatch — requests when the pod asks for none (the backend's
  smallest size, which the machine gets anyway: the patch never changes what
  runs) and the ``lambdalet.io/backend`` annotation. Nothing else, and nothing
  at all for other pods.
- ``validate``: a pod that targets one of our nodes and asks for something
  lambdalet cannot run is refused, naming each field and what to do. The list
  of what can run is ``pod_spec.FEATURES`` (one table); the size limit is the
  backend's largest machine (``Sizes``). A ``pods/binding`` CREATE for one of
  our nodes is always allowed and reported (``Decision.binding``) so the use
  case can start the machine at once (the fast path).

"Targets" (``targeted_node``): the pod names one of our nodes as its
``spec.nodeName``, or it could be scheduled there (it tolerates the node's
taints and its nodeSelector / required node affinity match the node) *and* it
asked for it explicitly (a toleration of ``virtual-kubelet.io/provider`` or a
positive selector on a label only virtual nodes carry: ``type=virtual-kubelet``,
``lambdalet.io/backend``, ``kubernetes.io/hostname=<node>``, or the node's
name). A pod that merely tolerates every taint is not ours. DELETE and UPDATE
are always allowed: a webhook must never make a pod undeletable.
"""

from __future__ import annotations

from collections.abc import Mapping

from dataclasses import dataclass, field
from typing import Any

from chalicelib import pod_spec
from chalicelib.kube.admission_payloads import AdmissionRequest
from chalicelib.machines.contract import MachineSizes as Sizes
from chalicelib.machines.fargate_sizes import memory_text

PROVIDER_TAINT = "virtual-kubelet.io/provider"
BACKEND_ANNOTATION = "lambdalet.io/backend"
DEFAULTED_ANNOTATION = "lambdalet.io/defaulted-requests"
# Node labels a pod can only mean a virtual node by (positive selectors on them opt in).
VIRTUAL_LABELS = ("type", "lambdalet.io/backend", "kubernetes.io/hostname")




@dataclass
class Decision:
    allowed: bool = True
    code: int | None = None
    reason: str = ""
    message: str = ""
    causes: list[dict] = field(default_factory=list)
    patch: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    node: str | None = None  # the lambdalet node the pod (or binding) targets; None: not ours
    binding: "Binding | None" = None

    def response_fields(self) -> dict:
        return {"allowed": self.allowed, "code": self.code, "reason": self.reason, "message": self.message,
                "causes": self.causes, "patch": self.patch, "warnings": self.warnings}


@dataclass(frozen=True)
class Binding:
    """A scheduler binding of a pod to one of our nodes (the fast path's input)."""

    namespace: str
    name: str
    uid: str | None
    node: str


# --------------------------------------------------------------------------
# Targeting
# --------------------------------------------------------------------------


def _tolerates(tolerations: list[dict], taint: dict) -> bool:
    """The scheduler's toleration rule (v1helper.TolerationsTolerateTaint)."""
    for t in tolerations or []:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        op = t.get("operator") or "Equal"
        if not t.get("key"):
            if op == "Exists":
                return True
            continue
        if t["key"] != taint.get("key"):
            continue
        if op == "Exists" or (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _expression_matches(expr: dict, value: str | None) -> bool:
    op, values = expr.get("operator"), expr.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            a, b = int(value), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def _term_matches(term: dict, labels: dict, name: str) -> bool:
    exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not exprs and not fields:
        return False  # an empty term matches no node
    return all(_expression_matches(e, labels.get(e.get("key"))) for e in exprs) and all(
        _expression_matches(f, name if f.get("key") == "metadata.name" else None) for f in fields)


def _required_terms(spec: dict) -> list[dict] | None:
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {})
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    return None if required is None else (required.get("nodeSelectorTerms") or [])


def _can_land(spec: dict, name: str, node: dict) -> bool:
    labels = (node.get("metadata") or {}).get("labels") or {}
    taints = [t for t in (node.get("spec") or {}).get("taints") or []
              if t.get("effect") in ("NoSchedule", "NoExecute")]
    if not all(_tolerates(spec.get("tolerations") or [], t) for t in taints):
        return False
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    terms = _required_terms(spec)
    return terms is None or any(_term_matches(t, labels, name) for t in terms)


def _asks_for(spec: dict, name: str, node: dict) -> bool:
    """The pod explicitly asked for a virtual node like this one (not just 'anywhere')."""
    if any(t.get("key") == PROVIDER_TAINT for t in spec.get("tolerations") or []):
        return True
    labels = (node.get("metadata") or {}).get("labels") or {}
    if any(k in VIRTUAL_LABELS and labels.get(k) == v for k, v in (spec.get("nodeSelector") or {}).items()):
        return True
    for term in _required_terms(spec) or []:
        for e in term.get("matchExpressions") or []:
            if e.get("key") in VIRTUAL_LABELS and e.get("operator") == "In" and labels.get(e["key"]) in e.get("values", []):
                return True
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and name in (f.get("values") or []):
                return True
    return False


def targeted_node(pod: dict | None, nodes: dict[str, dict]) -> str | None:
    """The lambdalet node ``pod`` targets (see the module docstring), or None."""
    spec = (pod or {}).get("spec") or {}
    bound = spec.get("nodeName")
    if bound:
        return bound if bound in nodes else None
    for name, node in nodes.items():
        if _can_land(spec, name, node) and _asks_for(spec, name, node):
            return name
    return None


def binding_of(request: AdmissionRequest, nodes: dict[str, dict]) -> Binding | None:
    """The binding a ``pods/binding`` CREATE makes to one of our nodes, else None."""
    if not request.is_binding or not isinstance(request.object, dict):
        return None
    target = request.object.get("target") or {}
    node = target.get("name")
    if node not in nodes or target.get("kind", "Node") != "Node":
        return None
    meta = request.object.get("metadata") or {}
    name = request.name or meta.get("name")
    namespace = request.namespace or meta.get("namespace")
    if not name or not namespace:
        return None
    return Binding(namespace=namespace, name=name, uid=meta.get("uid") or None, node=node)


def _pod_create(request: AdmissionRequest) -> dict | None:
    """The pod of a pods CREATE (not a subresource), else None."""
    if request.is_pod and not request.subResource and request.operation == "CREATE" and isinstance(request.object, dict):
        return request.object
    return None


# --------------------------------------------------------------------------
# Validating
# --------------------------------------------------------------------------


def _field(path: str) -> str:
    """``spec.volumes[0] (data)`` -> ``spec.volumes[0]``: the field path alone, for causes."""
    return path.split(" (", 1)[0]


def _size_problem(pod: dict, sizes: Sizes | None) -> tuple[str, str] | None:
    if sizes is None:
        return None
    cpu, mem = pod_spec.pod_size(pod)
    count = len((pod.get("spec") or {}).get("containers") or [])
    if count > sizes.max_containers:
        return ("spec.containers",
                f"the pod has {count} containers; {sizes.label} runs at most "
                f"{sizes.max_containers} per machine: split the pod or run it on another node")
    if cpu <= sizes.largest_cpu_millis and mem <= sizes.largest_memory_mib:
        return None
    return ("spec.containers[].resources",
            f"the pod asks for {cpu / 1000:g} vCPU / {memory_text(mem)} (the sum over containers of "
            f"max(request, limit)); the largest {sizes.label} machine is {sizes.largest_cpu_millis / 1000:g} vCPU / "
            f"{memory_text(sizes.largest_memory_mib)}: lower the requests/limits or split the pod")


def _quantity_problems(pod: dict, sizes: Sizes | None) -> list[tuple[str, str]]:
    """Malformed, negative or larger-than-any-machine requests and limits."""
    try:
        pod_spec.pod_size(pod)
        size = _size_problem(pod, sizes)
    except pod_spec.UnsupportedPod as err:
        return list(err.violations)
    return [size] if size else []


def problems(pod: dict, sizes: Sizes | None, backend: str | None = None) -> list[tuple[str, str]]:
    """Everything in ``pod`` lambdalet cannot run on ``backend`` (None: on any):
    ``[(field path, what to do)]``."""
    found = pod_spec.unsupported(pod, backend) + _quantity_problems(pod, sizes)
    if not ((pod.get("spec") or {}).get("containers")):
        found.append(("spec.containers", "a pod needs at least one container"))
    return found


def validate(request: AdmissionRequest, nodes: dict[str, dict], sizes: Mapping[str, Sizes]) -> Decision:
    """The validating webhook's decision. Never refuses what is not a pod CREATE targeting us."""
    binding = binding_of(request, nodes)
    if binding is not None:
        return Decision(node=binding.node, binding=binding)
    pod = _pod_create(request)
    node = targeted_node(pod, nodes) if pod is not None else None
    if node is None:
        return Decision()
    found = problems(pod, sizes.get(node), nodes[node]["metadata"]["labels"].get(BACKEND_ANNOTATION))
    return _refusal(node, found) if found else Decision(node=node)


def _refusal(node: str, found: list[tuple[str, str]]) -> Decision:
    listing = "; ".join(f"{path}: {why}" for path, why in found)
    message = (f"lambdalet node {node} cannot run this pod: {listing}. Change these fields, or keep the pod "
               f"off lambdalet nodes (remove its {PROVIDER_TAINT} toleration and the nodeName/nodeSelector/"
               f"affinity naming {node}).")
    causes = [{"reason": "FieldValueNotSupported", "field": _field(path), "message": why} for path, why in found]
    return Decision(allowed=False, code=403, reason="Forbidden", message=message, causes=causes, node=node)


# --------------------------------------------------------------------------
# Mutating
# --------------------------------------------------------------------------


def pointer(*parts: Any) -> str:
    """A JSON Pointer (RFC 6901) from raw path parts: ``~`` -> ``~0``, ``/`` -> ``~1``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _asks(pod: dict, resource: str) -> bool:
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        if resource in (res.get("requests") or {}) or resource in (res.get("limits") or {}):
            return True
    return False


def defaults_patch(pod: dict, backend: str, sizes: Sizes | None) -> list[dict]:
    """The JSONPatch of lambdalet's defaults for a pod that targets our node.

    Requests only where the whole pod asks for none of that resource, set on the
    first container to the backend's smallest size: the machine gets that size
    anyway, so the patch changes nothing that runs, only makes the scheduler's
    accounting and ``kubectl describe`` true.
    """
    ops: list[dict] = []
    meta = pod.get("metadata") or {}
    annotations = dict(meta.get("annotations") or {})
    wanted = {BACKEND_ANNOTATION: backend}
    containers = (pod.get("spec") or {}).get("containers") or []
    defaults = {}
    if sizes is not None and containers:
        if not _asks(pod, "cpu"):
            defaults["cpu"] = sizes.smallest_cpu
        if not _asks(pod, "memory"):
            defaults["memory"] = sizes.smallest_memory
    if defaults:
        wanted[DEFAULTED_ANNOTATION] = ",".join(sorted(defaults))
        first = containers[0]
        resources = first.get("resources")
        if not isinstance(resources, dict):
            ops.append({"op": "add", "path": pointer("spec", "containers", 0, "resources"),
                        "value": {"requests": defaults}})
        elif not isinstance(resources.get("requests"), dict):
            ops.append({"op": "add", "path": pointer("spec", "containers", 0, "resources", "requests"),
                        "value": defaults})
        else:
            ops.extend({"op": "add", "path": pointer("spec", "containers", 0, "resources", "requests", k), "value": v}
                       for k, v in defaults.items())
    changed = {k: v for k, v in wanted.items() if annotations.get(k) != v}
    if changed and not isinstance(meta.get("annotations"), dict):
        ops.insert(0, {"op": "add", "path": pointer("metadata", "annotations"), "value": changed})
    else:
        ops[:0] = [{"op": "add", "path": pointer("metadata", "annotations", k), "value": v} for k, v in changed.items()]
    return ops


def mutate(request: AdmissionRequest, nodes: dict[str, dict], sizes: Mapping[str, Sizes]) -> Decision:
    """The mutating webhook's decision: defaults for our pods, nothing for anyone else."""
    pod = _pod_create(request)
    node = targeted_node(pod, nodes) if pod is not None else None
    if node is None:
        return Decision()
    # Quantities are refused here too: the mutating webhook runs before the
    # apiserver validates the pod, so a negative or absurd request must not be
    # defaulted around (and the patch must never rest on it).
    found = _quantity_problems(pod, sizes.get(node))
    if found:
        return _refusal(node, found)
    backend = nodes[node]["metadata"]["labels"][BACKEND_ANNOTATION]  # the node says where it runs pods
    return Decision(node=node, patch=defaults_patch(pod, backend, sizes.get(node)))
