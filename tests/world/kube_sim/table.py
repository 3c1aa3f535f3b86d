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
CONTAINERS_DESC = "Names of each container in the template."
IMAGES_DESC = "Images referenced by each container in the template."


def _doc(definition: str, field: str) -> str:
    """The field's description in the real 1.36 schema (what SwaggerDoc() returns in printers.go)."""
    from .schema import definitions
    return ((definitions().get(definition) or {}).get("properties", {}).get(field) or {}).get("description", "")


def _c(name, typ, desc, priority=0, fmt=""):
    return {"name": name, "type": typ, "format": fmt, "description": desc, "priority": priority}


def _columns() -> dict:
    """Column definitions of kube-apiserver's printers (k8s.io/kubernetes
    pkg/printers/internalversion/printers.go, AddHandlers), per (group, plural).
    The server always prints wide (GenerateOptions{Wide: true}); kubectl hides
    priority-1 columns unless -o wide."""
    name, age = _c("Name", "string", NAME_DESC, fmt="name"), _c("Age", "string", AGE_DESC)
    core, apps, batch = "io.k8s.api.core.v1.", "io.k8s.api.apps.v1.", "io.k8s.api.batch.v1."
    certs = "io.k8s.api.certificates.v1."
    template = [_c("Containers", "string", CONTAINERS_DESC, 1), _c("Images", "string", IMAGES_DESC, 1)]
    return {
        ("", "nodes"): [name, _c("Status", "string", "The status of the node"),
                        _c("Roles", "string", "The roles of the node"), age,
                        _c("Version", "string", _doc(core + "NodeSystemInfo", "kubeletVersion")),
                        _c("Internal-IP", "string", _doc(core + "NodeStatus", "addresses"), 1),
                        _c("External-IP", "string", _doc(core + "NodeStatus", "addresses"), 1),
                        _c("OS-Image", "string", _doc(core + "NodeSystemInfo", "osImage"), 1),
                        _c("Kernel-Version", "string", _doc(core + "NodeSystemInfo", "kernelVersion"), 1),
                        _c("Container-Runtime", "string", _doc(core + "NodeSystemInfo", "containerRuntimeVersion"), 1)],
        ("", "events"): [_c("Last Seen", "string", _doc(core + "Event", "lastTimestamp")),
                         _c("Type", "string", _doc(core + "Event", "type")),
                         _c("Reason", "string", _doc(core + "Event", "reason")),
                         _c("Object", "string", _doc(core + "Event", "involvedObject")),
                         _c("Subobject", "string", _doc(core + "ObjectReference", "fieldPath"), 1),
                         _c("Source", "string", _doc(core + "Event", "source"), 1),
                         _c("Message", "string", _doc(core + "Event", "message")),
                         _c("First Seen", "string", _doc(core + "Event", "firstTimestamp"), 1),
                         _c("Count", "string", _doc(core + "Event", "count"), 1),
                         {**name, "priority": 1}],
        ("", "namespaces"): [name, _c("Status", "string", "The status of the namespace"), age],
        ("", "configmaps"): [name, _c("Data", "string", _doc(core + "ConfigMap", "data")), age],
        ("", "secrets"): [name, _c("Type", "string", _doc(core + "Secret", "type")),
                          _c("Data", "string", _doc(core + "Secret", "data")), age],
        ("coordination.k8s.io", "leases"): [name, _c("Holder", "string", _doc(
            "io.k8s.api.coordination.v1.LeaseSpec", "holderIdentity")), age],
        ("apps", "deployments"): [name, _c("Ready", "string", "Number of the pod with ready state"),
                                  _c("Up-to-date", "string", _doc(apps + "DeploymentStatus", "updatedReplicas")),
                                  _c("Available", "string", _doc(apps + "DeploymentStatus", "availableReplicas")),
                                  age, *template,
                                  _c("Selector", "string", _doc(apps + "DeploymentSpec", "selector"), 1)],
        ("apps", "replicasets"): [name, _c("Desired", "integer", _doc(apps + "ReplicaSetSpec", "replicas")),
                                  _c("Current", "integer", _doc(apps + "ReplicaSetStatus", "replicas")),
                                  _c("Ready", "integer", _doc(apps + "ReplicaSetStatus", "readyReplicas")),
                                  age, *template,
                                  _c("Selector", "string", _doc(apps + "ReplicaSetSpec", "selector"), 1)],
        ("certificates.k8s.io", "certificatesigningrequests"): [
            name, age, _c("SignerName", "string", _doc(certs + "CertificateSigningRequestSpec", "signerName")),
            _c("Requestor", "string", _doc(certs + "CertificateSigningRequestSpec", "request")),
            _c("RequestedDuration", "string", _doc(certs + "CertificateSigningRequestSpec", "expirationSeconds")),
            _c("Condition", "string", _doc(certs + "CertificateSigningRequestStatus", "conditions"))],
        ("batch", "jobs"): [name, _c("Status", "string", "Status of the job."),
                            _c("Completions", "string", _doc(batch + "JobStatus", "succeeded")),
                            _c("Duration", "string", "Time required to complete the job."), age, *template,
                            _c("Selector", "string", _doc(batch + "JobSpec", "selector"), 1)],
    }


