"""The Fargate data plane on top of moto: lifecycle, exit codes, events."""

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.server import ThreadedMotoServer

from chalicelib.machines.contract import MachinePhase, StopCause
from chalicelib.machines.ecs import EcsBackend, machine_from_task
from chalicelib.pod_spec import machine_spec
from tests.world.fargate_plane import Clock, FargatePlane, Limits, make_network, program_of

CLUSTER = "lambdalet"
REGION = "us-east-1"


@pytest.fixture
def aws_env(monkeypatch):
    for k, v in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECS"):
        monkeypatch.delenv(k, raising=False)


def _setup(endpoint_url=None):
    ecs = boto3.client("ecs", region_name=REGION, endpoint_url=endpoint_url)
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint_url)
    ecs.create_cluster(clusterName=CLUSTER)
    return ecs, EcsBackend(ecs, cluster=CLUSTER, **make_network(ec2))


@pytest.fixture
def world(aws_env):
    with mock_aws():
        clock = Clock()
        plane = FargatePlane(cluster=CLUSTER, clock=clock)
        ecs, backend = _setup()
        yield plane, ecs, backend
        plane.close()


def pod(uid, *containers, grace=30):
    return {
        "metadata": {"name": f"p-{uid[-4:]}", "namespace": "default", "uid": uid},
        "spec": {"containers": list(containers), "terminationGracePeriodSeconds": grace},
    }


def describe(ecs, arn):
    return ecs.describe_tasks(cluster=CLUSTER, tasks=[arn], include=["TAGS"])["tasks"][0]


UID1 = "00000000-0000-4000-8000-000000000001"


def test_lifecycle_steps_and_events(world):
    plane, ecs, backend = world
    m = backend.create(machine_spec(pod(UID1, {"name": "app", "image": "nginx"}), "vk", 0))
    assert describe(ecs, m.id)["lastStatus"] == "PROVISIONING"
    # issue 8 ECS 5: the IP comes late: PRECREATED ENI, no address, until PENDING
    assert m.ip is None and describe(ecs, m.id)["attachments"][0]["status"] == "PRECREATED"
    assert backend.get(m.id).ip is None
    statuses = []
    for _ in range(2):
        statuses += [e["detail"]["lastStatus"] for e in plane.step()]
    assert statuses == ["PROVISIONING", "PENDING", "RUNNING"]  # no ACTIVATING without a load balancer
    t = describe(ecs, m.id)  # moto does not walk it further on describe
    assert describe(ecs, m.id)["lastStatus"] == "RUNNING" and t["startedAt"] and t["createdAt"]
    assert plane.step() == []  # nothing changes while it runs
    assert plane.state(m.id)["lastStatus"] == "RUNNING"
    (c,) = t["containers"]
    assert c["lastStatus"] == "RUNNING" and c["runtimeId"] and c["imageDigest"].startswith("sha256:")
    assert "exitCode" not in c


def test_event_envelope_and_detail_shape(world):
    plane, ecs, backend = world
    m = backend.create(machine_spec(pod(UID1, {"name": "app", "image": "nginx"}), "vk", 0))
    events = plane.settle()
    e = events[-1]
    assert set(e) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
    assert (e["version"], e["detail-type"], e["source"], e["account"], e["region"]) == (
        "0", "ECS Task State Change", "aws.ecs", "123456789012", REGION)
    assert e["resources"] == [m.id]
    d = e["detail"]
    assert d["taskArn"] == m.id and d["clusterArn"].endswith(f":cluster/{CLUSTER}")
    assert d["createdAt"].endswith("Z") and d["startedAt"].endswith("Z")
    assert d["attachments"][0]["type"] == "eni"
    assert d["version"] == len(events)  # one version per change
    assert "tags" not in d
    assert [c["name"] for c in d["containers"]] == ["app"]
    # the same translation serves events (ISO strings) and DescribeTasks (datetimes)
    from_event = machine_from_task(d, tags=describe(ecs, m.id)["tags"])
    from_api = backend.get(m.id)
    assert from_event == from_api


