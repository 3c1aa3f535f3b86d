"""The resource types the simulator serves and their per-type strategies
(defaulting, admission, what the main resource / status subresource may change).

Adding a resource = one ResourceType entry (+ a Strategy subclass if it has rules).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import base64

from . import certificates as C
from . import errors as E
from . import pods as P
from .selectors import getter
from .util import normalize_micro


class Strategy:
    """Hooks called by the generic handlers in api.py. Default: plain object."""

    has_generation = False
    status_subresource = False

    def to_view(self, stored: dict) -> dict:          # storage form -> this API's form
        return stored

    def from_view(self, obj: dict) -> dict:           # this API's form -> storage form
        return obj

    def scheme_default(self, obj: dict) -> None:
        pass

    def decode_error(self, obj: dict) -> str | None:
        """What JSON decoding into the Go type would refuse (a 400), beyond the schema's types."""
        return None

    def admit_create(self, obj: dict, api) -> None:
        pass

    def requested_by(self, obj: dict, user: dict) -> None:
        """On create, after admission: what the apiserver records of the requesting user."""

    def validate_create(self, obj: dict) -> list[dict]:
        return P.validate_name(obj["metadata"].get("name", "")) if self.validate_names else []

    validate_names = True

    def prepare_update(self, new: dict, old: dict, subresource: str) -> dict:
        """Return the object to store: the status subresource changes only status (spec and
        metadata come from `old`); the main resource never changes status. Silently."""
        if not self.status_subresource:
            return new
        if subresource == "status":
            merged = dict(old)
            merged["metadata"] = dict(old["metadata"])
            merged["metadata"]["resourceVersion"] = new.get("metadata", {}).get("resourceVersion")
            merged["status"] = new.get("status") or {}
            return merged
        new["status"] = old.get("status", {})
        return new

    def validate_update(self, new: dict, old: dict, subresource: str) -> list[dict]:
        return []

    def normalize(self, obj: dict) -> None:
        pass


class PodStrategy(Strategy):
    has_generation = True
    status_subresource = True

    def scheme_default(self, obj):
        P.scheme_default(obj)

    def decode_error(self, obj):
        return P.QUANTITY_MSG if P.bad_quantities(obj.get("spec") or {}) else None

    def admit_create(self, obj, api):
        P.admit(obj, api.rng)

    def validate_create(self, obj):
        return P.validate_pod_create(obj)

    def validate_update(self, new, old, subresource):
        if subresource == "status":
            return P.validate_status(new.get("status") or {}, old.get("status") or {})
        return P.validate_spec_update(new, old)

    def normalize(self, obj):
        P.normalize_status(obj.setdefault("status", {}))


NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}


class NodeStrategy(Strategy):
    status_subresource = True

    def admit_create(self, obj, api):
        # NodeRestriction/TaintNodesByCondition admission: new nodes start not-ready.
        taints = obj.setdefault("spec", {}).setdefault("taints", [])
        if not any(t.get("key") == NOT_READY_TAINT["key"] and t.get("effect") == "NoSchedule" for t in taints):
            taints.append(dict(NOT_READY_TAINT))


