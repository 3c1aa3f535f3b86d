"""Request bodies in `application/vnd.kubernetes.protobuf`, decoded to JSON form.

kubectl 1.32's typed clients (`kubectl create namespace|deployment|job|configmap|
secret`) POST protobuf. The envelope is k8s.io/apimachinery runtime.Unknown
behind the 4-byte magic "k8s\\0" (apimachinery/pkg/runtime/serializer/protobuf):
  1: typeMeta {1: apiVersion, 2: kind}, 2: raw (the object), 3: contentEncoding, 4: contentType.
The object's field numbers come from the `protobuf:"...,N,..."` tags of the Go
types (k8s.io/api {core,apps,batch,certificates}/v1/generated.proto, apimachinery
meta/v1/generated.proto). Only the types and fields below are known; a body with
any other field is answered 415, as kube-apiserver answers a media type it cannot
decode, so nothing is silently lost. Go's proto marshalling writes every
non-pointer field, zero or not: zero values are dropped again here, as JSON's
`omitempty` would, except for the pointer fields in KEEP_ZERO.
"""
from __future__ import annotations

import base64

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"


class Undecodable(ValueError):
    """The body uses a type or field this decoder does not know."""


# field number -> (json name, kind, repeated). kinds: s string, i varint int, b bool,
# bytes (base64 in JSON), Time, Q (Quantity), map (string->string), mapQ (string->Quantity),
# mapB (string->bytes), or a message type name from TYPES.
def _t(**fields):
    out = {}
    for name, spec in fields.items():
        num, kind, *rep = spec
        out[num] = (name, kind, bool(rep))
    return out


