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
    causes += validate_pod_spec(pod.get("spec") or {}, "spec")
    causes += validate_status(pod.get("status") or {})
    return causes


# k8s.io/apimachinery/pkg/api/resource: the quantity grammar (decoding rejects anything else).
QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
QUANTITY_MSG = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
_SUFFIX = {"": 1, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}


def quantity_value(q) -> float | None:
    """resource.ParseQuantity's value, or None when the string is not a quantity."""
    if isinstance(q, bool):
        return None
    if isinstance(q, (int, float)):
        return float(q)
    m = re.fullmatch(r"([+-]?[0-9.]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][-+]?[0-9]+)?", str(q).strip())
    if not m or m.group(1).count(".") > 1 or m.group(1).strip("+-") in ("", "."):
        return None
    suffix = m.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return float(m.group(1) + suffix)
    return float(m.group(1)) * _SUFFIX[suffix]


def bad_quantities(pod_spec: dict) -> list[str]:
    """Quantities that cannot be decoded at all (a 400 at decoding, before validation)."""
    out = []
    for c in (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or []):
        for kind in ("requests", "limits"):
            for v in ((c.get("resources") or {}).get(kind) or {}).values():
                if quantity_value(v) is None:
                    out.append(str(v))
    return out


RESTART_POLICIES = ("Always", "Never", "OnFailure")  # sets.List(): sorted
PROTOCOLS = ("SCTP", "TCP", "UDP")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
PORT_RANGE_MSG = "must be between 1 and 65535, inclusive"
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
VOLUME_SOURCES = ("hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret", "nfs",
                  "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder", "cephfs", "flocker",
                  "downwardAPI", "fc", "azureFile", "configMap", "vsphereVolume", "quobyte", "azureDisk",
                  "photonPersistentDisk", "projected", "portworxVolume", "scaleIO", "storageos", "csi", "ephemeral",
                  "image")


def _unsupported(field: str, value, supported) -> dict:
    return {"reason": "FieldValueNotSupported", "field": field,
            "message": f'Unsupported value: "{value}": supported values: ' + ", ".join(f'"{v}"' for v in supported)}


