"""kube_sim: a Kubernetes API server simulator with real semantics, for tests.

    from tests.world.kube_sim import KubeSim
    with KubeSim() as sim:                       # serves http://127.0.0.1:<port>
    with KubeSim(pki=Authority(dir)) as sim:     # https; client certificates; CSRs signed (tests/world/certs.py)
        api = sim.api_client()                   # official kubernetes client
        sim.scheduler.run_once()                 # bind pending pods
        backend = sim.add_audit_webhook(sink)    # audit batches like kube-apiserver

Layout: api.py (verbs, routing, authn/z), resources.py (resource types and their
strategies), pods.py (pod defaulting/validation/printing), store.py (objects,
resourceVersions, watch log), patch.py, selectors.py, schema.py (real schemas),
discovery.py, table.py, audit.py, admission.py (webhook configurations + calling them),
authn.py (bearer tokens, x509 client certificates), certificates.py (CSRs, the kubelet
client signer), scheduler.py, lifecycle.py (node lifecycle), workloads.py (deployment, replicaset, job
controllers, garbage collector), protobuf.py (kubectl's protobuf bodies), openapi.py,
server.py (HTTP). All time comes from the injected clock.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from .api import ADMIN, Api, Request, Response
from .audit import AuditBackend
from .certificates import CsrSigner
from .lifecycle import NodeLifecycle
from .scheduler import Scheduler
from .server import HttpServer
from .util import fmt_time, new_uid, real_clock
from .workloads import Workloads

__all__ = ["KubeSim", "AuditBackend", "Request", "Response"]


class KubeSim:
    def __init__(self, clock: Callable | None = None, seed: int | None = None, pki=None):
        """``pki``: a cluster CA (tests/world/certs.py's Authority). With one the simulator serves
        https with a serving certificate it issued, authenticates the client certificates it
        issued (authn.py) and signs kubelet client CSRs with it (certificates.py), as kubeadm's
        single cluster CA does for all three. Without: plain http, bearer tokens only."""
        self.clock = clock or real_clock
        self.api = Api(self.clock, seed)
        self.pki = pki
        self.csr_signer = CsrSigner(self.api, pki) if pki is not None else None
        if pki is not None:
            self.api.client_ca = pki.cert
        self.node_lifecycle = NodeLifecycle(self.api)
        self.scheduler = Scheduler(self.api, self.node_lifecycle)
        self.workloads = Workloads(self.api)
        self.scheduler.controllers.append(self.workloads)
        self._server: HttpServer | None = None
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self._bootstrap_namespace(ns)

    def _bootstrap_namespace(self, name: str) -> None:
        self.api.store.put("namespaces", {
            "kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": name, "uid": new_uid(), "creationTimestamp": fmt_time(self.clock()),
                         "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}, "ADDED")

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> "KubeSim":
        if self._server is None:
            self._server = HttpServer(self.api, tls=self._tls())
            self._server.start()
            if self.csr_signer is not None:
                self.csr_signer.start()
        return self

    def _tls(self):
        if self.pki is None:
            return None
        import ssl

        serving = self.pki.server("localhost")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(serving.cert), str(serving.key))
        context.verify_mode = ssl.CERT_OPTIONAL  # ask for a client certificate; tokens still work without
        context.load_verify_locations(str(self.pki.pair.cert))
        return context

    def stop(self) -> None:
        self.api.stopping.set()
        self.scheduler.stop()
        for b in list(self.api.audit.backends):
            b.close()
        with self.api.store.changed:
            self.api.store.changed.notify_all()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> "KubeSim":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("KubeSim not started")
        return f"{'https' if self.pki else 'http'}://127.0.0.1:{self._server.port}"

    @property
    def ca_pem(self) -> str:
        """The cluster CA a client trusts (https only)."""
        return self.pki.pair.pem if self.pki else ""

    # ---------------------------------------------------------------- clients
    def add_token(self, token: str, username: str, groups: list[str] | tuple = (),
                  rules: list[dict] | None = None) -> None:
        """Register a bearer token. `rules` (optional) restrict it RBAC-style:
        [{"verbs": [...], "resources": ["pods", "pods/status"], "apiGroups": [""], "namespaces": [...]}];
        None means allowed everything."""
        self.api.tokens[token] = {"username": username, "uid": username,
                                  "groups": list(groups) + ["system:authenticated"], "rules": rules}

    def enable_eks(self, authenticator) -> None:
        """Accept ``k8s-aws-v1.`` bearer tokens as EKS does (eks_auth.EksAuthenticator: STS and
        the access entries decide the user and its groups)."""
        self.api.eks = authenticator

    def bind_group(self, group: str, rules: list[dict]) -> None:
        """A (Cluster)RoleBinding with subject ``kind: Group, name: group``: its members get ``rules``."""
        self.api.group_rules[group] = list(rules)

    def write_kubeconfig(self, path, token: str = "admin-token") -> str:
        cluster = {"server": self.url}
        if self.pki:
            import base64
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_pem.encode()).decode()
        cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "kube-sim", "preferences": {},
               "clusters": [{"name": "kube-sim", "cluster": cluster}],
               "users": [{"name": "kube-sim", "user": {"token": token}}],
               "contexts": [{"name": "kube-sim", "context": {"cluster": "kube-sim", "user": "kube-sim",
                                                             "namespace": "default"}}]}
        Path(path).write_text(json.dumps(cfg, indent=2))
        return str(path)

    def api_client(self, token: str = "admin-token"):
        import kubernetes
        conf = kubernetes.client.Configuration()
        conf.host = self.url
        conf.api_key = {"BearerToken": token}
        conf.api_key_prefix = {"BearerToken": "Bearer"}
        if self.pki:
            conf.ssl_ca_cert = str(self.pki.pair.cert)
        return kubernetes.client.ApiClient(conf)

    def request(self, method: str, path: str, body=None, *, query: dict | None = None,
                content_type: str = "application/json", user: dict | None = None,
                headers: dict | None = None) -> Response:
        """Call the API in-process (no HTTP), as `user` (default admin)."""
        h = {"content-type": content_type, "accept": "application/json"}
        h.update({k.lower(): v for k, v in (headers or {}).items()})
        raw = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
        return self.api.handle(Request(method, path, query or {}, h, raw, user=user or dict(ADMIN)))

    # ---------------------------------------------------------------- controllers & audit
    def start_scheduler(self, interval: float = 0.2) -> None:
        self.scheduler.start(interval)

    def add_audit_webhook(self, sink, *, batch_max_size: int = 400, batch_max_wait: float = 30.0,
                          buffer_size: int = 10000, retries: int = 3, initial_backoff: float = 0.05,
                          drop: float | bool = 0.0, duplicate: float | bool = 0.0, reorder: bool = False,
                          seed: int = 0, kubeconfig: dict | None = None) -> AuditBackend:
        b = AuditBackend(sink, self.clock, batch_max_size=batch_max_size, batch_max_wait=batch_max_wait,
                         buffer_size=buffer_size, retries=retries, initial_backoff=initial_backoff, drop=drop,
                         duplicate=duplicate, reorder=reorder, seed=seed, kubeconfig=kubeconfig)
        self.api.audit.backends.append(b)
        return b

    # ---------------------------------------------------------------- admission webhooks (admission.py)
    def add_webhook_configuration(self, config: dict) -> dict:
        """Create a Mutating/ValidatingWebhookConfiguration through the API (as admin); returns it as stored."""
        plural = config["kind"].lower() + "s"
        r = self.request("POST", f"/apis/admissionregistration.k8s.io/v1/{plural}", config)
        if r.status != 201:
            raise ValueError(f"{config['kind']} {config['metadata'].get('name')}: {r.status} {r.body.get('message')}")
        return r.body

    def connect_webhook(self, url_prefix: str, sink) -> None:
        """Deliver admission calls to URLs starting with ``url_prefix`` to ``sink(url, body, timeout) -> (status, body)``
        instead of over HTTP."""
        self.api.admission.sinks[url_prefix] = sink

    @property
    def admission_calls(self) -> list[dict]:
        """Every admission webhook call made: {"webhook", "url", "request", "response" | "error", "ignored"}."""
        return self.api.admission.calls

    @property
    def audit_policy(self) -> list[dict]:
        """Mutable list of rules {"level", "resources": ["pods", "pods/binding"], "apiGroups": [""]}."""
        return self.api.audit.policy
