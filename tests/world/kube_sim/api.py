"""Transport-independent request handling: routing, authn/authz, the generic verbs
(get/list/watch/create/update/patch/delete) with kube-apiserver semantics, the pod
binding subresource, and audit events for every request.

The HTTP server (server.py) and in-process controllers (scheduler.py) both call
`Api.handle(Request)`, so the scheduler's bindings are audited like real ones.
"""
from __future__ import annotations

import base64
import bisect
import json
import random
from collections import Counter
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Iterator

from . import discovery, protobuf, schema, table
from . import errors as E
from .admission import AdmissionChain
from .audit import AuditRecorder
from .faults import Faults
from .kubelet_proxy import KubeletProxy
from .patch import PATCH_TYPES, SchemaWalker, apply_patch
from .resources import RESOURCES, ResourceType, find
from .store import Store
from .util import deepcopy, fmt_time, name_suffix, new_uid

ADMIN = {"username": "admin", "uid": "admin", "groups": ["system:masters", "system:authenticated"]}

META_ORDER = ("name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
              "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
              "ownerReferences", "finalizers", "managedFields")



def openapi_name(rt: ResourceType) -> str:
    """The type's name in the OpenAPI documents: io.k8s.api.<group>.<version>.<Kind>."""
    return f'io.k8s.api.{rt.group.split(".")[0] or "core"}.{rt.version}.{rt.kind}'


@dataclass
class Request:
    method: str
    path: str
    query: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)     # lower-case keys
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    user: dict | None = None                        # set in-process callers (controllers)
    raw_query: str = ""                             # as sent: repeated parameters (exec's command) kept
    client_cert: bytes | None = None                # DER of the TLS client certificate presented (https)

    def query_list(self, key: str) -> list[str]:
        if not self.raw_query:
            return [self.query[key]] if key in self.query else []
        return [v for k, v in urllib.parse.parse_qsl(self.raw_query, keep_blank_values=True) if k == key]

    @property
    def request_uri(self) -> str:
        return self.path + ("?" + urllib.parse.urlencode(self.query) if self.query else "")


@dataclass
class Response:
    status: int
    body: Any = None
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)
    stream: Iterator[bytes] | None = None

    def json(self):
        return self.body


@dataclass
class Ctx:
    """Per-request information the audit events need."""
    req: Request
    user: dict
    verb: str = ""
    rt: ResourceType | None = None
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    request_object: Any = None
    uid: str = ""
    warnings: list = field(default_factory=list)


def order_meta(m: dict) -> dict:
    out = {k: m[k] for k in META_ORDER if k in m and m[k] not in (None, {}, [])}
    for k, v in m.items():
        if k not in out and v not in (None, {}, []):
            out[k] = v
    return out


def order_top(o: dict) -> dict:
    out = {}
    for k in ("kind", "apiVersion", "metadata", "spec"):
        if k in o:
            out[k] = o[k]
    out.update({k: v for k, v in o.items() if k not in out})
    return out