class NamespaceStrategy(Strategy):
    status_subresource = True

    def admit_create(self, obj, api):
        name = obj["metadata"]["name"]
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}

    def validate_create(self, obj):
        name = obj["metadata"].get("name", "")
        if not P.DNS1123_LABEL.match(name or "-"):
            from .errors import cause_invalid
            return [cause_invalid("metadata.name", name, P.LABEL_MSG)]
        return []

    def prepare_update(self, new, old, subresource):
        new = super().prepare_update(new, old, subresource)
        new["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = new["metadata"]["name"]
        return new


class LeaseStrategy(Strategy):
    def normalize(self, obj):
        spec = obj.get("spec") or {}
        for k in ("acquireTime", "renewTime"):
            if spec.get(k):
                spec[k] = normalize_micro(spec[k])
        order = ("holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime", "leaseTransitions",
                 "strategy", "preferredHolder")
        obj["spec"] = {k: spec[k] for k in order if k in spec} | {k: v for k, v in spec.items() if k not in order}


_REF_ORDER = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")


def _ref(r):
    r = r or {}
    return {k: r[k] for k in _REF_ORDER if r.get(k) not in (None, "")}


class CoreEventStrategy(Strategy):
    """core/v1 Event: the storage form of both Event APIs."""
    validate_names = False

    def normalize(self, e):
        out = {"kind": e.get("kind", "Event"), "apiVersion": e.get("apiVersion", "v1"), "metadata": e["metadata"],
               "involvedObject": _ref(e.get("involvedObject"))}
        for k in ("reason", "message"):
            if e.get(k):
                out[k] = e[k]
        out["source"] = e.get("source") or {}
        out["firstTimestamp"] = e.get("firstTimestamp")
        out["lastTimestamp"] = e.get("lastTimestamp")
        if e.get("count"):
            out["count"] = e["count"]
        if e.get("type"):
            out["type"] = e["type"]
        out["eventTime"] = normalize_micro(e.get("eventTime"))
        for k in ("series", "action", "related"):
            if e.get(k):
                out[k] = e[k]
        out["reportingComponent"] = e.get("reportingComponent") or ""
        out["reportingInstance"] = e.get("reportingInstance") or ""
        e.clear()
        e.update(out)


class EventsV1Strategy(CoreEventStrategy):
    """events.k8s.io/v1 view over the same store (regarding <-> involvedObject, note <-> message...)."""

    def normalize(self, e):  # the storage form is normalised by CoreEventStrategy
        pass

    def to_view(self, c):
        out = {"kind": "Event", "apiVersion": "events.k8s.io/v1", "metadata": c["metadata"],
               "eventTime": c.get("eventTime")}
        if c.get("series"):
            out["series"] = c["series"]
        for src, dst in (("reportingComponent", "reportingController"), ("reportingInstance", "reportingInstance"),
                         ("action", "action"), ("reason", "reason")):
            if c.get(src):
                out[dst] = c[src]
        out["regarding"] = c.get("involvedObject") or {}
        if c.get("related"):
            out["related"] = c["related"]
        for src, dst in (("message", "note"), ("type", "type")):
            if c.get(src):
                out[dst] = c[src]
        out["deprecatedSource"] = c.get("source") or {}
        out["deprecatedFirstTimestamp"] = c.get("firstTimestamp")
        out["deprecatedLastTimestamp"] = c.get("lastTimestamp")
        if c.get("count"):
            out["deprecatedCount"] = c["count"]
        return out

    def from_view(self, e):
        c = {"kind": "Event", "apiVersion": "v1", "metadata": e.get("metadata", {}),
             "involvedObject": e.get("regarding") or {}}
        for src, dst in (("reason", "reason"), ("note", "message"), ("deprecatedSource", "source"),
                         ("deprecatedFirstTimestamp", "firstTimestamp"), ("deprecatedLastTimestamp", "lastTimestamp"),
                         ("deprecatedCount", "count"), ("type", "type"), ("eventTime", "eventTime"),
                         ("series", "series"), ("action", "action"), ("related", "related"),
                         ("reportingController", "reportingComponent"), ("reportingInstance", "reportingInstance")):
            if e.get(src) is not None:
                c[dst] = e[src]
        return c


class ConfigMapStrategy(Strategy):
    pass


class SecretStrategy(Strategy):
    def scheme_default(self, obj):
        # v1 -> internal conversion: stringData is merged into data (base64) and dropped.
        string_data = obj.pop("stringData", None) or {}
        if string_data:
            data = obj.setdefault("data", {})
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
        obj.setdefault("type", "Opaque")


def default_template(template: dict) -> None:
    """SetDefaults_PodSpec / Container on a pod template (no admission: templates get no token volume)."""
    pod = {"spec": template.setdefault("spec", {})}
    P.scheme_default(pod)


def _selector_matches(sel: dict, labels: dict) -> bool:
    from .selectors import label_selector_matches
    return label_selector_matches(sel, labels)


class WorkloadStrategy(Strategy):
    """apps/v1 Deployment, ReplicaSet and batch/v1 Job: generation, status subresource, a pod template."""
    has_generation = True
    status_subresource = True
    restart_policies = P.RESTART_POLICIES

    def decode_error(self, obj):
        tspec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        return P.QUANTITY_MSG if P.bad_quantities(tspec) else None

    empty_status: dict = {}

    def scheme_default(self, obj):
        spec = obj.setdefault("spec", {})
        default_template(spec.setdefault("template", {}))
        obj.setdefault("status", {})

    def admit_create(self, obj, api):
        obj["status"] = dict(self.empty_status)  # PrepareForCreate: a new object has no status

    def validate_create(self, obj):
        causes = super().validate_create(obj)
        spec = obj.get("spec") or {}
        template = spec.get("template") or {}
        sel = spec.get("selector")
        labels = (template.get("metadata") or {}).get("labels") or {}
        if not sel or not (sel.get("matchLabels") or sel.get("matchExpressions")):
            causes.append(E.cause_required("spec.selector") if not sel else
                          E.cause_invalid("spec.selector", "{}", "empty selector is invalid for deployment"))
        elif not _selector_matches(sel, labels):
            causes.append({"reason": "FieldValueInvalid", "field": "spec.template.metadata.labels",
                           "message": f"Invalid value: {_go_map(labels)}: `selector` does not match template `labels`"})
        if spec.get("replicas", 0) < 0:
            causes.append(E.cause_invalid("spec.replicas", spec["replicas"], "must be greater than or equal to 0"))
        causes += P.validate_pod_spec(template.get("spec") or {}, "spec.template.spec", self.restart_policies)
        return causes

    def validate_update(self, new, old, subresource):
        if subresource == "status":
            return []
        causes = self.validate_create(new)
        causes = [c for c in causes if c["field"] != "metadata.name"]
        if (new.get("spec") or {}).get("selector") != (old.get("spec") or {}).get("selector"):
            causes.append(E.cause_invalid("spec.selector", _go_selector((new.get("spec") or {}).get("selector")),
                                          "field is immutable"))
        return causes


def _go_map(m: dict) -> str:
    """How Go's %v prints a map[string]string in field errors."""
    return "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(m.items())) + "}"


