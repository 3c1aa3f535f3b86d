"""The kubelet API's use cases: each request in, one ``Reply`` out.

``handle`` authenticates and authorizes (auth.py), routes by path as a kubelet
does, and answers every path kube-apiserver and metrics-server use:

- ``/containerLogs/{ns}/{pod}/{container}``: the pod is read from Kubernetes
  (its node must be ours), its attempt is its restartCount (``previous``: the
  one before), and the node's backend reads that machine's output. ``follow``
  keeps collecting new lines for ``follow_seconds`` (or until the container
  stops) and then ends the response cleanly; kubectl exits and can be run again.
- ``/exec``, ``/attach``, ``/portForward``, ``/run``: 400 with the cloud's native
  command for this pod (a function cannot hold the upgraded stream).
- ``/stats/summary``, ``/metrics/resource``: the running pods of the node(s) and
  what the cloud measured of them (``MachineBackend.usage``).
- ``/healthz``: ``ok``. ``/pods``: the node's pods, as a kubelet lists them.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from chalicelib import pod_status as ps
from chalicelib.kubelet_api import auth, logs, stats
from chalicelib.machines.contract import LogLine, LogsUnavailable, MachineError, MachinePhase
from chalicelib.usecases.world import World

log = logging.getLogger("lambdalet.kubelet_api")

TEXT = "text/plain; charset=utf-8"
FOLLOW_POLL_SECONDS = 2.0


@dataclass
class Reply:
    status: int
    body: str | bytes = b""
    content_type: str = TEXT

    @property
    def text(self) -> str:
        # a limitBytes cut can split a character: kept as U+FFFD rather than failing
        return self.body.decode(errors="replace") if isinstance(self.body, bytes) else self.body


@dataclass(frozen=True)
class Access:
    """Who may call, and the endpoint's own settings (from ``settings.Settings``)."""

    clients: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    front_token: Callable[[], str] | None = None  # the trusted front's token (fallback), None: no such front
    follow_seconds: float = 20.0
    # "{node}" hosts: the node a request is for, from its Host header (endpoint per node)
    host_template: str = ""


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the API Gateway stage
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    context: Mapping | None = None  # the Lambda event's requestContext


def _fail(status: int, message: str) -> Reply:
    return Reply(status, message if message.endswith("\n") else message + "\n")


def handle(world: World, access: Access, request: Request) -> Reply:
    """Authenticate, authorize, answer. Nothing is read before both pass."""
    caller = auth.authenticate(request.context, request.headers,
                               access.front_token() if access.front_token else None)
    if caller is None:
        return _fail(401, "Unauthorized: the kubelet API takes the cluster's kubelet client certificate")
    verb, subresources = auth.attributes(request.method, request.path)
    if not auth.allowed(caller, subresources, access.clients):
        return _fail(403, f"Forbidden (user={caller.user}, verb={verb}, resource=nodes, "
                          f"subresource(s)={list(subresources)})")
    parts = [urllib.parse.unquote(p) for p in request.path.strip("/").split("/")]
    head = parts[0] if parts else ""
    try:
        if head == "healthz":
            return Reply(200, "ok")
        if head == "containerLogs" and len(parts) == 4:
            return container_logs(world, access, *parts[1:], query=request.query)
        if head in CONNECT and len(parts) in (3, 4, 5):
            return connect(world, head, parts[1:], request.query)
        if request.path.rstrip("/") == "/stats/summary":
            return Reply(200, json.dumps(stats_summary(world, _nodes(world, access, request))), "application/json")
        if request.path.rstrip("/") == "/metrics/resource":
            return Reply(200, metrics_resource(world, _nodes(world, access, request)),
                         "text/plain; version=0.0.4; charset=utf-8")
        if request.path.rstrip("/") in ("/pods", "/runningPods"):
            return Reply(200, json.dumps(pod_list(world, _nodes(world, access, request))), "application/json")
    except MachineError as err:  # the cloud cannot answer now: say so, as a kubelet does for its runtime
        log.warning("kubelet API %s: %s", request.path, err)
        return _fail(503, str(err))
    except Exception as err:
        from chalicelib.kube.client import KubeError  # lazy: kubernetes is heavy, a refusal needs none of it

        if not isinstance(err, KubeError):
            raise
        # The apiserver failed us (a pod read or list): as above, not an internal error.
        log.warning("kubelet API %s: %s", request.path, err)
        return _fail(503, f"the Kubernetes API failed lambdalet now: {err}")
    return _fail(404, "404 page not found")


