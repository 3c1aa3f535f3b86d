"""EcsBackend against moto (with the Fargate plane) and botocore's Stubber."""

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.stub import Stubber
from moto import mock_aws

from chalicelib.machines.contract import (
    MachineBackend,
    MachinePhase,
    PermanentMachineError,
    StopCause,
    TransientMachineError,
)
from chalicelib.machines.ecs import (
    EcsBackend,
    classify,
    client_config,
    client_token,
    failure_error,
    make_client,
    node_of_started_by,
    started_by,
    task_definition,
    task_tags,
)
from chalicelib.pod_spec import machine_spec
from tests.world.fargate_plane import FargatePlane, Limits, make_network

CLUSTER = "lambdalet"


@pytest.fixture
def aws_env(monkeypatch):
    for k, v in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECS"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture
def world(aws_env):
    with mock_aws():
        plane = FargatePlane(cluster=CLUSTER)
        ecs = make_client("us-east-1")
        ecs.create_cluster(clusterName=CLUSTER)
        net = make_network(boto3.client("ec2", region_name="us-east-1"))
        backend = EcsBackend(ecs, cluster=CLUSTER, **net)
        calls: list[str] = []
        ecs.meta.events.register("before-call.ecs.*", lambda model, **kw: calls.append(model.name))
        yield backend, plane, ecs, calls
        plane.close()


def pod(uid="00000000-0000-4000-8000-000000000001", name="web-1", image="nginx:1.27", **container):
    return {
        "metadata": {"name": name, "namespace": "shop", "uid": uid},
        "spec": {
            "containers": [{"name": "app", "image": image, **container}],
            "terminationGracePeriodSeconds": 10,
        },
    }


def all_task_arns(ecs):
    return ecs.list_tasks(cluster=CLUSTER, desiredStatus="RUNNING")["taskArns"] + ecs.list_tasks(
        cluster=CLUSTER, desiredStatus="STOPPED"
    )["taskArns"]


def test_is_a_machine_backend(world):
    backend, *_ = world
    assert isinstance(backend, EcsBackend)
    assert backend.name == "ecs"
    # structural check against the Protocol's methods
    for method in ("create", "list", "get", "delete"):
        assert callable(getattr(backend, method)) and hasattr(MachineBackend, method)