_COLUMNS: dict | None = None


def columns(rt) -> list[dict]:
    global _COLUMNS
    if rt.plural == "pods" and not rt.group:
        return [_c(n, "string", d, p, f) for n, f, d, p in POD_COLUMNS]
    if _COLUMNS is None:
        _COLUMNS = _columns()
    key = ("" if rt.group == "events.k8s.io" else rt.group, rt.plural)
    return _COLUMNS.get(key) or [_c(n, "string", d, p, f) for n, f, d, p in DEFAULT_COLUMNS]


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


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
    return [pod["metadata"]["name"], f"{ready}/{total}", reason, restarts_cell, _since(pod["metadata"].get("creationTimestamp"), now),
            status.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", gates_cell]


def _since(ts, now) -> str:
    """printers.go translateTimestampSince."""
    if not ts:
        return "<unknown>"
    return human_duration((now - parse_time(ts)).total_seconds())


def node_cells(o: dict, now) -> list:
    """printNode: Ready/NotReady/Unknown (+SchedulingDisabled), roles from the role labels."""
    status, spec, labels = o.get("status") or {}, o.get("spec") or {}, o["metadata"].get("labels") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    states = ["Unknown"] if ready is None else ["Ready" if ready.get("status") == "True" else "NotReady"]
    if spec.get("unschedulable"):
        states.append("SchedulingDisabled")
    roles = {k[len("node-role.kubernetes.io/"):] for k in labels if k.startswith("node-role.kubernetes.io/")}
    if labels.get("kubernetes.io/role"):
        roles.add(labels["kubernetes.io/role"])
    roles.discard("")
    addr = {}
    for a in status.get("addresses") or []:
        addr.setdefault(a.get("type"), a.get("address"))
    info = status.get("nodeInfo") or {}
    return [o["metadata"]["name"], ",".join(states), ",".join(sorted(roles)) or "<none>",
            _since(o["metadata"].get("creationTimestamp"), now), info.get("kubeletVersion", ""),
            addr.get("InternalIP") or "<none>", addr.get("ExternalIP") or "<none>",
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def event_cells(e: dict, now) -> list:
    """printEvent (core/v1 form: events.k8s.io views are converted back first)."""
    first = _since(e.get("firstTimestamp") or e.get("eventTime"), now)
    last = _since(e["lastTimestamp"], now) if e.get("lastTimestamp") else first
    count = e.get("count") or 1
    if e.get("series"):
        last = _since(e["series"].get("lastObservedTime"), now)
        count = e["series"].get("count", count)
    ref = e.get("involvedObject") or {}
    target = f'{(ref.get("kind") or "").lower()}/{ref["name"]}' if ref.get("name") else (ref.get("kind") or "").lower()
    src = e.get("source") or {}
    component = src.get("component") or e.get("reportingComponent", "")
    host = src.get("host") or ("" if src.get("component") else e.get("reportingInstance", ""))
    source = f"{component}, {host}" if host else component
    return [last, e.get("type", ""), e.get("reason", ""), target, ref.get("fieldPath", ""), source,
            (e.get("message") or "").strip(), first, count, e["metadata"]["name"]]


def _template_cells(spec: dict) -> list:
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)]


def selector_string(sel: dict | None) -> str:
    """metav1.LabelSelectorAsSelector(...).String(): sorted requirements, "<none>" for none."""
    if not sel:
        return "<none>"
    reqs = [f"{k}={v}" for k, v in (sel.get("matchLabels") or {}).items()]
    for r in sel.get("matchExpressions") or []:
        op, vals = r.get("operator"), sorted(r.get("values") or [])
        reqs.append({"In": f'{r["key"]} in ({",".join(vals)})', "NotIn": f'{r["key"]} notin ({",".join(vals)})',
                     "Exists": r["key"], "DoesNotExist": "!" + r["key"]}.get(op, r["key"]))
    return ",".join(sorted(reqs)) or "<none>"