def _nodes(world: World, access: Access, request: Request) -> list[str]:
    """The nodes a node-level path is about: the one its Host names when each node has
    its own host (``{node}`` in LAMBDALET_KUBELET_ENDPOINT), else every node served."""
    if "{node}" in access.host_template:
        host = (request.headers.get("host") or "").split(":")[0]
        pattern = re.escape(access.host_template.split(":")[0]).replace(re.escape("{node}"), "(?P<node>[^.]+)")
        match = re.fullmatch(pattern, host)
        return [match["node"]] if match and match["node"] in world.nodes else []
    return list(world.nodes)


# ---------------------------------------------------------------------------- logs


def _our_pod(world: World, namespace: str, name: str) -> dict | None:
    pod = world.kube.get_pod(namespace, name)
    if pod is None or (pod.get("spec") or {}).get("nodeName") not in world.nodes:
        return None
    return pod


def _container_names(pod: dict) -> list[str]:
    spec = pod.get("spec") or {}
    return [c.get("name") for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]]


def container_logs(world: World, access: Access, namespace: str, name: str, container: str,
                   query: Mapping[str, str]) -> Reply:
    try:
        opts = logs.options(query, world.clock())
    except logs.BadLogQuery as err:
        return _fail(400, str(err))
    pod = _our_pod(world, namespace, name)
    if pod is None:
        return _fail(404, f'pod "{name}" does not exist')
    if container not in _container_names(pod):
        return _fail(404, f'container "{container}" not found in pod "{name}"')
    attempt = ps.restart_count(pod) - (1 if opts.previous else 0)
    if attempt < 0:
        return _fail(400, f'previous terminated container "{container}" in pod "{name}" not found')
    backend = world.backend_for(pod["spec"]["nodeName"])
    machine = backend.find(pod["spec"]["nodeName"], pod["metadata"]["uid"], attempt)
    if machine is None:
        if opts.previous:
            return _fail(400, f'previous terminated container "{container}" in pod "{name}" not found '
                              f"(the cloud no longer reports attempt {attempt})")
        waiting = _waiting_reason(pod, container)
        return _fail(400, f'container "{container}" in pod "{name}" is waiting to start: {waiting}')
    try:
        lines = backend.read_logs(machine, container, since=opts.since, tail=opts.tail_lines)
    except LogsUnavailable as err:
        return _fail(400, f'no output of container "{container}" in pod "{name}": {err}')
    if opts.follow and machine.phase in (MachinePhase.PENDING, MachinePhase.RUNNING):
        lines = _follow(world, access, backend, machine, container, lines, opts)
    return Reply(200, logs.body(lines, opts))


def _waiting_reason(pod: dict, container: str) -> str:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            return ((status.get("state") or {}).get("waiting") or {}).get("reason") or "ContainerCreating"
    return "ContainerCreating"


def _follow(world: World, access: Access, backend, machine, container: str, lines: list[LogLine],
            opts: logs.LogOptions) -> list[LogLine]:
    """Collect what ``container`` writes for ``access.follow_seconds`` (or until its
    machine stops): what one response can carry. Lines at the boundary time are
    read twice and kept once."""
    waited = 0.0
    collected = list(lines)
    while waited < access.follow_seconds:
        world.sleep(FOLLOW_POLL_SECONDS)
        waited += FOLLOW_POLL_SECONDS
        since = collected[-1].time if collected else opts.since
        fresh = backend.read_logs(machine, container, since=since)
        seen = {(line.time, line.text) for line in collected if since is None or line.time >= since}
        collected += [line for line in fresh if (line.time, line.text) not in seen]
        now = backend.find(machine.node, machine.pod.uid, machine.attempt)
        if now is None or now.phase in (MachinePhase.STOPPING, MachinePhase.STOPPED):
            collected += [line for line in backend.read_logs(machine, container, since=collected[-1].time
                                                               if collected else opts.since)
                          if (line.time, line.text) not in {(x.time, x.text) for x in collected}]
            break
    return collected