def test_create_runs_a_tagged_fargate_task(world):
    backend, plane, ecs, _ = world
    seen = {}
    ecs.meta.events.register("provide-client-params.ecs.RunTask", lambda params, **kw: seen.update(params))
    spec = machine_spec(pod(), "vk", 0)
    m = backend.create(spec)
    assert m.phase == MachinePhase.PENDING  # PROVISIONING
    assert (m.pod.uid, m.pod.name, m.pod.namespace, m.node, m.attempt) == (spec.pod.uid, "web-1", "shop", "vk", 0)
    assert seen["launchType"] == "FARGATE"
    assert seen["clientToken"] == client_token(spec.pod.uid, 0)
    assert len(seen["clientToken"]) <= 64
    assert seen["startedBy"] == "lambdalet/vk"  # one ListTasks key per node
    assert seen["group"] == f"lambdalet:vk:shop:web-1:{spec.pod.uid}:0"  # survives StopTask, unlike tags
    assert seen["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"
    assert seen["networkConfiguration"]["awsvpcConfiguration"]["securityGroups"] == backend.security_groups
    t = ecs.describe_tasks(cluster=CLUSTER, tasks=[m.id], include=["TAGS"])["tasks"][0]
    tags = {x["key"]: x["value"] for x in t["tags"]}
    assert tags == {
        "lambdalet.io/pod-namespace": "shop",
        "lambdalet.io/pod-name": "web-1",
        "lambdalet.io/pod-uid": spec.pod.uid,
        "lambdalet.io/node": "vk",
        "lambdalet.io/attempt": "0",
    }
    td = ecs.describe_task_definition(taskDefinition=t["taskDefinitionArn"])["taskDefinition"]
    assert td["networkMode"] == "awsvpc"
    assert td["requiresCompatibilities"] == ["FARGATE"]
    assert (td["cpu"], td["memory"]) == ("256", "512")
    (cd,) = td["containerDefinitions"]
    assert cd["essential"] is True and cd["stopTimeout"] == 10 and cd["memoryReservation"] == 512


def test_create_is_idempotent_by_uid_and_attempt(world):
    backend, plane, ecs, _ = world
    spec = machine_spec(pod(), "vk", 0)
    first = backend.create(spec)
    again = backend.create(spec)
    assert again.id == first.id
    assert len(all_task_arns(ecs)) == 1
    # still the same machine once it has stopped (ECS keeps it ~1 h)
    backend.delete(first.id, 10, "test")
    plane.settle()
    assert backend.create(spec).id == first.id
    assert len(all_task_arns(ecs)) == 1
    # a new attempt is a new machine
    second = backend.create(spec.model_copy(update={"attempt": 1}))
    assert second.id != first.id and second.attempt == 1
    assert len(all_task_arns(ecs)) == 2


def test_identical_specs_share_one_task_definition(world):
    backend, _, ecs, calls = world
    a = backend.create(machine_spec(pod(uid="00000000-0000-4000-8000-00000000000a", name="web-a"), "vk", 0))
    calls.clear()
    b = backend.create(machine_spec(pod(uid="00000000-0000-4000-8000-00000000000b", name="web-b"), "vk", 0))
    assert "RegisterTaskDefinition" not in calls and "DescribeTaskDefinition" not in calls  # warm cache
    arn = lambda m: ecs.describe_tasks(cluster=CLUSTER, tasks=[m.id])["tasks"][0]["taskDefinitionArn"]
    assert arn(a) == arn(b)
    # a cold backend finds the registered family instead of registering again
    cold = EcsBackend(ecs, cluster=CLUSTER, subnets=backend.subnets, security_groups=backend.security_groups)
    calls.clear()
    c = cold.create(machine_spec(pod(uid="00000000-0000-4000-8000-00000000000c", name="web-c"), "vk", 0))
    assert "DescribeTaskDefinition" in calls and "RegisterTaskDefinition" not in calls
    assert arn(c) == arn(a)
    d = backend.create(machine_spec(pod(uid="00000000-0000-4000-8000-00000000000d", image="nginx:1.28"), "vk", 0))
    assert arn(d) != arn(a)
    families = {x.rsplit("/", 1)[1].split(":")[0] for x in ecs.list_task_definitions()["taskDefinitionArns"]}
    assert len(families) == 2 and all(f.startswith("lambdalet-") for f in families)


def test_task_definition_translation():
    spec = machine_spec(
        {
            "metadata": {"name": "p", "namespace": "n", "uid": "u"},
            "spec": {
                "terminationGracePeriodSeconds": 300,
                "containers": [
                    {"name": "a", "image": "busybox", "command": ["sh", "-c"], "args": ["echo hi"],
                     "env": [{"name": "X", "value": "1"}], "ports": [{"containerPort": 53, "protocol": "UDP"}],
                     "resources": {"requests": {"cpu": "1", "memory": "3Gi"}}},
                    {"name": "b", "image": "nginx", "resources": {"limits": {"memory": "1Gi"}}},
                ],
            },
        },
        "vk", 0,
    )
    td = task_definition(spec)
    assert (td["cpu"], td["memory"]) == ("1024", "4096")
    a, b = td["containerDefinitions"]
    assert a["entryPoint"] == ["sh", "-c"] and a["command"] == ["echo hi"]
    assert "entryPoint" not in b and "command" not in b
    assert a["environment"] == [{"name": "X", "value": "1"}]
    assert a["portMappings"] == [{"containerPort": 53, "protocol": "udp"}]
    assert a["stopTimeout"] == 120  # Fargate's maximum
    assert a["memoryReservation"] + b["memoryReservation"] <= 4096
    assert all(c["essential"] for c in (a, b))
    # the pod's identity is not part of the content address
    other = spec.model_copy(update={"pod": spec.pod.model_copy(update={"uid": "v", "name": "q"}), "node": "vk2", "attempt": 3})
    assert task_definition(other)["family"] == td["family"]
    assert task_definition(spec.model_copy(update={"termination_grace_seconds": 5}))["family"] != td["family"]


def test_too_many_containers_is_permanent():
    p = {"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": [{"name": f"c{i}", "image": "x"} for i in range(11)]}}
    with pytest.raises(PermanentMachineError, match="at most 10"):
        task_definition(machine_spec(p, "vk", 0))


