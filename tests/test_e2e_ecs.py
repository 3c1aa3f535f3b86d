"""End to end: Kubernetes simulator + moto + Fargate plane + lambdalet's Chalice app.

Every scenario goes through the app's real entry points (the /audit route, the
scheduled reconcile, the ECS event handler) and is judged on what a user sees:
the pod object, its events, and the ECS tasks.
"""

from __future__ import annotations

import json

import boto3
import pytest

from tests.world.stack import CLUSTER, NODE, REGION, SA_USER, WEBHOOK_HEADERS, WEBHOOK_TOKEN, Stack, virtual_pod

SLEEP_FOREVER = ["sh", "-c", "sleep 100000"]


@pytest.fixture
def stack():
    with Stack() as s:
        s.reconcile()  # registers the virtual node, as the first scheduled run does
        yield s


def phase(stack: Stack, name: str) -> str | None:
    pod = stack.pod(name)
    return pod and pod["status"].get("phase")


def container(pod: dict) -> dict:
    return pod["status"]["containerStatuses"][0]


def tags(task: dict) -> dict:
    return {t["key"]: t["value"] for t in task.get("tags", [])}


def test_node_is_registered_ready_with_taint_labels_and_lease(stack):
    node = json.loads(stack.core.read_node(NODE, _preload_content=False).data)
    assert node["metadata"]["labels"]["type"] == "virtual-kubelet"
    assert node["metadata"]["labels"]["kubernetes.io/role"] == "agent"
    assert {"key": "virtual-kubelet.io/provider", "value": "ecs", "effect": "NoSchedule"} in node["spec"]["taints"]
    ready = {c["type"]: c for c in node["status"]["conditions"]}["Ready"]
    assert ready["status"] == "True"
    from kubernetes.client import CoordinationV1Api
    got = CoordinationV1Api(stack.sim.api_client()).read_namespaced_lease(NODE, "kube-node-lease")
    assert got.spec.holder_identity == NODE and got.spec.renew_time is not None


def test_bound_pod_becomes_a_running_task_through_the_audit_path_alone(stack):
    stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER, container={"ports": [{"containerPort": 8080}]}))
    stack.settle(rounds=6)  # scheduler, audit webhook, cloud steps + ECS events; no reconcile
    pod = stack.pod("web")
    assert pod["spec"]["nodeName"] == NODE
    assert pod["status"]["phase"] == "Running"
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions == {"PodScheduled": "True", "PodReadyToStartContainers": "True", "Initialized": "True",
                          "ContainersReady": "True", "Ready": "True"}
    status = container(pod)
    assert "running" in status["state"] and status["ready"] and status["restartCount"] == 0
    assert status["containerID"] and pod["status"]["podIP"] and pod["status"]["hostIP"] and pod["status"]["startTime"]
    [task] = stack.tasks()
    assert task["lastStatus"] == "RUNNING"
    assert tags(task)["lambdalet.io/pod-uid"] == pod["metadata"]["uid"]
    assert any(a["name"] == "privateIPv4Address" and a["value"] == pod["status"]["podIP"]
               for att in task["attachments"] for a in att["details"])
    assert any(e["reason"] == "Created" for e in stack.events_of("web"))
    assert all(code == 200 for code in stack.audit_answers)
    # status was written by the scoped service account (rules of infra/k8s/rbac.yaml), not an admin
    writers = {e["user"]["username"] for e in stack.audit.events
               if e["objectRef"].get("subresource") == "status" and e["stage"] == "ResponseComplete"}
    assert writers == {SA_USER}


@pytest.mark.parametrize("code,expected", [(0, "Succeeded"), (3, "Failed")])
def test_task_exit_ends_a_never_restarting_pod(stack, code, expected):
    stack.create_pod(virtual_pod("job", restart="Never", command=["sh", "-c", f"sleep 2; exit {code}"]))
    stack.settle(rounds=10)
    pod = stack.pod("job")
    assert pod["status"]["phase"] == expected
    terminated = container(pod)["state"]["terminated"]
    assert terminated["exitCode"] == code
    assert terminated["reason"] == ("Completed" if code == 0 else "Error")
    assert len(stack.tasks()) == 1


