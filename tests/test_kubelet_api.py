"""The kubelet API: kubectl logs/exec/top through the simulator (which dials the node's
advertised address over mutual TLS, as kube-apiserver does), lambdalet's routes behind
the mTLS front, the Fargate plane's awslogs output and Container Insights figures.
Who may call it, path by path. The pure parts (query, body, attributes, addresses)."""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from chalicelib import node as vnode
from chalicelib.kubelet_api import auth, logs
from chalicelib.machines.contract import LogLine
from tests.world.fargate_plane import Clock
from tests.world.stack import LOG_GROUP, NODE, REGION, Stack, virtual_pod

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH")
T0 = datetime(2026, 11, 29, 3, 0, 0, tzinfo=timezone.utc)


# ---------------------------------------------------------------------------- pure


@pytest.mark.parametrize("method,path,verb,subs", [
    ("GET", "/containerLogs/default/p/main", "get", ("proxy",)),
    ("POST", "/exec/default/p/main", "create", ("proxy",)),
    ("GET", "/stats/summary", "get", ("stats",)),
    ("GET", "/metrics/resource", "get", ("metrics",)),
    ("GET", "/logs/syslog", "get", ("log",)),
    ("GET", "/spec/", "get", ("spec",)),
    ("GET", "/pods", "get", ("pods", "proxy")),
    ("GET", "/healthz", "get", ("healthz", "proxy")),
    ("POST", "/portForward/default/p", "create", ("proxy",)),
])
def test_request_attributes_are_the_kubelets(method, path, verb, subs):
    assert auth.attributes(method, path) == (verb, subs)


def test_subject_dn_gives_user_and_groups():
    caller = auth.caller_from_subject("CN=kube-apiserver-kubelet-client,O=kubeadm:cluster-admins,O=x", "mtls")
    assert caller == auth.Caller("kube-apiserver-kubelet-client", ("kubeadm:cluster-admins", "x"), "mtls")
    assert auth.caller_from_subject("O=only-a-group", "mtls") is None
    assert auth.caller_from_subject(r"CN=a\,b", "mtls").user == "a,b"


def test_front_header_counts_only_with_the_fronts_token():
    headers = {auth.SUBJECT_HEADER: "CN=kube-apiserver-kubelet-client", auth.FRONT_TOKEN_HEADER: "s3cret"}
    assert auth.authenticate({}, headers, "s3cret").via == "front"
    assert auth.authenticate({}, headers, "other") is None
    assert auth.authenticate({}, headers, None) is None  # no front configured: the header means nothing
    assert auth.authenticate({}, {auth.SUBJECT_HEADER: "CN=x"}, "s3cret") is None


def test_per_path_authorization():
    clients = {"kube-apiserver-kubelet-client": ("*",), "metrics-server": ("stats", "metrics")}
    scraper = auth.Caller("metrics-server")
    assert auth.allowed(scraper, ("metrics",), clients)
    assert not auth.allowed(scraper, ("proxy",), clients)
    assert auth.allowed(auth.Caller("kube-apiserver-kubelet-client"), ("proxy",), clients)
    assert not auth.allowed(auth.Caller("system:node:other"), ("stats",), clients)


def test_log_query_is_validated_like_the_apiserver():
    assert logs.options({"tailLines": "5", "follow": "true", "timestamps": "1"}, T0).tail_lines == 5
    assert logs.options({"sinceSeconds": "60"}, T0).since == T0 - timedelta(seconds=60)
    assert logs.options({"sinceTime": "2026-11-29T02:00:00Z"}, T0).since == T0 - timedelta(hours=1)
    for bad in ({"tailLines": "-1"}, {"limitBytes": "0"}, {"sinceSeconds": "0"}, {"follow": "maybe"},
                {"sinceSeconds": "5", "sinceTime": "2026-11-29T02:00:00Z"}, {"sinceTime": "yesterday"}):
        with pytest.raises(logs.BadLogQuery):
            logs.options(bad, T0)


def test_log_body_tail_timestamps_and_limit():
    lines = [LogLine(time=T0 + timedelta(seconds=i, microseconds=5), text=f"line {i}") for i in range(4)]
    assert logs.body(lines, logs.LogOptions()) == b"line 0\nline 1\nline 2\nline 3\n"
    assert logs.body(lines, logs.LogOptions(tail_lines=2)) == b"line 2\nline 3\n"
    assert logs.body(lines, logs.LogOptions(tail_lines=0)) == b""
    assert logs.body(lines, logs.LogOptions(tail_lines=1, timestamps=True)) == \
        b"2026-11-29T03:00:03.000005000Z line 3\n"
    assert logs.body(lines, logs.LogOptions(limit_bytes=9)) == b"line 0\nli"
    assert logs.body(lines, logs.LogOptions(since=T0 + timedelta(seconds=2))) == b"line 2\nline 3\n"