# ---------------------------------------------------------------------------- exec, attach, portForward, run

CONNECT = {"exec": "exec", "attach": "attach", "portForward": "portforward", "run": "run"}


def connect(world: World, head: str, parts: list[str], query: Mapping[str, str]) -> Reply:
    """What kubectl exec/attach/port-forward (and the apiserver's run) reach: 400 with
    the command that does the job on this pod's cloud (kubectl prints the body after
    ``unable to upgrade connection:``)."""
    action = CONNECT[head]
    namespace, name = parts[0], parts[1]
    # /exec/{ns}/{pod}/{container} or /exec/{ns}/{pod}/{uid}/{container}; /portForward/{ns}/{pod}[/{uid}]
    container = parts[-1] if action != "portforward" and len(parts) >= 3 else None
    pod = _our_pod(world, namespace, name)
    if pod is None:
        return _fail(404, f'pod "{name}" does not exist')
    names = _container_names(pod)
    if action != "portforward" and container not in names:
        return _fail(404, f'container "{container}" not found in pod "{name}"')
    backend = world.backend_for(pod["spec"]["nodeName"])
    machine = backend.find(pod["spec"]["nodeName"], pod["metadata"]["uid"], ps.restart_count(pod))
    if machine is None or machine.phase != MachinePhase.RUNNING:
        return _fail(400, f'pod "{name}" has no running machine: {action} needs a running container')
    command = tuple(query.get("command", "").split("\x00")) if "command" in query else ()
    ports = tuple(int(p) for p in re.split(r"[ ,]+", query.get("port", "")) if p.isdigit())
    if action == "portforward" and not ports:
        ports = tuple(p.get("containerPort") for c in pod["spec"]["containers"] for p in c.get("ports") or []
                      if p.get("containerPort"))
    hint = backend.connect_command(machine, container or names[0], action, command, ports)
    return _fail(400, hint)


# ---------------------------------------------------------------------------- stats, pods


def _running(world: World, nodes: list[str]) -> list[tuple[str, dict, object]]:
    """(node, pod, machine) of every running pod of ``nodes``."""
    out = []
    for node in nodes:
        backend = world.backend_for(node)
        machines = {(m.pod.uid, m.attempt): m for m in backend.list(node) if m.phase == MachinePhase.RUNNING}
        for pod in world.kube.list_node_pods(node):
            machine = machines.get((pod["metadata"]["uid"], ps.restart_count(pod)))
            if machine is not None:
                out.append((node, pod, machine))
    return out


def _usage(world: World, nodes: list[str]) -> list[stats.PodUsage]:
    running = _running(world, nodes)
    measured: dict[str, list] = {}
    for node in nodes:
        mine = [m for n, _, m in running if n == node]
        if mine:
            measured.update(world.backend_for(node).usage(mine, world.clock()))
    return [stats.PodUsage(namespace=pod["metadata"]["namespace"], name=pod["metadata"]["name"],
                           uid=pod["metadata"]["uid"], started_at=machine.started_at,
                           containers=tuple(measured.get(machine.id, ())))
            for _, pod, machine in running]


def stats_summary(world: World, nodes: list[str]) -> dict:
    now: datetime = world.clock()
    usage = _usage(world, nodes)
    started = min((p.started_at for p in usage if p.started_at), default=now)
    return stats.summary(",".join(nodes), started, usage, now)


def metrics_resource(world: World, nodes: list[str]) -> str:
    return stats.resource_metrics(_usage(world, nodes), world.clock())


def pod_list(world: World, nodes: list[str]) -> dict:
    return {"kind": "PodList", "apiVersion": "v1", "metadata": {},
            "items": [pod for node in nodes for pod in world.kube.list_node_pods(node)]}
