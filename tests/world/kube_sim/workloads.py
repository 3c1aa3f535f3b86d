"""The workload slice of kube-controller-manager: deployment, replicaset and job
controllers and the garbage collector, minimal but through the real API paths
(each write is an audited request by the controller's service account, so pods
they create meet admission webhooks, the scheduler and lambdalet like any pod).

Sources (k8s.io/kubernetes pkg/controller/...):
- deployment: one ReplicaSet per pod template, named <deployment>-<pod-template-hash>,
  the hash label on its selector, template and pods (controller_utils.ComputeHash:
  fnv32a, then rand.SafeEncodeString of the decimal; the bytes hashed differ
  from Go's DeepHashObject, the shape does not); annotations
  deployment.kubernetes.io/{revision,desired-replicas,max-replicas}; Available and
  Progressing conditions; ScalingReplicaSet events. NOT modelled: the rolling
  update's surge/unavailable steps (the new ReplicaSet gets every replica at once
  and the old ones go to 0, like Recreate), minReadySeconds, revision history
  clean-up, pause/rollback.
- replicaset: creates (generateName <rs>-) or deletes pods (unscheduled, then
  pending, then not ready, then newest first) until the active ones (not
  terminating, not Succeeded/Failed) match spec.replicas; SuccessfulCreate /
  SuccessfulDelete events, and FailedCreate with the apiserver's answer when a
  create is refused (e.g. by an admission webhook), plus the ReplicaFailure condition.
- job: keeps min(parallelism, completions - succeeded) pods active; Complete
  (after SuccessCriteriaMet) once `completions` pods succeeded, Failed (after
  FailureTarget, reason BackoffLimitExceeded) once more than backoffLimit pods
  failed; active pods are deleted when the Job finishes. NOT modelled: the
  exponential back-off between retries, the job-tracking finalizer, Indexed
  completion, podFailurePolicy, OnFailure restarts counting toward backoffLimit.
- garbage collector: when an owner (uid) is gone, its dependents are deleted in
  the background (propagationPolicy Orphan strips the references instead: api.py).
"""
from __future__ import annotations

import json

from .api import Api
from .scheduler import _call
from .util import fmt_time

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
KCM = "kube-controller-manager/v1.36.2 (linux/amd64) kubernetes/8e16b12/"
BACKOFF = 10.0
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand


def _sa(name: str) -> dict:
    return {"username": f"system:serviceaccount:kube-system:{name}",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]}


DEPLOYMENT_USER, RS_USER, JOB_USER, GC_USER = (_sa(n) for n in (
    "deployment-controller", "replicaset-controller", "job-controller", "generic-garbage-collector"))


def template_hash(template: dict) -> str:
    h = 0x811C9DC5
    for b in json.dumps(template, sort_keys=True).encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return "".join(_ALPHANUMS[ord(c) % len(_ALPHANUMS)] for c in str(h))


def _controlled_by(obj: dict, owner: dict) -> bool:
    return any(r.get("controller") and r.get("uid") == owner["metadata"]["uid"]
               for r in obj["metadata"].get("ownerReferences") or [])


def _owner_ref(owner: dict, api_version: str, kind: str) -> dict:
    return {"apiVersion": api_version, "kind": kind, "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def _active(pod: dict) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and pod["status"].get("phase") not in ("Succeeded", "Failed")


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod["status"].get("conditions") or [])


def _nonzero(d: dict) -> dict:
    return {k: v for k, v in d.items() if v not in (0, None, [], {})}