def test_node_advertises_the_endpoint_under_dns_types_only():
    addresses, port = vnode.kubelet_address("vk-1", "{node}.kubelet.example.com")
    assert port == 443 and {a["address"] for a in addresses} == {"vk-1.kubelet.example.com"}
    # kubeadm prefers InternalIP: offering none keeps the apiserver on the DNS name
    assert "InternalIP" not in {a["type"] for a in addresses} and "Hostname" in {a["type"] for a in addresses}
    assert vnode.kubelet_address("vk-1", "k.example.com:8443")[1] == 8443
    assert vnode.kubelet_address("vk-1", "") == ([{"type": "Hostname", "address": "vk-1"}], 0)


# ---------------------------------------------------------------------------- the world


@pytest.fixture
def stack():
    # kubectl sends no token over the simulator's plain http: anonymous. The clock starts on a
    # minute: Container Insights' first datapoint comes when that minute is complete.
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    with Stack(anonymous=True, clock=Clock(start)) as s:
        s.reconcile()
        yield s


def run_pod(stack: Stack, manifest: dict, rounds: int = 8) -> dict:
    stack.create_pod(manifest)
    stack.settle(rounds=rounds)
    return stack.pod(manifest["metadata"]["name"])


def kubelet_get(stack: Stack, path: str, client=None, method: str = "GET") -> tuple[int, str]:
    """A request straight to the node's kubelet endpoint, as ``client`` (a cert pair) or nobody."""
    ctx = ssl._create_unverified_context()  # noqa: SLF001 - the apiserver does not verify kubelets by default
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    conn = http.client.HTTPSConnection("localhost", stack.front.port, context=ctx, timeout=30)
    conn.request(method, path)
    resp = conn.getresponse()
    return resp.status, resp.read().decode()


def test_node_advertises_the_front(stack):
    node = json.loads(stack.core.read_node(NODE, _preload_content=False).data)
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == stack.front.port
    assert {"type": "Hostname", "address": "localhost"} in node["status"]["addresses"]