def test_all_containers_come_back_with_their_real_exit_codes(world):
    plane, ecs, backend = world
    spec = machine_spec(
        pod(UID1,
            {"name": "main", "image": "busybox", "command": ["sh", "-c", "echo working; sleep 5 && exit 3"]},
            {"name": "side", "image": "nginx"},
            {"name": "slow", "image": "busybox", "command": ["sh", "-c"], "args": ["sleep 10; true"]}),
        "vk", 0,
    )
    m = backend.create(spec)
    plane.settle()
    assert backend.get(m.id).phase == MachinePhase.RUNNING
    plane.clock.advance(4.9)
    plane.settle()
    assert backend.get(m.id).phase == MachinePhase.RUNNING  # sleep 5 not over yet
    plane.clock.advance(0.1)
    plane.settle()
    t = describe(ecs, m.id)
    # main exited: ECS stops the task (all containers essential); nginx
    # exits on SIGTERM, the PID-1 shell of "slow" ignores it and sleeps on
    assert (t["lastStatus"], t["desiredStatus"]) == ("RUNNING", "STOPPED")
    assert (t["stopCode"], t["stoppedReason"]) == ("EssentialContainerExited", "Essential container in task exited")
    codes = {c["name"]: (c["lastStatus"], c.get("exitCode")) for c in t["containers"]}
    assert codes == {"main": ("STOPPED", 3), "side": ("STOPPED", 143), "slow": ("RUNNING", None)}
    assert backend.get(m.id).phase == MachinePhase.STOPPING
    plane.clock.advance(5)  # "slow" finishes its sleep before the 30 s stopTimeout
    plane.settle()
    t = describe(ecs, m.id)
    assert t["lastStatus"] == "STOPPED"
    assert [(c["name"], c["exitCode"]) for c in t["containers"]] == [("main", 3), ("side", 143), ("slow", 0)]
    m = backend.get(m.id)
    assert (m.phase, m.stop_cause) == (MachinePhase.STOPPED, StopCause.EXITED)
    assert [(c.state, c.reason) for c in m.containers] == [("terminated", "Error"), ("terminated", "Error"), ("terminated", "Completed")]


def test_essential_exit_zero_completes(world):
    plane, ecs, backend = world
    m = backend.create(machine_spec(pod(UID1, {"name": "job", "image": "busybox", "command": ["sh", "-c", "sleep 2; exit 0"]}), "vk", 0))
    plane.settle()
    plane.clock.advance(2)
    plane.settle()
    got = backend.get(m.id)
    assert got.phase == MachinePhase.STOPPED and got.containers[0].reason == "Completed"
    assert got.containers[0].exit_code == 0


def test_image_that_does_not_exist_fails_to_start(world):
    plane, ecs, backend = world
    m = backend.create(machine_spec(pod(UID1, {"name": "app", "image": "registry.example/doesnotexist:1"}), "vk", 0))
    events = plane.settle()
    assert events[-1]["detail"]["lastStatus"] == "STOPPED"
    assert events[-1]["detail"]["stopCode"] == "TaskFailedToStart"
    t = describe(ecs, m.id)
    assert t["stoppedReason"].startswith("CannotPullContainerError: ")
    assert "startedAt" not in t
    got = backend.get(m.id)
    assert (got.phase, got.stop_cause) == (MachinePhase.STOPPED, StopCause.FAILED_TO_START)
    assert got.containers[0].reason == "ErrImagePull"


def test_stop_task_sigterm_then_sigkill_after_stop_timeout(world):
    plane, ecs, backend = world
    m = backend.create(machine_spec(pod(UID1, {"name": "app", "image": "busybox", "command": ["sh", "-c", "sleep 3600"]}, grace=20), "vk", 0))
    plane.settle()
    resp = ecs.stop_task(cluster=CLUSTER, task=m.id, reason="pod deleted")["task"]
    assert (resp["desiredStatus"], resp["lastStatus"], resp["stopCode"]) == ("STOPPED", "RUNNING", "UserInitiated")
    plane.settle()
    t = describe(ecs, m.id)
    assert (t["lastStatus"], t["desiredStatus"]) == ("RUNNING", "STOPPED")  # waiting for the shell, which ignores SIGTERM
    assert t.get("tags", []) == []  # issue 8 ECS 3: "Any tags associated with the task will be deleted"
    assert backend.get(m.id).pod.uid == UID1  # the identity survives in group/startedBy
    plane.clock.advance(19)
    assert plane.settle() == []
    plane.clock.advance(1)
    statuses = [e["detail"]["lastStatus"] for e in plane.settle()]
    assert statuses == ["DEPROVISIONING", "STOPPED"]
    t = describe(ecs, m.id)
    assert (t["stopCode"], t["stoppedReason"]) == ("UserInitiated", "pod deleted")
    assert t["containers"][0]["exitCode"] == 137
    assert t["stoppedAt"] >= t["stoppingAt"]


