"""Zero-latency fakes under lambdalet's real code, so a figure is lambdalet's own cost.

- ECS: the real ``EcsBackend`` and a real boto3 client whose HTTP sends are
  answered in-process (botocore's ``before-send`` event) from JSON made once,
  in the shape DescribeTasks/ListTasks return it: request serialisation,
  response parsing and everything above them are lambdalet's real path.
- Kubernetes: the real ``KubeClient`` over a stand-in for the generated
  ``CoreV1Api``/``CoordinationV1Api`` that hands back pre-serialised JSON pages
  (``_preload_content=False`` bodies), paginated as the apiserver does.

Nothing here is used by tests: bench only.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from botocore.awsrequest import AWSResponse

from chalicelib.machines.ecs.identity import started_by, task_group, task_tags
from chalicelib.pod_spec import machine_spec

ACCOUNT, REGION, CLUSTER = "123456789012", "us-east-1", "lambdalet"
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_):
        yield self.body


class FakeEcs:
    """Answers ListTasks/DescribeTasks/StopTask/RunTask for a boto3 ECS client, in-process."""

    def __init__(self, tasks: list[dict]):
        self.tasks = {t["taskArn"]: t for t in tasks}
        self.calls: Counter = Counter()

    def attach(self, client) -> None:
        client.meta.events.register("before-send.ecs", self._send)

    def _send(self, request, **_):
        op = request.headers["X-Amz-Target"].decode().rsplit(".", 1)[-1] \
            if isinstance(request.headers["X-Amz-Target"], bytes) else request.headers["X-Amz-Target"].rsplit(".", 1)[-1]
        self.calls[op] += 1
        body = json.loads(request.body or b"{}")
        answer = getattr(self, "_" + op)(body)
        return AWSResponse(request.url, 200, {"x-amzn-requestid": "bench"}, _Raw(json.dumps(answer).encode()))

    def _ListTasks(self, body: dict) -> dict:
        desired = body.get("desiredStatus", "RUNNING")
        arns = [a for a, t in self.tasks.items() if t["desiredStatus"] == desired
                and (not body.get("startedBy") or t.get("startedBy") == body["startedBy"])]
        start = int(body.get("nextToken") or 0)
        size = min(int(body.get("maxResults") or 100), 100)
        page = {"taskArns": arns[start:start + size]}
        if start + size < len(arns):
            page["nextToken"] = str(start + size)
        return page

    def _DescribeTasks(self, body: dict) -> dict:
        tasks = [self.tasks[a] for a in body["tasks"] if a in self.tasks]
        if "TAGS" not in body.get("include", []):  # as ECS: tags only when asked for
            tasks = [{k: v for k, v in t.items() if k != "tags"} for t in tasks]
        return {"tasks": tasks, "failures": []}

    def _StopTask(self, body: dict) -> dict:
        task = self.tasks[body["task"]]
        task.update(desiredStatus="STOPPED", stopCode="UserInitiated", stoppedReason=body.get("reason", ""))
        return {"task": task}


def ecs_task(pod: dict, node: str, *, attempt: int = 0, ip: str = "10.0.0.7") -> dict:
    """A RUNNING Fargate task of ours for ``pod``, as DescribeTasks (include TAGS) returns it."""
    spec = machine_spec(pod, node, attempt)
    created = T0.timestamp()
    arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/{uuid.uuid4().hex}"
    task = {
        "taskArn": arn, "clusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}",
        "lastStatus": "RUNNING", "desiredStatus": "RUNNING", "launchType": "FARGATE",
        "cpu": "256", "memory": "512", "createdAt": created, "startedAt": created + 5,
        "startedBy": started_by(node),
        "containers": [{"containerArn": arn.replace(":task/", ":container/") + f"/{c.name}", "taskArn": arn,
                        "name": c.name, "image": c.image, "lastStatus": "RUNNING",
                        "runtimeId": f"{uuid.uuid4().hex}-{i}",
                        "networkInterfaces": [{"privateIpv4Address": ip}]} for i, c in enumerate(spec.containers)],
        "attachments": [{"id": str(uuid.uuid4()), "type": "ElasticNetworkInterface", "status": "ATTACHED",
                         "details": [{"name": "privateIPv4Address", "value": ip}]}],
        "tags": task_tags(spec),
    }
    if group := task_group(spec):
        task["group"] = group
    return task


def stop(task: dict, code: int = 0) -> None:
    """The task's containers exited with ``code`` (an "essential container exited" stop)."""
    stopped = task["startedAt"] + 60
    task.update(lastStatus="STOPPED", desiredStatus="STOPPED", stopCode="EssentialContainerExited",
                stoppedReason="Essential container in task exited", stoppingAt=stopped, stoppedAt=stopped,
                executionStoppedAt=stopped)
    for c in task["containers"]:
        c.update(lastStatus="STOPPED", exitCode=code)


@dataclass
class _Body:
    data: bytes


