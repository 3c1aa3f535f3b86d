"""Non-resource endpoints: /version, discovery (plain and aggregated v2), /openapi/v3,
/healthz. Discovery lists exactly the resources the simulator serves, with the
entries copied from the real 1.36 server's documents."""
from __future__ import annotations

import hashlib
import json

from . import openapi, schema

VERSION = {"major": "1", "minor": "36", "emulationMajor": "1", "emulationMinor": "36",
           "minCompatibilityMajor": "1", "minCompatibilityMinor": "35", "gitVersion": "v1.36.2",
           "gitCommit": "8e16b12fda5b1dccc41a6de48b3e356cc7d5048b", "gitTreeState": "clean",
           "buildDate": "2026-11-01T00:00:00Z", "goVersion": "go1.26.6", "compiler": "gc",
           "platform": "linux/amd64"}

AGG_CT = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def _res(name, kind, namespaced, verbs=VERBS, short=None, singular=None, hash_=None, cats=None, gv=None):
    r = {"name": name, "singularName": singular if singular is not None else ("" if "/" in name else kind.lower()),
         "namespaced": namespaced}
    if gv:  # a subresource of another group's kind (deployments/scale: autoscaling/v1 Scale)
        r["group"], r["version"] = gv
    r |= {"kind": kind, "verbs": verbs}
    if short:
        r["shortNames"] = short
    if cats:
        r["categories"] = cats
    if hash_:
        r["storageVersionHash"] = hash_
    return r


SCALE_VERBS = ["get", "patch", "update"]
STATUS_VERBS = ["get", "patch", "update"]
CORE = [
    _res("bindings", "Binding", True, ["create"]),
    _res("configmaps", "ConfigMap", True, short=["cm"], hash_="qFsyl6wFWjQ="),
    _res("events", "Event", True, short=["ev"], hash_="r2yiGXH7wu8="),
    _res("namespaces", "Namespace", False, ["create", "delete", "get", "list", "patch", "update", "watch"],
         short=["ns"], hash_="Q3oi5N2YM8M="),
    _res("namespaces/status", "Namespace", False, ["get", "patch", "update"]),
    _res("nodes", "Node", False, short=["no"], hash_="XwShjMxG9Fs="),
    _res("nodes/status", "Node", False, ["get", "patch", "update"]),
    _res("pods", "Pod", True, short=["po"], cats=["all"], hash_="xPOwRZ+Yhw8="),
    _res("pods/binding", "Binding", True, ["create"]),
    _res("pods/status", "Pod", True, ["get", "patch", "update"]),
    _res("secrets", "Secret", True, hash_="S6u1pOWzb84="),
]
GROUPS = {
    "apps": [
        _res("deployments", "Deployment", True, short=["deploy"], cats=["all"]),
        _res("deployments/scale", "Scale", True, SCALE_VERBS, gv=("autoscaling", "v1")),
        _res("deployments/status", "Deployment", True, STATUS_VERBS),
        _res("replicasets", "ReplicaSet", True, short=["rs"], cats=["all"]),
        _res("replicasets/scale", "Scale", True, SCALE_VERBS, gv=("autoscaling", "v1")),
        _res("replicasets/status", "ReplicaSet", True, STATUS_VERBS),
    ],
    "events.k8s.io": [_res("events", "Event", True, short=["ev"], hash_="r2yiGXH7wu8=")],
    "batch": [
        _res("jobs", "Job", True, cats=["all"]),
        _res("jobs/status", "Job", True, STATUS_VERBS),
    ],
    "coordination.k8s.io": [_res("leases", "Lease", True, hash_="gqkMMb/YqFM=")],
    "certificates.k8s.io": [
        _res("certificatesigningrequests", "CertificateSigningRequest", False, short=["csr"]),
        _res("certificatesigningrequests/approval", "CertificateSigningRequest", False, STATUS_VERBS),
        _res("certificatesigningrequests/status", "CertificateSigningRequest", False, STATUS_VERBS),
    ],
}