def test_stop_of_a_sigterm_aware_program_exits_143(world):
    plane, ecs, backend = world
    m = backend.create(machine_spec(pod(UID1, {"name": "web", "image": "nginx"}), "vk", 0))
    plane.settle()
    backend.delete(m.id, 30, "scale down")
    plane.settle()
    got = backend.get(m.id)
    assert (got.phase, got.stop_cause, got.containers[0].exit_code) == (MachinePhase.STOPPED, StopCause.REQUESTED, 143)


def test_stop_before_it_runs(world):
    plane, ecs, backend = world
    m = backend.create(machine_spec(pod(UID1, {"name": "web", "image": "nginx"}), "vk", 0))
    backend.delete(m.id, 30, "changed my mind")
    plane.settle()
    t = describe(ecs, m.id)
    assert t["lastStatus"] == "STOPPED" and "exitCode" not in t["containers"][0]
    assert backend.get(m.id).stop_cause == StopCause.REQUESTED


def test_stop_task_of_unknown_task_is_invalid_parameter(world):
    plane, ecs, backend = world
    with pytest.raises(ClientError) as e:
        ecs.stop_task(cluster=CLUSTER, task=f"arn:aws:ecs:us-east-1:123456789012:task/{CLUSTER}/feedfacefeedfacefeedfacefeedface")
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "not found" in e.value.response["Error"]["Message"]


def test_kill_is_a_spot_reclaim(world):
    plane, ecs, backend = world
    m = backend.create(machine_spec(pod(UID1, {"name": "web", "image": "nginx"}), "vk", 0))
    plane.settle()
    plane.kill(m.id)
    plane.settle()
    got = backend.get(m.id)
    assert (got.phase, got.stop_cause, got.stop_reason) == (MachinePhase.STOPPED, StopCause.LOST, "Your Spot Task was interrupted.")
    assert describe(ecs, m.id)["stopCode"] == "TerminationNotice"  # issue 8 ECS 8: what Fargate Spot sends


def test_abrupt_kill_leaves_no_exit_codes(world):
    plane, ecs, backend = world
    m = backend.create(machine_spec(pod(UID1, {"name": "web", "image": "nginx"}), "vk", 0))
    plane.settle()
    plane.kill(m.id, "Task stopped due to infrastructure issue", "InfrastructureHealth", abrupt=True)
    assert [e["detail"]["lastStatus"] for e in plane.step()] == ["STOPPED"]
    got = backend.get(m.id)
    assert got.stop_cause == StopCause.LOST
    assert (got.containers[0].reason, got.containers[0].exit_code) == ("ContainerStatusUnknown", 137)


def test_tasks_started_before_the_plane_are_adopted(aws_env):
    with mock_aws():
        ecs, backend = _setup()
        from moto.moto_api import state_manager

        m = backend.create(machine_spec(pod(UID1, {"name": "web", "image": "nginx"}), "vk", 0))
        assert m.phase == MachinePhase.RUNNING  # bare moto: born RUNNING
        with FargatePlane(cluster=CLUSTER) as plane:
            events = plane.step()
            assert [e["detail"]["lastStatus"] for e in events] == ["PROVISIONING", "PENDING"]
        assert state_manager.get_transition("ecs::task") == {"progression": "manual", "times": 1}


@pytest.mark.parametrize(
    ("argv", "seconds", "code"),
    [
        (["sh", "-c", "sleep 2; exit 4"], 2, 4),
        (["sh", "-c", "false && echo never; exit 5"], 0, 5),
        (["sh", "-c", "false"], 0, 1),
        (["sh", "-c", "true && sleep 1.5"], 1.5, 0),
        (["/bin/sh", "-c", "echo 'a; b' ; sleep 1\nsleep 2"], 3, 0),
        (["sleep", "7"], 7, 0),
        (["sh", "-c", "exit 300"], 0, 44),
    ],
)
def test_program_interpreter(argv, seconds, code):
    p = program_of(argv[:1], argv[1:])
    assert (p.seconds, p.exit_code) == (seconds, code)


@pytest.mark.parametrize("argv", [["nginx", "-g", "daemon off;"], [], ["sh", "-c", "python app.py"], ["sh", "-c", "sleep infinity"]])
def test_programs_that_run_forever(argv):
    assert program_of(None, argv).exit_code is None