class Workloads:
    def __init__(self, api: Api):
        self.api = api
        self._owners: set[str] = set()  # uids of the owners seen last pass (the GC acts when one goes)
        self._seq = 0
        self._refused: dict[str, tuple] = {}  # owner uid -> (when, message) of its last refused pod create

    def run_once(self) -> None:
        store = self.api.store
        deployments, replicasets, jobs = (store.list(k) for k in ("deployments", "replicasets", "jobs"))
        if not (deployments or replicasets or jobs or self._owners):
            return
        pods = store.list("pods") if (replicasets or jobs) else []
        for d in deployments:
            self._deployment(d, [rs for rs in replicasets if _controlled_by(rs, d)])
        replicasets = store.list("replicasets")
        for rs in replicasets:
            self._replicaset(rs, [p for p in pods if _controlled_by(p, rs)])
        for job in jobs:
            self._job(job, [p for p in pods if _controlled_by(p, job)])
        owners = {o["metadata"]["uid"] for o in deployments + replicasets + jobs}
        if self._owners - owners:
            self._collect(self._owners - owners)
        self._owners = owners

    # ------------------------------------------------------------------ helpers
    def _path(self, group: str, ns: str, plural: str, name: str = "") -> str:
        base = f"/apis/{group}/v1" if group else "/api/v1"
        return f"{base}/namespaces/{ns}/{plural}" + (f"/{name}" if name else "")

    def _event(self, user, obj: dict, kind: str, api_version: str, type_: str, reason: str, message: str,
               component: str) -> None:
        self._seq += 1
        seq, now = self._seq, self.api.now()
        meta = obj["metadata"]
        stamp = fmt_time(now)
        ev = {"apiVersion": "v1", "kind": "Event",
              "metadata": {"name": f"{meta['name']}.{int(now.timestamp() * 1e9) + seq:x}", "namespace": meta["namespace"]},
              "involvedObject": {"kind": kind, "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"],
                                 "apiVersion": api_version, "resourceVersion": meta.get("resourceVersion", "")},
              "reason": reason, "message": message, "type": type_, "source": {"component": component},
              "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
              "reportingComponent": component, "reportingInstance": ""}
        _call(self.api, user, "POST", self._path("", meta["namespace"], "events"), ev, ua=KCM + component)

    def _status(self, user, group, plural, obj: dict, status: dict, component: str) -> None:
        if status == (obj.get("status") or {}):
            return
        m = obj["metadata"]
        _call(self.api, user, "PUT", self._path(group, m["namespace"], plural, m["name"]) + "/status",
              {**obj, "status": status}, ua=KCM + component)

    # ------------------------------------------------------------------ deployment
    def _deployment(self, d: dict, rss: list[dict]) -> None:
        m, spec = d["metadata"], d["spec"]
        if m.get("deletionTimestamp"):
            return
        ns, replicas = m["namespace"], spec.get("replicas", 1)
        template = spec["template"]
        h = template_hash(template)
        new = next((rs for rs in rss if (rs["metadata"].get("labels") or {}).get(HASH_LABEL) == h), None)
        revision = max((int((rs["metadata"].get("annotations") or {}).get(REVISION, "0")) for rs in rss), default=0)
        created = False
        if new is None:
            tmeta = dict(template.get("metadata") or {})
            tmeta["labels"] = {**(tmeta.get("labels") or {}), HASH_LABEL: h}
            sel = json.loads(json.dumps(spec["selector"]))
            sel.setdefault("matchLabels", {})[HASH_LABEL] = h
            body = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": f'{m["name"]}-{h}', "namespace": ns, "labels": tmeta["labels"],
                                 "annotations": {"deployment.kubernetes.io/desired-replicas": str(replicas),
                                                 "deployment.kubernetes.io/max-replicas": str(replicas),
                                                 REVISION: str(revision + 1)},
                                 "ownerReferences": [_owner_ref(d, "apps/v1", "Deployment")]},
                    "spec": {"replicas": replicas, "selector": sel, "template": {**template, "metadata": tmeta}}}
            r = _call(self.api, DEPLOYMENT_USER, "POST", self._path("apps", ns, "replicasets"), body,
                      ua=KCM + "deployment-controller")
            if r.status != 201:
                return
            new, created = r.body, True
            self._event(DEPLOYMENT_USER, d, "Deployment", "apps/v1", "Normal", "ScalingReplicaSet",
                        f'Scaled up replica set {new["metadata"]["name"]} from 0 to {replicas}', "deployment-controller")
        elif new["spec"].get("replicas") != replicas:
            self._scale(d, new, replicas)
        for old in rss:
            if old["metadata"]["uid"] != new["metadata"]["uid"] and old["spec"].get("replicas"):
                self._scale(d, old, 0)
        rev = (new["metadata"].get("annotations") or {}).get(REVISION)
        if rev and (m.get("annotations") or {}).get(REVISION) != rev:
            r = _call(self.api, DEPLOYMENT_USER, "PATCH", self._path("apps", ns, "deployments", m["name"]),
                      {"metadata": {"annotations": {REVISION: rev}}}, "application/merge-patch+json",
                      ua=KCM + "deployment-controller")
            d = r.body if r.status == 200 else d
        self._deployment_status(d, new, [rs for rs in rss if rs["metadata"]["uid"] != new["metadata"]["uid"]], created)

    def _scale(self, d: dict, rs: dict, to: int) -> None:
        m = rs["metadata"]
        was = rs["spec"].get("replicas", 0)
        patch = {"metadata": {"annotations": {"deployment.kubernetes.io/desired-replicas": str(d["spec"].get("replicas", 1)),
                                              "deployment.kubernetes.io/max-replicas": str(d["spec"].get("replicas", 1))}},
                 "spec": {"replicas": to}}
        r = _call(self.api, DEPLOYMENT_USER, "PATCH", self._path("apps", m["namespace"], "replicasets", m["name"]), patch,
                  "application/merge-patch+json", ua=KCM + "deployment-controller")
        if r.status == 200:
            verb = "up" if to > was else "down"
            self._event(DEPLOYMENT_USER, d, "Deployment", "apps/v1", "Normal", "ScalingReplicaSet",
                        f"Scaled {verb} replica set {m['name']} from {was} to {to}", "deployment-controller")

    def _deployment_status(self, d: dict, new: dict, old: list[dict], created: bool) -> None:
        want = d["spec"].get("replicas", 1)
        every = [new] + old
        st = lambda rs, k: (rs.get("status") or {}).get(k, 0)  # noqa: E731
        available = sum(st(rs, "availableReplicas") for rs in every)
        updated = st(new, "replicas")
        max_unavailable = want * 25 // 100  # the default maxUnavailable 25%, rounded down
        now = fmt_time(self.api.now())
        prev = {c["type"]: c for c in (d.get("status") or {}).get("conditions") or []}
        name = new["metadata"]["name"]
        if available >= want - max_unavailable:
            avail = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            avail = ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        if created:
            prog = ("True", "NewReplicaSetCreated", f'Created new replica set "{name}"')
        elif updated == want and available >= want and not any(st(rs, "replicas") for rs in old):
            prog = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{name}" has successfully progressed.')
        else:
            prog = ("True", "ReplicaSetUpdated", f'ReplicaSet "{name}" is progressing.')
        conds = []
        for kind, (status, reason, message) in (("Available", avail), ("Progressing", prog)):
            old_c = prev.get(kind) or {}
            same = old_c.get("status") == status and old_c.get("reason") == reason and old_c.get("message") == message
            conds.append({"type": kind, "status": status,
                          "lastUpdateTime": old_c.get("lastUpdateTime") if same else now,
                          "lastTransitionTime": old_c.get("lastTransitionTime") if old_c.get("status") == status else now,
                          "reason": reason, "message": message})
        status = _nonzero({"observedGeneration": d["metadata"].get("generation", 1),
                           "replicas": sum(st(rs, "replicas") for rs in every), "updatedReplicas": updated,
                           "readyReplicas": sum(st(rs, "readyReplicas") for rs in every),
                           "availableReplicas": available,
                           "unavailableReplicas": max(0, want - available)})
        status["conditions"] = conds
        self._status(DEPLOYMENT_USER, "apps", "deployments", d, status, "deployment-controller")

    # ------------------------------------------------------------------ replicaset
    def _replicaset(self, rs: dict, pods: list[dict]) -> None:
        m = rs["metadata"]
        if m.get("deletionTimestamp"):
            return
        active = [p for p in pods if _active(p)]
        diff = rs["spec"].get("replicas", 1) - len(active)
        failure = None
        for _ in range(max(0, diff)):
            failure = self._create_pod(rs, "ReplicaSet", "apps/v1", RS_USER, "replicaset-controller") or failure
        if diff < 0:
            rank = lambda p: (bool(p["spec"].get("nodeName")), p["status"].get("phase") == "Running", _ready(p),  # noqa: E731
                              [-ord(c) for c in p["metadata"].get("creationTimestamp", "")])
            for pod in sorted(active, key=rank)[:-diff]:
                pm = pod["metadata"]
                r = _call(self.api, RS_USER, "DELETE", self._path("", pm["namespace"], "pods", pm["name"]),
                          ua=KCM + "replicaset-controller")
                if r.status == 200:
                    self._event(RS_USER, rs, "ReplicaSet", "apps/v1", "Normal", "SuccessfulDelete",
                                f"Deleted pod: {pm['name']}", "replicaset-controller")
        active = [p for p in self.api.store.list("pods", m["namespace"]) if _controlled_by(p, rs) and _active(p)]
        ready = sum(1 for p in active if _ready(p))
        status = {"replicas": len(active)} | _nonzero({"fullyLabeledReplicas": len(active), "readyReplicas": ready,
                                                        "availableReplicas": ready})
        status["observedGeneration"] = m.get("generation", 1)
        shown = [c for c in (rs.get("status") or {}).get("conditions") or [] if c.get("type") == "ReplicaFailure"]
        if failure:
            status["conditions"] = shown if shown and shown[0].get("message") == failure else [
                {"type": "ReplicaFailure", "status": "True", "lastTransitionTime": fmt_time(self.api.now()),
                 "reason": "FailedCreate", "message": failure}]
        elif diff > 0 and shown:
            status["conditions"] = shown  # still backing off
        self._status(RS_USER, "apps", "replicasets", rs, status, "replicaset-controller")

    def _create_pod(self, owner: dict, kind: str, api_version: str, user: dict, component: str) -> str | None:
        """Create one pod from the owner's template; returns the refusal message, if any. After a
        refusal the owner's creates wait BACKOFF seconds (the controllers' rate-limited work queue)."""
        m = owner["metadata"]
        last = self._refused.get(m["uid"])
        if last and (self.api.now() - last[0]).total_seconds() < BACKOFF:
            return last[1]
        tmeta = owner["spec"]["template"].get("metadata") or {}
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": f'{m["name"]}-', "namespace": m["namespace"],
                             "labels": tmeta.get("labels") or {}, "annotations": tmeta.get("annotations") or {},
                             "ownerReferences": [_owner_ref(owner, api_version, kind)]},
                "spec": owner["spec"]["template"]["spec"]}
        r = _call(self.api, user, "POST", self._path("", m["namespace"], "pods"), body, ua=KCM + component)
        if r.status == 201:
            self._event(user, owner, kind, api_version, "Normal", "SuccessfulCreate",
                        f'Created pod: {r.body["metadata"]["name"]}', component)
            return None
        message = f"Error creating: {(r.body or {}).get('message', r.status)}"
        self._refused[m["uid"]] = (self.api.now(), message)
        self._event(user, owner, kind, api_version, "Warning", "FailedCreate", message, component)
        return message

    # ------------------------------------------------------------------ job
    def _job(self, job: dict, pods: list[dict]) -> None:
        m, spec = job["metadata"], job["spec"]
        old = job.get("status") or {}
        conds = list(old.get("conditions") or [])
        finished = any(c["type"] in ("Complete", "Failed") and c.get("status") == "True" for c in conds)
        active = [p for p in pods if _active(p)]
        if m.get("deletionTimestamp") or spec.get("suspend"):
            return
        now = fmt_time(self.api.now())
        succeeded = max(old.get("succeeded", 0), sum(1 for p in pods if p["status"].get("phase") == "Succeeded"))
        failed = max(old.get("failed", 0), sum(1 for p in pods if p["status"].get("phase") == "Failed"))
        completions, parallelism = spec.get("completions"), spec.get("parallelism", 1)
        status = dict(old)
        status.setdefault("startTime", now)

        def cond(kind, reason, message):
            return {"type": kind, "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                    "reason": reason, "message": message}
        if not finished:
            if failed > spec.get("backoffLimit", 6):
                conds += [cond("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                          cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]
                self._event(JOB_USER, job, "Job", "batch/v1", "Warning", "BackoffLimitExceeded",
                            "Job has reached the specified backoff limit", "job-controller")
                finished = True
            elif (succeeded >= completions) if completions is not None else (succeeded > 0 and not active):
                conds += [cond("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
                          cond("Complete", "CompletionsReached", "Reached expected number of succeeded pods")]
                status["completionTime"] = now
                self._event(JOB_USER, job, "Job", "batch/v1", "Normal", "Completed", "Job completed", "job-controller")
                finished = True
        if finished:
            for p in active:
                pm = p["metadata"]
                _call(self.api, JOB_USER, "DELETE", self._path("", pm["namespace"], "pods", pm["name"]),
                      ua=KCM + "job-controller")
            active = []
        else:
            want = parallelism if completions is None else min(parallelism, completions - succeeded)
            for _ in range(max(0, want - len(active))):
                self._create_pod(job, "Job", "batch/v1", JOB_USER, "job-controller")
            active = [p for p in self.api.store.list("pods", m["namespace"]) if _controlled_by(p, job) and _active(p)]
        status.update(active=len(active), ready=sum(1 for p in active if _ready(p)), succeeded=succeeded,
                      failed=failed, terminating=0, uncountedTerminatedPods={})
        status = _nonzero(status) | {"ready": status["ready"], "terminating": 0, "uncountedTerminatedPods": {}}
        if conds:
            status["conditions"] = conds
        self._status(JOB_USER, "batch", "jobs", job, status, "job-controller")

    # ------------------------------------------------------------------ garbage collector
    def _collect(self, gone: set[str]) -> None:
        # A deployment's pods go one pass after its ReplicaSets (whose uids are then gone in turn).
        for plural, group in (("replicasets", "apps"), ("pods", "")):
            for o in self.api.store.list(plural):
                refs = o["metadata"].get("ownerReferences") or []
                if refs and all(r.get("uid") in gone for r in refs) and not o["metadata"].get("deletionTimestamp"):
                    om = o["metadata"]
                    _call(self.api, GC_USER, "DELETE", self._path(group, om["namespace"], plural, om["name"]),
                          {"propagationPolicy": "Background", "preconditions": {"uid": om["uid"]}},
                          ua=KCM + "generic-garbage-collector")