def served() -> str:
    """One line naming what this API serves (the sandbox prints it)."""
    names = [r["name"] for r in CORE if "/" not in r["name"] and r["name"] != "bindings"]
    names += [f'{r["name"]}.{g}' for g, rs in GROUPS.items() for r in rs if "/" not in r["name"]]
    subs = sorted({r["name"] for rs in [CORE, *GROUPS.values()] for r in rs if "/" in r["name"]})
    return ", ".join(names) + " (subresources: " + ", ".join(subs) + ")"


def _resource_list(gv, resources):
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


def _aggregated(resources):
    """APIResourceList entries -> apidiscovery v2 resources (subresources folded in)."""
    out = []
    for r in resources:
        if "/" in r["name"]:
            continue
        d = {"resource": r["name"], "responseKind": {"group": "", "version": "", "kind": r["kind"]},
             "scope": "Namespaced" if r["namespaced"] else "Cluster", "singularResource": r["singularName"],
             "verbs": r["verbs"]}
        for k in ("shortNames", "categories"):
            if k in r:
                d[k] = r[k]
        subs = [{"subresource": s["name"].split("/")[1],
                 "responseKind": {"group": s.get("group", ""), "version": s.get("version", ""), "kind": s["kind"]},
                 "verbs": s["verbs"]} for s in resources if s["name"].startswith(r["name"] + "/")]
        if subs:
            d["subresources"] = subs
        out.append(d)
    return out


def _json(body, ct="application/json"):
    from .api import Response
    return Response(200, body, content_type=ct)


def non_resource(parts: list[str], accept: str, query: dict):
    """Return a Response for a non-resource path, or None for resource paths."""
    from .api import Response
    aggregated = "as=APIGroupDiscoveryList" in accept
    if parts == ["version"]:
        return _json(VERSION)
    if parts in (["healthz"], ["livez"], ["readyz"]):
        return Response(200, b"ok", content_type="text/plain; charset=utf-8")
    if parts == ["api"]:
        if aggregated:
            return _json({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
                          "items": [{"metadata": {}, "versions": [{"version": "v1", "resources": _aggregated(CORE),
                                                                    "freshness": "Current"}]}]}, AGG_CT)
        return _json({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]})
    if parts == ["api", "v1"]:
        return _json(_resource_list("v1", CORE))
    if parts == ["apis"]:
        if aggregated:
            return _json({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
                          "items": [{"metadata": {"name": g}, "versions": [{"version": "v1", "resources": _aggregated(r),
                                                                             "freshness": "Current"}]}
                                    for g, r in GROUPS.items()]}, AGG_CT)
        return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g) for g in GROUPS]})
    if len(parts) == 2 and parts[0] == "apis" and parts[1] in GROUPS:
        return _json({"kind": "APIGroup", "apiVersion": "v1", **_group(parts[1])})
    if len(parts) == 3 and parts[0] == "apis" and parts[1] in GROUPS and parts[2] == "v1":
        return _json(_resource_list(f"{parts[1]}/v1", GROUPS[parts[1]]))
    if parts == ["openapi", "v3"]:
        index = {"api/v1": {"serverRelativeURL": f"/openapi/v3/api/v1?hash={_hash()}"}}
        for g in ("apps", "batch"):
            index[f"apis/{g}/v1"] = {"serverRelativeURL": f"/openapi/v3/apis/{g}/v1?hash="
                                                          f"{openapi.digest(openapi.document(g, 'v1'))}"}
        return Response(200, json.dumps({"paths": index}).encode(), content_type="text/plain; charset=utf-8")
    if parts == ["openapi", "v3", "api", "v1"]:
        return Response(200, schema.openapi_v1_bytes(), content_type="application/json")
    if len(parts) == 5 and parts[:3] == ["openapi", "v3", "apis"] and parts[3] in ("apps", "batch") and parts[4] == "v1":
        return Response(200, openapi.document(parts[3], "v1"), content_type="application/json")
    if parts and parts[0] == "openapi":
        from .errors import ApiError
        e = ApiError(404, "NotFound", "the server could not find the requested resource", {})
        return Response(404, e.body())
    return None


def _group(name):
    gv = {"groupVersion": f"{name}/v1", "version": "v1"}
    return {"name": name, "versions": [gv], "preferredVersion": gv}


_HASH = None


def _hash():
    global _HASH
    if _HASH is None:
        _HASH = hashlib.sha512(schema.openapi_v1_bytes()).hexdigest().upper()
    return _HASH
