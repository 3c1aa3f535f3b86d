"""A default-scheduler and the slice of kube-controller-manager the tests need.

Scheduler.run_once() binds pending pods through the real `pods/binding` path (as
user system:kube-scheduler, so the binding is audited like a real one), emits the
`Scheduled` event through events.k8s.io/v1, and marks unschedulable pods
PodScheduled=False/Unschedulable with a kube-scheduler-like message.

The node lifecycle controller (lease-based NotReady, taints, eviction) lives in
lifecycle.py; Scheduler.run_once() runs one pass of it before each scheduling pass.
"""
from __future__ import annotations

import json
import threading

from .api import Api, Request
from .util import fmt_micro, fmt_time

SCHEDULER_USER = {"username": "system:kube-scheduler", "uid": "system:kube-scheduler",
                  "groups": ["system:authenticated"]}
NODE_CONTROLLER_USER = {"username": "system:serviceaccount:kube-system:node-controller",
                        "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system",
                                   "system:authenticated"]}
SCHEDULER_UA = "kube-scheduler/v1.36.2 (linux/amd64) kubernetes/8e16b12/scheduler"


def _call(api: Api, user, method, path, body=None, ctype="application/json", ua=SCHEDULER_UA, query=None):
    req = Request(method, path, query or {}, {"content-type": ctype, "user-agent": ua, "accept": "application/json"},
                  json.dumps(body).encode() if body is not None else b"", user=user)
    return api.handle(req)


def tolerates(tolerations: list[dict], taint: dict) -> bool:
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


def _ready_status(node) -> str:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status", "Unknown")
    return "Unknown"


class Scheduler:
    def __init__(self, api: Api, lifecycle: "NodeLifecycle", name: str = "default-scheduler"):
        self.api = api
        self.lifecycle = lifecycle
        self.controllers: list = []  # more kube-controller-manager loops, run before each pass (workloads.py)
        self.name = name
        self._thread = None
        self._stop = threading.Event()

    def _fit(self, pod, node) -> str | None:
        """None if the pod fits, else the reason phrase kube-scheduler would count."""
        spec = pod["spec"]
        sel = spec.get("nodeSelector") or {}
        labels = node["metadata"].get("labels") or {}
        if any(labels.get(k) != v for k, v in sel.items()):
            return "didn't match Pod's node affinity/selector"
        if (node.get("spec") or {}).get("unschedulable"):
            return "were unschedulable"
        for t in (node.get("spec") or {}).get("taints") or []:
            if t.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(spec.get("tolerations"), t):
                return f"had untolerated taint {{{t['key']}: {t.get('value', '')}}}".replace(": }", ": }")
        if _ready_status(node) == "False":
            return "were not ready"
        return None

    def run_once(self) -> int:
        self.lifecycle.run_once()
        for controller in self.controllers:  # workload controllers: their pods are scheduled in this pass
            controller.run_once()
        store = self.api.store
        nodes = store.list("nodes")
        pods = [p for p in store.list("pods") if not p["spec"].get("nodeName")
                and p["spec"].get("schedulerName", "default-scheduler") == self.name
                and not p["metadata"].get("deletionTimestamp")
                and p["status"].get("phase") not in ("Succeeded", "Failed")]
        load = {}
        for p in store.list("pods"):
            n = p["spec"].get("nodeName")
            if n:
                load[n] = load.get(n, 0) + 1
        bound = 0
        for pod in pods:
            reasons, fits = {}, []
            for node in nodes:
                r = self._fit(pod, node)
                if r is None:
                    fits.append(node)
                else:
                    reasons[r] = reasons.get(r, 0) + 1
            if fits:
                node = min(fits, key=lambda n: (load.get(n["metadata"]["name"], 0), n["metadata"]["name"]))
                if self._bind(pod, node["metadata"]["name"]):
                    load[node["metadata"]["name"]] = load.get(node["metadata"]["name"], 0) + 1
                    bound += 1
            else:
                self._unschedulable(pod, len(nodes), reasons)
        return bound

    def _bind(self, pod, node_name) -> bool:
        m = pod["metadata"]
        binding = {"kind": "Binding", "apiVersion": "v1",
                   "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"]},
                   "target": {"kind": "Node", "name": node_name}}
        r = _call(self.api, SCHEDULER_USER, "POST", f"/api/v1/namespaces/{m['namespace']}/pods/{m['name']}/binding", binding)
        if r.status != 201:
            return False
        self._event(pod, "Normal", "Scheduled", "Binding", f"Successfully assigned {m['namespace']}/{m['name']} to {node_name}")
        return True

    def _unschedulable(self, pod, n_nodes, reasons):
        if n_nodes == 0:
            msg = "no nodes available to schedule pods"
        else:
            parts = ", ".join(f"{c} node(s) {r}" for r, c in sorted(reasons.items()))
            msg = (f"0/{n_nodes} nodes are available: {parts}. no new claims to deallocate, preemption: "
                   f"0/{n_nodes} nodes are available: {n_nodes} Preemption is not helpful for scheduling.")
        for c in pod["status"].get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("message") == msg:
                return  # already reported
        m = pod["metadata"]
        cond = {"type": "PodScheduled", "observedGeneration": m.get("generation", 1), "status": "False",
                "lastProbeTime": None, "lastTransitionTime": fmt_time(self.api.now()),
                "reason": "Unschedulable", "message": msg}
        _call(self.api, SCHEDULER_USER, "PATCH", f"/api/v1/namespaces/{m['namespace']}/pods/{m['name']}/status",
              {"status": {"conditions": [cond]}}, "application/strategic-merge-patch+json")
        self._event(pod, "Warning", "FailedScheduling", "Scheduling", msg)

    _seq = 0

    def _event_name(self, obj_name: str) -> str:
        """client-go's naming: <object>.<UnixNano in hex> (made unique under a frozen clock)."""
        Scheduler._seq += 1
        return f"{obj_name}.{int(self.api.now().timestamp() * 1e9) + Scheduler._seq:x}"

    def _event(self, pod, type_, reason, action, note):
        m = pod["metadata"]
        ev = {"apiVersion": "events.k8s.io/v1", "kind": "Event",
              "metadata": {"name": self._event_name(m["name"]), "namespace": m["namespace"]},
              "eventTime": fmt_micro(self.api.now()), "reportingController": self.name,
              "reportingInstance": f"{self.name}-kube-sim", "action": action, "reason": reason, "type": type_,
              "regarding": {"kind": "Pod", "namespace": m["namespace"], "name": m["name"], "uid": m["uid"],
                            "apiVersion": "v1", "resourceVersion": m["resourceVersion"]},
              "note": note}
        _call(self.api, SCHEDULER_USER, "POST", f"/apis/events.k8s.io/v1/namespaces/{m['namespace']}/events", ev)

    # -- background loop
    def start(self, interval: float = 0.2):
        if self._thread:
            return
        self._stop.clear()

        def loop():
            while not self._stop.wait(interval):
                try:
                    self.run_once()
                except Exception:  # keep scheduling; a test will notice missing bindings
                    import traceback
                    traceback.print_exc()
        self._thread = threading.Thread(target=loop, name="kube-sim-scheduler", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
            self._thread = None
