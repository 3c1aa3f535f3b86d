"""Bursts (issue 12, goals 2 and 6): creates at volume inside one invocation's
budget against AWS's published rates; simultaneous bindings through the HTTP path.

The rates (docs.aws.amazon.com/AmazonECS/latest/developerguide/throttling.html,
"AWS Fargate throttling quotas"): Fargate task launches are a token bucket of
100, refilled at 20 a second, per account and Region; RunTask on Fargate is 20
calls a second, burst and sustained. A throttled call answers
``ThrottlingException`` (Request throttling for the Amazon ECS API).
So 1,000 tasks take at least (1000 - 100) / 20 = 45 s of launches, whatever
the client does: they fit a 60 s invocation only with little to spare.

RunTask's ``count`` (up to 10 tasks a call) would cut the calls, not the
launches (each task takes a launch token), and it is not usable here: the
``overrides``, ``tags``, ``group``, ``startedBy`` and ``clientToken`` of one
call apply to every task it starts (RunTask API reference), while each of
lambdalet's tasks carries its own pod's identity (group, tags) and its own
idempotency token (pod UID + attempt). The launch bucket is the binding limit
anyway: 20 calls/s x 1 task = the 20 launches/s the bucket refills.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter

from botocore.awsrequest import AWSResponse

from bench.zero_latency import ACCOUNT, CLUSTER, REGION, FakeEcs, FakeKubeApi, T0, _Raw, ecs_task, lease, since

RUN_TASK = (20, 20)  # calls: burst, per second
LAUNCHES = (100, 20)  # Fargate task launches: burst, per second


class Bucket:
    """A token bucket on the wall clock (the SDK's back-off waits real time)."""

    def __init__(self, size: float, rate: float):
        self.size, self.rate, self.tokens, self.at = size, rate, size, time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens, self.at = min(self.size, self.tokens + (now - self.at) * self.rate), now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


class SlowEcs(FakeEcs):
    """The in-process ECS of bench/zero_latency with a round trip per call (uniform in
    ``latency`` seconds), RunTask (idempotent on clientToken, as ECS is) and the
    published RunTask and Fargate launch buckets, answered with ThrottlingException."""

    def __init__(self, tasks: list[dict], pods: dict[str, dict], latency=(0.1, 0.2), seed: int = 12):
        super().__init__(tasks)
        self.pods, self.latency, self.rng = pods, latency, random.Random(seed)
        self.run_task, self.launches = Bucket(*RUN_TASK), Bucket(*LAUNCHES)
        self.tokens: dict[str, str] = {}  # clientToken -> task ARN
        self.lock = threading.Lock()

    def _send(self, request, **kwargs):
        with self.lock:
            wait = self.rng.uniform(*self.latency)
        time.sleep(wait)
        target = request.headers["X-Amz-Target"]
        op = (target.decode() if isinstance(target, bytes) else target).rsplit(".", 1)[-1]
        if op == "RunTask" and not (self.run_task.take() and self.launches.take()):
            with self.lock:
                self.calls["RunTask throttled"] += 1
            body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
            return AWSResponse(request.url, 400, {"x-amzn-requestid": "bench"}, _Raw(body))
        with self.lock:
            return super()._send(request, **kwargs)

    def _DescribeTaskDefinition(self, body: dict) -> dict:
        family = body["taskDefinition"]
        return {"taskDefinition": {"taskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:1",
                                   "family": family, "status": "ACTIVE"}}

    def _RunTask(self, body: dict) -> dict:
        token = body["clientToken"]
        if token in self.tokens:
            return {"tasks": [self.tasks[self.tokens[token]]], "failures": []}
        uid = next(t["value"] for t in body["tags"] if t["key"] == "lambdalet.io/pod-uid")
        node = next(t["value"] for t in body["tags"] if t["key"] == "lambdalet.io/node")
        task = ecs_task(self.pods[uid], node)
        task.update(lastStatus="PROVISIONING", tags=body["tags"], group=body.get("group"),
                    taskArn=task["taskArn"].rsplit("/", 1)[0] + "/" + uuid.uuid4().hex)
        self.tasks[task["taskArn"]], self.tokens[token] = task, task["taskArn"]
        self.calls["tasks started"] += 1
        return {"tasks": [task], "failures": []}


class SlowKube:
    """FakeKubeApi behind a round trip per call (an apiserver in the same Region)."""

    def __init__(self, api: FakeKubeApi, latency: float = 0.01):
        self._api, self._latency = api, latency

    def __getattr__(self, name):
        target = getattr(self._api, name)
        if not callable(target):
            return target

        def call(*args, **kwargs):
            time.sleep(self._latency)
            return target(*args, **kwargs)
        return call


def bound_world(n: int, node: str = "vk-bench", latency=(0.1, 0.2)):
    """``n`` pods just bound to ``node``, no task yet, over the slow fakes: (world, api, ecs)."""
    import os

    from chalicelib import node as vnode
    from chalicelib.kube.client import KubeClient, api_client
    from chalicelib.machines.ecs import EcsBackend
    from chalicelib.usecases.world import World
    from chalicelib.settings import Settings
    from chalicelib.wiring import ecs_client, run_task_pace
    from tests.world.pods import pod

    now = since(T0, 60)
    pods = [pod(f"b{i}", node=node, restart="Never") for i in range(n)]
    ecs = SlowEcs([], {p["metadata"]["uid"]: p for p in pods}, latency=latency)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    client = ecs_client(REGION)  # as wiring builds it: adaptive retries, two of them
    ecs.attach(client)
    # As wiring builds it: RunTask paced at the published rate (LAMBDALET_ECS_RUN_TASK_RATE's default).
    backend = EcsBackend(client, cluster=CLUSTER, subnets=["subnet-0bench"], security_groups=["sg-0bench"],
                         run_task_pace=run_task_pace(Settings.model_fields["ecs_run_task_rate"].default))
    node_obj = vnode.node_object(node, "ecs", REGION, {"cpu": "1000", "memory": "4Ti", "pods": str(n)}, now)
    stored = {**node_obj, "metadata": {**node_obj["metadata"], "uid": "bench-node", "resourceVersion": "5"},
              "status": {**node_obj["status"], "conditions": vnode.conditions(now)}}
    api = FakeKubeApi(pods, node=stored, lease=lease(node, since(now, -5)))
    kube = KubeClient(api_client("http://bench.invalid", "bench-token"))
    kube.core = kube.coordination = SlowKube(api)
    world = World(kube=kube, backends={node: backend}, nodes={node: node_obj}, clock=lambda: now)
    return world, api, ecs


def creates_within_budget(pods: int = 1000, budget: float = 60.0, latency=(0.1, 0.2)) -> None:
    """Goal 2: ``pods`` bound at once; the scheduled reconcile with a 60 s budget creates
    their tasks against RunTask's latency and the published rates; passes until all run."""
    from chalicelib.usecases.reconcile import reconcile
    from chalicelib.usecases.world import RESERVE

    world, api, ecs = bound_world(pods, latency=latency)
    lo, hi = (int(x * 1000) for x in latency)
    passes, total = 0, Counter()
    while ecs.calls["tasks started"] < pods and passes < 4:
        passes += 1
        before = Counter(ecs.calls)
        api.repage()
        t = time.perf_counter()
        report = reconcile(world, budget=budget)
        wall = time.perf_counter() - t
        done = report[next(iter(report))]
        made = ecs.calls["tasks started"] - before["tasks started"]
        calls = ecs.calls["RunTask"] - before["RunTask"]
        throttled = ecs.calls["RunTask throttled"] - before["RunTask throttled"]
        total.update(done)
        what = f"{pods} pods bound at once" if passes == 1 else f"the {pods - before['tasks started']} left"
        print(f"creates at volume, pass {passes}: {what} (budget {budget:.0f} s, RunTask "
              f"{lo}-{hi} ms, {RUN_TASK[1]} calls/s, launches {LAUNCHES[0]} + {LAUNCHES[1]}/s): {made} tasks in "
              f"{wall:.1f} s = {made / wall:.1f} creates/s, {wall / budget:.0%} of the budget; deferred "
              f"{done.get('deferred', 0)}, backed off {done.get('Create', 0) - made if done.get('Create') else 0}, "
              f"failed {done.get('failed', 0)}; RunTask calls {calls + throttled} ({throttled} throttled)")
    print(f"creates at volume: {ecs.calls['tasks started']} of {pods} tasks after {passes} pass(es) "
          f"(goal: {pods} in one; at the published rates they need >= {(pods - RUN_TASK[0]) / RUN_TASK[1]:.0f} s of "
          f"RunTask calls, new work stops at {budget - RESERVE:.0f} s), "
          f"{len(ecs.tasks)} tasks in ECS (one per pod)")


def binding_bursts() -> None:
    """The burst alone (the fast paths), then with the scheduled reconcile landing in it."""
    binding_burst(reconciles=0)
    binding_burst(reconciles=2)


def binding_burst(pods: int = 200, ecs_latency=(0.1, 0.2), invoke_latency=(0.02, 0.05),
                  reconciles: int = 2) -> None:
    """Goal 6: ``pods`` bindings posted at once to the simulator over HTTP; it calls the
    validating webhook over HTTP (the app under ``chalice local``'s threaded server), which
    hands each create to an asynchronous invocation (World.defer; Lambda's Invoke with
    InvocationType Event answers in tens of ms: ``invoke_latency``). Then the handed-over
    creates (20 at a time, as concurrent Lambda containers), ``reconciles`` scheduled reconciles
    and the machine events + audit batches run together against ECS at ``ecs_latency`` a call: the share of
    pod status writes answered 409, and how many pods got a second task."""
    import urllib.error
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from chalice import local

    from chalicelib import wiring
    from tests.world.sandbox import start_http, stop_http

    # API Gateway queues every connection: chalice local's backlog of 5 would reset a burst's.
    local.ThreadedHTTPServer.request_queue_size = 4096
    local.ChaliceRequestHandler.log_message = lambda *_: None  # one stderr line per request
    from tests.world.stack import NODE, OPT_IN, WEBHOOK_HEADERS, WEBHOOK_URL_PLACEHOLDER, Stack, virtual_pod

    rng, lock = random.Random(6), threading.Lock()
    answers: list[tuple[float, int]] = []  # binding reviews: (seconds, HTTP status)

    with Stack(async_invoke=True, admission=False) as stack:
        stack.reconcile()
        http, url = start_http(stack.app)
        try:
            def sink(hook_url: str, body: bytes, timeout: float):
                request = urllib.request.Request(hook_url.replace(WEBHOOK_URL_PLACEHOLDER, url), data=body,
                                                 method="POST", headers=WEBHOOK_HEADERS)
                t = time.perf_counter()
                try:
                    with urllib.request.urlopen(request, timeout=timeout) as r:
                        status, answer = r.status, r.read()
                except urllib.error.HTTPError as e:
                    status, answer = e.code, e.read()
                except TimeoutError:
                    status, answer = 504, b""
                if b'"subResource": "binding"' in body or b'"subResource":"binding"' in body:
                    with lock:
                        answers.append((time.perf_counter() - t, status))
                if status == 504:
                    raise TimeoutError(hook_url)
                return status, answer

            stack.connect_admission(sink)
            world = wiring.world()
            queue = world.defer

            def defer(function: str, payload: dict) -> None:
                with lock:
                    wait = rng.uniform(*invoke_latency)
                time.sleep(wait)  # Lambda's Invoke (Event) round trip
                queue(function, payload)

            world.defer = defer
            stack.core.create_namespace({"metadata": {"name": "apps", "labels": OPT_IN}})
            names = [f"burst{i}" for i in range(pods)]
            for name in names:
                manifest = virtual_pod(name, command=["sh", "-c", "sleep 100000"])
                manifest["metadata"].setdefault("labels", {}).update(OPT_IN)
                stack.create_pod(manifest, namespace="apps")
            statuses = Counter()
            writes = Counter()
            original = stack.sim.api.handle

            def handle(req):
                resp = original(req)
                if req.method == "PATCH" and "/pods/" in req.path and req.path.endswith("/status"):
                    with lock:
                        writes[resp.status] += 1
                return resp

            stack.sim.api.handle = handle
            backend = world.backend_for(NODE)
            runs: Counter = Counter()

            def slow(**_):
                with lock:
                    wait = rng.uniform(*ecs_latency)
                time.sleep(wait)

            def run_task(params, **_):
                with lock:
                    runs[params["clientToken"]] += 1
            backend.ecs.meta.events.register("before-call.ecs", slow)
            backend.ecs.meta.events.register("before-parameter-build.ecs.RunTask", run_task)

            start = threading.Barrier(pods)

            def bind(name: str) -> int:
                body = json.dumps({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                                   "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}}).encode()
                request = urllib.request.Request(f"{stack.sim.url}/api/v1/namespaces/apps/pods/{name}/binding",
                                                 data=body, method="POST",
                                                 headers={"Authorization": "Bearer admin-token",
                                                          "Content-Type": "application/json"})
                start.wait()
                try:
                    with urllib.request.urlopen(request, timeout=30) as r:
                        return r.status
                except urllib.error.HTTPError as e:
                    return e.code

            t = time.perf_counter()
            with ThreadPoolExecutor(max_workers=pods) as pool:
                statuses.update(pool.map(bind, names))
            burst = time.perf_counter() - t
            seconds = sorted(s for s, _ in answers)
            p = lambda q: seconds[min(len(seconds) - 1, int(q * len(seconds)))] * 1000  # noqa: E731
            late = sum(1 for s in seconds if s > 1.0)
            failed = sum(1 for _, code in answers if code != 200)
            print(f"{pods} simultaneous bindings over HTTP (apiserver -> webhook -> hand-over at "
                  f"{invoke_latency[0] * 1000:.0f}-{invoke_latency[1] * 1000:.0f} ms): webhook answers "
                  f"p50 {p(0.5):.0f} ms, p99 {p(0.99):.0f} ms (goal <= 1000), max {seconds[-1] * 1000:.0f} ms; "
                  f"{late} over 1 s, {failed} failed or timed out (goal 0); bindings {dict(statuses)} in {burst:.1f} s; "
                  f"handed over {len(stack.deferred)}")

            # The race: handed-over creates, reconciles, machine events and audit batches together.
            pending = list(stack.deferred)
            stack.deferred.clear()

            def handed_over():
                with ThreadPoolExecutor(max_workers=20) as lambdas:
                    list(lambdas.map(lambda job: stack.client.lambda_.invoke(*job).payload, pending))

            def reconcile():
                for _ in range(reconciles):
                    stack.reconcile()

            def events():
                for _ in range(8):
                    stack.audit.flush()
                    stack.cloud_step()
                    stack.advance(1)

            t = time.perf_counter()
            workers = [threading.Thread(target=job) for job in (handed_over, reconcile, events)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            race = time.perf_counter() - t
            stack.settle(rounds=4, reconcile=True)
            total = sum(writes.values())
            ecs = backend.ecs
            arns = [a for page in ecs.get_paginator("list_tasks").paginate(cluster="lambdalet")
                    for a in page["taskArns"]]
            tasks = [t for i in range(0, len(arns), 100)
                     for t in ecs.describe_tasks(cluster="lambdalet", tasks=arns[i:i + 100])["tasks"]]
            per_pod = Counter(t.get("group") for t in tasks)
            running = sum(1 for n in names if (stack.pod(n, "apps") or {}).get("status", {}).get("phase") == "Running")
            print(f"  handed-over creates, {reconciles} reconciles, machine events and audit batches together "
                  f"({race:.1f} s) and after: pod status writes {total}, 409 {writes[409]} = "
                  f"{writes[409] / max(total, 1):.1%} (goal < 1%); RunTask calls {sum(runs.values())} for "
                  f"{len(runs)} (pod, attempt) tokens, tasks {len(tasks)}, pods with a second task "
                  f"{sum(1 for n in per_pod.values() if n > 1)} (goal 0); {running} of {pods} Running")
        finally:
            stop_http(http, stack.app)