def _port_name_errors(name: str) -> list[str]:
    """validation.IsValidPortName (an IANA_SVC_NAME)."""
    errs = []
    if len(name) > 15:
        errs.append("must be no more than 15 characters")
    if not re.fullmatch(r"[-a-z0-9]+", name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search(r"[a-z]", name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name.startswith("-") or name.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def _validate_container(c: dict, f: str, volumes: set, port_names: set) -> list[dict]:
    """ValidateContainers/validateContainerCommon (pkg/apis/core/validation/validation.go)."""
    causes = []
    n = c.get("name", "")
    if not n:
        causes.append(E.cause_required(f + ".name"))
    elif not DNS1123_LABEL.match(n) or len(n) > 63:
        causes.append(E.cause_invalid(f + ".name", n, LABEL_MSG))
    if not c.get("image"):
        causes.append(E.cause_required(f + ".image"))
    if c.get("imagePullPolicy") and c["imagePullPolicy"] not in PULL_POLICIES:
        causes.append(_unsupported(f + ".imagePullPolicy", c["imagePullPolicy"], PULL_POLICIES))
    for j, p in enumerate(c.get("ports") or []):
        pf = f"{f}.ports[{j}]"
        if p.get("name"):
            for msg in _port_name_errors(p["name"]):
                causes.append(E.cause_invalid(pf + ".name", p["name"], msg))
            if p["name"] in port_names:
                causes.append(E.cause_duplicate(pf + ".name", p["name"]))
            port_names.add(p["name"])
        cp = p.get("containerPort")
        if not cp:
            causes.append(E.cause_required(pf + ".containerPort"))
        elif not 1 <= cp <= 65535:
            causes.append(E.cause_invalid(pf + ".containerPort", cp, PORT_RANGE_MSG))
        if p.get("hostPort") and not 1 <= p["hostPort"] <= 65535:
            causes.append(E.cause_invalid(pf + ".hostPort", p["hostPort"], PORT_RANGE_MSG))
        if p.get("protocol") and p["protocol"] not in PROTOCOLS:
            causes.append(_unsupported(pf + ".protocol", p["protocol"], PROTOCOLS))
    for j, e in enumerate(c.get("env") or []):
        if not e.get("name"):
            causes.append(E.cause_required(f"{f}.env[{j}].name"))
    res = c.get("resources") or {}
    limits = res.get("limits") or {}
    for kind in ("limits", "requests"):
        for r, q in (res.get(kind) or {}).items():
            v = quantity_value(q)
            if v is not None and v < 0:
                causes.append(E.cause_invalid(f"{f}.resources.{kind}[{r}]", str(q),
                                              "must be greater than or equal to 0"))
            elif kind == "requests" and r in limits and v is not None and \
                    (quantity_value(limits[r]) or 0) < v and (quantity_value(limits[r]) or 0) >= 0:
                causes.append(E.cause_invalid(f"{f}.resources.requests", str(q),
                                              f"must be less than or equal to {r} limit of {limits[r]}"))
    for j, m in enumerate(c.get("volumeMounts") or []):
        mf = f"{f}.volumeMounts[{j}]"
        if not m.get("name"):
            causes.append(E.cause_required(mf + ".name"))
        elif m["name"] not in volumes:
            causes.append({"reason": "FieldValueNotFound", "message": f'Not found: "{m["name"]}"',
                           "field": mf + ".name"})
        if not m.get("mountPath"):
            causes.append(E.cause_required(mf + ".mountPath"))
    return causes


def validate_pod_spec(spec: dict, path: str, restart_policies=RESTART_POLICIES) -> list[dict]:
    """The slice of ValidatePodSpec a user meets in the first hour: names (DNS-1123), container,
    volume and port-name uniqueness, ports, quantities (negative, request above limit),
    restartPolicy, dnsPolicy, activeDeadlineSeconds, volume mounts naming a volume."""
    causes = []
    volumes: set = set()
    for i, v in enumerate(spec.get("volumes") or []):
        vf = f"{path}.volumes[{i}]"
        n = v.get("name", "")
        if not n:
            causes.append(E.cause_required(vf + ".name"))
        elif not DNS1123_LABEL.match(n) or len(n) > 63:
            causes.append(E.cause_invalid(vf + ".name", n, LABEL_MSG))
        elif n in volumes:
            causes.append(E.cause_duplicate(vf + ".name", n))
        volumes.add(n)
        sources = [k for k in VOLUME_SOURCES if v.get(k) is not None]
        if not sources:
            causes.append({"reason": "FieldValueRequired", "message": "Required value: must specify a volume type",
                           "field": vf})
        elif len(sources) > 1:
            causes.append(E.cause_forbidden(f"{vf}.{sources[1]}", "may not specify more than 1 volume type"))
    containers = spec.get("containers") or []
    if not containers:
        causes.append(E.cause_required(path + ".containers"))
    names: set = set()
    port_names: set = set()
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            f = f"{path}.{key}[{i}]"
            causes += _validate_container(c, f, volumes, port_names)
            n = c.get("name", "")
            if n and n in names:
                causes.append(E.cause_duplicate(f + ".name", n))
            names.add(n)
    rp = spec.get("restartPolicy")
    if rp is not None and rp not in restart_policies:
        if rp == "":
            causes.append(E.cause_required(path + ".restartPolicy"))
        else:
            causes.append(_unsupported(path + ".restartPolicy", rp, restart_policies))
    if spec.get("dnsPolicy") and spec["dnsPolicy"] not in DNS_POLICIES:
        causes.append(_unsupported(path + ".dnsPolicy", spec["dnsPolicy"], DNS_POLICIES))
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and not 1 <= ads <= 2147483647:
        causes.append(E.cause_invalid(path + ".activeDeadlineSeconds", ads, "must be between 1 and 2147483647, inclusive"))
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
