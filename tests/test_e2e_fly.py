"""End to end on Fly: Kubernetes simulator + the Fly fake + lambdalet's Chalice app.

The scenarios of test_e2e_ecs.py that make sense for Fly, through the same
Stack with ``backend="fly"``. Fly has no EventBridge: statuses arrive through
the scheduled reconcile (``settle(reconcile=True)``). Every test ends with no
request or response that breaks the Machines API spec.
"""

from __future__ import annotations

import json

import pytest
import requests

from tests.world.stack import FLY_APP, FLY_TOKEN, NODE, Stack, virtual_pod

SLEEP_FOREVER = ["sh", "-c", "sleep 100000"]


@pytest.fixture
def stack():
    with Stack(backend="fly", fly_fallback_regions=("ord",)) as s:
        s.reconcile()  # registers the virtual node, as the first scheduled run does
        yield s
        assert s.fly.violations == []


def phase(stack: Stack, name: str) -> str | None:
    pod = stack.pod(name)
    return pod and pod["status"].get("phase")


def container(pod: dict) -> dict:
    return pod["status"]["containerStatuses"][0]


def machines(stack: Stack) -> list[dict]:
    return [m.view() for m in stack.fly.machines.values()]


def meta(machine: dict) -> dict:
    return machine["config"]["metadata"]


def fly_api(stack: Stack, method: str, path: str, **kwargs):
    r = requests.request(method, f"{stack.fly.url}/v1/apps/{FLY_APP}{path}",
                         headers={"Authorization": f"Bearer {FLY_TOKEN}"}, timeout=5, **kwargs)
    r.raise_for_status()
    return r.json() if r.content else None


def test_node_is_registered_for_the_fly_provider(stack):
    node = json.loads(stack.core.read_node(NODE, _preload_content=False).data)
    assert {"key": "virtual-kubelet.io/provider", "value": "fly", "effect": "NoSchedule"} in node["spec"]["taints"]
    ready = {c["type"]: c for c in node["status"]["conditions"]}["Ready"]
    assert ready["status"] == "True"


def test_bound_pod_becomes_a_running_machine(stack):
    stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER,
                                 container={"env": [{"name": "GREETING", "value": "hi"}],
                                            "resources": {"requests": {"cpu": "100m", "memory": "300Mi"}}}))
    stack.settle(rounds=4, reconcile=True)
    pod = stack.pod("web")
    assert pod["status"]["phase"] == "Running"
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions == {"PodScheduled": "True", "PodReadyToStartContainers": "True", "Initialized": "True",
                          "ContainersReady": "True", "Ready": "True"}
    status = container(pod)
    assert "running" in status["state"] and status["ready"] and status["restartCount"] == 0
    assert status["containerID"].startswith("fly://") and status["imageID"]
    [machine] = machines(stack)
    assert machine["state"] == "started" and machine["region"] == "iad"
    assert pod["status"]["podIP"] == machine["private_ip"]
    assert meta(machine)["lambdalet_pod_uid"] == pod["metadata"]["uid"]
    assert meta(machine)["lambdalet_node"] == NODE
    config = machine["config"]
    assert config["init"]["entrypoint"] == SLEEP_FOREVER and config["env"] == {"GREETING": "hi"}
    assert config["guest"] == {"cpu_kind": "shared", "cpus": 2, "memory_mb": 512}
    assert config["restart"] == {"policy": "no"}
    assert config["stop_config"] == {"signal": "SIGTERM", "timeout": "30s"}
    assert any(e["reason"] == "Created" for e in stack.events_of("web"))


@pytest.mark.parametrize("code,expected", [(0, "Succeeded"), (3, "Failed")])
def test_machine_exit_ends_a_never_restarting_pod(stack, code, expected):
    stack.create_pod(virtual_pod("job", restart="Never", command=["sh", "-c", f"sleep 2; exit {code}"]))
    stack.settle(rounds=8, reconcile=True)
    pod = stack.pod("job")
    assert pod["status"]["phase"] == expected
    terminated = container(pod)["state"]["terminated"]
    assert terminated["exitCode"] == code
    assert terminated["reason"] == ("Completed" if code == 0 else "Error")
    assert len(stack.fly.machines) == 1


