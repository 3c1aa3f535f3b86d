"""The node lifecycle slice of kube-controller-manager, on the simulator's clock.

NodeLifecycle.run_once() does, for every node, what these controllers do:

- node-lifecycle-controller, health: a node whose last heartbeat (its Lease's
  ``renewTime`` in kube-node-lease, or its Ready condition's
  ``lastHeartbeatTime``, or its creation when it has neither) is older than
  ``grace_period`` (``--node-monitor-grace-period``, 50 s from Kubernetes 1.32)
  gets Ready, MemoryPressure, DiskPressure and PIDPressure ``Unknown`` (reason
  ``NodeStatusUnknown``, "Kubelet stopped posting node status."; a node that never
  posted a Ready condition: ``NodeStatusNeverUpdated`` after ``startup_grace``).
  When Ready leaves True its pods get ``Ready=False`` (MarkPodsNotReady) and
  the node a ``NodeNotReady`` event. The controller never sets Ready=True: the
  kubelet (lambdalet) does when it posts status again.
- TaintNodesByCondition (NoSchedule): Ready False -> ``node.kubernetes.io/not-ready``,
  Unknown -> ``node.kubernetes.io/unreachable``; memory/disk/pid pressure and
  NetworkUnavailable -> their taints. (A node without any Ready condition keeps
  the not-ready taint its admission gave it.)
- Taint-based eviction (NoExecute, with ``timeAdded``): Ready False -> not-ready,
  Unknown -> unreachable, True -> neither. Zones (``topology.kubernetes.io/region``
  + ``zone`` labels) are in FullDisruption when none of their nodes is Ready,
  PartialDisruption when more than 2 and at least 55 % are not Ready. When every
  zone is in FullDisruption the controller enters "master disruption mode": it
  removes these NoExecute taints and evicts nothing. A zone in PartialDisruption
  of at most 50 nodes gets no new NoExecute taints (its eviction rate is 0).
  The per-zone rate limit (0.1 node/s) is not modelled.
- taint-eviction-controller: a pod bound to a node with NoExecute taints is
  deleted at once if it does not tolerate one of them, else once the smallest
  ``tolerationSeconds`` of the tolerations it uses has passed since the taint was
  added (a toleration without seconds tolerates forever); the pod first gets the
  ``DisruptionTarget`` condition (``DeletionByTaintManager``) and a
  ``TaintManagerEviction`` event, then an ordinary (graceful) delete.

Plus what the old slice did: beta os/arch labels and the ttl annotation.
Everything is derived from stored objects and the clock (no hidden state except
first-seen times of NoExecute taints written without ``timeAdded``), so a test
can call run_once() whenever it moves the clock; the scheduler's background loop
calls it before each scheduling pass.
"""
from __future__ import annotations

import datetime as dt

from .api import Api
from .scheduler import NODE_CONTROLLER_USER, _call, tolerates
from .util import fmt_time, parse_time

KCM_UA = "kube-controller-manager/v1.36.2 (linux/amd64) kubernetes/8e16b12/node-controller"
TAINT_EVICTION_USER = {"username": "system:serviceaccount:kube-system:taint-eviction-controller",
                       "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system",
                                  "system:authenticated"]}
LEASE_NAMESPACE = "kube-node-lease"

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
HEALTH_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
CONDITION_TAINTS = {  # TaintNodesByCondition: (condition, status) -> NoSchedule taint key
    ("Ready", "False"): NOT_READY,
    ("Ready", "Unknown"): UNREACHABLE,
    ("MemoryPressure", "True"): "node.kubernetes.io/memory-pressure",
    ("DiskPressure", "True"): "node.kubernetes.io/disk-pressure",
    ("PIDPressure", "True"): "node.kubernetes.io/pid-pressure",
    ("NetworkUnavailable", "True"): "node.kubernetes.io/network-unavailable",
}
CONDITION_TAINT_KEYS = set(CONDITION_TAINTS.values())
UNHEALTHY_ZONE_THRESHOLD = 0.55
LARGE_CLUSTER_THRESHOLD = 50

NORMAL, PARTIAL, FULL = "Normal", "PartialDisruption", "FullDisruption"


def _conditions(node: dict) -> dict[str, dict]:
    return {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []}