TYPES = {
    "TypeMeta": _t(apiVersion=(1, "s"), kind=(2, "s")),
    "Unknown": _t(typeMeta=(1, "TypeMeta"), raw=(2, "raw"), contentEncoding=(3, "s"), contentType=(4, "s")),
    "ObjectMeta": _t(name=(1, "s"), generateName=(2, "s"), namespace=(3, "s"), selfLink=(4, "s"), uid=(5, "s"),
                     resourceVersion=(6, "s"), generation=(7, "i"), creationTimestamp=(8, "Time"),
                     deletionTimestamp=(9, "Time"), deletionGracePeriodSeconds=(10, "i"), labels=(11, "map"),
                     annotations=(12, "map"), ownerReferences=(13, "OwnerReference", 1), finalizers=(14, "s", 1)),
    "OwnerReference": _t(kind=(1, "s"), name=(3, "s"), uid=(4, "s"), apiVersion=(5, "s"), controller=(6, "b"),
                         blockOwnerDeletion=(7, "b")),
    "LabelSelector": _t(matchLabels=(1, "map"), matchExpressions=(2, "LabelSelectorRequirement", 1)),
    "LabelSelectorRequirement": _t(key=(1, "s"), operator=(2, "s"), values=(3, "s", 1)),
    "Namespace": _t(metadata=(1, "ObjectMeta"), spec=(2, "NamespaceSpec"), status=(3, "NamespaceStatus")),
    "NamespaceSpec": _t(finalizers=(1, "s", 1)),
    "NamespaceStatus": _t(phase=(1, "s")),
    "ConfigMap": _t(metadata=(1, "ObjectMeta"), data=(2, "map"), binaryData=(3, "mapB"), immutable=(4, "b")),
    "Secret": _t(metadata=(1, "ObjectMeta"), data=(2, "mapB"), type=(3, "s"), stringData=(4, "map"),
                 immutable=(5, "b")),
    "Pod": _t(metadata=(1, "ObjectMeta"), spec=(2, "PodSpec"), status=(3, "PodStatus")),
    "PodStatus": _t(phase=(1, "s")),
    "PodTemplateSpec": _t(metadata=(1, "ObjectMeta"), spec=(2, "PodSpec")),
    "PodSpec": _t(containers=(2, "Container", 1), restartPolicy=(3, "s"), terminationGracePeriodSeconds=(4, "i"),
                  activeDeadlineSeconds=(5, "i"), dnsPolicy=(6, "s"), nodeSelector=(7, "map"),
                  serviceAccountName=(8, "s"), serviceAccount=(9, "s"), nodeName=(10, "s"), hostNetwork=(11, "b"),
                  hostPID=(12, "b"), hostIPC=(13, "b"),
                  securityContext=(14, "PodSecurityContext"), hostname=(16, "s"), subdomain=(17, "s"),
                  schedulerName=(19, "s"), initContainers=(20, "Container", 1),
                  automountServiceAccountToken=(21, "b"), tolerations=(22, "Toleration", 1),
                  priorityClassName=(24, "s"), enableServiceLinks=(30, "b")),
    "PodSecurityContext": {},  # kubectl sends it empty; any field in it is refused
    "Toleration": _t(key=(1, "s"), operator=(2, "s"), value=(3, "s"), effect=(4, "s"), tolerationSeconds=(5, "i")),
    "Container": _t(name=(1, "s"), image=(2, "s"), command=(3, "s", 1), args=(4, "s", 1), workingDir=(5, "s"),
                    ports=(6, "ContainerPort", 1), env=(7, "EnvVar", 1), resources=(8, "ResourceRequirements"),
                    terminationMessagePath=(13, "s"), imagePullPolicy=(14, "s"), stdin=(16, "b"),
                    stdinOnce=(17, "b"), tty=(18, "b"), terminationMessagePolicy=(20, "s")),
    "ContainerPort": _t(name=(1, "s"), hostPort=(2, "i"), containerPort=(3, "i"), protocol=(4, "s"),
                        hostIP=(5, "s")),
    "EnvVar": _t(name=(1, "s"), value=(2, "s")),
    "ResourceRequirements": _t(limits=(1, "mapQ"), requests=(2, "mapQ")),
    "Deployment": _t(metadata=(1, "ObjectMeta"), spec=(2, "DeploymentSpec"), status=(3, "DeploymentStatus")),
    "DeploymentSpec": _t(replicas=(1, "i"), selector=(2, "LabelSelector"), template=(3, "PodTemplateSpec"),
                         strategy=(4, "DeploymentStrategy"), minReadySeconds=(5, "i"),
                         revisionHistoryLimit=(6, "i"), paused=(7, "b"), progressDeadlineSeconds=(9, "i")),
    "DeploymentStrategy": _t(type=(1, "s")),
    "DeploymentStatus": _t(observedGeneration=(1, "i"), replicas=(2, "i"), updatedReplicas=(3, "i"),
                             availableReplicas=(4, "i"), unavailableReplicas=(5, "i"), readyReplicas=(7, "i")),
    "Job": _t(metadata=(1, "ObjectMeta"), spec=(2, "JobSpec"), status=(3, "JobStatus")),
    "JobSpec": _t(parallelism=(1, "i"), completions=(2, "i"), activeDeadlineSeconds=(3, "i"),
                  selector=(4, "LabelSelector"), manualSelector=(5, "b"), template=(6, "PodTemplateSpec"),
                  backoffLimit=(7, "i"), ttlSecondsAfterFinished=(8, "i"), completionMode=(9, "s"),
                  suspend=(10, "b")),
    "JobStatus": _t(active=(4, "i"), succeeded=(5, "i"), failed=(6, "i"), completedIndexes=(7, "s"),
                       failedIndexes=(8, "s"), ready=(10, "i"), terminating=(11, "i")),
    # certificates/v1: what `kubectl certificate approve|deny` PUTs to /approval
    "CertificateSigningRequest": _t(metadata=(1, "ObjectMeta"), spec=(2, "CertificateSigningRequestSpec"),
                                    status=(3, "CertificateSigningRequestStatus")),
    "CertificateSigningRequestSpec": _t(request=(1, "bytes"), username=(2, "s"), uid=(3, "s"), groups=(4, "s", 1),
                                        usages=(5, "s", 1), signerName=(7, "s"), expirationSeconds=(8, "i")),
    "CertificateSigningRequestStatus": _t(conditions=(1, "CertificateSigningRequestCondition", 1),
                                          certificate=(2, "bytes")),
    "CertificateSigningRequestCondition": _t(type=(1, "s"), reason=(2, "s"), message=(3, "s"),
                                             lastUpdateTime=(4, "Time"), lastTransitionTime=(5, "Time"),
                                             status=(6, "s")),
}
# Pointer fields: present means set, even to zero/false.
KEEP_ZERO = {("DeploymentSpec", "replicas"), ("JobSpec", "parallelism"), ("JobSpec", "completions"),
             ("JobSpec", "backoffLimit"), ("JobSpec", "suspend"), ("PodSpec", "terminationGracePeriodSeconds"),
             ("PodSpec", "automountServiceAccountToken"), ("PodSpec", "enableServiceLinks"),
             ("ConfigMap", "immutable"), ("Secret", "immutable"), ("Toleration", "tolerationSeconds")}
