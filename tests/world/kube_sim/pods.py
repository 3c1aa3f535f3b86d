"""Pod semantics: scheme defaulting, admission (ServiceAccount, DefaultTolerationSeconds,
Priority), validation with kube-apiserver's messages, status normalisation, and
kubectl's STATUS column logic for the Table view.
"""
from __future__ import annotations

import ipaddress
import re

from . import errors as E
from .util import name_suffix

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
QUALIFIED_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                 "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                 "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
             "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
             "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
QNAME_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
             "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
             "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
IP_MSG = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"

SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


# ------------------------------------------------------------------ defaulting
def _default_container(c: dict) -> None:
    c.setdefault("resources", {})
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if "imagePullPolicy" not in c:
        image = c.get("image", "")
        tag = image.rsplit("/", 1)[-1]
        latest = ("@" not in image) and (":" not in tag or tag.endswith(":latest"))
        c["imagePullPolicy"] = "Always" if latest else "IfNotPresent"
    for p in c.get("ports") or []:
        p.setdefault("protocol", "TCP")


def scheme_default(pod: dict) -> None:
    """SetDefaults_Pod/PodSpec/Container: what decoding adds, before admission."""
    spec = pod.setdefault("spec", {})
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        _default_container(c)
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    if "serviceAccount" in spec and "serviceAccountName" not in spec:
        spec["serviceAccountName"] = spec["serviceAccount"]
    pod.setdefault("status", {})


def admit(pod: dict, rng=None) -> None:
    """Built-in admission: ServiceAccount (token volume), DefaultTolerationSeconds, Priority."""
    spec = pod["spec"]
    sa = spec.get("serviceAccountName") or "default"
    spec["serviceAccountName"] = sa
    spec["serviceAccount"] = sa
    if spec.get("automountServiceAccountToken") is not False and not any(
            m.get("mountPath") == SA_MOUNT for c in spec.get("containers", []) for m in c.get("volumeMounts") or []):
        vol = f"kube-api-access-{name_suffix(rng)}"
        spec.setdefault("volumes", []).append({"name": vol, "projected": {"sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                           "fieldPath": "metadata.namespace"}}]}},
        ], "defaultMode": 420}})
        for c in (spec.get("initContainers") or []) + spec.get("containers", []):
            c.setdefault("volumeMounts", []).append({"name": vol, "readOnly": True, "mountPath": SA_MOUNT})
    tols = spec.setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any((t.get("key") == key and t.get("effect") in ("NoExecute", None, "")) or
                   (not t.get("key") and t.get("operator") == "Exists") for t in tols):
            tols.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    status = pod.setdefault("status", {})
    status.clear()
    status["phase"] = "Pending"
    status["qosClass"] = qos_class(spec)


def qos_class(spec: dict) -> str:
    any_set = False
    guaranteed = True
    for c in spec.get("containers", []):
        r = (c.get("resources") or {})
        req, lim = r.get("requests") or {}, r.get("limits") or {}
        if req or lim:
            any_set = True
        for res in ("cpu", "memory"):
            if res not in lim:
                guaranteed = False
            elif res in req and req[res] != lim[res]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


# ------------------------------------------------------------------ validation
def validate_name(name: str, field="metadata.name") -> list[dict]:
    if not name:
        return [{"reason": "FieldValueRequired", "message": "name or generateName is required", "field": field}]
    if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        return [E.cause_invalid(field, name, SUBDOMAIN_MSG)]
    return []


def validate_pod_create(pod: dict) -> list[dict]:
    causes = validate_name(pod["metadata"].get("name", ""))
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    if not containers:
        causes.append(E.cause_required("spec.containers"))
    seen = set()
    for i, c in enumerate(containers):
        f = f"spec.containers[{i}]"
        n = c.get("name", "")
        if not n:
            causes.append(E.cause_required(f + ".name"))
        elif not DNS1123_LABEL.match(n) or len(n) > 63:
            causes.append(E.cause_invalid(f + ".name", n, LABEL_MSG))
        elif n in seen:
            causes.append(E.cause_duplicate(f + ".name", n))
        seen.add(n)
        if not c.get("image"):
            causes.append(E.cause_required(f + ".image"))
    if spec.get("restartPolicy") not in (None, "Always", "OnFailure", "Never"):
        causes.append({"reason": "FieldValueNotSupported", "field": "spec.restartPolicy",
                       "message": f'Unsupported value: "{spec.get("restartPolicy")}": supported values: "Always", "Never", "OnFailure"'})
    causes += validate_status(pod.get("status") or {})
    return causes


