"""What kube-apiserver does with a node's kubelet: the pod subresources it proxies
(``pods/log``, ``pods/exec``, ``pods/attach``, ``pods/portforward``) and, standing
in for metrics-server, ``metrics.k8s.io/v1beta1`` PodMetrics from the nodes'
``/metrics/resource``.

The connection is the apiserver's: HTTPS to the node's address picked by
``--kubelet-preferred-address-types`` (default Hostname, InternalDNS, InternalIP,
ExternalDNS, ExternalIP) at ``status.daemonEndpoints.kubeletEndpoint.Port``,
presenting the kubelet client certificate (``--kubelet-client-certificate``);
the kubelet's serving certificate is checked only when a CA is given
(``--kubelet-certificate-authority``; unset, the apiserver does not verify it).

- logs: ``GET /containerLogs/{ns}/{pod}/{container}`` with the PodLogOptions
  query (follow, previous, timestamps, tailLines, sinceSeconds, sinceTime,
  limitBytes); a 2xx body is streamed to the client as is; otherwise the
  kubelet's status and text become a Status (apiserver
  ``registry/generic/rest/streamer.go``, ``GenericHttpResponseChecker``).
- exec/attach/portforward: the upgrade request goes to the kubelet as SPDY
  (``POST /exec/{ns}/{pod}/{container}?command=..&error=1&output=1``, seen on a
  real 1.36 apiserver, which also translates kubectl's WebSocket to SPDY); a
  kubelet that does not upgrade gets its body relayed as
  ``Internal error occurred: unable to upgrade connection: <body>``.
- metrics: like metrics-server, scrape each node's ``/metrics/resource`` (here
  on demand or with ``scrape()``), keep the latest two samples per container
  and serve the CPU rate between them (a container's first sample is compared
  with its start time, as metrics-server does for new containers) and the
  latest working set.
"""
from __future__ import annotations

import http.client
import json
import re
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field

from . import errors as E

PREFERRED_ADDRESS_TYPES = ("Hostname", "InternalDNS", "InternalIP", "ExternalDNS", "ExternalIP")
LOG_PARAMS = ("follow", "previous", "timestamps", "tailLines", "sinceSeconds", "sinceTime", "limitBytes")
STREAM_SUBRESOURCES = {"exec": "exec", "attach": "attach", "portforward": "portForward"}
METRICS_GROUP, METRICS_VERSION = "metrics.k8s.io", "v1beta1"
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            500: "InternalError", 503: "ServiceUnavailable"}