def test_list_returns_exactly_the_nodes_machines_including_stopped(world):
    backend, plane, ecs, _ = world
    a = backend.create(machine_spec(pod(uid="00000000-0000-4000-8000-0000000000a1"), "vk", 0))
    b = backend.create(machine_spec(pod(uid="00000000-0000-4000-8000-0000000000b2"), "vk", 0))
    other = backend.create(machine_spec(pod(uid="00000000-0000-4000-8000-0000000000c3"), "vk-other", 0))
    # a task that is not ours at all
    td = ecs.describe_tasks(cluster=CLUSTER, tasks=[a.id])["tasks"][0]["taskDefinitionArn"]
    ecs.run_task(cluster=CLUSTER, taskDefinition=td, launchType="FARGATE",
                 networkConfiguration={"awsvpcConfiguration": {"subnets": backend.subnets, "securityGroups": backend.security_groups}})
    plane.settle()
    backend.delete(b.id, 10, "bye")
    plane.settle()
    listed = {m.id: m for m in backend.list("vk")}
    assert set(listed) == {a.id, b.id}
    assert listed[a.id].phase == MachinePhase.RUNNING
    assert listed[b.id].phase == MachinePhase.STOPPED and listed[b.id].stop_cause == StopCause.REQUESTED
    assert [m.id for m in backend.list("vk-other")] == [other.id]
    assert backend.list("nobody") == []


def test_list_costs_pages_not_tasks(world):
    backend, plane, ecs, calls = world
    backend.create(machine_spec(pod(), "vk", 0))
    td = ecs.list_task_definitions()["taskDefinitionArns"][0]
    plane.set_limits(Limits.unlimited())  # 110 launches at one instant: past Fargate's burst of 100
    for i in range(11):  # 110 more tasks of the node
        ecs.run_task(cluster=CLUSTER, taskDefinition=td, launchType="FARGATE", count=10,
                     startedBy=started_by("vk"), group=f"lambdalet:vk:shop:bulk:bulk-{i}:0",
                     networkConfiguration={"awsvpcConfiguration": {"subnets": backend.subnets, "securityGroups": backend.security_groups}})
    calls.clear()
    machines = backend.list("vk")
    assert len(machines) == 111
    assert calls.count("ListTasks") == 3  # the node's startedBy listing (2 pages of 100) + the stopped tasks
    assert calls.count("DescribeTasks") == 2  # batches of 100


def test_delete_is_idempotent_and_ends_user_initiated(world):
    backend, plane, ecs, _ = world
    m = backend.create(machine_spec(pod(command=["sh", "-c", "sleep 3600"]), "vk", 0))
    plane.settle()
    assert backend.get(m.id).phase == MachinePhase.RUNNING
    backend.delete(m.id, 10, "pod deleted " + "x" * 400)  # StopTask takes 255; ECS keeps ~128
    backend.delete(m.id, 10, "again")
    got = backend.get(m.id)
    assert got.phase == MachinePhase.STOPPING and got.stop_cause == StopCause.REQUESTED
    assert got.stop_reason == ("pod deleted " + "x" * 400)[:128]  # the first reason wins
    plane.settle()
    plane.clock.advance(10)  # stopTimeout: the shell ignores SIGTERM
    plane.settle()
    got = backend.get(m.id)
    assert got.phase == MachinePhase.STOPPED
    assert got.containers[0].exit_code == 137
    backend.delete(m.id, 10, "once more")  # stopped: still fine
    backend.delete(f"arn:aws:ecs:us-east-1:123456789012:task/{CLUSTER}/0123456789abcdef0123456789abcdef", 10, "gone")


def test_get_of_a_missing_task_is_none(world):
    backend, *_ = world
    assert backend.get(f"arn:aws:ecs:us-east-1:123456789012:task/{CLUSTER}/0123456789abcdef0123456789abcdef") is None


def test_machine_from_event_is_pure_though_events_carry_no_tags(world):
    backend, plane, ecs, calls = world
    m = backend.create(machine_spec(pod(), "vk", 0))
    events = plane.step()
    assert events and all("tags" not in e["detail"] for e in events)
    calls.clear()
    got = backend.machine_from_event(events[-1])
    assert calls == []  # no API call
    assert (got.id, got.pod, got.node, got.attempt) == (m.id, m.pod, "vk", 0)
    assert got.phase == MachinePhase.PENDING
    foreign = {**events[-1], "detail": {**events[-1]["detail"], "startedBy": "someone-else"}}
    assert backend.machine_from_event(foreign) is None
    other_cluster = {**events[-1], "detail": {**events[-1]["detail"], "clusterArn": "arn:aws:ecs:us-east-1:1:cluster/x"}}
    assert backend.machine_from_event(other_cluster) is None
    assert backend.machine_from_event({**events[-1], "detail-type": "ECS Service Action"}) is None