def validate_status(status: dict, old_status: dict | None = None) -> list[dict]:
    causes = []
    for i, ip in enumerate(status.get("podIPs") or []):
        if not _is_ip(ip.get("ip", "")):
            causes.append(E.cause_invalid(f"status.podIPs[{i}]", ip.get("ip", ""), IP_MSG))
    for i, ip in enumerate(status.get("hostIPs") or []):
        if not _is_ip(ip.get("ip", "")):
            causes.append(E.cause_invalid(f"status.hostIPs[{i}]", ip.get("ip", ""), IP_MSG))
    if status.get("hostIP") and not _is_ip(status["hostIP"]):
        causes.append(E.cause_invalid("status.hostIP", status["hostIP"], IP_MSG))
    for i, c in enumerate(status.get("conditions") or []):
        t = c.get("type", "")
        # A qualified name, as readiness gates use them: an optional DNS-subdomain
        # prefix ("example.com/") and a name part of at most 63 characters.
        prefix, _, name = (t or "").rpartition("/")
        if not QUALIFIED_NAME_PART.match(name) or len(name) > 63 or (prefix and not _dns_subdomain(prefix)):
            causes.append(E.cause_invalid(f"status.conditions[{i}].Type", t, QNAME_MSG))
    if old_status is not None and old_status.get("qosClass") and status.get("qosClass") != old_status.get("qosClass"):
        causes.append(E.cause_invalid("status.qosClass", status.get("qosClass"), "field is immutable"))
    return causes


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


MUTABLE_SPEC_MSG = ("pod updates may not change fields other than `spec.containers[*].image`,"
                    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                    "(allow it to be set to 1 if it was previously negative)")


