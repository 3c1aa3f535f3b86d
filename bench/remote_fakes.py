"""The zero-latency fakes of ``zero_latency`` in their own process, over HTTP.

lambdalet's process then holds only what lambdalet holds: its CPU time and
peak RSS are its own (the real ``kubernetes`` client and botocore over
urllib3, as in Lambda), not the fakes' data or their JSON encoding.

- ``serve(n, changed)`` (in the fakes' process): builds ``steady_data`` and
  answers the Kubernetes paths lambdalet's reconcile calls (pods by
  fieldSelector in pages, the node, its lease, pod status patches, events)
  and ECS's JSON protocol (``X-Amz-Target``); ``GET /_bench/calls`` counts them.
- ``start(n, changed)`` (in lambdalet's process): the server as a child
  process and a World whose clients point at it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from bench.zero_latency import CLUSTER, REGION, FakeEcs, FakeKubeApi, _Body

ROUTES = [  # (method, path pattern, FakeKubeApi method, its arguments from the match)
    ("GET", r"/api/v1/pods", "list_pod_for_all_namespaces", ()),
    ("GET", r"/api/v1/namespaces/([^/]+)/pods/([^/]+)", "read_namespaced_pod", ("namespace", "name")),
    ("PATCH", r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/status", "patch_namespaced_pod_status", ("namespace", "name")),
    ("DELETE", r"/api/v1/namespaces/([^/]+)/pods/([^/]+)", "delete_namespaced_pod", ("namespace", "name")),
    ("POST", r"/api/v1/namespaces/([^/]+)/events", "create_namespaced_event", ("namespace",)),
    ("GET", r"/api/v1/nodes/([^/]+)", "read_node", ("name",)),
    ("PATCH", r"/api/v1/nodes/([^/]+)/status", "patch_node_status", ("name",)),
    ("GET", r"/apis/coordination.k8s.io/v1/namespaces/([^/]+)/leases/([^/]+)", "read_namespaced_lease",
     ("namespace", "name")),
    ("PUT", r"/apis/coordination.k8s.io/v1/namespaces/([^/]+)/leases/([^/]+)", "replace_namespaced_lease",
     ("namespace", "name")),
]


class _PagedEcs(FakeEcs):
    """DescribeTasks answers for the same ARNs serialised once (a zero-latency cloud)."""

    def __init__(self, tasks):
        super().__init__(tasks)
        self._answers: dict[tuple, bytes] = {}

    def answer(self, op: str, body: dict) -> bytes:
        self.calls[op] += 1
        key = (op, json.dumps(body, sort_keys=True))
        if op in ("StopTask", "RunTask"):
            self._answers.clear()
            return json.dumps(getattr(self, "_" + op)(body)).encode()
        if key not in self._answers:
            self._answers[key] = json.dumps(getattr(self, "_" + op)(body)).encode()
        return self._answers[key]


def serve(n: int, changed: float = 0.0, node: str = "vk-bench") -> None:
    """Serve the fakes on 127.0.0.1 (port printed on stdout) until stdin closes."""
    from bench.zero_latency import steady_data

    pods, tasks, stored, lease_obj, _, _ = steady_data(n, node, changed)
    kube, ecs = FakeKubeApi(pods, node=stored, lease=lease_obj), _PagedEcs(tasks)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs

        def log_message(self, *args):
            pass

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self):
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            if target := self.headers.get("X-Amz-Target"):
                return self._answer(200, ecs.answer(target.rsplit(".", 1)[-1], body))
            if url.path == "/_bench/calls":
                return self._answer(200, json.dumps({"kube": kube.calls, "ecs": ecs.calls}).encode())
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            for method, pattern, name, params in ROUTES:
                match = re.fullmatch(pattern, url.path)
                if match and method == self.command:
                    kwargs = dict(zip(params, match.groups()))
                    if name == "list_pod_for_all_namespaces":
                        kwargs = {"field_selector": query["fieldSelector"], "limit": int(query["limit"]),
                                  "_continue": query.get("continue")}
                    elif self.command in ("PATCH", "PUT", "POST", "DELETE"):
                        kwargs["body"] = body
                    try:
                        answer: _Body = getattr(kube, name)(**kwargs)
                    except KeyError:
                        return self._answer(404, b'{"kind":"Status","code":404,"reason":"NotFound"}')
                    return self._answer(200, answer.data)
            self._answer(404, b'{"kind":"Status","code":404,"reason":"NotFound"}')

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # until lambdalet's process closes it
    server.shutdown()


class Remote:
    """The fakes' process, and a World over it (real clients, real HTTP)."""

    def __init__(self, n: int, changed: float = 0.0, node: str = "vk-bench"):
        self.proc = subprocess.Popen([sys.executable, "-c", f"from bench.remote_fakes import serve; serve({n}, {changed})"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"
        self.n, self.node = n, node

    def world(self):
        from bench.zero_latency import node_object, since, T0
        from chalicelib.kube.client import KubeClient, api_client
        from chalicelib.machines.ecs import EcsBackend
        from chalicelib.usecases.world import World
        from chalicelib.wiring import ecs_client

        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_ENDPOINT_URL_ECS=self.url)
        backend = EcsBackend(ecs_client(REGION), cluster=CLUSTER, subnets=["subnet-0bench"],
                             security_groups=["sg-0bench"])
        now = since(T0, 60)
        kube = KubeClient(api_client(self.url, "bench-token"))
        return World(kube=kube, backends={self.node: backend}, nodes={self.node: node_object(self.node, self.n, now)},
                     clock=lambda: now)

    def calls(self) -> dict:
        import urllib.request

        with urllib.request.urlopen(self.url + "/_bench/calls") as answer:
            return json.loads(answer.read())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()
