"""Audit: events shaped like kube-apiserver's audit.k8s.io/v1 (see
tests/fixtures/kube-apiserver-1.36/audit-eventlist*.json) and a batching webhook
backend that behaves like `--audit-webhook-mode=batch`: buffer, send EventList
batches at `batch_max_size` events or after `batch_max_wait`, retry non-2xx with
backoff, drop when the buffer overflows. Fault switches (drop, duplicate, reorder)
let tests prove the receiver tolerates what real delivery does.
"""
from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Callable, Union

from .util import fmt_micro
from .webhook_kubeconfig import client_for

DEFAULT_POLICY = [
    # The policy lambdalet documents: pods, pods/binding and pods/status at RequestResponse.
    {"level": "RequestResponse", "resources": ["pods", "pods/binding", "pods/status"]},
]
BODY_VERBS = ("create", "update", "patch", "delete", "deletecollection")
SCHEDULER_REASON = ('RBAC: allowed by ClusterRoleBinding "system:kube-scheduler" of ClusterRole '
                    '"system:kube-scheduler" to User "system:kube-scheduler"')


class AuditRecorder:
    """Builds the two events of each request and hands them to every backend."""

    def __init__(self, clock):
        self.clock = clock
        self.policy = list(DEFAULT_POLICY)
        self.backends: list[AuditBackend] = []

    def level(self, ctx) -> str:
        res = ctx.rt.plural + ("/" + ctx.subresource if ctx.subresource else "")
        for rule in self.policy:
            if res in rule.get("resources", []) or "*" in rule.get("resources", []):
                if ctx.rt.group in rule.get("apiGroups", [""]) or "*" in rule.get("apiGroups", [""]):
                    return rule["level"]
        return "None"

    def _base(self, ctx, stage: str, level: str, final: bool) -> dict:
        user = {k: v for k, v in ctx.user.items() if k in ("username", "uid", "groups", "extra")}
        ref = {"resource": ctx.rt.plural}
        if ctx.namespace:
            ref["namespace"] = ctx.namespace
        if ctx.name:
            ref["name"] = ctx.name
        if final and ctx.subresource == "binding" and ctx.uid:
            ref["uid"] = ctx.uid
        if ctx.rt.group:
            ref["apiGroup"] = ctx.rt.group
        ref["apiVersion"] = ctx.rt.version
        if ctx.subresource:
            ref["subresource"] = ctx.subresource
        return {"level": level, "auditID": ctx.audit_id, "stage": stage, "requestURI": ctx.req.request_uri,
                "verb": ctx.verb, "user": user, "sourceIPs": [ctx.req.source_ip],
                "userAgent": ctx.req.headers.get("user-agent", ""), "objectRef": ref}

    def received(self, ctx, level: str) -> None:
        ctx.audit_id = str(uuid.uuid4())
        ctx.received_ts = fmt_micro(self.clock())
        if level == "None" or not self.backends:
            return
        ev = self._base(ctx, "RequestReceived", level, False)
        ev["requestReceivedTimestamp"] = ev["stageTimestamp"] = ctx.received_ts
        self._emit(ev)

    def _final(self, ctx, level: str, stage: str, resp=None) -> dict:
        ev = self._base(ctx, stage, level, True)
        if resp is not None:
            body = resp.body if isinstance(resp.body, dict) else None
            if body and body.get("kind") == "Status":
                ev["responseStatus"] = {k: v for k, v in body.items() if k not in ("kind", "apiVersion")}
            else:
                ev["responseStatus"] = {"metadata": {}, "code": resp.status}
            if level in ("Request", "RequestResponse") and ctx.verb in BODY_VERBS and ctx.request_object is not None:
                ev["requestObject"] = ctx.request_object
            if level == "RequestResponse" and body is not None:
                ev["responseObject"] = body
        else:
            ev["responseStatus"] = {"metadata": {}, "code": 200}
        ev["requestReceivedTimestamp"] = ctx.received_ts
        ev["stageTimestamp"] = fmt_micro(self.clock())
        reason = SCHEDULER_REASON if ctx.user.get("username") == "system:kube-scheduler" else ""
        ev["annotations"] = {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": reason}
        if ctx.rt.plural == "pods" and ctx.verb == "create" and not ctx.subresource:
            ev["annotations"]["pod-security.kubernetes.io/enforce-policy"] = "privileged:latest"
        return ev

    def complete(self, ctx, level: str, resp) -> None:
        if level == "None" or not self.backends:
            return
        self._emit(self._final(ctx, level, "ResponseComplete", resp))

    def wrap_stream(self, ctx, level, stream):
        """Long-running requests (watch): ResponseStarted now, ResponseComplete at the end."""
        if level != "None" and self.backends:
            self._emit(self._final(ctx, level, "ResponseStarted"))
        try:
            yield from stream
        finally:
            if level != "None" and self.backends:
                self._emit(self._final(ctx, level, "ResponseComplete"))

    def _emit(self, ev: dict) -> None:
        for b in list(self.backends):
            b.enqueue(json.loads(json.dumps(ev)))


Sink = Union[str, Callable[[bytes], int]]


def _http_sink(url: str, headers: dict[str, str] | None = None) -> Callable[[bytes], int]:
    def send(body: bytes) -> int:
        req = urllib.request.Request(url, data=body, method="POST",
                                     headers=headers or {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                r.read()
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (urllib.error.URLError, OSError):
            return 0
    return send


class AuditBackend:
    """One audit webhook in batch mode.

    `sent` holds every EventList the sink accepted (2xx), in delivery order;
    `attempts` every (status, n_events) tried; `dropped_batches` batches lost to
    `drop` or exhausted retries; `dropped_events` events lost to buffer overflow.
    """

    def __init__(self, sink: Sink, clock, *, batch_max_size: int = 400, batch_max_wait: float = 30.0,
                 buffer_size: int = 10000, retries: int = 3, initial_backoff: float = 0.05,
                 drop: float | bool = 0.0, duplicate: float | bool = 0.0, reorder: bool = False, seed: int = 0,
                 kubeconfig: dict | None = None):
        # With the webhook's kubeconfig (--audit-webhook-config-file), calls carry what
        # client-go would send (webhook_kubeconfig.py: no token over http); a callable
        # sink then gets (body, headers), a None sink means HTTP to the kubeconfig's server.
        if kubeconfig is not None:
            client = client_for(kubeconfig)
            self.sink = _http_sink(client.url, client.headers) if sink is None else (
                lambda body: sink(body, dict(client.headers)))
        else:
            self.sink = _http_sink(sink) if isinstance(sink, str) else sink
        self.clock = clock
        self.batch_max_size, self.batch_max_wait = batch_max_size, batch_max_wait
        self.buffer_size, self.retries, self.initial_backoff = buffer_size, retries, initial_backoff
        self.drop, self.duplicate, self.reorder = drop, duplicate, reorder
        self.rng = random.Random(seed)
        self.sent: list[dict] = []
        self.attempts: list[tuple[int, int]] = []
        self.dropped_batches: list[list[dict]] = []
        self.dropped_events = 0
        self._buf: list[dict] = []
        self._first = None              # clock time of the oldest buffered event
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kube-sim-audit", daemon=True)
        self._thread.start()

    # -- producer side
    def enqueue(self, ev: dict) -> None:
        with self._cond:
            if len(self._buf) >= self.buffer_size:
                self.dropped_events += 1
                return
            if not self._buf:
                self._first = self.clock()
            self._buf.append(ev)
            self._cond.notify()

    def _chance(self, p) -> bool:
        return p is True or (not isinstance(p, bool) and p > 0 and self.rng.random() < p)

    # -- delivery
    def _take(self, everything: bool) -> list[dict]:
        with self._cond:
            n = len(self._buf) if everything else min(len(self._buf), self.batch_max_size)
            batch, self._buf = self._buf[:n], self._buf[n:]
            self._first = self.clock() if self._buf else None
            return batch

    def _due(self) -> bool:
        if not self._buf:
            return False
        if len(self._buf) >= self.batch_max_size:
            return True
        return (self.clock() - self._first).total_seconds() >= self.batch_max_wait

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait(0.02)
                due = self._due()
            if due:
                with self._send_lock:
                    self._send(self._take(False), final=False)

    def flush(self) -> None:
        """Send everything buffered now, synchronously (batches of at most batch_max_size)."""
        with self._send_lock:
            while True:
                batch = self._take(False)
                if not batch:
                    return
                self._send(batch, final=True)

    def _send(self, events: list[dict], final: bool) -> None:
        if not events:
            return
        if self.reorder:
            self.rng.shuffle(events)
            if not final and len(events) > 1 and self.rng.random() < 0.5:
                held = events.pop()           # delivered in a later batch: reordering between batches
                with self._cond:
                    if not self._buf:
                        self._first = self.clock()
                    self._buf.insert(0, held)
        if self._chance(self.drop):
            self.dropped_batches.append(events)
            return
        body = json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
                           "items": events}).encode()
        for _ in range(2 if self._chance(self.duplicate) else 1):
            self._deliver(body, len(events))

    def _deliver(self, body: bytes, n: int) -> None:
        backoff = self.initial_backoff
        for attempt in range(self.retries + 1):
            try:
                status = int(self.sink(body))
            except Exception:
                status = 0
            self.attempts.append((status, n))
            if 200 <= status < 300:
                self.sent.append(json.loads(body))
                return
            if attempt < self.retries:
                time.sleep(backoff)     # delivery mechanics: real seconds, kept short
                backoff *= 2
        self.dropped_batches.append(json.loads(body)["items"])

    @property
    def events(self) -> list[dict]:
        """All delivered events, flattened, in delivery order."""
        return [e for b in self.sent for e in b["items"]]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.flush()