def validate_spec_update(new: dict, old: dict) -> list[dict]:
    """Only image, activeDeadlineSeconds and added tolerations may change on a pod."""
    def masked(spec):
        s = dict(spec)
        s["containers"] = [{k: v for k, v in c.items() if k != "image"} for c in s.get("containers", [])]
        s["initContainers"] = [{k: v for k, v in c.items() if k != "image"} for c in s.get("initContainers") or []]
        s.pop("activeDeadlineSeconds", None)
        s.pop("tolerations", None)
        s.pop("terminationGracePeriodSeconds", None)
        return s
    ns, os_ = new.get("spec") or {}, old.get("spec") or {}
    causes = []
    if masked(ns) != masked(os_):
        causes.append(E.cause_forbidden("spec", MUTABLE_SPEC_MSG))
    old_tols = os_.get("tolerations") or []
    new_tols = ns.get("tolerations") or []
    if any(t not in new_tols for t in old_tols):
        causes.append(E.cause_forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds"))
    return causes


# ------------------------------------------------------------------ status normalisation
_COND_ORDER = ("type", "observedGeneration", "status", "lastProbeTime", "lastTransitionTime", "reason", "message")
_CS_ORDER = ("name", "state", "lastState", "ready", "restartCount", "image", "imageID", "containerID", "started",
             "allocatedResources", "resources", "volumeMounts", "user", "allocatedResourcesStatus", "stopSignal")


def normalize_status(status: dict) -> None:
    """What a round trip through the Go types does to a PodStatus."""
    # v1 -> internal conversion: podIP is authoritative, podIPs derived from it (hostIPs are not).
    if status.get("podIP"):
        ips = status.get("podIPs") or []
        if not ips or ips[0].get("ip") != status["podIP"]:
            status["podIPs"] = [{"ip": status["podIP"]}]
    elif status.get("podIPs"):
        status["podIP"] = status["podIPs"][0].get("ip", "")
    conds = []
    for c in status.get("conditions") or []:
        d = {"type": c.get("type", "")}
        if c.get("observedGeneration"):
            d["observedGeneration"] = c["observedGeneration"]
        d["status"] = c.get("status", "")
        d["lastProbeTime"] = c.get("lastProbeTime")
        d["lastTransitionTime"] = c.get("lastTransitionTime")
        for k in ("reason", "message"):
            if c.get(k):
                d[k] = c[k]
        conds.append(d)
    if "conditions" in status:
        status["conditions"] = conds
    for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        if key not in status:
            continue
        out = []
        for cs in status[key] or []:
            d = {"name": cs.get("name", ""), "state": cs.get("state") or {}, "lastState": cs.get("lastState") or {},
                 "ready": bool(cs.get("ready", False)), "restartCount": cs.get("restartCount", 0),
                 "image": cs.get("image", ""), "imageID": cs.get("imageID", "")}
            for k in _CS_ORDER[7:]:
                if cs.get(k) is not None:
                    d[k] = cs[k]
            for k, v in cs.items():
                if k not in d and v is not None:
                    d[k] = v
            out.append(d)
        status[key] = out
    order = ("observedGeneration", "phase", "conditions", "message", "reason", "nominatedNodeName", "hostIP",
             "hostIPs", "podIP", "podIPs", "startTime", "initContainerStatuses", "containerStatuses", "qosClass",
             "ephemeralContainerStatuses", "resize", "resourceClaimStatuses")
    items = dict(status)
    status.clear()
    for k in order:
        if k in items:
            status[k] = items.pop(k)
    status.update(items)


# ------------------------------------------------------------------ kubectl printer
def is_terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def printed_status(pod: dict) -> tuple[str, int, int, int]:
    """kubectl's printPod: (reason, ready, total, restarts)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    total = len(spec.get("containers") or [])
    ready = restarts = 0
    reason = status.get("reason") or status.get("phase") or ""
    initializing = False
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        restarts += cs.get("restartCount", 0)
        st = cs.get("state") or {}
        term, wait = st.get("terminated"), st.get("waiting")
        if term and term.get("exitCode") == 0:
            continue
        if term:
            reason = "Init:" + (term.get("reason") or (f"Signal:{term['signal']}" if term.get("signal") else f"ExitCode:{term.get('exitCode')}"))
        elif wait and wait.get("reason") and wait["reason"] != "PodInitializing":
            reason = "Init:" + wait["reason"]
        else:
            reason = f"Init:{i}/{len(spec.get('initContainers') or [])}"
        initializing = True
        break
    if not initializing:
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += cs.get("restartCount", 0)
            st = cs.get("state") or {}
            wait, term, run = st.get("waiting"), st.get("terminated"), st.get("running")
            if wait and wait.get("reason"):
                reason = wait["reason"]
            elif term and term.get("reason"):
                reason = term["reason"]
            elif term:
                reason = f"Signal:{term['signal']}" if term.get("signal") else f"ExitCode:{term.get('exitCode', 0)}"
            elif cs.get("ready") and run:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            ready_cond = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
            reason = "Running" if ready_cond else "NotReady"
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and not is_terminal(pod):
        reason = "Terminating"
    return reason, ready, total, restarts


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m" if s % 60 == 0 else f"{m}m{s % 60}s"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h" if m % 60 == 0 else f"{h}h{m % 60}m"
    if h < 48:
        return f"{h}h"
    if h < 192:
        return f"{h // 24}d" if h % 24 == 0 else f"{h // 24}d{h % 24}h"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    y = h // (24 * 365)
    if h < 24 * 365 * 8:
        d = (h // 24) % 365
        return f"{y}y" if d == 0 else f"{y}y{d}d"
    return f"{y}y"


def _dns_subdomain(text: str) -> bool:
    return len(text) <= 253 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", text) is not None