def test_threaded_moto_server_in_the_same_process(aws_env):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        plane = FargatePlane(cluster=CLUSTER)
        try:
            ecs, backend = _setup(url)
            spec = machine_spec(pod(UID1, {"name": "a", "image": "busybox", "command": ["sh", "-c", "exit 9"]},
                                    {"name": "b", "image": "nginx"}), "vk", 0)
            m = backend.create(spec)
            assert backend.create(spec).id == m.id
            plane.settle()
            t = describe(ecs, m.id)
            assert [(c["name"], c.get("exitCode")) for c in t["containers"]] == [("a", 9), ("b", 143)]
            assert [x.id for x in backend.list("vk")] == [m.id]
            with pytest.raises(ClientError):
                ecs.stop_task(cluster=CLUSTER, task="feedfacefeedfacefeedfacefeedface")
        finally:
            plane.close()
            from moto.ecs.models import ecs_backends

            backend = ecs_backends["123456789012"][REGION]
            assert "run_task" not in backend.__dict__  # moto's own methods again
            requests.post(f"{url}/moto-api/reset")  # leave no state to later tests
    finally:
        server.stop()


def test_stop_timeout_counts_from_the_stop_request(world):
    plane, ecs, backend = world
    m = backend.create(machine_spec(pod(UID1, {"name": "app", "image": "busybox", "command": ["sh", "-c", "sleep 3600"]}, grace=20), "vk", 0))
    plane.settle()
    backend.delete(m.id, 20, "bye")
    plane.clock.advance(20)  # nobody looked for 20 s: SIGKILL is already due
    plane.settle()
    t = describe(ecs, m.id)
    assert t["lastStatus"] == "STOPPED" and t["containers"][0]["exitCode"] == 137


# -- issue 8: the plane answers as AWS documents (sources in tests/fixtures/README.md)


def _raw(endpoint_url=None):
    """An ECS client without the SDK's retries: each call is one request."""
    from botocore.config import Config

    return boto3.client("ecs", region_name=REGION, endpoint_url=endpoint_url,
                        config=Config(retries={"total_max_attempts": 1}))


def _run(ecs, backend, token, **changes):
    td = ecs.list_task_definitions()["taskDefinitionArns"][0]
    args = dict(cluster=CLUSTER, taskDefinition=td, launchType="FARGATE", clientToken=token,
                networkConfiguration={"awsvpcConfiguration": {"subnets": backend.subnets,
                                                              "securityGroups": backend.security_groups}})
    args.update(changes)
    return ecs.run_task(**args)


def test_client_token_returns_the_same_task_and_conflicts_on_changed_parameters(world):
    plane, ecs, backend = world
    backend.ensure_task_definition(machine_spec(pod(UID1, {"name": "app", "image": "nginx"}), "vk", 0))
    first = _run(ecs, backend, "tok-1")["tasks"][0]["taskArn"]
    assert _run(ecs, backend, "tok-1")["tasks"][0]["taskArn"] == first  # idempotent retry
    with pytest.raises(ClientError) as err:
        _run(ecs, backend, "tok-1", startedBy="someone-else")  # any parameter changed
    assert err.value.response["Error"]["Code"] == "ConflictException"
    assert err.value.response["resourceIds"] == [first]
    plane.clock.advance(24 * 3600)  # the token lasts 24 h
    assert _run(ecs, backend, "tok-1", startedBy="someone-else")["tasks"][0]["taskArn"] != first


def test_started_by_must_be_the_only_list_filter_and_running_is_the_default(world):
    plane, ecs, backend = world
    m = backend.create(machine_spec(pod(UID1, {"name": "app", "image": "nginx"}), "vk", 0))
    with pytest.raises(ClientError) as err:
        ecs.list_tasks(cluster=CLUSTER, startedBy="lambdalet/vk", desiredStatus="RUNNING")
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"
    assert ecs.list_tasks(cluster=CLUSTER, startedBy="lambdalet/vk")["taskArns"] == [m.id]
    ecs.stop_task(cluster=CLUSTER, task=m.id)
    assert ecs.list_tasks(cluster=CLUSTER, startedBy="lambdalet/vk")["taskArns"] == []  # desired RUNNING only
    assert ecs.list_tasks(cluster=CLUSTER, desiredStatus="STOPPED")["taskArns"] == [m.id]