def test_pod_names_too_long_for_a_task_group_still_run(world):
    backend, plane, ecs, _ = world
    seen = {}
    ecs.meta.events.register("provide-client-params.ecs.RunTask", lambda params, **kw: seen.update(params))
    long_name = "n" * 250
    m = backend.create(machine_spec(pod(name=long_name), "vk", 0))
    assert seen["group"] == f"lambdalet:vk:shop::{m.pod.uid}:0"  # the name would exceed 255 characters
    assert backend.get(m.id).pod.name == long_name  # tags still say it all
    from_event = backend.machine_from_event(plane.step()[-1])
    assert (from_event.pod.uid, from_event.node) == (m.pod.uid, "vk")  # the UID is what lambdalet joins on


def test_started_by_and_client_token_rules():
    import re

    uid = "6c8f7b36-0c1d-4b8e-9d0a-1f2e3d4c5b6a"
    assert started_by("vk-ecs.eu-west-1") == "lambdalet/vk-ecs_eu-west-1"  # one listing key per node
    assert node_of_started_by(started_by("vk-ecs.eu-west-1")) == "vk-ecs.eu-west-1"
    long = "n" * 200
    sb = started_by(long)
    assert len(sb) <= 128 and re.fullmatch(r"[A-Za-z0-9_/-]+", sb) and sb == started_by(long)
    assert node_of_started_by(sb) is None
    odd = "weird uid with spaces" * 10
    tok = client_token(odd, 1)
    assert len(tok) <= 64 and all(33 <= ord(ch) <= 126 for ch in tok)
    assert tok != client_token(odd, 2)
    assert client_token(uid, 0) != client_token(uid, 1)


# -- errors ----------------------------------------------------------------


def client_error(code, message="boom", status=400, op="RunTask"):
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, op)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (client_error("ThrottlingException", "Rate exceeded"), TransientMachineError),
        (client_error("ServerException", "Service unavailable", 500), TransientMachineError),
        (client_error("SomethingNew", "?", 503), TransientMachineError),
        (client_error("AccessDeniedException", "not authorized"), TransientMachineError),
        (client_error("ClusterNotFoundException", "Cluster not found."), TransientMachineError),
        (client_error("ClientException", "Too many concurrent attempts to create a new revision of the specified family."), TransientMachineError),
        (client_error("InvalidParameterException", "Invalid image"), PermanentMachineError),
        (client_error("InvalidParameterException", "Error retrieving subnet information for [subnet-0bad]"),
         TransientMachineError),  # the operator's setup, not the pod: keep waiting and say so
        (client_error("InvalidParameterException", "Security group sg-0bad does not exist"), TransientMachineError),
        (client_error("ClientException", "Container.image should not be null or empty."), PermanentMachineError),
        (client_error("PlatformTaskDefinitionIncompatibilityException", "x"), PermanentMachineError),
        # issue 8 ECS 8: RunTask throttling as it is reported (dask/dask-cloudprovider#56)
        (client_error("InvalidParameterException", "Error retrieving security group information for "
                      "[sg-05937427457b61ff5]: Request limit exceeded. (ErrorCode: RequestLimitExceeded)"),
         TransientMachineError),
        (client_error("InvalidParameterException", "Request limit exceeded."), TransientMachineError),
        (EndpointConnectionError(endpoint_url="https://ecs.us-east-1.amazonaws.com"), TransientMachineError),
        (ReadTimeoutError(endpoint_url="https://ecs.us-east-1.amazonaws.com"), TransientMachineError),
        (ParamValidationError(report="Invalid length for parameter startedBy"), PermanentMachineError),
        (RuntimeError("surprise"), TransientMachineError),
    ],
)
def test_classify(error, kind):
    err = classify(error, "RunTask")
    assert type(err) is kind
    assert str(err)  # readable


def test_classify_message_names_the_action_and_the_cloud_words():
    err = classify(client_error("InvalidParameterException", "Invalid CPU or memory value specified"), "RunTask")
    assert str(err) == "ECS RunTask failed: InvalidParameterException: Invalid CPU or memory value specified"