@pytest.mark.parametrize("policy,code", [("Always", 0), ("OnFailure", 4)])
def test_task_exit_restarts_the_pod_when_its_policy_asks(stack, policy, code):
    stack.create_pod(virtual_pod("loop", restart=policy, command=["sh", "-c", f"sleep 2; exit {code}"]))
    stack.settle(rounds=6)
    pod = stack.pod("loop")
    assert container(pod)["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert container(pod)["lastState"]["terminated"]["exitCode"] == code
    stack.advance(15)  # past the first back-off (10 s)
    stack.settle(rounds=3, reconcile=True)
    pod = stack.pod("loop")
    assert container(pod)["restartCount"] == 1
    assert pod["status"]["phase"] == "Running"
    attempts = sorted(tags(t)["lambdalet.io/attempt"] for t in stack.tasks())
    assert attempts == ["0", "1"]


def test_on_failure_pod_that_exits_zero_succeeds(stack):
    stack.create_pod(virtual_pod("once", restart="OnFailure", command=["sh", "-c", "exit 0"]))
    stack.settle(rounds=8)
    assert phase(stack, "once") == "Succeeded"


def test_deleted_pod_stops_its_task_and_is_finalized(stack):
    stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER))
    stack.settle(rounds=5)
    assert phase(stack, "web") == "Running"
    stack.core.delete_namespaced_pod("web", "default")
    assert stack.pod("web")["metadata"]["deletionTimestamp"]
    stack.settle(rounds=3)
    # `sh` as PID 1 ignores SIGTERM: the task lives until its stop timeout (the pod's 30 s grace)
    assert stack.pod("web") is not None and stack.tasks()[0]["desiredStatus"] == "STOPPED"
    stack.advance(30)
    stack.settle(rounds=3)
    assert stack.pod("web") is None
    [task] = stack.tasks()
    assert task["lastStatus"] == "STOPPED" and task["stopCode"] == "UserInitiated"
    assert any(e["reason"] == "Killing" for e in stack.events_of("web"))


def test_reconcile_alone_converges_when_every_audit_delivery_is_dropped():
    with Stack(audit={"drop": True}) as stack:
        stack.reconcile()
        stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER))
        stack.create_pod(virtual_pod("job", restart="Never", command=["sh", "-c", "exit 1"]))
        stack.settle(rounds=4, deliver_events=False)
        assert stack.tasks() == [] and stack.audit_answers == []  # nothing reached the app yet
        stack.settle(rounds=8, reconcile=True, deliver_events=False)
        assert phase(stack, "web") == "Running"
        assert phase(stack, "job") == "Failed"
        stack.core.delete_namespaced_pod("web", "default")
        stack.settle(rounds=2, reconcile=True, deliver_events=False)
        stack.advance(30)  # the stop timeout: sh ignores SIGTERM
        stack.settle(rounds=6, reconcile=True, deliver_events=False)
        assert stack.pod("web") is None, [(t["lastStatus"], t.get("stopCode"), tags(t)) for t in stack.tasks()]


def test_duplicated_audit_deliveries_start_exactly_one_task_per_pod():
    with Stack(audit={"duplicate": True}) as stack:
        stack.reconcile()
        for name in ("a", "b", "c"):
            stack.create_pod(virtual_pod(name, command=SLEEP_FOREVER))
        stack.settle(rounds=6, reconcile=True)
        tasks = stack.tasks()
        assert sorted(tags(t)["lambdalet.io/pod-name"] for t in tasks) == ["a", "b", "c"]
        assert len(stack.audit_answers) >= 2 and all(code == 200 for code in stack.audit_answers)


def test_task_stopped_out_of_band_shows_in_the_pod(stack):
    stack.create_pod(virtual_pod("victim", restart="Never", command=SLEEP_FOREVER))
    stack.settle(rounds=5)
    [task] = stack.tasks()
    boto3.client("ecs", region_name=REGION).stop_task(cluster=CLUSTER, task=task["taskArn"], reason="ops: draining")
    stack.settle(rounds=2)
    stack.advance(30)  # SIGKILL after the stop timeout
    stack.settle(rounds=3)
    pod = stack.pod("victim")
    assert pod["status"]["phase"] == "Failed"
    terminated = container(pod)["state"]["terminated"]
    assert terminated["exitCode"] == 137
    # Say what happened: the cloud's stopCode and stoppedReason, not a bare exit code.
    assert "UserInitiated: ops: draining" in terminated["message"], terminated
    assert any("ops: draining" in e["message"] for e in stack.events_of("victim"))