@pytest.mark.parametrize("policy,code", [("Always", 0), ("OnFailure", 4)])
def test_machine_exit_restarts_the_pod_when_its_policy_asks(stack, policy, code):
    stack.create_pod(virtual_pod("loop", restart=policy, command=["sh", "-c", f"sleep 2; exit {code}"]))
    stack.settle(rounds=6, reconcile=True)
    pod = stack.pod("loop")
    assert container(pod)["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert container(pod)["lastState"]["terminated"]["exitCode"] == code
    stack.advance(15)  # past the first back-off (10 s)
    stack.settle(rounds=3, reconcile=True)
    pod = stack.pod("loop")
    assert container(pod)["restartCount"] == 1
    assert pod["status"]["phase"] == "Running"
    assert sorted(meta(m)["lambdalet_attempt"] for m in machines(stack)) == ["0", "1"]


def test_on_failure_pod_that_exits_zero_succeeds(stack):
    stack.create_pod(virtual_pod("once", restart="OnFailure", command=["sh", "-c", "exit 0"]))
    stack.settle(rounds=8, reconcile=True)
    assert phase(stack, "once") == "Succeeded"


def test_deleted_pod_stops_its_machine_and_is_finalized(stack):
    stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER))
    stack.settle(rounds=4, reconcile=True)
    assert phase(stack, "web") == "Running"
    stack.core.delete_namespaced_pod("web", "default")
    stack.settle(rounds=3, reconcile=True)
    # `sh` as PID 1 ignores SIGTERM: the machine lives until the stop timeout (the pod's 30 s grace)
    [machine] = machines(stack)
    assert stack.pod("web") is not None and machine["state"] == "stopping"
    stack.advance(30)
    stack.settle(rounds=3, reconcile=True)
    assert stack.pod("web") is None
    [machine] = machines(stack)
    [exit_event] = [e for e in machine["events"] if e["type"] == "exit"]
    assert machine["state"] == "stopped" and exit_event["request"]["exit_event"]["requested_stop"]
    assert any(e["reason"] == "Killing" for e in stack.events_of("web"))
    # Fly keeps stopped machines (and bills their disk): once nobody needs it, it is destroyed
    stack.advance(60)
    stack.settle(rounds=3, reconcile=True)
    assert machines(stack) == []


def test_reconcile_alone_converges_when_every_audit_delivery_is_dropped():
    with Stack(backend="fly", audit={"drop": True}) as stack:
        stack.reconcile()
        stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER))
        stack.create_pod(virtual_pod("job", restart="Never", command=["sh", "-c", "exit 1"]))
        stack.settle(rounds=4)
        assert stack.fly.machines == {} and stack.audit_answers == []
        stack.settle(rounds=8, reconcile=True)
        assert phase(stack, "web") == "Running"
        assert phase(stack, "job") == "Failed"
        stack.core.delete_namespaced_pod("web", "default")
        stack.settle(rounds=2, reconcile=True)
        stack.advance(30)
        stack.settle(rounds=6, reconcile=True)
        assert stack.pod("web") is None
        assert stack.fly.violations == []


def test_duplicated_audit_deliveries_start_exactly_one_machine_per_pod():
    with Stack(backend="fly", audit={"duplicate": True}) as stack:
        stack.reconcile()
        for name in ("a", "b", "c"):
            stack.create_pod(virtual_pod(name, command=SLEEP_FOREVER))
        stack.settle(rounds=6, reconcile=True)
        assert sorted(meta(m)["lambdalet_pod_name"] for m in machines(stack)) == ["a", "b", "c"]
        assert stack.fly.violations == []


def test_machine_stopped_out_of_band_shows_in_the_pod(stack):
    stack.create_pod(virtual_pod("victim", restart="Never", command=SLEEP_FOREVER))
    stack.settle(rounds=4, reconcile=True)
    [machine] = machines(stack)
    fly_api(stack, "POST", f"/machines/{machine['id']}/stop", json={"timeout": "5s"})
    stack.settle(rounds=2, reconcile=True)
    stack.advance(5)  # SIGKILL after the stop timeout
    stack.settle(rounds=3, reconcile=True)
    pod = stack.pod("victim")
    assert pod["status"]["phase"] == "Failed"
    assert container(pod)["state"]["terminated"]["exitCode"] == 137


def test_machine_destroyed_under_a_running_pod_fails_it_as_machine_lost(stack):
    stack.create_pod(virtual_pod("gone", command=SLEEP_FOREVER))
    stack.settle(rounds=4, reconcile=True)
    [machine] = machines(stack)
    stack.fly.vanish(machine["id"])
    stack.settle(rounds=2, reconcile=True)
    pod = stack.pod("gone")
    assert pod["status"]["phase"] == "Failed" and pod["status"]["reason"] == "MachineLost"
    assert any(e["reason"] == "MachineLost" for e in stack.events_of("gone"))