def test_run_task_failures():
    assert isinstance(failure_error([{"arn": "x", "reason": "RESOURCE:ENI"}]), TransientMachineError)
    assert isinstance(failure_error([{"reason": "Capacity is unavailable at this time. Please try again later or in a different availability zone"}]), TransientMachineError)
    assert isinstance(failure_error([{"reason": "AGENT"}]), TransientMachineError)
    # an account quota: the operator raises it, the pod waits (ProviderBackOff)
    assert isinstance(failure_error([{"reason": "The requested CPU configuration is above your limit"}]), TransientMachineError)
    assert isinstance(failure_error([{"reason": "ATTRIBUTE", "detail": "requiresAttributes"}]), PermanentMachineError)


def test_client_uses_botocore_retries(aws_env):
    cfg = client_config()
    assert cfg.retries == {"mode": "standard", "max_attempts": 2}
    assert make_client("us-east-1").meta.config.retries["mode"] == "standard"


@pytest.fixture
def stubbed(aws_env):
    ecs = boto3.client("ecs", region_name="us-east-1")
    backend = EcsBackend(ecs, cluster=CLUSTER, subnets=["subnet-1"], security_groups=["sg-1"], assign_public_ip=True)
    with Stubber(ecs) as stub:
        yield backend, stub


SPEC = machine_spec(pod(), "vk", 0)


def stub_lookup_and_td(stub):
    stub.add_response(
        "describe_task_definition",
        {"taskDefinition": {"taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/lambdalet-x:1", "status": "ACTIVE"}},
    )


def test_run_task_capacity_failure_is_transient(stubbed):
    backend, stub = stubbed
    stub_lookup_and_td(stub)
    stub.add_response("run_task", {"tasks": [], "failures": [{"arn": "arn:aws:ecs:us-east-1:123456789012:task-definition/lambdalet-x:1", "reason": "RESOURCE:ENI"}]})
    with pytest.raises(TransientMachineError, match="RESOURCE:ENI"):
        backend.create(SPEC)
    stub.assert_no_pending_responses()


def test_throttling_is_transient(stubbed):
    backend, stub = stubbed
    stub_lookup_and_td(stub)
    stub.add_client_error("run_task", "ThrottlingException", "Rate exceeded", 400)
    with pytest.raises(TransientMachineError, match="ThrottlingException"):
        backend.create(SPEC)


def test_invalid_parameter_is_permanent(stubbed):
    backend, stub = stubbed
    stub_lookup_and_td(stub)
    stub.add_client_error("run_task", "InvalidParameterException", "No Fargate configuration exists for given values.", 400)
    with pytest.raises(PermanentMachineError, match="No Fargate configuration"):
        backend.create(SPEC)


def test_register_when_describe_says_missing_and_public_ip(stubbed):
    backend, stub = stubbed
    stub.add_client_error("describe_task_definition", "ClientException", "Unable to describe task definition.", 400)
    td = task_definition(SPEC)
    stub.add_response("register_task_definition", {"taskDefinition": {"taskDefinitionArn": "arn:td:1"}}, td)
    stub.add_response(
        "run_task",
        {"tasks": [{"taskArn": "arn:aws:ecs:us-east-1:123456789012:task/lambdalet/abc", "lastStatus": "PROVISIONING", "desiredStatus": "RUNNING"}], "failures": []},
        {
            "cluster": CLUSTER, "taskDefinition": "arn:td:1", "launchType": "FARGATE", "count": 1,
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"], "securityGroups": ["sg-1"], "assignPublicIp": "ENABLED"}},
            "startedBy": started_by("vk"), "clientToken": client_token(SPEC.pod.uid, 0),
            "tags": task_tags(SPEC),
            "enableECSManagedTags": True,
            "group": f"lambdalet:vk:shop:web-1:{SPEC.pod.uid}:0",
        },
    )
    m = backend.create(SPEC)  # tags come from the request when RunTask echoes none
    assert m.id.endswith("/abc") and m.pod.uid == SPEC.pod.uid and m.phase == MachinePhase.PENDING
    stub.assert_no_pending_responses()


def test_stop_of_unknown_task_is_success_but_other_errors_are_classified(stubbed):
    backend, stub = stubbed
    stub.add_client_error("stop_task", "InvalidParameterException", "The referenced task was not found.", 400)
    backend.delete("arn:x", 30, "bye")
    stub.add_client_error("stop_task", "ThrottlingException", "Rate exceeded", 400)
    with pytest.raises(TransientMachineError):
        backend.delete("arn:x", 30, "bye")


# -- issue 8: the backend against the documented contract -----------------


