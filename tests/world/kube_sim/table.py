"""meta.k8s.io/v1 Table responses (what `kubectl get` asks for with `as=Table`)."""
from __future__ import annotations

from .pods import human_duration, printed_status
from .util import parse_time

NAME_DESC = ("Name must be unique within a namespace. Is required when creating resources, although some resources "
             "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
             "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
             "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
AGE_DESC = ("CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
            "guaranteed to be set in happens-before order across separate operations. Clients may not set this value. "
            "It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. "
            "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")

POD_COLUMNS = [
    ("Name", "name", NAME_DESC, 0),
    ("Ready", "", "The aggregate readiness state of this pod for accepting traffic.", 0),
    ("Status", "", "The aggregate status of the containers in this pod.", 0),
    ("Restarts", "", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.", 0),
    ("Age", "", AGE_DESC, 0),
    ("IP", "", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.", 1),
    ("Node", "", "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename", 1),
    ("Nominated Node", "", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.", 1),
    ("Readiness Gates", "", "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates", 1),
]
DEFAULT_COLUMNS = [("Name", "name", NAME_DESC, 0), ("Created At", "date", AGE_DESC, 0)]


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def _age(meta, now) -> str:
    ts = meta.get("creationTimestamp")
    if not ts:
        return "<unknown>"
    return human_duration((now - parse_time(ts)).total_seconds())


def pod_cells(pod: dict, now) -> list:
    reason, ready, total, restarts = printed_status(pod)
    status, spec = pod.get("status") or {}, pod.get("spec") or {}
    last = None
    for cs in status.get("containerStatuses") or []:
        fin = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        if fin and (last is None or fin > last):
            last = fin
    restarts_cell = str(restarts)
    if restarts and last:
        restarts_cell = f"{restarts} ({human_duration((now - parse_time(last)).total_seconds())} ago)"
    gates = spec.get("readinessGates") or []
    gates_cell = "<none>"
    if gates:
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        gates_cell = f"{sum(1 for g in gates if conds.get(g.get('conditionType')) == 'True')}/{len(gates)}"
    return [pod["metadata"]["name"], f"{ready}/{total}", reason, restarts_cell, _age(pod["metadata"], now),
            status.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", gates_cell]


def to_table(rt, objs: list[dict], rv: str, now, cont: str | None = None) -> dict:
    is_pod = rt.plural == "pods" and not rt.group
    cols = POD_COLUMNS if is_pod else DEFAULT_COLUMNS
    rows = []
    for o in objs:
        cells = pod_cells(o, now) if is_pod else [o["metadata"]["name"], o["metadata"].get("creationTimestamp")]
        rows.append({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                                "metadata": o["metadata"]}})
    meta = {"resourceVersion": rv}
    if cont:
        meta["continue"] = cont
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
            "columnDefinitions": [{"name": n, "type": "string", "format": f, "description": d, "priority": p}
                                  for n, f, d, p in cols],
            "rows": rows}