def test_task_definitions_log_with_awslogs(stack):
    pod = run_pod(stack, virtual_pod("job", restart="Never", command=["sh", "-c", "echo hello; exit 3"]))
    assert pod["status"]["phase"] == "Failed"
    [task] = stack.tasks()
    td = boto3.client("ecs", region_name=REGION).describe_task_definition(
        taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
    [container] = td["containerDefinitions"]
    assert container["logConfiguration"] == {"logDriver": "awslogs", "options": {
        "awslogs-group": LOG_GROUP, "awslogs-region": REGION, "awslogs-stream-prefix": "lambdalet"}}
    # the plane wrote the output where the awslogs driver would
    stream = f"lambdalet/main/{task['taskArn'].rsplit('/', 1)[-1]}"
    events = boto3.client("logs", region_name=REGION).get_log_events(logGroupName=LOG_GROUP, logStreamName=stream)
    assert [e["message"] for e in events["events"]] == ["hello"]


@needs_kubectl
def test_kubectl_logs_through_the_apiserver_path(stack):
    run_pod(stack, virtual_pod("job", restart="Never", command=["sh", "-c", "echo hello; echo world; exit 3"]))
    got = stack.kubectl("logs", "job")
    assert got.returncode == 0, got.stderr
    assert got.stdout == "hello\nworld\n"
    tail = stack.kubectl("logs", "job", "-f", "--tail=1", "--timestamps")
    assert tail.returncode == 0, tail.stderr
    stamp, text = tail.stdout.rstrip("\n").split(" ", 1)
    assert text == "world" and datetime.fromisoformat(stamp.replace("Z", "+00:00").replace("000+", "+"))
    assert stack.kubectl("logs", "job", "--limit-bytes=3").stdout == "hel"
    # the request reached lambdalet as the apiserver's kubelet client
    missing = stack.kubectl("logs", "job", "-c", "nope")
    assert missing.returncode != 0 and "container nope is not valid" in missing.stderr


@needs_kubectl
def test_kubectl_logs_previous_reads_the_earlier_attempt(stack):
    pod = run_pod(stack, virtual_pod("crashy", restart="Always", command=["sh", "-c", "echo boom; exit 1"]),
                  rounds=6)
    first = stack.kubectl("logs", "crashy", "--previous")
    assert first.returncode != 0 and 'previous terminated container "main" in pod "crashy" not found' in first.stderr
    for _ in range(6):  # crash-loop back-off, then the second attempt
        stack.advance(15)
        stack.settle(rounds=4, reconcile=True)
        pod = stack.pod("crashy")
        if pod["status"]["containerStatuses"][0]["restartCount"] >= 1:
            break
    assert pod["status"]["containerStatuses"][0]["restartCount"] >= 1
    stack.settle(rounds=4)
    previous = stack.kubectl("logs", "crashy", "--previous", "--timestamps")
    current = stack.kubectl("logs", "crashy", "--timestamps")
    assert previous.returncode == 0, previous.stderr
    assert previous.stdout.endswith(" boom\n") and current.stdout.endswith(" boom\n")
    assert previous.stdout.split(" ")[0] < current.stdout.split(" ")[0]  # two runs, the earlier one first


@needs_kubectl
def test_kubectl_exec_prints_the_native_command_for_this_task(stack):
    run_pod(stack, virtual_pod("web", command=["sh", "-c", "echo serving; sleep infinity"]))
    [task] = stack.tasks()
    got = stack.kubectl("exec", "web", "--", "ls", "-la")
    assert got.returncode != 0
    task_id = task["taskArn"].rsplit("/", 1)[-1]
    assert "unable to upgrade connection:" in got.stderr
    assert f"ECS task {task_id}" in got.stderr and "LAMBDALET_ECS_EXEC" in got.stderr


@needs_kubectl
def test_kubectl_top_pod_shows_container_insights_figures(stack):
    run_pod(stack, virtual_pod("web", command=["sh", "-c", "sleep infinity"],
                               container={"resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}))
    early = stack.kubectl("top", "pod", "web")
    assert early.returncode != 0  # nothing measured yet: Container Insights lags a minute
    for _ in range(3):
        stack.advance(60)
        stack.settle(rounds=1)
    got = stack.kubectl("top", "pod", "web", "--no-headers")
    assert got.returncode == 0, got.stderr
    name, cpu, memory = got.stdout.split()
    # 5 % of the task's 1024 CPU units, 16 MiB: what the plane's container uses
    assert (name, cpu, memory) == ("web", "50m", "16Mi")


def test_unauthenticated_callers_are_refused_and_read_nothing(stack):
    run_pod(stack, virtual_pod("job", restart="Never", command=["sh", "-c", "echo secret; exit 0"]))
    path = "/containerLogs/default/job/main"
    # no certificate: the front's handshake fails (API Gateway's truststore)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        kubelet_get(stack, path)
    # a certificate from another CA: refused in the handshake too
    from tests.world.certs import Authority

    stranger_ca = Authority(stack.ca.directory / "other", "not-the-cluster")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        kubelet_get(stack, path, stranger_ca.client("kube-apiserver-kubelet-client"))
    # the cluster CA, another identity: 403, nothing read
    status, body = kubelet_get(stack, path, stack.ca.client("system:node:someone-else"))
    assert status == 403 and "secret" not in body
    # metrics-server may scrape, not read logs
    status, body = kubelet_get(stack, path, stack.metrics_client)
    assert status == 403 and "secret" not in body
    assert kubelet_get(stack, "/metrics/resource", stack.metrics_client)[0] == 200
    # the API without the front (API Gateway's default endpoint): no certificate in the event
    response = stack.client.http.get(path)
    assert response.status_code == 401 and b"secret" not in response.body
    # the apiserver's identity reads it
    assert kubelet_get(stack, path, stack.apiserver_client) == (200, "secret\n")


def test_stats_summary_and_healthz(stack):
    run_pod(stack, virtual_pod("web", command=["sh", "-c", "sleep infinity"]))
    stack.advance(120)
    stack.settle(rounds=1)
    assert kubelet_get(stack, "/healthz", stack.apiserver_client) == (200, "ok")
    status, body = kubelet_get(stack, "/stats/summary", stack.metrics_client)
    assert status == 200
    summary = json.loads(body)
    [pod] = summary["pods"]
    assert pod["podRef"]["name"] == "web" and pod["containers"][0]["memory"]["workingSetBytes"] == 16 * 2**20
    assert pod["cpu"]["usageNanoCores"] == int(256 * 0.05 / 1024 * 1e9)
    status, body = kubelet_get(stack, "/pods", stack.apiserver_client)
    assert status == 200 and [p["metadata"]["name"] for p in json.loads(body)["items"]] == ["web"]


def _machine(machine_id: str, container_id: str | None = None):
    from chalicelib.machines.contract import ContainerRun, Machine, MachinePhase, PodRef

    return Machine(id=machine_id, pod=PodRef(namespace="default", name="web", uid="u1"), node=NODE,
                   phase=MachinePhase.RUNNING, created_at=T0,
                   containers=(ContainerRun(name="main", image="busybox", state="running",
                                            container_id=container_id),))


def test_ecs_exec_answer_names_this_task_and_container():
    from chalicelib.machines.ecs import connect

    arn = "arn:aws:ecs:us-east-1:123456789012:task/lambdalet/0123456789abcdef0123456789abcdef"
    machine = _machine(arn, "ecs://0123456789abcdef0123456789abcdef-1234567890")
    on = connect.command(machine, "main", "exec", ("ls", "-la"), (), cluster="lambdalet", region="us-east-1",
                         exec_enabled=True)
    assert ("aws ecs execute-command --region us-east-1 --cluster lambdalet "
            "--task 0123456789abcdef0123456789abcdef --container main --interactive --command 'ls -la'") in on
    forward = connect.command(machine, "main", "portforward", (), (8080,), cluster="lambdalet", region="us-east-1",
                              exec_enabled=True)
    assert "--target ecs:lambdalet_0123456789abcdef0123456789abcdef_0123456789abcdef0123456789abcdef-1234567890" in forward
    assert '"portNumber":["8080"]' in forward
    off = connect.command(machine, "main", "exec", ("ls",), (), cluster="lambdalet", region="us-east-1",
                          exec_enabled=False)
    assert "LAMBDALET_ECS_EXEC=true" in off and "execute-command" not in off


def test_fly_answers_name_the_machine():
    from chalicelib.machines.fly import connect

    machine = _machine("3d8d9e0b123456")
    assert ("fly ssh console --app lambdalet --machine 3d8d9e0b123456 --command 'sh -c '\"'\"'echo hi'\"'\"''"
            in connect.command(machine, "main", "exec", ("sh", "-c", "echo hi"), (), app="lambdalet"))
    assert "fly proxy 80:80 3d8d9e0b123456.vm.lambdalet.internal --app lambdalet" in connect.command(
        machine, "main", "portforward", (), (80,), app="lambdalet")


def test_ecs_exec_turned_on_starts_tasks_with_ecs_exec(monkeypatch):
    monkeypatch.setenv("LAMBDALET_ECS_EXEC", "true")
    from chalicelib import wiring

    with Stack(anonymous=True) as stack:
        stack.reconcile()
        runs = []  # moto does not echo enableExecuteCommand: look at the RunTask request itself
        wiring.world().backend_for(NODE).ecs.meta.events.register(
            "before-parameter-build.ecs.RunTask", lambda params, **_: runs.append(dict(params)))
        run_pod(stack, virtual_pod("web", command=["sh", "-c", "sleep infinity"]))
        [task] = stack.tasks()
        assert [run.get("enableExecuteCommand") for run in runs] == [True]
        status, body = kubelet_get(stack, "/exec/default/web/main?command=ls&output=1", stack.apiserver_client,
                                   method="POST")
        assert status == 400
        assert f"--task {task['taskArn'].rsplit('/', 1)[-1]} --container main --interactive --command ls" in body


def test_a_front_without_mtls_passthrough_is_trusted_only_with_its_token(monkeypatch):
    monkeypatch.setenv("LAMBDALET_KUBELET_FRONT_TOKEN_SECRET", "lambdalet/kubelet-front-token")
    with Stack(anonymous=True) as stack:
        boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="lambdalet/kubelet-front-token", SecretString="front-secret")
        stack.reconcile()
        run_pod(stack, virtual_pod("job", restart="Never", command=["sh", "-c", "echo via the front; exit 0"]))
        path = "/containerLogs/default/job/main"
        subject = {auth.SUBJECT_HEADER: "CN=kube-apiserver-kubelet-client,O=kubeadm:cluster-admins"}
        ok = stack.client.http.get(path, headers={**subject, auth.FRONT_TOKEN_HEADER: "front-secret"})
        assert ok.status_code == 200 and ok.body == b"via the front\n"
        forged = stack.client.http.get(path, headers={**subject, auth.FRONT_TOKEN_HEADER: "guess"})
        assert forged.status_code == 401 and b"via the front" not in forged.body
        assert stack.client.http.get(path, headers=subject).status_code == 401


def test_logs_while_the_kubernetes_api_fails_answer_503_with_the_reason(stack):
    """Found by the chaos run: a failed pod read (the apiserver's 504) escaped the
    kubelet API as a 500. As for a cloud that cannot answer now: 503, saying why."""
    from tests.world.stack import SA_USER

    run_pod(stack, virtual_pod("job", restart="Never", command=["sh", "-c", "echo hello; exit 0"]))
    stack.sim.api.faults.add("get", "pods", 504, user=SA_USER, times=1)
    status, body = kubelet_get(stack, "/containerLogs/default/job/main", stack.apiserver_client)
    assert status == 503 and "Kubernetes API failed" in body and "504" in body, (status, body)
    assert kubelet_get(stack, "/containerLogs/default/job/main", stack.apiserver_client) == (200, "hello\n")