def job_cells(o: dict, now) -> list:
    """printJob (1.30+): Status from the conditions, Completions succeeded/completions, Duration."""
    spec, status = o.get("spec") or {}, o.get("status") or {}
    conds = {c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"}
    if spec.get("completions") is not None:
        completions = f'{status.get("succeeded", 0)}/{spec["completions"]}'
    elif (spec.get("parallelism") or 0) > 1:
        completions = f'{status.get("succeeded", 0)}/1 of {spec["parallelism"]}'
    else:
        completions = f'{status.get("succeeded", 0)}/1'
    duration = ""
    if status.get("startTime"):
        end = parse_time(status["completionTime"]) if status.get("completionTime") else now
        duration = human_duration((end - parse_time(status["startTime"])).total_seconds())
    for cond, word in (("Complete", "Complete"), ("Failed", "Failed")):
        if cond in conds:
            state = word
            break
    else:
        state = ("Terminating" if o["metadata"].get("deletionTimestamp") else
                 "Suspended" if "Suspended" in conds else "FailureTarget" if "FailureTarget" in conds else
                 "SuccessCriteriaMet" if "SuccessCriteriaMet" in conds else "Running")
    return [o["metadata"]["name"], state, completions, duration, _since(o["metadata"].get("creationTimestamp"), now),
            *_template_cells(spec), selector_string(spec.get("selector"))]


def cells(rt, o: dict, now) -> list:
    m, age = o["metadata"], _since(o["metadata"].get("creationTimestamp"), now)
    spec, status = o.get("spec") or {}, o.get("status") or {}
    key = ("" if rt.group == "events.k8s.io" else rt.group, rt.plural)
    if key == ("", "pods"):
        return pod_cells(o, now)
    if key == ("", "nodes"):
        return node_cells(o, now)
    if key == ("", "events"):
        return event_cells(o, now)
    if key == ("", "namespaces"):
        return [m["name"], status.get("phase", ""), age]
    if key == ("", "configmaps"):
        return [m["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}), age]
    if key == ("", "secrets"):
        return [m["name"], o.get("type", ""), len(o.get("data") or {}), age]
    if key == ("coordination.k8s.io", "leases"):
        return [m["name"], spec.get("holderIdentity", ""), age]
    if key == ("apps", "deployments"):
        return [m["name"], f'{status.get("readyReplicas", 0)}/{spec.get("replicas", 0)}',
                status.get("updatedReplicas", 0), status.get("availableReplicas", 0), age,
                *_template_cells(spec), selector_string(spec.get("selector"))]
    if key == ("apps", "replicasets"):
        return [m["name"], spec.get("replicas", 0), status.get("replicas", 0), status.get("readyReplicas", 0), age,
                *_template_cells(spec), selector_string(spec.get("selector"))]
    if key == ("batch", "jobs"):
        return job_cells(o, now)
    if key == ("certificates.k8s.io", "certificatesigningrequests"):
        return csr_cells(o, age)
    return [m["name"], m.get("creationTimestamp")]


def csr_cells(o: dict, age: str) -> list:
    """printCertificateSigningRequest / extractCSRStatus (printers.go)."""
    spec, status = o.get("spec") or {}, o.get("status") or {}
    types = {c.get("type") for c in status.get("conditions") or []}
    condition = "Denied" if "Denied" in types else "Approved" if "Approved" in types else "Pending"
    condition += ",Failed" if "Failed" in types else ""
    condition += ",Issued" if status.get("certificate") else ""
    seconds = spec.get("expirationSeconds")
    return [o["metadata"]["name"], age, spec.get("signerName") or "<none>", spec.get("username", ""),
            human_duration(seconds) if seconds else "<none>", condition]


def to_table(rt, objs: list[dict], rv: str, now, cont: str | None = None) -> dict:
    rows = []
    for o in objs:
        printed = rt.strategy.from_view(o) if rt.group == "events.k8s.io" else o  # printEvent reads core/v1
        rows.append({"cells": cells(rt, printed, now), "object": {"kind": "PartialObjectMetadata",
                                                             "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}})
    meta = {"resourceVersion": rv}
    if cont:
        meta["continue"] = cont
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
            "columnDefinitions": columns(rt), "rows": rows}