def test_out_of_memory_shows_oomkilled(stack):
    stack.create_pod(virtual_pod("hog", restart="Never", command=SLEEP_FOREVER))
    stack.settle(rounds=4, reconcile=True)
    [machine] = machines(stack)
    stack.fly.oom(machine["id"])
    stack.settle(rounds=3, reconcile=True)
    pod = stack.pod("hog")
    assert pod["status"]["phase"] == "Failed"
    terminated = container(pod)["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled" and terminated["exitCode"] == 137


def test_pod_that_fits_no_fly_size_fails_with_a_readable_reason(stack):
    huge = virtual_pod("huge", command=SLEEP_FOREVER,
                       container={"resources": {"requests": {"cpu": "64", "memory": "512Gi"}}})
    stack.create_pod(huge)
    stack.settle(rounds=4, reconcile=True)
    pod = stack.pod("huge")
    assert pod["status"]["phase"] == "Failed"
    assert "Fly" in pod["status"]["message"] or "Fargate" in pod["status"]["message"]  # admission may refuse first
    assert stack.fly.machines == {}


def test_pod_with_two_containers_runs_as_one_multi_container_machine(stack):
    pod = virtual_pod("pair", command=SLEEP_FOREVER)
    pod["spec"]["containers"].append({"name": "sidecar", "image": "public.ecr.aws/docker/library/nginx:1.27",
                                      "command": ["sh", "-c", "echo side; sleep 100000"]})
    stack.create_pod(pod)
    stack.settle(rounds=4, reconcile=True)
    pod = stack.pod("pair")
    assert pod["status"]["phase"] == "Running"
    assert [(c["name"], c["image"], "running" in c["state"]) for c in pod["status"]["containerStatuses"]] == [
        ("main", "public.ecr.aws/docker/library/busybox:1.36", True),
        ("sidecar", "public.ecr.aws/docker/library/nginx:1.27", True)]
    [machine] = machines(stack)
    assert [c["name"] for c in machine["config"]["containers"]] == ["main", "sidecar"]


def test_a_multi_container_pod_completes_when_every_container_has_exited(stack):
    pod = virtual_pod("batch", restart="Never", command=["sh", "-c", "sleep 1; exit 0"])
    pod["spec"]["containers"].append({"name": "second", "image": "busybox", "command": ["sh", "-c", "sleep 3; exit 4"]})
    stack.create_pod(pod)
    stack.settle(rounds=4, reconcile=True)
    stack.advance(5)
    stack.settle(rounds=6, reconcile=True)
    pod = stack.pod("batch")
    assert pod["status"]["phase"] == "Failed"
    assert {c["state"]["terminated"]["exitCode"] for c in pod["status"]["containerStatuses"]} == {4}


def test_image_that_cannot_be_pulled_fails_the_pod_and_says_why(stack):
    stack.create_pod(virtual_pod("badimage", image="registry.example/doesnotexist:1", restart="Never"))
    stack.settle(rounds=4, reconcile=True)
    pod = stack.pod("badimage")
    assert pod["status"]["phase"] == "Failed"
    assert "manifest unknown" in pod["status"]["message"]


def test_a_launch_that_fails_after_the_create_fails_the_pod_with_flys_reason(stack):
    """Fly found the image missing on the host: launch_failed, then destroyed. The
    pod fails to start and says why; it is never shown as a requested stop, and
    no machine is launched again."""
    image = "registry.example/app:just-pushed"
    stack.fly.fail_launch(image)
    stack.create_pod(virtual_pod("late", image=image, restart="Always"))
    stack.settle(rounds=6, reconcile=True)
    pod = stack.pod("late")
    assert pod["status"]["phase"] == "Failed", pod["status"]
    assert "could not launch" in pod["status"]["message"] and "MANIFEST_UNKNOWN" in pod["status"]["message"]
    assert "asked to stop" not in json.dumps(pod["status"])
    assert len(stack.fly.machines) + len(stack.fly.destroyed) == 1


def test_a_machine_whose_host_drops_out_of_reach_keeps_its_pod_running(stack):
    """host_status unreachable, incomplete_config instead of config: the pod's
    machine all the same, neither lost (MachineLost) nor created again."""
    stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER))
    stack.settle(rounds=4, reconcile=True)
    [machine] = machines(stack)
    stack.fly.unreachable(machine["id"])
    stack.advance(60)
    stack.settle(rounds=3, reconcile=True)
    assert phase(stack, "web") == "Running" and len(stack.fly.machines) == 1
    stack.fly.reachable(machine["id"])
    stack.settle(rounds=2, reconcile=True)
    assert phase(stack, "web") == "Running" and list(stack.fly.machines) == [machine["id"]]


def test_capacity_error_moves_the_machine_to_a_fallback_region(stack):
    stack.fly.no_capacity("iad", times=5)
    stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER))
    stack.settle(rounds=4, reconcile=True)
    assert phase(stack, "web") == "Running"
    [machine] = machines(stack)
    assert machine["region"] == "ord"