def ready_status(node: dict) -> str | None:
    c = _conditions(node).get("Ready")
    return None if c is None else c.get("status", "Unknown")


def zone_of(node: dict) -> str:
    labels = node["metadata"].get("labels") or {}
    region = labels.get("topology.kubernetes.io/region") or labels.get("failure-domain.beta.kubernetes.io/region", "")
    zone = labels.get("topology.kubernetes.io/zone") or labels.get("failure-domain.beta.kubernetes.io/zone", "")
    return f"{region}:\x00:{zone}"


def _time(s) -> dt.datetime | None:
    try:
        return parse_time(s) if s else None
    except ValueError:
        return None


class NodeLifecycle:
    def __init__(self, api: Api, *, grace_period: float = 50.0, startup_grace: float = 60.0):
        self.api = api
        self.grace_period = grace_period  # --node-monitor-grace-period
        self.startup_grace = startup_grace  # --node-startup-grace-period
        self._taint_seen: dict[tuple, dt.datetime] = {}
        self.evicted: list[tuple[str, str, str]] = []  # (namespace, name, node), in order

    # ------------------------------------------------------------------ observation
    def last_heartbeat(self, node: dict) -> dt.datetime:
        """When the node last showed a sign of life: lease renewal, status heartbeat, or creation."""
        seen = [_time(node["metadata"].get("creationTimestamp"))]
        ready = _conditions(node).get("Ready") or {}
        seen.append(_time(ready.get("lastHeartbeatTime")))
        lease = self.api.store.get("leases", LEASE_NAMESPACE, node["metadata"]["name"])
        if lease is not None:
            seen.append(_time((lease.get("spec") or {}).get("renewTime")))
        return max(t for t in seen if t is not None)

    def run_once(self) -> int:
        """One pass of every controller above; returns how many writes it made."""
        now = self.api.now()
        changed = 0
        nodes = []
        for node in self.api.store.list("nodes"):
            wrote, node = self._monitor_health(node, now)
            changed += wrote
            nodes.append(node)
        states = self._zone_states(nodes)
        master_disruption = bool(states) and all(s == FULL for s in states.values())
        for node in nodes:
            changed += self._taint(node, now, states.get(zone_of(node), NORMAL), master_disruption)
        changed += self._evict(now)
        return changed

    # ------------------------------------------------------------------ health
    def _monitor_health(self, node: dict, now: dt.datetime) -> tuple[int, dict]:
        conds = _conditions(node)
        never = "Ready" not in conds
        grace = self.startup_grace if never else self.grace_period
        if now <= self.last_heartbeat(node) + dt.timedelta(seconds=grace):
            return 0, node
        was_ready = ready_status(node) == "True"
        stamp = fmt_time(now)
        status = dict(node.get("status") or {})
        new_conditions, touched = [], False
        for c in status.get("conditions") or []:
            if c.get("type") in HEALTH_CONDITIONS and c.get("status") != "Unknown":
                c = {**c, "status": "Unknown", "reason": "NodeStatusUnknown",
                     "message": "Kubelet stopped posting node status.", "lastTransitionTime": stamp}
                touched = True
            new_conditions.append(c)
        for kind in HEALTH_CONDITIONS:
            if kind not in conds:
                new_conditions.append({"type": kind, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                                       "message": "Kubelet never posted node status.",
                                       "lastHeartbeatTime": node["metadata"].get("creationTimestamp"),
                                       "lastTransitionTime": stamp})
                touched = True
        if not touched:
            return 0, node
        body = {**node, "status": {**status, "conditions": new_conditions}}
        name = node["metadata"]["name"]
        r = _call(self.api, NODE_CONTROLLER_USER, "PUT", f"/api/v1/nodes/{name}/status", body, ua=KCM_UA)
        if r.status != 200:
            return 0, node  # changed under us: the next pass sees the fresh object
        node = self.api.store.get("nodes", "", name) or node
        if was_ready:
            self._node_event(node, "NodeNotReady", f"Node {name} status is now: NodeNotReady", now)
            self._mark_pods_not_ready(name, now)
        return 1, node

    def _mark_pods_not_ready(self, node_name: str, now: dt.datetime) -> None:
        for pod in self._pods_on(node_name):
            conds = pod["status"].get("conditions") or []
            ready = next((c for c in conds if c.get("type") == "Ready"), None)
            if ready is None or ready.get("status") == "False":
                continue
            ready = {**ready, "status": "False", "lastTransitionTime": fmt_time(now)}
            m = pod["metadata"]
            _call(self.api, NODE_CONTROLLER_USER, "PATCH", f"/api/v1/namespaces/{m['namespace']}/pods/{m['name']}/status",
                  {"metadata": {"resourceVersion": m["resourceVersion"]}, "status": {"conditions": [ready]}},
                  "application/strategic-merge-patch+json", ua=KCM_UA)

    def _zone_states(self, nodes: list[dict]) -> dict[str, str]:
        counts: dict[str, list[int]] = {}
        for node in nodes:
            ready, not_ready = counts.setdefault(zone_of(node), [0, 0])
            if ready_status(node) == "True":
                counts[zone_of(node)][0] += 1
            else:
                counts[zone_of(node)][1] += 1
        states = {}
        for zone, (ready, not_ready) in counts.items():
            if ready == 0 and not_ready > 0:
                states[zone] = FULL
            elif not_ready > 2 and not_ready / (ready + not_ready) >= UNHEALTHY_ZONE_THRESHOLD:
                states[zone] = PARTIAL
            else:
                states[zone] = NORMAL
        return states

    # ------------------------------------------------------------------ taints
    def _taint(self, node: dict, now: dt.datetime, zone_state: str, master_disruption: bool) -> int:
        name = node["metadata"]["name"]
        labels = dict(node["metadata"].get("labels") or {})
        ann = dict(node["metadata"].get("annotations") or {})
        taints = list((node.get("spec") or {}).get("taints") or [])
        conds = _conditions(node)
        ready = ready_status(node)

        # NoSchedule by condition
        want_ns = {key for (kind, status), key in CONDITION_TAINTS.items()
                   if (conds.get(kind) or {}).get("status") == status}
        if ready is None:
            want_ns.add(NOT_READY)  # admission's startup taint stays until the node reports
        new = [t for t in taints if not (t.get("effect") == "NoSchedule" and t.get("key") in CONDITION_TAINT_KEYS
                                         and t["key"] not in want_ns)]
        have = {t.get("key") for t in new if t.get("effect") == "NoSchedule"}
        new += [{"key": key, "effect": "NoSchedule"} for key in sorted(want_ns - have)]

        # NoExecute: taint-based eviction
        current_ne = {t.get("key") for t in new if t.get("effect") == "NoExecute" and t.get("key") in (NOT_READY, UNREACHABLE)}
        if ready == "True" or master_disruption:
            want_ne = set()
        elif zone_state == PARTIAL and sum(1 for n in self.api.store.list("nodes")
                                           if zone_of(n) == zone_of(node)) <= LARGE_CLUSTER_THRESHOLD:
            want_ne = current_ne  # eviction rate 0 in a small disrupted zone: no new taints
        elif ready == "False":
            want_ne = {NOT_READY}
        elif ready == "Unknown":
            want_ne = {UNREACHABLE}
        else:
            want_ne = current_ne
        new = [t for t in new if not (t.get("effect") == "NoExecute" and t.get("key") in (NOT_READY, UNREACHABLE)
                                      and t["key"] not in want_ne)]
        new += [{"key": key, "effect": "NoExecute", "timeAdded": fmt_time(now)} for key in sorted(want_ne - current_ne)]

        info = (node.get("status") or {}).get("nodeInfo") or {}
        for beta, src, field in (("beta.kubernetes.io/os", "kubernetes.io/os", "operatingSystem"),
                                 ("beta.kubernetes.io/arch", "kubernetes.io/arch", "architecture")):
            val = labels.get(src) or info.get(field)
            if val and beta not in labels:
                labels[beta] = val
        ann.setdefault("node.alpha.kubernetes.io/ttl", "0")
        if new == taints and labels == (node["metadata"].get("labels") or {}) and \
                ann == (node["metadata"].get("annotations") or {}):
            return 0
        patch = {"metadata": {"labels": labels, "annotations": ann,
                              "resourceVersion": node["metadata"]["resourceVersion"]},
                 "spec": {"taints": new or None}}
        r = _call(self.api, NODE_CONTROLLER_USER, "PATCH", f"/api/v1/nodes/{name}", patch,
                  "application/merge-patch+json", ua=KCM_UA)
        return int(r.status == 200)

    # ------------------------------------------------------------------ eviction
    def _evict(self, now: dt.datetime) -> int:
        evicted = 0
        nodes = {n["metadata"]["name"]: n for n in self.api.store.list("nodes")}
        live = set()
        for pod in self.api.store.list("pods"):
            node = nodes.get(pod["spec"].get("nodeName") or "")
            if node is None or pod["metadata"].get("deletionTimestamp"):
                continue
            taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]
            if not taints:
                continue
            due = self._eviction_time(pod, node, taints, live)
            if due is not None and now >= due:
                evicted += self._evict_pod(pod, now)
        self._taint_seen = {k: v for k, v in self._taint_seen.items() if k in live}
        return evicted

    def _eviction_time(self, pod: dict, node: dict, taints: list[dict], live: set) -> dt.datetime | None:
        """When the pod must go (None: never), as the taint eviction controller computes it."""
        tolerations = pod["spec"].get("tolerations") or []
        used, starts = [], []
        for t in taints:
            key = (node["metadata"]["name"], node["metadata"]["uid"], t.get("key"), t.get("value"))
            live.add(key)
            added = _time(t.get("timeAdded"))
            if added is None:
                added = self._taint_seen.setdefault(key, self.api.now())
            starts.append(added)
            matching = [tol for tol in tolerations if tolerates([tol], t)]
            if not matching:
                return min(starts)  # an untolerated NoExecute taint: evict at once
            used += matching
        seconds = [max(0, int(tol["tolerationSeconds"])) for tol in used if tol.get("tolerationSeconds") is not None]
        if not seconds:
            return None  # tolerated forever
        return min(starts) + dt.timedelta(seconds=min(seconds))

    def _evict_pod(self, pod: dict, now: dt.datetime) -> int:
        m = pod["metadata"]
        base = f"/api/v1/namespaces/{m['namespace']}/pods/{m['name']}"
        cond = {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint", "lastTransitionTime": fmt_time(now)}
        if pod["status"].get("phase") not in ("Succeeded", "Failed"):
            _call(self.api, TAINT_EVICTION_USER, "PATCH", f"{base}/status", {"status": {"conditions": [cond]}},
                  "application/strategic-merge-patch+json", ua=KCM_UA)
        self._event(m["namespace"], {"kind": "Pod", "namespace": m["namespace"], "name": m["name"], "uid": m["uid"],
                                     "apiVersion": "v1"}, "Normal", "TaintManagerEviction",
                    f"Marking for deletion Pod {m['namespace']}/{m['name']}", now, "taint-eviction-controller")
        r = _call(self.api, TAINT_EVICTION_USER, "DELETE", base, {"preconditions": {"uid": m["uid"]}}, ua=KCM_UA)
        if r.status == 200:
            self.evicted.append((m["namespace"], m["name"], pod["spec"]["nodeName"]))
            return 1
        return 0

    # ------------------------------------------------------------------ events
    def _node_event(self, node: dict, reason: str, message: str, now: dt.datetime) -> None:
        m = node["metadata"]
        self._event("default", {"kind": "Node", "name": m["name"], "uid": m["uid"], "apiVersion": "v1"},
                    "Normal", reason, message, now, "node-controller")

    _seq = 0

    def _event(self, namespace: str, ref: dict, type_: str, reason: str, message: str, now: dt.datetime,
               component: str) -> None:
        NodeLifecycle._seq += 1
        stamp = fmt_time(now)
        ev = {"apiVersion": "v1", "kind": "Event",
              "metadata": {"name": f"{ref['name']}.{int(now.timestamp() * 1e9) + NodeLifecycle._seq:x}",
                           "namespace": namespace},
              "involvedObject": ref, "reason": reason, "message": message, "type": type_,
              "source": {"component": component}, "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
              "reportingComponent": component, "reportingInstance": ""}
        _call(self.api, NODE_CONTROLLER_USER, "POST", f"/api/v1/namespaces/{namespace}/events", ev, ua=KCM_UA)

    # ------------------------------------------------------------------ helpers
    def _pods_on(self, node_name: str) -> list[dict]:
        return [p for p in self.api.store.list("pods") if p["spec"].get("nodeName") == node_name
                and p["status"].get("phase") not in ("Succeeded", "Failed")]