class FakeKubeApi:
    """The generated API methods KubeClient calls, over stored objects; pages of pods are
    serialised once (a zero-latency apiserver), everything else on the fly."""

    def __init__(self, pods: list[dict], node: dict | None = None, lease: dict | None = None):
        self.pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}
        self.node, self.lease = node, lease
        self.calls: Counter = Counter()
        self._pages: dict[tuple, bytes] = {}

    def repage(self) -> None:
        self._pages.clear()

    def list_pod_for_all_namespaces(self, field_selector, limit, _continue=None, **_):
        self.calls["list pods"] += 1
        start = int(_continue or 0)
        key = (field_selector, limit, start)
        if key not in self._pages:
            node = field_selector.split("=", 1)[1]
            mine = [p for p in self.pods.values() if p["spec"].get("nodeName") == node]
            page = {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                    "items": mine[start:start + limit]}
            if start + limit < len(mine):
                page["metadata"]["continue"] = str(start + limit)
            self._pages[key] = json.dumps(page).encode()
        return _Body(self._pages[key])

    def read_namespaced_pod(self, name, namespace, **_):
        self.calls["get pods"] += 1
        return _Body(json.dumps(self.pods[(namespace, name)]).encode())

    def patch_namespaced_pod_status(self, name, namespace, body, **_):
        self.calls["patch pods/status"] += 1
        pod = self.pods[(namespace, name)]
        pod["status"] = {**pod.get("status", {}), **body["status"]}
        return _Body(json.dumps(pod).encode())

    def delete_namespaced_pod(self, name, namespace, body=None, **_):
        self.calls["delete pods"] += 1
        return _Body(json.dumps(self.pods.pop((namespace, name))).encode())

    def create_namespaced_event(self, namespace, body, **_):
        self.calls["create events"] += 1
        return _Body(b"{}")

    def read_node(self, name, **_):
        self.calls["get nodes"] += 1
        return _Body(json.dumps(self.node).encode())

    def patch_node_status(self, name, body, **_):
        self.calls["patch nodes/status"] += 1
        return _Body(json.dumps(self.node).encode())

    def read_namespaced_lease(self, name, namespace, **_):
        self.calls["get leases"] += 1
        return _Body(json.dumps(self.lease).encode())

    def replace_namespaced_lease(self, name, namespace, body, **_):
        self.calls["update leases"] += 1
        self.lease = body
        return _Body(json.dumps(body).encode())

    def writes(self) -> int:
        return sum(n for k, n in self.calls.items() if not k.startswith(("list", "get")))


def lease(node: str, renewed: datetime) -> dict:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": node, "namespace": "kube-node-lease", "resourceVersion": "7"},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": 40,
                     "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}


def since(start: datetime, seconds: float) -> datetime:
    return start + timedelta(seconds=seconds)


def steady_data(n: int, node: str = "vk-bench", changed: float = 0.0):
    """A node with ``n`` running pods whose statuses already show their tasks: (pods, tasks,
    the stored Node, the Lease, the Node lambdalet registers, now); ``changed`` of the tasks stopped."""
    from chalicelib import node as vnode
    from chalicelib.machines.ecs import machine_from_task
    from chalicelib.plan import PatchStatus, plan
    from tests.world.pods import pod

    now = since(T0, 60)
    pods = [pod(f"p{i}", node=node, restart="Never") for i in range(n)]
    tasks = [ecs_task(p, node) for p in pods]
    shown = plan(node, pods, [machine_from_task(t) for t in tasks], now)
    for action in shown.of(PatchStatus):  # what lambdalet wrote on its earlier passes
        action.pod["status"] = {**action.pod["status"], **action.status}
        action.pod["metadata"]["resourceVersion"] = "101"
    node_obj = node_object(node, n, now)
    stored = {**node_obj, "metadata": {**node_obj["metadata"], "uid": "bench-node", "resourceVersion": "5"},
              "status": {**node_obj["status"], "conditions": vnode.conditions(now)}}
    for task in tasks[: int(n * changed)]:
        stop(task)
    return pods, tasks, stored, lease(node, since(now, -5)), node_obj, now


def node_object(node: str, n: int, now: datetime) -> dict:
    """The Node lambdalet registers for ``node`` (as wiring builds it)."""
    from chalicelib import node as vnode

    return vnode.node_object(node, "ecs", REGION, {"cpu": "1000", "memory": "4Ti", "pods": str(n)}, now)


def steady_world(n: int, node: str = "vk-bench", changed: float = 0.0):
    """``steady_data`` over the in-process fakes; returns (world, api, ecs) ready for ``reconcile``."""
    from chalicelib.kube.client import KubeClient, api_client
    from chalicelib.machines.ecs import EcsBackend
    from chalicelib.wiring import ecs_client
    from chalicelib.usecases.world import World

    pods, tasks, stored, lease_obj, node_obj, now = steady_data(n, node, changed)
    ecs = FakeEcs(tasks)
    import os

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    client = ecs_client(REGION)  # as wiring builds it
    ecs.attach(client)
    backend = EcsBackend(client, cluster=CLUSTER, subnets=["subnet-0bench"], security_groups=["sg-0bench"])
    api = FakeKubeApi(pods, node=stored, lease=lease_obj)
    kube = KubeClient(api_client("http://bench.invalid", "bench-token"))
    kube.core = kube.coordination = api
    world = World(kube=kube, backends={node: backend}, nodes={node: node_obj}, clock=lambda: now)
    return world, api, ecs