class Api:
    def __init__(self, clock, seed: int | None = None):
        self.clock = clock
        self.store = Store()
        self.rng = random.Random(seed)
        self.tokens: dict[str, dict] = {"admin-token": dict(ADMIN)}
        self.eks = None  # an eks_auth.EksAuthenticator: k8s-aws-v1. tokens (KubeSim.enable_eks)
        self.group_rules: dict[str, list[dict]] = {}  # group -> the rules bound to it (RBAC Group subjects)
        self.auth_failures: list[str] = []  # why a credential was refused: the apiserver logs it, never answers it
        self.allow_anonymous = True
        self.client_ca = None  # a cryptography Certificate: client certificates it issued authenticate (authn.py)
        self.audit = AuditRecorder(clock)
        self.admission = AdmissionChain(self)  # dynamic admission webhooks (admission.py)
        self.kubelet = KubeletProxy(self)  # pods/log, exec, ... to the node's kubelet; metrics.k8s.io (kubelet_proxy.py)
        # (username, verb, resource[/subresource]) -> count: what clients cost the apiserver
        self.calls: Counter = Counter()
        self.faults = Faults()  # faults.py: the next matching calls fail (429, 5xx, 409, 410, 504)
        self.stopping = threading.Event()
        # Patch metadata: the served core/v1 document first, every other group from the 1.36 definitions.
        self.walker = SchemaWalker({**schema.definitions(), **schema.core_schemas()})
        self._storage_rt = {rt.store_key: rt for rt in RESOURCES if not rt.group}
        self._storage_rt.setdefault("leases", find("coordination.k8s.io", "v1", "leases"))

    # ------------------------------------------------------------------ entry point
    def handle(self, req: Request) -> Response:
        try:
            user = req.user or self._authenticate(req)
        except E.ApiError as e:
            return Response(e.code, e.body())
        ctx = Ctx(req, user)
        try:
            route = self._route(req, ctx)
        except E.ApiError as e:
            return Response(e.code, e.body())
        if ctx.rt is None:  # non-resource URL (discovery, openapi, version)
            return route()
        try:
            self._authorize(ctx)
        except E.ApiError as e:
            return Response(e.code, e.body())
        resource = ctx.rt.plural + ("/" + ctx.subresource if ctx.subresource else "")
        self.calls[(user.get("username"), ctx.verb, resource)] += 1
        fault = self.faults.take(ctx.verb, resource, user.get("username"), bool(req.query.get("continue")))
        if fault is not None:
            return Response(fault.code, fault.body(), headers=fault.headers)
        level = self.audit.level(ctx)
        self.audit.received(ctx, level)
        try:
            resp = route()
        except E.ApiError as e:
            resp = Response(e.code, e.body(), headers=e.headers)
        if ctx.warnings:
            resp.headers["Warning"] = ctx.warnings
        if resp.stream is not None:
            resp.stream = self.audit.wrap_stream(ctx, level, resp.stream)
        else:
            self.audit.complete(ctx, level, resp)
        return resp

    # ------------------------------------------------------------------ auth
    def _authenticate(self, req: Request) -> dict:
        from datetime import datetime, timezone

        from .authn import authenticate

        # Certificates are checked against the real time, as TLS does, not the injected clock.
        return authenticate(req.headers, req.client_cert, client_ca=self.client_ca,
                            token_user=lambda token: self.tokens.get(token) or self._webhook_token(token),
                            allow_anonymous=self.allow_anonymous, now=datetime.now(timezone.utc))

    def _webhook_token(self, token: str) -> dict | None:
        """A token the webhook token authenticator (EKS's aws-iam-authenticator) accepts, as a
        user whose rules are those bound to its groups; None (401) with the reason logged."""
        from .eks_auth import PREFIX, TokenRejected

        if self.eks is None or not token.startswith(PREFIX):
            return None
        try:
            user = self.eks.authenticate(token)
        except TokenRejected as err:
            self.auth_failures.append(str(err))
            return None
        user["rules"] = [rule for group in user["groups"] for rule in self.group_rules.get(group, [])]
        return user

    def _authorize(self, ctx: Ctx) -> None:
        rules = ctx.user.get("rules")
        rt = ctx.rt
        res = rt.plural + ("/" + ctx.subresource if ctx.subresource else "")
        if rules == "node":  # a node identity: the Node authorizer + NodeRestriction (node_authorizer.py)
            from .node_authorizer import decide

            name = ctx.name
            if ctx.verb == "create" and rt.plural == "nodes" and not ctx.subresource:
                try:  # NodeRestriction: a node creates only its own Node object
                    name = str((json.loads(ctx.req.body or b"{}").get("metadata") or {}).get("name") or "")
                except ValueError:
                    name = ""
            allowed, why = decide(self.store, ctx.user, ctx.verb, rt.group, rt.plural, ctx.subresource,
                                  ctx.namespace, name, str(ctx.req.query.get("fieldSelector") or ""))
            if allowed:
                return
            raise E.ApiError(403, "Forbidden", f'{rt.plural} "{ctx.name}" is forbidden: User "{ctx.user["username"]}" '
                             f'cannot {ctx.verb} resource "{res}" in API group "{rt.group}": {why or "node rules"}',
                             {"name": ctx.name, "kind": rt.plural})
        if rules is None:
            return
        for r in rules:
            if not _match(r.get("verbs", ["*"]), ctx.verb):
                continue
            if not _match(r.get("resources", ["*"]), res):
                continue
            if not _match(r.get("apiGroups", ["*"]), rt.group):
                continue
            if "namespaces" in r and not _match(r["namespaces"], ctx.namespace):
                continue
            if "resourceNames" in r and ctx.name not in r["resourceNames"]:
                continue
            return
        subject = f'{rt.plural}{"." + rt.group if rt.group else ""}'
        what = f'{subject} "{ctx.name}"' if ctx.name else subject
        scope = f'in the namespace "{ctx.namespace}"' if ctx.namespace else "at the cluster scope"
        details = {"name": ctx.name} if ctx.name else {}
        if rt.group:
            details["group"] = rt.group
        details["kind"] = rt.plural
        raise E.ApiError(403, "Forbidden", f'{what} is forbidden: User "{ctx.user["username"]}" cannot '
                         f'{ctx.verb} resource "{res}" in API group "{rt.group}" {scope}', details)

    # ------------------------------------------------------------------ routing
    def _route(self, req: Request, ctx: Ctx):
        parts = [urllib.parse.unquote(p) for p in req.path.strip("/").split("/") if p]
        accept = req.headers.get("accept", "")
        proxied = self.kubelet.route(parts, ctx)
        if proxied is not None:
            return proxied
        nonres = discovery.non_resource(parts, accept, req.query)
        if nonres is not None:
            return lambda: nonres
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise E.ApiError(404, "NotFound", "the server could not find the requested resource", {})
        ns = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        plural = rest[0] if rest else ""
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if plural == "bindings" and not group and req.method == "POST":  # legacy /bindings
            rt = find("", "v1", "pods")
            ctx.rt, ctx.namespace, ctx.verb, ctx.subresource = rt, ns, "create", "binding"
            return lambda: self.bind(ctx, None)
        rt = find(group, version, plural)
        if rt is None or len(rest) > 3 or (sub and sub not in rt.subresources):
            raise E.ApiError(404, "NotFound", "the server could not find the requested resource", {})
        if rt.namespaced is False and ns:
            raise E.ApiError(404, "NotFound", "the server could not find the requested resource", {})
        ctx.rt, ctx.namespace, ctx.name, ctx.subresource = rt, ns, name, sub
        m, q = req.method, req.query
        if sub == "scale":
            verbs = {"GET": "get", "PUT": "update", "PATCH": "patch"}
            if m not in verbs:
                raise E.ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {})
            ctx.verb = verbs[m]
            return lambda: self.scale(ctx)
        if m == "GET" and name:
            ctx.verb = "get"
            return lambda: self.get(ctx)
        if m == "GET":
            ctx.verb = "watch" if q.get("watch", "").lower() in ("true", "1", "t") else "list"  # strconv.ParseBool
            return (lambda: self.watch(ctx)) if ctx.verb == "watch" else (lambda: self.list(ctx))
        if m == "POST" and sub == "binding":
            ctx.verb = "create"
            return lambda: self.bind(ctx, name)
        if m == "POST" and not name:
            ctx.verb = "create"
            return lambda: self.create(ctx)
        if m == "PUT" and name:
            ctx.verb = "update"
            return lambda: self.update(ctx)
        if m == "PATCH" and name:
            ctx.verb = "patch"
            return lambda: self.patch(ctx)
        if m == "DELETE" and name:
            ctx.verb = "delete"
            return lambda: self.delete(ctx)
        if m == "DELETE":
            ctx.verb = "deletecollection"
            return lambda: self.delete_collection(ctx)
        raise E.ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {})

    # ------------------------------------------------------------------ helpers
    def now(self):
        return self.clock()

    def _decode(self, ctx: Ctx, kind_ok=None):
        ctype = ctx.req.headers.get("content-type", "").split(";")[0].strip()
        if ctype == protobuf.MEDIA_TYPE:
            try:
                return protobuf.decode(ctx.req.body)
            except (protobuf.Undecodable, UnicodeDecodeError, IndexError) as e:
                # What kube-apiserver answers a body it has no decoder for (negotiation.NewUnsupportedMediaTypeError).
                raise E.ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                                 "accepted media types include: application/json, application/yaml "
                                 f"(kube_sim decodes protobuf only for the types kubectl create sends: {e})", {})
        try:
            obj = json.loads(ctx.req.body or b"null")
        except ValueError as e:
            raise E.bad_request(f"error decoding request body: {e}")
        return obj

    def view(self, rt: ResourceType, stored: dict, with_kind=True) -> dict:
        o = rt.strategy.to_view(deepcopy(stored))
        if with_kind:
            o["kind"], o["apiVersion"] = rt.kind, rt.api_version
            return order_top(o)
        o.pop("kind", None)
        o.pop("apiVersion", None)
        return o

    def _storage(self, rt: ResourceType) -> ResourceType:
        return self._storage_rt.get(rt.store_key, rt)

    def _check_body(self, ctx: Ctx, obj) -> dict:
        """Decode-time checks: kind, unknown fields (fieldValidation), schema types."""
        rt = ctx.rt
        if not isinstance(obj, dict):
            raise E.bad_request(f"{rt.kind} in version \"{rt.version}\" cannot be handled as a {rt.kind}: "
                                f"json: cannot unmarshal into Go value of type {rt.kind}")
        if obj.get("kind") and obj["kind"] != rt.kind:
            raise E.bad_request(f'the API version in the data ({obj.get("apiVersion")}) does not match the '
                                f'expected API version ({rt.api_version})' if obj["kind"] == rt.kind else
                                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                                f'no kind "{obj["kind"]}" is registered for version "{rt.api_version}"')
        obj["kind"], obj["apiVersion"] = rt.kind, rt.api_version
        obj.setdefault("metadata", {})
        undecodable = rt.strategy.decode_error(obj)
        if undecodable:
            raise E.bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {undecodable}')
        if not isinstance(obj["metadata"], dict):
            raise E.bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: bad metadata')
        unknown, other = schema.split_errors(obj, decode_only=True)
        if other:
            path, msg = other[0]
            raise E.bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                                f'{path}: {msg}')
        if unknown:
            mode = ctx.req.query.get("fieldValidation", "Warn")
            names = [f'unknown field "{p}"' for _, _, p in unknown]
            if mode == "Strict":
                raise E.bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                                    f'strict decoding error: {", ".join(names)}')
            if mode != "Ignore":
                ctx.warnings += [f'299 - "{n.replace(chr(34), chr(92) + chr(34))}"' for n in names]
            schema.drop_unknown(obj, unknown)
        return obj

    def _final_validate(self, rt: ResourceType, view_obj: dict, stored: dict) -> None:
        """Nothing reaches the store unless it matches the real 1.36 schema."""
        for o in ({**view_obj, "kind": rt.kind, "apiVersion": rt.api_version}, stored):
            unknown, other = schema.split_errors(o)
            causes = [{"reason": "FieldValueInvalid", "message": f"Invalid value: {m}", "field": p}
                      for p, m in other] + [{"reason": "FieldValueForbidden", "message": "Forbidden: unknown field",
                                             "field": p} for _, _, p in unknown]
            if causes:
                raise E.invalid(rt.kind, o["metadata"].get("name", ""), causes, rt.group)

    def _get_stored(self, rt, ns, name) -> dict:
        o = self.store.get(rt.store_key, ns, name)
        if o is None:
            raise E.not_found(rt.plural, name, rt.group)
        return o

    def _finish(self, rt: ResourceType, obj: dict) -> dict:
        """Normalise a view object and build its storage form."""
        rt.strategy.normalize(obj)
        obj["metadata"] = order_meta(obj["metadata"])
        stored = rt.strategy.from_view(deepcopy(obj))
        self._storage(rt).strategy.normalize(stored)
        stored["metadata"] = order_meta(stored["metadata"])
        return order_top(stored)

    # ------------------------------------------------------------------ verbs
    def get(self, ctx: Ctx) -> Response:
        rt = ctx.rt
        o = self._get_stored(rt, ctx.namespace, ctx.name)
        ctx.uid = o["metadata"].get("uid", "")
        v = self.view(rt, o)
        if ctx.subresource == "binding":
            raise E.ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {})
        if table.wants_table(ctx.req.headers.get("accept", "")):
            return Response(200, table.to_table(rt, [v], o["metadata"]["resourceVersion"], self.now()))
        return Response(200, v)

    def _selected(self, ctx: Ctx):
        rt, q = ctx.rt, ctx.req.query
        from .selectors import parse_field_selector, parse_label_selector
        lsel = parse_label_selector(q.get("labelSelector"))
        fsel = parse_field_selector(q.get("fieldSelector"), rt.field_labels, rt.field_convert)
        return lambda stored: lsel((stored.get("metadata") or {}).get("labels") or {}) and fsel(stored)

    def list(self, ctx: Ctx) -> Response:
        rt, q = ctx.rt, ctx.req.query
        pred = self._selected(ctx)
        with self.store.lock:
            list_rv = self.store.rv
            items = [o for o in self.store.list(rt.store_key, ctx.namespace or None) if pred(o)]
        filtered = bool(q.get("labelSelector") or q.get("fieldSelector"))
        meta = {"resourceVersion": str(list_rv)}
        if q.get("continue"):
            try:
                tok = json.loads(base64.urlsafe_b64decode(q["continue"] + "=" * (-len(q["continue"]) % 4)))
                start, meta["resourceVersion"] = tok["start"], str(tok["rv"])
            except Exception:
                raise E.bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
            items = [o for o in items if _key(o) >= start]
        limit = int(q.get("limit") or 0)
        if limit > 0 and len(items) > limit:
            rest = len(items) - limit
            items = items[:limit]
            tok = {"v": "meta.k8s.io/v1", "rv": int(meta["resourceVersion"]), "start": _key(items[-1]) + "\x00"}
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(tok, separators=(",", ":")).encode()).decode().rstrip("=")
            if not filtered:
                meta["remainingItemCount"] = rest
        views = [self.view(rt, o, with_kind=False) for o in items]
        if table.wants_table(ctx.req.headers.get("accept", "")):
            return Response(200, table.to_table(rt, views, meta["resourceVersion"], self.now(), meta.get("continue")))
        return Response(200, {"kind": rt.kind + "List", "apiVersion": rt.api_version, "metadata": meta,
                              "items": views})

    def watch(self, ctx: Ctx) -> Response:
        rt, q = ctx.rt, ctx.req.query
        pred = self._selected(ctx)
        timeout = float(q.get("timeoutSeconds") or 1800)
        rv = q.get("resourceVersion", "")
        store = self.store
        with store.lock:
            if rv in ("", "0"):
                initial = [o for o in store.list(rt.store_key, ctx.namespace or None) if pred(o)]
                start = store.rv
            else:
                initial, start = [], int(rv)
                if start < store.oldest_rv:
                    err = E.ApiError(410, "Expired", f"too old resource version: {start} ({store.oldest_rv})")
                    line = json.dumps({"type": "ERROR", "object": err.body()}).encode() + b"\n"
                    return Response(200, stream=iter([line]))

        def encode(type_, stored):
            return json.dumps({"type": type_, "object": self.view(rt, stored)}).encode() + b"\n"

        def gen():
            deadline = time.monotonic() + timeout
            for o in initial:
                yield encode("ADDED", o)
            last = start
            while not self.stopping.is_set():
                batch = []
                with store.changed:
                    i = bisect.bisect_right(store.history, last, key=lambda e: e.rv)
                    if i >= len(store.history):
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return
                        store.changed.wait(min(remaining, 0.5))
                        continue
                    batch = store.history[i:]
                    last = batch[-1].rv
                for ev in batch:
                    if ev.resource != rt.store_key:
                        continue
                    if ctx.namespace and ev.obj["metadata"].get("namespace") != ctx.namespace:
                        continue
                    if pred(ev.obj):
                        yield encode(ev.type, ev.obj)
                if time.monotonic() > deadline:
                    return
        return Response(200, stream=gen())

    def create(self, ctx: Ctx) -> Response:
        rt = ctx.rt
        obj = self._check_body(ctx, self._decode(ctx))
        meta = obj["metadata"]
        if rt.namespaced:
            if not ctx.namespace:
                raise E.ApiError(404, "NotFound", "the server could not find the requested resource", {})
            if meta.get("namespace") and meta["namespace"] != ctx.namespace:
                raise E.bad_request("the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = ctx.namespace
        rt.strategy.scheme_default(obj)
        ctx.request_object = deepcopy(obj)
        dry = ctx.req.query.get("dryRun") == "All"
        options = {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        options.update({k: ctx.req.query[k] for k in ("fieldManager", "fieldValidation") if ctx.req.query.get(k)})
        if dry:
            options["dryRun"] = ["All"]
        with self.store.lock:  # built-in admission (NamespaceLifecycle, ServiceAccount, ...) first
            if rt.namespaced and self.store.get("namespaces", "", ctx.namespace) is None:
                raise E.not_found("namespaces", ctx.namespace)
            rt.strategy.admit_create(obj, self)
        # Mutating webhooks see the object before it has a uid (kube-apiserver's handler order).
        obj = self.admission.mutate(ctx, "CREATE", obj, None, options, dry, rt.kind)
        meta = obj["metadata"]
        with self.store.lock:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + name_suffix(self.rng)
            ctx.name = meta.get("name", "")
            if rt.namespaced and self.store.get("namespaces", "", ctx.namespace) is None:
                raise E.not_found("namespaces", ctx.namespace)
            for k in ("uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "selfLink", "managedFields"):
                meta.pop(k, None)
            meta["uid"] = new_uid()
            meta["creationTimestamp"] = fmt_time(self.now())
            if rt.strategy.has_generation:
                meta["generation"] = 1
            rt.strategy.admit_create(obj, self)  # idempotent; PrepareForCreate's status (qosClass) after mutation
            rt.strategy.requested_by(obj, ctx.user)
            rt.strategy.normalize(obj)
            causes = rt.strategy.validate_create(obj)
            if causes:
                raise E.invalid(rt.kind, ctx.name, causes, rt.group)
            stored = self._finish(rt, obj)
            self._final_validate(rt, obj, stored)
        # Validating webhooks see the object with its uid, as stored (createValidation).
        self.admission.validate(ctx, "CREATE", self.view(rt, stored), None, options, dry, rt.kind)
        with self.store.lock:
            if self.store.get(rt.store_key, ctx.namespace, ctx.name) is not None:
                raise E.already_exists(rt.plural, ctx.name, rt.group)
            if ctx.req.query.get("dryRun") == "All":
                stored["metadata"]["resourceVersion"] = ""
                return Response(201, self.view(rt, stored))
            self.store.put(rt.store_key, stored, "ADDED")
            ctx.uid = stored["metadata"]["uid"]
            return Response(201, self.view(rt, stored))

    def update(self, ctx: Ctx) -> Response:
        obj = self._check_body(ctx, self._decode(ctx))
        ctx.request_object = deepcopy(obj)
        return self._update(ctx, obj, check_rv=True)

    def patch(self, ctx: Ctx) -> Response:
        rt = ctx.rt
        ctype = ctx.req.headers.get("content-type", "").split(";")[0].strip()
        kind = PATCH_TYPES.get(ctype)
        if kind is None or kind == "apply":
            raise E.ApiError(415, "UnsupportedMediaType",
                             "the body of the request was in an unknown format - accepted media types include: "
                             "application/json-patch+json, application/merge-patch+json, "
                             "application/strategic-merge-patch+json", {})
        patch = self._decode(ctx)
        ctx.request_object = patch
        with self.store.lock:
            cur = self.view(rt, self._get_stored(rt, ctx.namespace, ctx.name))
            sch = self.walker.schemas.get(openapi_name(rt))
            patched = apply_patch(kind, cur, patch, sch, self.walker)
            patched = self._check_body(ctx, patched)
            return self._update(ctx, patched, check_rv=True)

    # ------------------------------------------------------------------ scale subresource
    def _scale_view(self, rt: ResourceType, stored: dict) -> dict:
        """autoscaling/v1 Scale of a Deployment/ReplicaSet (apps registry's scaleFromDeployment)."""
        from .table import selector_string
        m = stored["metadata"]
        sel = selector_string(stored["spec"].get("selector"))
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: m[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                             if k in m},
                "spec": {"replicas": stored["spec"].get("replicas", 0)},
                "status": {"replicas": (stored.get("status") or {}).get("replicas", 0),
                           "selector": "" if sel == "<none>" else sel}}

    def scale(self, ctx: Ctx) -> Response:
        rt = ctx.rt
        with self.store.lock:
            stored = self._get_stored(rt, ctx.namespace, ctx.name)
            ctx.uid = stored["metadata"].get("uid", "")
            cur = self._scale_view(rt, stored)
            if ctx.verb == "get":
                return Response(200, cur)
            if ctx.verb == "patch":
                ctype = ctx.req.headers.get("content-type", "").split(";")[0].strip()
                kind = PATCH_TYPES.get(ctype)
                if kind is None or kind == "apply":
                    raise E.ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                                     "accepted media types include: application/json-patch+json, "
                                     "application/merge-patch+json, application/strategic-merge-patch+json", {})
                patch = self._decode(ctx)
                ctx.request_object = patch
                new = apply_patch(kind, cur, patch, None, self.walker)
            else:
                new = self._decode(ctx)
                ctx.request_object = new
                if not isinstance(new, dict):
                    raise E.bad_request('Scale in version "v1" cannot be handled as a Scale')
                rv = (new.get("metadata") or {}).get("resourceVersion")
                if rv and rv != stored["metadata"]["resourceVersion"]:
                    raise E.conflict(rt.plural, ctx.name, rt.group)
            replicas = (new.get("spec") or {}).get("replicas", 0)
            if not isinstance(replicas, int) or replicas < 0:
                raise E.invalid("Scale", ctx.name, [E.cause_invalid("spec.replicas", replicas,
                                                                    "must be greater than or equal to 0")], "autoscaling")
            obj = self.view(rt, stored)
            obj["spec"]["replicas"] = replicas
            main = Ctx(ctx.req, ctx.user, "update", rt, ctx.namespace, ctx.name)
            r = self._update(main, obj, check_rv=False)
            return Response(200, self._scale_view(rt, self._get_stored(rt, ctx.namespace, ctx.name))
                            if r.status == 200 else r.body)

    def _update(self, ctx: Ctx, obj: dict, check_rv: bool) -> Response:
        rt, ns, name, sub = ctx.rt, ctx.namespace, ctx.name, ctx.subresource
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != name:
            raise E.bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        if rt.namespaced and meta.get("namespace") and meta["namespace"] != ns:
            raise E.bad_request("the namespace of the provided object does not match the namespace sent on the request")
        with self.store.lock:
            old_stored = self.store.get(rt.store_key, ns, name)
            if old_stored is None:
                if rt.create_on_update and not sub:
                    ctx.req.body = json.dumps(obj).encode()
                    return self.create(ctx)
                raise E.not_found(rt.plural, name, rt.group)
            old = self.view(rt, old_stored)
            ctx.uid = old["metadata"].get("uid", "")
            rv = meta.get("resourceVersion")
            if check_rv and rv and rv != old["metadata"]["resourceVersion"]:
                raise E.conflict(rt.plural, name, rt.group)
            if meta.get("uid") and meta["uid"] != old["metadata"]["uid"]:
                raise E.conflict(rt.plural, name, rt.group, "Precondition failed: UID in precondition: "
                                 f"{meta['uid']}, UID in object meta: {old['metadata']['uid']}")
            rt.strategy.scheme_default(obj) if sub != "status" else None
            new = rt.strategy.prepare_update(obj, old, sub)
            nm = new["metadata"]
            for k in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "generation", "generateName"):
                if k in old["metadata"]:
                    nm[k] = old["metadata"][k]
                else:
                    nm.pop(k, None)
            nm.pop("managedFields", None)
            rt.strategy.normalize(new)
            causes = rt.strategy.validate_update(new, old, sub)
            if causes:
                raise E.invalid(rt.kind, name, causes, rt.group)
            if rt.strategy.has_generation and new.get("spec") != old.get("spec"):
                nm["generation"] = old["metadata"].get("generation", 1) + 1
            stored = self._finish(rt, new)
            self._final_validate(rt, new, stored)
            old_cmp = deepcopy(old_stored)
            old_cmp["metadata"].pop("resourceVersion", None)
            new_cmp = deepcopy(stored)
            new_cmp["metadata"].pop("resourceVersion", None)
            if old_cmp == new_cmp:  # no-op update: no new resourceVersion, no watch event
                return Response(200, self.view(rt, old_stored))
            if ctx.req.query.get("dryRun") == "All":
                return Response(200, self.view(rt, stored))
            sm = stored["metadata"]
            if sm.get("deletionTimestamp") and not sm.get("finalizers") and not sm.get("deletionGracePeriodSeconds"):
                self.store.remove(rt.store_key, stored)
            else:
                self.store.put(rt.store_key, stored, "MODIFIED")
            return Response(200, self.view(rt, stored))

    def bind(self, ctx: Ctx, name: str | None) -> Response:
        body = self._decode(ctx)
        if not isinstance(body, dict):
            raise E.bad_request("Binding in version \"v1\" cannot be handled as a Binding")
        body.setdefault("kind", "Binding")
        body.setdefault("apiVersion", "v1")
        ctx.request_object = body
        bmeta = body.get("metadata") or {}
        name = name or bmeta.get("name", "")
        ctx.name = name
        ctx.uid = bmeta.get("uid", "")
        if bmeta.get("name") and bmeta["name"] != name:
            raise E.bad_request(f"metadata.name: Invalid value: \"{bmeta['name']}\": name in URL does not match name in Binding object")
        target = body.get("target") or {}
        if not target.get("name"):
            raise E.invalid("Binding", name, [E.cause_required("target.name")])
        # Admission of the Binding (pods/binding CREATE) before the pod is read and assigned.
        dry = ctx.req.query.get("dryRun") == "All"
        options = {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"} | ({"dryRun": ["All"]} if dry else {})
        review_obj = {"kind": "Binding", "apiVersion": "v1",
                      "metadata": {"name": name, "namespace": ctx.namespace, **bmeta}, "target": target}
        review_obj = self.admission.mutate(ctx, "CREATE", review_obj, None, options, dry, "Binding")
        self.admission.validate(ctx, "CREATE", review_obj, None, options, dry, "Binding")
        target = review_obj.get("target") or target
        with self.store.lock:
            pod = self.store.get("pods", ctx.namespace, name)
            if pod is None:
                raise E.not_found("pods", name)
            m = pod["metadata"]
            if bmeta.get("uid") and bmeta["uid"] != m["uid"]:
                raise E.conflict("pods/binding", name, msg=f"Precondition failed: UID in precondition: "
                                 f"{bmeta['uid']}, UID in object meta: {m['uid']}")
            if m.get("deletionTimestamp"):
                raise E.conflict("pods/binding", name, msg=f"pod {name} is being deleted, cannot be assigned to a host")
            if pod["spec"].get("nodeName"):
                raise E.conflict("pods/binding", name,
                                 msg=f'pod {name} is already assigned to node "{pod["spec"]["nodeName"]}"')
            if dry:
                return Response(201, E.success_status(201))
            pod["spec"]["nodeName"] = target["name"]
            conds = [c for c in pod["status"].get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": fmt_time(self.now())})
            pod["status"]["conditions"] = conds
            pods_rt = find("", "v1", "pods")
            pods_rt.strategy.normalize(pod)
            self._final_validate(pods_rt, pod, pod)
            self.store.put("pods", pod, "MODIFIED")
        return Response(201, E.success_status(201))

    def _delete_options(self, ctx: Ctx) -> dict:
        opts = {}
        if ctx.req.body and ctx.req.body.strip():
            opts = self._decode(ctx)
            if not isinstance(opts, dict):
                raise E.bad_request("DeleteOptions in version \"v1\" cannot be handled as a DeleteOptions")
        q = ctx.req.query
        if "gracePeriodSeconds" in q and "gracePeriodSeconds" not in opts:
            opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
        if "propagationPolicy" in q and "propagationPolicy" not in opts:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if q.get("dryRun"):
            opts["dryRun"] = [q["dryRun"]]
        logged = {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/__internal"}
        logged.update({k: v for k, v in opts.items() if k not in ("kind", "apiVersion")})
        ctx.request_object = logged
        return opts

    def delete(self, ctx: Ctx) -> Response:
        opts = self._delete_options(ctx)
        resp = self._delete(ctx, opts)
        orphan = opts.get("propagationPolicy") == "Orphan" or opts.get("orphanDependents") is True
        if resp.status == 200 and orphan and "All" not in (opts.get("dryRun") or []):
            self._orphan_dependents(ctx.uid)
        return resp

    def _orphan_dependents(self, owner_uid: str) -> None:
        """propagationPolicy=Orphan: the garbage collector removes the owner's references from its dependents
        (the others are collected in the background by workloads.GarbageCollector)."""
        with self.store.lock:
            for key in {rt.store_key for rt in RESOURCES if rt.namespaced}:
                for o in self.store.list(key):
                    refs = o["metadata"].get("ownerReferences") or []
                    kept = [r for r in refs if r.get("uid") != owner_uid]
                    if kept != refs:
                        o["metadata"]["ownerReferences"] = kept
                        o["metadata"] = order_meta(o["metadata"])
                        self.store.put(key, o, "MODIFIED")

    def _delete(self, ctx: Ctx, opts: dict) -> Response:
        rt = ctx.rt
        if not getattr(ctx, "in_collection", False):  # deletecollection runs under the store lock: no webhooks
            old = self.view(rt, self._get_stored(rt, ctx.namespace, ctx.name))
            options = {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"} | {
                k: v for k, v in opts.items() if k not in ("kind", "apiVersion")}
            dry = "All" in (opts.get("dryRun") or [])
            self.admission.mutate(ctx, "DELETE", None, old, options, dry, rt.kind)
            self.admission.validate(ctx, "DELETE", None, old, options, dry, rt.kind)
        with self.store.lock:
            stored = self._get_stored(rt, ctx.namespace, ctx.name)
            m = stored["metadata"]
            ctx.uid = m.get("uid", "")
            pre = opts.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != m["uid"]:
                raise E.ApiError(409, "Conflict", f'Operation cannot be fulfilled on {rt.kind} "{ctx.name}": the UID '
                                 f'in the precondition ({pre["uid"]}) does not match the UID in record ({m["uid"]}). '
                                 f'The object might have been deleted and then recreated',
                                 {"name": ctx.name, "kind": rt.kind})
            if pre.get("resourceVersion") and pre["resourceVersion"] != m["resourceVersion"]:
                raise E.ApiError(409, "Conflict", f'Operation cannot be fulfilled on {rt.kind} "{ctx.name}": the '
                                 f'ResourceVersion in the precondition ({pre["resourceVersion"]}) does not match the '
                                 f'ResourceVersion in record ({m["resourceVersion"]}). The object might have been modified',
                                 {"name": ctx.name, "kind": rt.kind})
            grace = 0
            if rt.plural == "pods" and not rt.group:
                grace = opts.get("gracePeriodSeconds")
                if grace is None:
                    grace = stored["spec"].get("terminationGracePeriodSeconds", 30)
                if not stored["spec"].get("nodeName") or stored["status"].get("phase") in ("Succeeded", "Failed"):
                    grace = 0
                grace = max(0, int(grace))
            already = m.get("deletionTimestamp")
            if already and grace >= (m.get("deletionGracePeriodSeconds") or 0) and grace != 0:
                return Response(200, self._deleted_body(rt, stored))  # already terminating, not shortened
            dry = "All" in (opts.get("dryRun") or [])
            now = self.now()
            if rt.strategy.has_generation and not already:
                m["generation"] = m.get("generation", 1) + 1
            if grace > 0 or m.get("finalizers") or rt.plural == "namespaces" and not rt.group:
                from datetime import timedelta
                m["deletionTimestamp"] = fmt_time(now + timedelta(seconds=grace))
                m["deletionGracePeriodSeconds"] = grace
                stored["metadata"] = order_meta(m)
                if rt.plural == "namespaces" and not rt.group:
                    stored["status"]["phase"] = "Terminating"
                    if not dry:
                        self._purge_namespace(ctx.name)
                        self.store.remove(rt.store_key, stored)
                    return Response(200, self._deleted_body(rt, stored))
                if not dry:
                    self.store.put(rt.store_key, stored, "MODIFIED")
                return Response(200, self._deleted_body(rt, stored))
            if rt.strategy.has_generation:
                m["deletionTimestamp"] = fmt_time(now)
                m["deletionGracePeriodSeconds"] = 0
            stored["metadata"] = order_meta(m)
            if not dry:
                self.store.remove(rt.store_key, stored)
            return Response(200, self._deleted_body(rt, stored))

    def _deleted_body(self, rt, stored):
        if rt.return_deleted_object:
            return self.view(rt, stored)
        d = {"name": stored["metadata"]["name"]}
        if rt.group:
            d["group"] = rt.group
        d["kind"] = rt.plural
        d["uid"] = stored["metadata"].get("uid", "")
        return E.success_status(200, d) | {}

    def _purge_namespace(self, ns: str) -> None:
        for key in {rt.store_key for rt in RESOURCES if rt.namespaced}:
            for o in self.store.list(key, ns):
                self.store.remove(key, o)

    def delete_collection(self, ctx: Ctx) -> Response:
        rt = ctx.rt
        pred = self._selected(ctx)
        opts = self._delete_options(ctx)
        deleted = []
        with self.store.lock:
            for o in self.store.list(rt.store_key, ctx.namespace or None):
                if not pred(o):
                    continue
                sub = Ctx(ctx.req, ctx.user, "delete", rt, o["metadata"].get("namespace", ""), o["metadata"]["name"])
                sub.req = Request("DELETE", ctx.req.path, {}, ctx.req.headers, json.dumps(opts).encode())
                sub.in_collection = True
                self.delete(sub)
                deleted.append(self.view(rt, o, with_kind=False))
        return Response(200, {"kind": rt.kind + "List", "apiVersion": rt.api_version,
                              "metadata": {"resourceVersion": str(self.store.rv)}, "items": deleted})


def _key(stored: dict) -> str:
    m = stored["metadata"]
    return f'{m.get("namespace", "")}/{m["name"]}'


def _match(allowed, value) -> bool:
    return "*" in allowed or value in allowed