def _go_selector(sel) -> str:
    return "v1.LabelSelector{MatchLabels:" + _go_map((sel or {}).get("matchLabels") or {}) + ", MatchExpressions:[]}"


class DeploymentStrategy(WorkloadStrategy):
    def scheme_default(self, obj):
        """SetDefaults_Deployment (apps/v1)."""
        super().scheme_default(obj)
        spec = obj["spec"]
        spec.setdefault("replicas", 1)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", "25%")
            ru.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)


class ReplicaSetStrategy(WorkloadStrategy):
    empty_status = {"replicas": 0}  # ReplicaSetStatus.replicas has no omitempty
    def scheme_default(self, obj):
        super().scheme_default(obj)
        obj["spec"].setdefault("replicas", 1)


JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


class JobStrategy(WorkloadStrategy):
    restart_policies = ("OnFailure", "Never")

    def scheme_default(self, obj):
        """SetDefaults_Job (batch/v1)."""
        super().scheme_default(obj)
        spec = obj["spec"]
        if spec.get("completions") is None and spec.get("parallelism") is None:
            spec["completions"] = 1
            spec["parallelism"] = 1
        spec.setdefault("parallelism", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")

    def admit_create(self, obj, api):
        """jobStrategy.PrepareForCreate + generateSelector: the uid-based selector and pod labels."""
        super().admit_create(obj, api)
        spec = obj["spec"]
        uid = obj["metadata"].get("uid")
        if not uid or spec.get("manualSelector"):
            return
        labels = spec["template"].setdefault("metadata", {}).setdefault("labels", {})
        name = obj["metadata"].get("name", "")
        labels.update({JOB_UID_LABEL: uid, JOB_NAME_LABEL: name, "controller-uid": uid, "job-name": name})
        spec["selector"] = {"matchLabels": {JOB_UID_LABEL: uid}}

    def validate_update(self, new, old, subresource):
        causes = super().validate_update(new, old, subresource)
        if subresource != "status" and (new.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
            causes.append(E.cause_invalid("spec.template", "core.PodTemplateSpec{...}", "field is immutable"))
        return causes


class CsrStrategy(Strategy):
    """certificates.k8s.io/v1 CertificateSigningRequest (certificates.py says after which sources)."""

    status_subresource = True
    validate_names = False  # ValidateCertificateRequestName: any path segment name

    def admit_create(self, obj, api):
        obj["status"] = {}

    def requested_by(self, obj: dict, user: dict) -> None:
        """The requester's identity, recorded by the apiserver (never taken from the body)."""
        spec = obj.setdefault("spec", {})
        for key in ("username", "uid", "groups", "extra"):
            spec.pop(key, None)
        spec["username"] = user.get("username", "")
        if user.get("uid"):
            spec["uid"] = user["uid"]
        spec["groups"] = list(user.get("groups") or [])

    def validate_create(self, obj):
        spec = obj.get("spec") or {}
        causes = []
        if not obj["metadata"].get("name"):
            causes.append(E.cause_required("metadata.name"))
        try:
            C.parse_request(spec)
        except ValueError as err:
            causes.append(E.cause_invalid("spec.request", "[]byte{...}", str(err)))
        usages = spec.get("usages") or []
        if not usages:
            causes.append(E.cause_required("spec.usages"))
        for i, usage in enumerate(usages):
            if usage not in C.USAGES:
                causes.append({"reason": "FieldValueNotSupported", "field": f"spec.usages[{i}]",
                               "message": f'Unsupported value: "{usage}": supported values: '
                                          + ", ".join(f'"{u}"' for u in C.USAGES)})
            elif usage in usages[:i]:
                causes.append(E.cause_duplicate(f"spec.usages[{i}]", usage))
        signer = spec.get("signerName") or ""
        if not signer:
            causes.append(E.cause_required("spec.signerName"))
        elif "/" not in signer or not signer.split("/", 1)[0] or "." not in signer.split("/", 1)[0]:
            causes.append(E.cause_invalid("spec.signerName", signer,
                                          "must be a fully qualified domain and path of the form 'example.com/signer-name'"))
        expiration = spec.get("expirationSeconds")
        if expiration is not None and expiration < 600:
            causes.append(E.cause_invalid("spec.expirationSeconds", expiration,
                                          "may not specify a duration less than 600 seconds (10 minutes)"))
        return causes

    def prepare_update(self, new, old, subresource):
        merged = dict(new)
        merged["spec"] = old.get("spec") or {}
        if subresource == "approval":
            merged["status"] = {**(old.get("status") or {}), "conditions": C.conditions(new)}
        elif subresource != "status":
            merged["status"] = old.get("status") or {}
        return merged

    def validate_update(self, new, old, subresource):
        causes = []
        types = [c.get("type") for c in C.conditions(new)]
        if "Approved" in types and "Denied" in types:
            causes.append(E.cause_invalid("status.conditions", "Approved", "Approved and Denied conditions are mutually exclusive"))
        for t in {*types}:
            if types.count(t) > 1:
                causes.append(E.cause_duplicate("status.conditions", t))  # one condition of a given type
        for i, c in enumerate(C.conditions(new)):
            if c.get("type") in (*C.APPROVAL_TYPES, "Failed") and c.get("status") != "True":
                causes.append({"reason": "FieldValueNotSupported", "field": f"status.conditions[{i}].status",
                               "message": f'Unsupported value: "{c.get("status")}": supported values: "True"'})
        old_types = [c.get("type") for c in C.conditions(old)]
        if subresource == "status":  # Approved and Denied come only through /approval
            for t in C.APPROVAL_TYPES:
                if t in types and t not in old_types:
                    causes.append(E.cause_forbidden("status.conditions", f"updates may not add a condition of type \"{t}\""))
        for t in (*C.APPROVAL_TYPES, "Failed"):  # "cannot be removed once added" (certificates/v1 types.go)
            if t in old_types and t not in types:
                causes.append(E.cause_forbidden("status.conditions", f"updates may not remove a condition of type \"{t}\""))
        before = (old.get("status") or {}).get("certificate")
        if before and (new.get("status") or {}).get("certificate") != before:
            causes.append(E.cause_forbidden("status.certificate", "updates may not modify existing certificate content"))
        return causes


@dataclass
class ResourceType:
    plural: str
    kind: str
    group: str
    version: str
    namespaced: bool
    strategy: Strategy
    field_labels: dict[str, Callable] = field(default_factory=dict)
    field_convert: Callable[[str], str] | None = None
    subresources: tuple = ()
    store_key: str = ""
    short_names: tuple = ()
    singular: str = ""
    return_deleted_object: bool = False
    create_on_update: bool = False
    categories: tuple = ()

    def __post_init__(self):
        self.store_key = self.store_key or self.plural
        self.singular = self.singular or self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


def _meta_fields():
    return {"metadata.name": getter("metadata.name"), "metadata.namespace": getter("metadata.namespace")}


POD_FIELDS = _meta_fields() | {k: getter(k) for k in (
    "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "status.phase",
    "status.podIP", "status.nominatedNodeName")} | {"spec.hostNetwork": getter("spec.hostNetwork", "false")}

EVENT_FIELDS = _meta_fields() | {f"involvedObject.{k}": getter(f"involvedObject.{k}") for k in (
    "kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")} | {
    "reason": getter("reason"), "reportingComponent": getter("reportingComponent"), "type": getter("type"),
    "source": getter("source.component")}


def _events_v1_convert(label: str) -> str:
    if label.startswith("regarding."):
        return "involvedObject." + label[len("regarding."):]
    return {"reportingController": "reportingComponent", "deprecatedSource": "source"}.get(label, label)


RESOURCES = [
    ResourceType("pods", "Pod", "", "v1", True, PodStrategy(), POD_FIELDS, subresources=("status", "binding"),
                 short_names=("po",), return_deleted_object=True, categories=("all",)),
    ResourceType("nodes", "Node", "", "v1", False, NodeStrategy(),
                 _meta_fields() | {"spec.unschedulable": getter("spec.unschedulable", "false")},
                 subresources=("status",), short_names=("no",)),
    ResourceType("namespaces", "Namespace", "", "v1", False, NamespaceStrategy(),
                 _meta_fields() | {"status.phase": getter("status.phase")}, subresources=("status",),
                 short_names=("ns",), return_deleted_object=True),
    ResourceType("events", "Event", "", "v1", True, CoreEventStrategy(), EVENT_FIELDS, short_names=("ev",),
                 create_on_update=True),
    ResourceType("events", "Event", "events.k8s.io", "v1", True, EventsV1Strategy(), EVENT_FIELDS,
                 field_convert=_events_v1_convert, store_key="events", short_names=("ev",), create_on_update=True),
    ResourceType("leases", "Lease", "coordination.k8s.io", "v1", True, LeaseStrategy(), _meta_fields()),
    ResourceType("configmaps", "ConfigMap", "", "v1", True, ConfigMapStrategy(), _meta_fields(), short_names=("cm",)),
    ResourceType("secrets", "Secret", "", "v1", True, SecretStrategy(),
                 _meta_fields() | {"type": getter("type")}),
    ResourceType("deployments", "Deployment", "apps", "v1", True, DeploymentStrategy(), _meta_fields(),
                 subresources=("status", "scale"), short_names=("deploy",), categories=("all",)),
    ResourceType("replicasets", "ReplicaSet", "apps", "v1", True, ReplicaSetStrategy(),
                 _meta_fields() | {"status.replicas": getter("status.replicas", "0")},
                 subresources=("status", "scale"), short_names=("rs",), categories=("all",)),
    ResourceType("jobs", "Job", "batch", "v1", True, JobStrategy(),
                 _meta_fields() | {"status.successful": getter("status.succeeded", "0")},
                 subresources=("status",), categories=("all",)),
    ResourceType("certificatesigningrequests", "CertificateSigningRequest", "certificates.k8s.io", "v1", False,
                 CsrStrategy(), _meta_fields() | {"spec.signerName": getter("spec.signerName")},
                 subresources=("approval", "status"), short_names=("csr",)),
]


def find(group: str, version: str, plural: str) -> ResourceType | None:
    for rt in RESOURCES:
        if rt.group == group and rt.version == version and rt.plural == plural:
            return rt
    return None