@dataclass
class KubeletClient:
    """The apiserver's kubelet client: certificate, preference, optional server CA."""

    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    preferred: tuple[str, ...] = PREFERRED_ADDRESS_TYPES
    timeout: float = 60.0

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca) if self.ca else ssl._create_unverified_context()  # noqa: SLF001
        if not self.ca:
            ctx.check_hostname = False
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def location(self, node: dict) -> tuple[str, int]:
        status = node.get("status") or {}
        addresses = status.get("addresses") or []
        port = int(((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 0)
        for kind in self.preferred:
            for address in addresses:
                if address.get("type") == kind and address.get("address"):
                    return address["address"], port
        raise E.ApiError(500, "InternalError", f"Internal error occurred: no preferred addresses found; "
                                               f"known addresses: {addresses}", {})

    def request(self, node: dict, method: str, path: str, headers: dict | None = None) -> http.client.HTTPResponse:
        host, port = self.location(node)
        if not port:
            raise E.ApiError(500, "InternalError",
                             f'Internal error occurred: dial tcp: address {host}:0: no kubelet port', {})
        conn = http.client.HTTPSConnection(host, port, context=self.context(), timeout=self.timeout)
        try:
            conn.request(method, path, headers=headers or {})
            return conn.getresponse()
        except (OSError, ssl.SSLError) as err:
            conn.close()
            raise E.ApiError(500, "InternalError", f'Internal error occurred: error sending request: '
                                                   f'{method} "https://{host}:{port}{path}": {err}', {}) from None


@dataclass
class _Sample:
    at: float  # seconds
    cpu: float  # core-seconds
    memory: int
    start: float | None


@dataclass
class MetricsServer:
    """metrics-server's part: samples per (namespace, pod, container), latest two."""

    client: KubeletClient
    samples: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def scrape(self, nodes: list[dict]) -> None:
        for node in nodes:
            try:
                resp = self.client.request(node, "GET", "/metrics/resource")
                text = resp.read().decode()
            except E.ApiError:
                continue
            if resp.status != 200:
                continue
            self._ingest(text)

    def _ingest(self, text: str) -> None:
        parsed: dict[tuple, dict] = {}
        for line in text.splitlines():
            m = re.match(r'^(\w+)\{([^}]*)\} (\S+)(?: (\d+))?$', line)
            if not m:
                continue
            name, labels, value, ts = m.groups()
            lab = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            if "container" not in lab:
                continue
            key = (lab.get("namespace"), lab.get("pod"), lab["container"])
            entry = parsed.setdefault(key, {})
            entry[name] = float(value)
            if ts and name == "container_cpu_usage_seconds_total":
                entry["at"] = int(ts) / 1000
        with self.lock:
            for key, entry in parsed.items():
                if "container_cpu_usage_seconds_total" not in entry or "at" not in entry:
                    continue
                sample = _Sample(entry["at"], entry["container_cpu_usage_seconds_total"],
                                 int(entry.get("container_memory_working_set_bytes", 0)),
                                 entry.get("container_start_time_seconds"))
                history = self.samples.setdefault(key, [])
                if not history or history[-1].at != sample.at:
                    history.append(sample)
                    del history[:-2]

    def usage(self, namespace: str, pod: str) -> tuple[float, list[dict]] | None:
        """(timestamp, containers' usage) for a pod, or None when no rate can be given yet."""
        out, at = [], 0.0
        with self.lock:
            for (ns, name, container), history in sorted(self.samples.items()):
                if ns != namespace or name != pod:
                    continue
                last = history[-1]
                if len(history) >= 2:
                    first = history[-2]
                elif last.start is not None and last.at > last.start:
                    first = _Sample(last.start, 0.0, 0, None)
                else:
                    continue
                rate = max(0.0, (last.cpu - first.cpu) / (last.at - first.at))
                out.append({"name": container, "usage": {"cpu": f"{int(rate * 1e9)}n",
                                                         "memory": f"{last.memory // 1024}Ki"}})
                at = max(at, last.at)
        return (at, out) if out else None


class KubeletProxy:
    """Hooked into Api._route for pods/{log,exec,attach,portforward} and metrics.k8s.io."""

    def __init__(self, api):
        self.api = api
        self.client = KubeletClient()
        # None: no metrics-server in this cluster (no metrics.k8s.io group, as on the recorded 1.36
        # cluster); a MetricsServer: its group is served and listed in discovery.
        self.metrics: MetricsServer | None = None

    # ------------------------------------------------------------------ routing
    def route(self, parts: list[str], ctx):
        """A handler for ``parts`` (URL path segments) when they are ours, else None."""
        from .resources import find

        if self.metrics is not None and parts == ["apis"]:
            return lambda: self._with_metrics_group(parts, ctx)
        if self.metrics is not None and len(parts) >= 2 and parts[0] == "apis" and parts[1] == METRICS_GROUP:
            return self._metrics_route(parts[2:], ctx)
        if (len(parts) == 7 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods"
                and parts[6] in ("log", *STREAM_SUBRESOURCES)):
            ctx.rt, ctx.namespace, ctx.name, ctx.subresource = find("", "v1", "pods"), parts[3], parts[5], parts[6]
            if parts[6] == "log":
                ctx.verb = "get"
                return lambda: self.log(ctx)
            ctx.verb = "create" if ctx.req.method == "POST" else "get"
            return lambda: self.stream(ctx)
        return None

    def _pod_and_node(self, ctx) -> tuple[dict, dict]:
        pod = self.api.store.get("pods", ctx.namespace, ctx.name)
        if pod is None:
            raise E.not_found("pods", ctx.name)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise E.bad_request(f"pod {ctx.name} does not have a host assigned")
        node = self.api.store.get("nodes", "", node_name)
        if node is None:
            raise E.not_found("nodes", node_name)
        return pod, node

    @staticmethod
    def _container(pod: dict, query: dict) -> str:
        names = [c["name"] for c in pod["spec"].get("containers") or []]
        container = query.get("container") or ""
        if not container:
            if len(names) == 1:
                return names[0]
            raise E.bad_request(f"a container name must be specified for pod {pod['metadata']['name']}, "
                                f"choose one of: [{' '.join(names)}]")
        if container not in names + [c["name"] for c in pod["spec"].get("initContainers") or []]:
            raise E.bad_request(f"container {container} is not valid for pod {pod['metadata']['name']}")
        return container

    # ------------------------------------------------------------------ pods/log
    def log(self, ctx):
        from .api import Response

        pod, node = self._pod_and_node(ctx)
        container = self._container(pod, ctx.req.query)
        query = {k: ctx.req.query[k] for k in LOG_PARAMS if ctx.req.query.get(k) not in (None, "")}
        path = "/containerLogs/" + "/".join(urllib.parse.quote(p, safe="") for p in (ctx.namespace, ctx.name, container))
        resp = self.client.request(node, "GET", path + ("?" + urllib.parse.urlencode(query) if query else ""))
        if not 200 <= resp.status < 300:
            text = resp.read(1024).decode(errors="replace").strip()  # the apiserver reads at most 1 KiB of it
            raise E.ApiError(resp.status, _REASONS.get(resp.status, "InternalError"),
                             text or "the server rejected our request for an unknown reason", {})

        def chunks():
            try:
                while True:
                    chunk = resp.read1(65536)
                    if not chunk:
                        return
                    yield chunk
            finally:
                resp.close()

        return Response(200, stream=chunks(), content_type="text/plain")

    # ------------------------------------------------------------------ exec, attach, portforward
    def stream(self, ctx):
        pod, node = self._pod_and_node(ctx)
        q = ctx.req.query
        kind = STREAM_SUBRESOURCES[ctx.subresource]
        parts = [ctx.namespace, ctx.name]
        query: list[tuple[str, str]] = []
        if kind != "portForward":
            parts.append(self._container(pod, q))
            for command in ctx.req.query_list("command"):
                if command:
                    query.append(("command", command))
            for flag, param in (("stdin", "input"), ("stdout", "output"), ("stderr", "error"), ("tty", "tty")):
                if q.get(flag, "").lower() in ("true", "1"):
                    query.append((param, "1"))
        elif q.get("ports"):
            query.append(("port", q["ports"]))
        path = f"/{kind}/" + "/".join(urllib.parse.quote(p, safe="") for p in parts)
        resp = self.client.request(node, "POST", path + ("?" + urllib.parse.urlencode(query) if query else ""),
                                   headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                                            "X-Stream-Protocol-Version": "v4.channel.k8s.io"})
        body = resp.read(4096).decode(errors="replace").strip()
        resp.close()
        if resp.status == 101:  # a real kubelet would now speak SPDY; nothing here does
            raise E.ApiError(500, "InternalError", "Internal error occurred: the kubelet upgraded; "
                                                   "this simulator relays no streams", {})
        raise E.ApiError(500, "InternalError",
                         f"Internal error occurred: unable to upgrade connection: {body}", {})

    # ------------------------------------------------------------------ metrics.k8s.io
    def _with_metrics_group(self, parts: list[str], ctx):
        """Discovery of /apis, with metrics-server's APIService group added as the aggregator adds it."""
        from . import discovery

        resp = discovery.non_resource(parts, ctx.req.headers.get("accept", ""), ctx.req.query)
        body = dict(resp.body)
        if "items" in body:
            body["items"] = [*body["items"], metrics_aggregated()]
        else:
            body["groups"] = [*body["groups"], metrics_group()]
        resp.body = body
        return resp

    def _metrics_route(self, rest: list[str], ctx):
        from .api import Response

        if not rest:
            return lambda: Response(200, {"kind": "APIGroup", "apiVersion": "v1", **metrics_group()})
        if rest == [METRICS_VERSION]:
            return lambda: Response(200, {"kind": "APIResourceList", "apiVersion": "v1",
                                          "groupVersion": f"{METRICS_GROUP}/{METRICS_VERSION}",
                                          "resources": METRICS_RESOURCES})
        if rest[0] != METRICS_VERSION:
            raise E.ApiError(404, "NotFound", "the server could not find the requested resource", {})
        rest = rest[1:]
        namespace = ""
        if len(rest) >= 2 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or rest[0] != "pods" or len(rest) > 2:
            raise E.ApiError(404, "NotFound", "the server could not find the requested resource", {})
        name = rest[1] if len(rest) == 2 else ""

        def serve():
            try:
                return self.pod_metrics(namespace, name, ctx.req.query)
            except E.ApiError as err:
                return Response(err.code, err.body())
        return serve

    def pod_metrics(self, namespace: str, name: str, query: dict):
        from .api import Response
        from .selectors import parse_label_selector
        from .util import fmt_time

        nodes = self.api.store.list("nodes")
        self.metrics.scrape(nodes)
        selector = parse_label_selector(query.get("labelSelector", "")) if query.get("labelSelector") else None
        items = []
        for pod in self.api.store.list("pods", namespace or None):
            meta = pod["metadata"]
            if name and meta["name"] != name:
                continue
            if selector is not None and not selector(meta.get("labels") or {}):
                continue
            found = self.metrics.usage(meta["namespace"], meta["name"])
            if found is None:
                continue
            at, containers = found
            from datetime import datetime, timezone

            items.append({"metadata": {"name": meta["name"], "namespace": meta["namespace"],
                                       "labels": meta.get("labels") or {},
                                       "creationTimestamp": fmt_time(self.api.clock())},
                          "timestamp": fmt_time(datetime.fromtimestamp(at, tz=timezone.utc)),
                          "window": "1m0s", "containers": containers})
        if name:
            if not items:
                raise E.ApiError(404, "NotFound", f'podmetrics.metrics.k8s.io "{name}" not found', {})
            return Response(200, {"kind": "PodMetrics", "apiVersion": f"{METRICS_GROUP}/{METRICS_VERSION}", **items[0]})
        return Response(200, {"kind": "PodMetricsList", "apiVersion": f"{METRICS_GROUP}/{METRICS_VERSION}",
                              "metadata": {}, "items": items})


METRICS_RESOURCES = [
    {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics", "verbs": ["get", "list"]},
    {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]},
]


def metrics_group() -> dict:
    gv = {"groupVersion": f"{METRICS_GROUP}/{METRICS_VERSION}", "version": METRICS_VERSION}
    return {"name": METRICS_GROUP, "versions": [gv], "preferredVersion": gv}


def metrics_aggregated() -> dict:
    """The metrics.k8s.io entry of aggregated discovery (apidiscovery.k8s.io/v2)."""
    return {"metadata": {"name": METRICS_GROUP}, "versions": [{"version": METRICS_VERSION, "freshness": "Current",
            "resources": [{"resource": r["name"], "responseKind": {"group": "", "version": "", "kind": r["kind"]},
                           "scope": "Namespaced" if r["namespaced"] else "Cluster", "singularResource": r["name"][:-1],
                           "verbs": r["verbs"]} for r in METRICS_RESOURCES]}]}