def test_spot_interruption_fails_the_pod_as_machine_lost(stack):
    stack.create_pod(virtual_pod("spot", command=SLEEP_FOREVER))
    stack.settle(rounds=5)
    [task] = stack.tasks()
    stack.plane.kill(task["taskArn"], abrupt=True)
    stack.settle(rounds=4)
    pod = stack.pod("spot")
    assert pod["status"]["phase"] == "Failed" and pod["status"]["reason"] == "MachineLost"
    assert "Spot" in pod["status"]["message"]
    assert any(e["reason"] == "MachineLost" for e in stack.events_of("spot"))


def test_pod_that_fits_no_fargate_size_fails_with_a_readable_reason(stack):
    huge = virtual_pod("huge", command=SLEEP_FOREVER,
                       container={"resources": {"requests": {"cpu": "64", "memory": "512Gi"}}})
    stack.create_pod(huge)
    stack.settle(rounds=4)
    pod = stack.pod("huge")
    assert pod["status"]["phase"] == "Failed" and pod["status"]["reason"] == "ProviderFailed"
    assert "Fargate" in pod["status"]["message"]
    assert stack.tasks() == []
    assert any(e["type"] == "Warning" for e in stack.events_of("huge"))


def test_image_that_cannot_be_pulled_fails_the_pod_and_says_why(stack):
    stack.create_pod(virtual_pod("badimage", image="registry.example/doesnotexist:1", restart="Never"))
    stack.settle(rounds=8)
    pod = stack.pod("badimage")
    assert pod["status"]["phase"] == "Failed"
    assert "CannotPullContainerError" in pod["status"]["message"]


def test_malformed_audit_body_is_a_400_with_a_reason(stack):
    response = stack.client.http.post("/audit", headers=WEBHOOK_HEADERS, body=b'{"kind": "Pod"}')
    assert response.status_code == 400
    assert "EventList" in json.loads(response.body)["Message"]


def test_malformed_event_does_not_lose_its_neighbours(stack):
    stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER))
    stack.sim.scheduler.run_once()
    stack.audit.flush()  # the real batch went to the app already: replay it, with a bad neighbour
    [batch] = [b for b in stack.audit.sent if any("binding" in e["requestURI"] for e in b["items"])]
    tasks_before = len(stack.tasks())
    [binding] = [e for e in batch["items"] if e["stage"] == "ResponseComplete" and "binding" in e["requestURI"]]
    odd = json.loads(json.dumps(binding))
    odd["auditID"], odd["requestObject"]["target"] = "odd-one", "not an object"
    batch = {**batch, "items": [{"stage": 12}, odd, *batch["items"]]}
    response = stack.client.http.post("/audit", headers=WEBHOOK_HEADERS,
                                      body=json.dumps(batch).encode())
    assert response.status_code == 200
    body = json.loads(response.body)
    assert len(body["malformed"]) == 2 and body["pods"] >= 1
    assert len(stack.tasks()) == tasks_before == 1  # the replay found the task: still one


def test_duplicate_task_from_a_racing_create_is_removed_keeping_the_oldest(stack):
    """Two invocations that both missed each other's RunTask (e.g. a token that
    expired after 24 h, or a task started outside lambdalet's create path)."""
    from chalicelib import wiring
    from chalicelib.pod_spec import machine_spec

    stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER))
    stack.settle(rounds=4)
    [first] = stack.tasks()
    backend = wiring.world().backend_for(NODE)
    spec = machine_spec(stack.pod("web"), NODE, 0)
    stack.advance(5)
    _run_duplicate(backend, spec)
    assert len(stack.tasks("RUNNING")) == 2
    stack.advance(2)
    stack.reconcile()
    stack.settle(rounds=4)
    running = stack.tasks("RUNNING")
    assert [t["taskArn"] for t in running] == [first["taskArn"]]
    assert stack.pod("web")["status"]["phase"] == "Running"


def _run_duplicate(backend, spec):
    """A second RunTask for the same (pod, attempt), as the losing invocation would send it."""
    from chalicelib.machines.ecs import started_by, task_group, task_tags

    backend.ecs.run_task(
        cluster=backend.cluster, taskDefinition=backend.ensure_task_definition(spec), launchType="FARGATE",
        startedBy=started_by(spec.node), group=task_group(spec), tags=task_tags(spec),
        networkConfiguration={"awsvpcConfiguration": {"subnets": backend.subnets,
                                                      "securityGroups": backend.security_groups}},
    )