@pytest.mark.parametrize(("grace", "expected"), [(0, 2), (1, 2), (2, 2), (30, 30), (121, 120)])
def test_stop_timeout_is_clamped_to_fargates_2_to_120_seconds(grace, expected):
    """botocore ecs model, ContainerDefinition.stopTimeout: "The valid values
    for Fargate are 2-120 seconds." (0 or 1 used to be sent and refused)."""
    spec = machine_spec({**pod(), "spec": {**pod()["spec"], "terminationGracePeriodSeconds": grace}}, "vk", 0)
    assert task_definition(spec)["containerDefinitions"][0]["stopTimeout"] == expected


def test_a_token_conflict_adopts_the_existing_task(world):
    """A retry whose parameters changed (here: the task definition was
    registered again by a racing invocation) gets ConflictException +
    resourceIds: the pod's task is adopted, not failed."""
    backend, plane, ecs, calls = world
    spec = machine_spec(pod(), "vk", 0)
    first = backend.create(spec)
    td = task_definition(spec)
    ecs.register_task_definition(**td)  # a racing registration: a new revision
    backend._families.clear()
    calls.clear()
    again = backend.create(spec)
    assert again.id == first.id and "RunTask" in calls
    assert len(all_task_arns(ecs)) == 1


def test_list_asks_only_for_lambdalets_tasks_of_the_nodes_asked(world):
    """issue 12 goal 3: a startedBy listing per node (the only filter, as
    ECS requires; the plane refuses anything else) + the cluster's stopped
    tasks; a busy neighbour's running tasks are never listed."""
    backend, plane, ecs, calls = world
    seen = []
    ecs.meta.events.register("provide-client-params.ecs.ListTasks", lambda params, **kw: seen.append(dict(params)))
    mine = backend.create(machine_spec(pod(), "vk", 0))
    backend.create(machine_spec(pod(uid="00000000-0000-4000-8000-0000000000c3"), "vk-other", 0))
    td = ecs.describe_tasks(cluster=CLUSTER, tasks=[mine.id])["tasks"][0]["taskDefinitionArn"]
    ecs.run_task(cluster=CLUSTER, taskDefinition=td, launchType="FARGATE", count=10,
                 networkConfiguration={"awsvpcConfiguration": {"subnets": backend.subnets, "securityGroups": backend.security_groups}})
    calls.clear()
    assert [m.id for m in backend.list("vk")] == [mine.id]
    assert seen == [{"cluster": CLUSTER, "startedBy": "lambdalet/vk"}, {"cluster": CLUSTER, "desiredStatus": "STOPPED"}]
    assert calls.count("DescribeTasks") == 1


def test_a_stopped_task_keeps_its_identity_after_its_tags_are_deleted(world):
    backend, plane, ecs, _ = world
    m = backend.create(machine_spec(pod(command=["sh", "-c", "exit 3"]), "vk", 0))
    plane.settle()
    backend.delete(m.id, 10, "lambdalet: test")
    plane.settle()
    raw = ecs.describe_tasks(cluster=CLUSTER, tasks=[m.id], include=["TAGS"])["tasks"][0]
    assert raw.get("tags", []) == []
    [listed] = backend.list("vk")
    assert (listed.id, listed.pod, listed.attempt, listed.phase) == (m.id, m.pod, 0, MachinePhase.STOPPED)


def test_run_task_is_paced_at_the_published_rate(world):
    """A burst of creates spends RunTask's published 20/s (burst 20) and then waits
    for its turn, one wait per call: the plane's own RunTask bucket (the published
    rates, on the plane's clock) throttles none of them."""
    from chalicelib.machines.pacing import TokenBuckets
    from chalicelib.wiring import run_task_pace

    backend, plane, _, calls = world
    now, waits = [0.0], []

    def sleep(seconds):
        waits.append(seconds)
        now[0] += seconds
        plane.clock.advance(seconds)

    assert run_task_pace(0) is None and run_task_pace(20).rate == 20 and run_task_pace(20).burst == 20
    backend.run_task_pace = TokenBuckets(20, 20, monotonic=lambda: now[0], sleep=sleep, margin=0)
    for i in range(25):
        backend.create(machine_spec(pod(uid=f"00000000-0000-4000-8000-{i:012d}", name=f"web-{i}"), "vk", 0))
    assert calls.count("RunTask") == 25
    assert len(waits) == 5 and sum(waits) == pytest.approx(5 / 20)  # the 21st to 25th: one twentieth of a second each