def test_list_tasks_pages_by_one_hundred(world):
    plane, ecs, backend = world
    backend.ensure_task_definition(machine_spec(pod(UID1, {"name": "app", "image": "nginx"}), "vk", 0))
    plane.set_limits(Limits.unlimited())
    for i in range(12):
        _run(ecs, backend, f"t{i}", count=10)
    first = ecs.list_tasks(cluster=CLUSTER)
    assert len(first["taskArns"]) == 100 and first["nextToken"]
    rest = ecs.list_tasks(cluster=CLUSTER, nextToken=first["nextToken"])
    assert len(rest["taskArns"]) == 20 and "nextToken" not in rest


def test_stopped_tasks_vanish_after_an_hour(world):
    plane, ecs, backend = world
    m = backend.create(machine_spec(pod(UID1, {"name": "app", "image": "nginx"}), "vk", 0))
    plane.settle()
    backend.delete(m.id, 30, "lambdalet: test")
    plane.settle()
    assert backend.get(m.id).phase == MachinePhase.STOPPED
    plane.clock.advance(3599)
    assert backend.get(m.id) is not None
    plane.clock.advance(1)
    assert backend.get(m.id) is None and backend.list("vk") == []


def test_run_task_rate_and_fargate_launch_bucket(world):
    plane, _, backend = world
    ecs = _raw()
    backend.ensure_task_definition(machine_spec(pod(UID1, {"name": "app", "image": "nginx"}), "vk", 0))
    # Fargate launches: burst 100 (10 calls of 10 tasks), then 20/s
    for i in range(10):
        _run(ecs, backend, f"b{i}", count=10)
    plane.clock.advance(0.5)  # RunTask's own bucket is not the limit here (20 calls/s)
    with pytest.raises(ClientError) as err:
        _run(ecs, backend, "over", count=20)
    assert (err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]) == (
        "ThrottlingException", "Rate exceeded")
    _run(ecs, backend, "refilled", count=10)  # 0.5 s refilled 10 launches
    # RunTask calls: 20 a second, burst and sustained
    plane.set_limits(Limits(launches=None))
    for i in range(20):
        _run(ecs, backend, f"c{i}")
    with pytest.raises(ClientError) as err:
        _run(ecs, backend, "c20")
    assert err.value.response["Error"]["Code"] == "ThrottlingException" and plane.throttled == 2


def test_run_task_failures_and_oom(world):
    from tests.world.fargate_plane import CAPACITY_REASON, OOM_REASON

    plane, ecs, backend = world
    spec = machine_spec(pod(UID1, {"name": "app", "image": "memhog"}), "vk", 0)
    plane.run_task_failures.append(CAPACITY_REASON)
    backend.ensure_task_definition(spec)
    resp = _run(ecs, backend, "cap")
    assert resp["tasks"] == [] and resp["failures"][0]["reason"].startswith("Capacity is unavailable")
    m = backend.create(spec)
    plane.settle()
    t = describe(ecs, m.id)
    assert (t["containers"][0]["reason"], t["containers"][0]["exitCode"]) == (OOM_REASON, 137)
    assert backend.get(m.id).containers[0].reason == "OOMKilled"


def test_stopped_reason_is_cut_to_128_characters(world):
    plane, ecs, backend = world
    m = backend.create(machine_spec(pod(UID1, {"name": "app", "image": "nginx"}), "vk", 0))
    ecs.stop_task(cluster=CLUSTER, task=m.id, reason="x" * 255)
    assert len(describe(ecs, m.id)["stoppedReason"]) == 128


def test_events_carry_a_growing_version_and_may_come_twice_out_of_order(world):
    import random

    from tests.world.fargate_plane import at_least_once

    plane, ecs, backend = world
    m = backend.create(machine_spec(pod(UID1, {"name": "app", "image": "nginx"}), "vk", 0))
    events = plane.settle()
    backend.delete(m.id, 30, "lambdalet: test")
    events += plane.settle()
    versions = [e["detail"]["version"] for e in events]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert [e["detail"]["lastStatus"] for e in events] == [
        "PROVISIONING", "PENDING", "RUNNING", "RUNNING", "DEPROVISIONING", "STOPPED"]
    assert backend.machine_from_event(events[-1]).version == versions[-1] == backend.get(m.id).version
    delivered = at_least_once(events, random.Random(3), duplicate=0.5)
    assert len(delivered) > len(events) and delivered != sorted(delivered, key=lambda e: e["detail"]["version"])