def test_capacity_everywhere_waits_and_says_why_then_recovers(stack):
    stack.fly.no_capacity(times=2)  # iad, then the fallback ord
    stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER))
    stack.sim.scheduler.run_once()
    stack.audit.flush()
    pod = stack.pod("web")
    waiting = container(pod)["state"]["waiting"]
    assert waiting["reason"] == "ProviderBackOff" and "capacity" in waiting["message"]
    assert any(e["reason"] == "FailedCreateMachine" for e in stack.events_of("web"))
    stack.advance(10)  # the create back-off
    stack.settle(rounds=4, reconcile=True)
    assert phase(stack, "web") == "Running"


def test_throttled_create_is_retried_within_the_call(stack):
    stack.fly.throttle("create", times=1, retry_after=0)
    stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER))
    stack.settle(rounds=4, reconcile=True)
    assert phase(stack, "web") == "Running"
    assert [s for (m, p, s) in stack.fly.requests if m == "POST" and p.endswith("/machines")] == [429, 200]


def test_duplicate_machine_from_a_racing_create_is_removed_keeping_the_oldest(stack):
    """A second machine for the same (pod, attempt), as an invocation that bypassed the claim would leave."""
    from chalicelib.machines.fly import create_request
    from chalicelib.pod_spec import machine_spec

    stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER))
    stack.settle(rounds=4, reconcile=True)
    [first] = machines(stack)
    stack.advance(5)
    racing = create_request(machine_spec(stack.pod("web"), NODE, 0), "iad")
    del racing["name"]  # names are unique in an app (name_taken): a racer that sent none
    fly_api(stack, "POST", "/machines", json=racing)
    assert len(stack.fly.machines) == 2
    stack.settle(rounds=4, reconcile=True)
    assert [m["id"] for m in machines(stack)] == [first["id"]]
    assert phase(stack, "web") == "Running"


@pytest.fixture(scope="module")
def fly_policy():
    """The functions' policy of a Fly-only stack (infra/iam.py over its moto-created outputs)."""
    from tests.aws_stack import function_policy

    return function_policy("fly")


def test_every_aws_call_of_the_fly_backend_is_allowed_by_the_iam_policy(fly_policy, stack):
    from chalicelib import wiring
    from tests.aws_stack import allows

    policy, outputs = fly_policy
    called: set[str] = set()
    wiring.world().backend_for(NODE).claims.db.meta.events.register(
        "before-call.dynamodb", lambda model, **_: called.add(f"dynamodb:{model.name}"))
    stack.fly.no_capacity(times=2)  # a refused create releases its claim (DeleteItem)
    stack.create_pod(virtual_pod("web", command=SLEEP_FOREVER))
    stack.settle(rounds=2, reconcile=True)
    stack.advance(10)  # the create back-off
    stack.settle(rounds=4, reconcile=True)
    assert phase(stack, "web") == "Running"
    assert {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"} <= called
    for action in sorted(called | {"secretsmanager:GetSecretValue"}):
        resource = outputs["FlyClaimsTableArn"] if action.startswith("dynamodb") else outputs["FlyTokenSecret"]
        assert allows(policy, action, resource), action


def test_one_deployment_serves_an_ecs_node_and_a_fly_node():
    """LAMBDALET_NODE_OVERRIDES: several nodes, each on its own backend, one set of functions."""
    from tests.world.stack import NODE as ECS_NODE

    fly_node = "lambdalet-fly-ams"
    with Stack(nodes=(ECS_NODE, fly_node), node_overrides={fly_node: {"backend": "fly", "fly_region": "ams"}}) as s:
        s.reconcile()
        for name in (ECS_NODE, fly_node):
            node = json.loads(s.core.read_node(name, _preload_content=False).data)
            assert node["metadata"]["labels"]["lambdalet.io/backend"] == ("fly" if name == fly_node else "ecs")
        s.create_pod(virtual_pod("on-ecs", command=SLEEP_FOREVER, node=ECS_NODE))
        s.create_pod(virtual_pod("on-fly", command=SLEEP_FOREVER, node=fly_node))
        s.settle(rounds=5, reconcile=True)
        assert phase(s, "on-ecs") == "Running" and phase(s, "on-fly") == "Running"
        [task] = s.tasks()
        assert {t["key"]: t["value"] for t in task["tags"]}["lambdalet.io/pod-name"] == "on-ecs"
        [machine] = machines(s)
        assert meta(machine)["lambdalet_pod_name"] == "on-fly" and machine["region"] == "ams"