# Top-level kinds this decoder accepts (apiVersion, kind) -> message type.
KINDS = {("v1", "Namespace"): "Namespace", ("v1", "ConfigMap"): "ConfigMap", ("v1", "Secret"): "Secret",
         ("v1", "Pod"): "Pod", ("apps/v1", "Deployment"): "Deployment", ("batch/v1", "Job"): "Job",
         ("certificates.k8s.io/v1", "CertificateSigningRequest"): "CertificateSigningRequest"}


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise Undecodable("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes):
    """(field number, wire type, value) for each field of one message."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = _varint(buf, i)
        elif wt == 2:
            n, i = _varint(buf, i)
            val, i = buf[i:i + n], i + n
        elif wt == 1:
            val, i = buf[i:i + 8], i + 8
        elif wt == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise Undecodable(f"wire type {wt}")
        yield num, wt, val


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _map_entry(buf: bytes) -> tuple[str, bytes]:
    key, val = "", b""
    for num, _, v in _fields(buf):
        if num == 1:
            key = v.decode()
        elif num == 2:
            val = v
    return key, val


def _time(buf: bytes) -> str | None:
    import datetime as dt
    secs = 0
    for num, _, v in _fields(buf):
        if num == 1:
            secs = _signed(v)
    if not buf:
        return None
    return dt.datetime.fromtimestamp(secs, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quantity(buf: bytes) -> str:
    for num, _, v in _fields(buf):
        if num == 1:
            return v.decode()
    return "0"


def decode_message(type_name: str, buf: bytes) -> dict:
    table = TYPES[type_name]
    out: dict = {}
    for num, wt, v in _fields(buf):
        if num not in table:
            raise Undecodable(f"{type_name} field {num}")
        name, kind, repeated = table[num]
        if kind == "s":
            val = v.decode()
        elif kind == "i":
            val = _signed(v) if wt == 0 else int.from_bytes(v, "little", signed=True)
        elif kind == "b":
            val = bool(v)
        elif kind == "raw":
            val = v
        elif kind == "bytes":
            val = base64.b64encode(v).decode()
        elif kind == "Time":
            val = _time(v)
        elif kind in ("map", "mapQ", "mapB"):
            k, raw = _map_entry(v)
            conv = {"map": lambda b: b.decode(), "mapQ": _quantity,
                    "mapB": lambda b: base64.b64encode(b).decode()}[kind]
            out.setdefault(name, {})[k] = conv(raw)
            continue
        else:
            val = decode_message(kind, v)
        if repeated:
            out.setdefault(name, []).append(val)
        else:
            out[name] = val
    return {k: v for k, v in out.items()
            if (type_name, k) in KEEP_ZERO or v not in ("", 0, False, None, [], {}) or kind_is_message(type_name, k)}


def kind_is_message(type_name: str, field: str) -> bool:
    """Empty sub-objects are kept ({} for status, strategy, resources), as kubectl's JSON has them."""
    for name, kind, repeated in TYPES[type_name].values():
        if name == field:
            return not repeated and kind in TYPES and kind not in ("TypeMeta",)
    return False


def decode(body: bytes) -> dict:
    """A protobuf request body -> the object as JSON would carry it. Raises Undecodable."""
    if not body.startswith(MAGIC):
        raise Undecodable("no k8s protobuf magic")
    env = decode_message("Unknown", body[len(MAGIC):])
    tm = env.get("typeMeta") or {}
    api_version, kind = tm.get("apiVersion", ""), tm.get("kind", "")
    type_name = KINDS.get((api_version, kind))
    if type_name is None:
        raise Undecodable(f"{api_version} {kind}")
    if env.get("contentEncoding"):
        raise Undecodable("content encoding " + env["contentEncoding"])
    obj = decode_message(type_name, env.get("raw") or b"")
    return {"kind": kind, "apiVersion": api_version, **obj}