def test_throttled_create_is_shown_as_waiting_then_retried_by_the_next_pass(stack):
    stack.plane.fail_runs(3)  # every attempt of one RunTask call: 1 + the SDK's 2 retries
    stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER))
    stack.sim.scheduler.run_once()
    stack.audit.flush()
    pod = stack.pod("web")
    assert pod["status"]["phase"] == "Pending"
    waiting = container(pod)["state"]["waiting"]
    assert waiting["reason"] == "ProviderBackOff" and "ThrottlingException" in waiting["message"]
    [event] = [e for e in stack.events_of("web") if e["reason"] == "FailedCreateMachine"]
    assert event["type"] == "Warning" and "Rate exceeded" in event["message"]
    assert stack.tasks() == []
    backoff = [c for c in stack.pod("web")["status"]["conditions"] if c["type"] == "lambdalet.io/MachineCreateBackOff"]
    assert backoff and backoff[0]["status"] == "True" and "ThrottlingException" in backoff[0]["message"]
    stack.reconcile()  # within the back-off: no new RunTask
    assert stack.tasks() == [] and stack.plane.run_failures == []
    stack.advance(10)
    stack.settle(rounds=4, reconcile=True)
    assert phase(stack, "web") == "Running" and len(stack.tasks()) == 1
    conditions = {c["type"] for c in stack.pod("web")["status"]["conditions"]}
    assert "lambdalet.io/MachineCreateBackOff" not in conditions  # cleared once the create went through


@pytest.mark.parametrize("path", ["/audit", "/admission/validate", "/admission/mutate"])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", WEBHOOK_TOKEN])
def test_webhooks_answer_only_our_apiserver(stack, path, authorization):
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    response = stack.client.http.post(path, headers=headers, body=b"{}")
    assert response.status_code == 401
    assert stack.client.http.post(path, headers=WEBHOOK_HEADERS, body=b"{}").status_code == 400  # let in, then judged


def test_repeated_events_are_aggregated_not_one_object_per_pass(stack):
    stack.create_pod(virtual_pod("flappy", restart="Always", command=["sh", "-c", "sleep 1; exit 1"]))
    for _ in range(3):  # three runs, each ending in a crash-loop back-off and a restart
        stack.settle(rounds=5, reconcile=True)
        stack.advance(60)
    stack.settle(rounds=5, reconcile=True)
    assert container(stack.pod("flappy"))["restartCount"] >= 2
    events = stack.events_of("flappy")
    started = [e for e in events if e["reason"] == "Started"]
    exited = [e for e in events if e["reason"] == "Exited"]
    assert len(started) == 1 and started[0]["count"] >= 3  # one object, counted
    assert len(exited) == 1 and exited[0]["count"] >= 2
    assert started[0]["lastTimestamp"] > started[0]["firstTimestamp"]
    assert len(events) == len({(e["reason"], e["message"]) for e in events})


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_events_delivered_twice_and_out_of_order_never_roll_a_pod_back(stack, seed):
    """issue 8 ECS 7: EventBridge delivers "ECS Task State Change" at least
    once and in any order (each detail carries the task's ``version``); the
    pod ends as the task's last state says, whatever the delivery order."""
    import random

    from tests.world.fargate_plane import at_least_once

    stack.create_pod(virtual_pod("shuffled", restart="Never", command=["sh", "-c", "sleep 2; exit 3"]))
    events = []
    for _ in range(8):
        stack.sim.scheduler.run_once()
        stack.audit.flush()
        events += stack.cloud_step(deliver=False)
        stack.advance(1)
    assert [e["detail"]["lastStatus"] for e in events][-1] == "STOPPED"
    stack.machine_events(at_least_once(events, random.Random(seed), duplicate=0.5))
    pod = stack.pod("shuffled")
    assert pod["status"]["phase"] == "Failed"
    assert container(pod)["state"]["terminated"]["exitCode"] == 3
    assert stack.machine_events(at_least_once(events, random.Random(seed + 10)))  # again: nothing moves back
    assert stack.pod("shuffled")["status"]["phase"] == "Failed"
