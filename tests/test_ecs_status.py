"""ECS task -> Machine, as pure functions, on hand-written shapes faithful to
the AWS documentation: DescribeTasks responses (wire JSON, parsed by botocore
exactly as boto3 does) and "ECS Task State Change" EventBridge events."""

import json
from datetime import datetime, timezone

import botocore.session
import pytest
from botocore.parsers import create_parser

from chalicelib.machines.contract import MachinePhase, StopCause
from chalicelib.machines.ecs import image_id, is_task_state_change, machine_from_task

ACCOUNT = "111122223333"
CLUSTER = f"arn:aws:ecs:us-west-2:{ACCOUNT}:cluster/lambdalet"
TASK = f"arn:aws:ecs:us-west-2:{ACCOUNT}:task/lambdalet/c13b4cb40f1f4fe4a2971f76ae5a47ad"
UID = "7d0e5f0a-6f6b-4c55-9d0b-3a1e2c9e8f11"
TAGS = [
    {"key": "lambdalet.io/pod-namespace", "value": "batch"},
    {"key": "lambdalet.io/pod-name", "value": "report-28d9q"},
    {"key": "lambdalet.io/pod-uid", "value": UID},
    {"key": "lambdalet.io/node", "value": "vk-ecs"},
    {"key": "lambdalet.io/attempt", "value": "1"},
]
ENI = {
    "id": "1789bcae-ddfb-4d10-8ebe-8ac87ddba5b8",
    "type": "ElasticNetworkInterface",
    "status": "DELETED",
    "details": [
        {"name": "subnetId", "value": "subnet-abcd1234"},
        {"name": "networkInterfaceId", "value": "eni-abcd1234"},
        {"name": "macAddress", "value": "0a:98:eb:a7:29:ba"},
        {"name": "privateDnsName", "value": "ip-10-0-0-139.us-west-2.compute.internal"},
        {"name": "privateIPv4Address", "value": "10.0.0.139"},
    ],
}


def container(name, image, status, exit_code=None, reason=None, digest=None, runtime=None):
    c = {
        "containerArn": f"arn:aws:ecs:us-west-2:{ACCOUNT}:container/lambdalet/c13b4cb40f1f4fe4a2971f76ae5a47ad/{name}-0c9e",
        "taskArn": TASK,
        "name": name,
        "image": image,
        "lastStatus": status,
        "networkInterfaces": [{"attachmentId": ENI["id"], "privateIpv4Address": "10.0.0.139"}],
        "healthStatus": "UNKNOWN",
        "cpu": "0",
        "memoryReservation": "256",
    }
    if exit_code is not None:
        c["exitCode"] = exit_code
    if reason:
        c["reason"] = reason
    if digest:
        c["imageDigest"] = digest
    if runtime:
        c["runtimeId"] = runtime
    return c


def describe_tasks_response(task: dict) -> dict:
    """Wire JSON of DescribeTasks (epoch-second timestamps) parsed by botocore."""
    model = botocore.session.get_session().get_service_model("ecs").operation_model("DescribeTasks")
    body = json.dumps({"tasks": [task], "failures": []}).encode()
    parsed = create_parser("json").parse(
        {"body": body, "headers": {}, "status_code": 200}, model.output_shape
    )
    return parsed["tasks"][0]


STOPPED_MULTI = {
    "attachments": [ENI],
    "availabilityZone": "us-west-2c",
    "clusterArn": CLUSTER,
    "connectivity": "DISCONNECTED",
    "containers": [
        container("app", "111122223333.dkr.ecr.us-west-2.amazonaws.com/report:2024.1", "STOPPED", 2,
                  digest="sha256:74b2c688c700ec95a93e478cdb959737c148df3fbf5ea706abe0318726e885e6",
                  runtime="c13b4cb40f1f4fe4a2971f76ae5a47ad-2531612879"),
        container("sidecar", "public.ecr.aws/nginx/nginx:1.27", "STOPPED", 137,
                  runtime="c13b4cb40f1f4fe4a2971f76ae5a47ad-3875132371"),
        container("cache", "redis:7", "STOPPED", 137,
                  reason="OutOfMemoryError: Container killed due to memory usage",
                  runtime="c13b4cb40f1f4fe4a2971f76ae5a47ad-1122334455"),
    ],
    "cpu": "512",
    "createdAt": 1579802254.402,
    "desiredStatus": "STOPPED",
    "executionStoppedAt": 1579802290.5,
    "group": "family:lambdalet-8089408477f1a104",
    "lastStatus": "STOPPED",
    "launchType": "FARGATE",
    "memory": "1024",
    "overrides": {"containerOverrides": [{"name": "app"}, {"name": "sidecar"}, {"name": "cache"}], "inferenceAcceleratorOverrides": []},
    "platformVersion": "1.4.0",
    "platformFamily": "Linux",
    "pullStartedAt": 1579802262.103,
    "pullStoppedAt": 1579802275.103,
    "startedAt": 1579802278.103,
    "startedBy": "lambdalet/vk-ecs",
    "stopCode": "EssentialContainerExited",
    "stoppedAt": 1579802301.9,
    "stoppedReason": "Essential container in task exited",
    "stoppingAt": 1579802290.1,
    "tags": TAGS,
    "taskArn": TASK,
    "taskDefinitionArn": f"arn:aws:ecs:us-west-2:{ACCOUNT}:task-definition/lambdalet-8089408477f1a104:1",
    "version": 6,
    "ephemeralStorage": {"sizeInGiB": 20},
}


def test_stopped_multi_container_task_with_non_zero_exits():
    task = describe_tasks_response(STOPPED_MULTI)
    assert isinstance(task["createdAt"], datetime)  # what boto3 hands us
    m = machine_from_task(task)
    assert m is not None
    assert m.id == TASK
    assert (m.pod.namespace, m.pod.name, m.pod.uid, m.node, m.attempt) == ("batch", "report-28d9q", UID, "vk-ecs", 1)
    assert m.phase == MachinePhase.STOPPED
    assert m.stop_cause == StopCause.EXITED
    assert m.stop_reason == "Essential container in task exited"
    assert m.ip == m.host_ip == "10.0.0.139"
    assert m.created_at == datetime.fromtimestamp(1579802254.402, tz=timezone.utc)
    assert m.started_at == datetime.fromtimestamp(1579802278.103, tz=timezone.utc)
    # when the containers stopped (executionStoppedAt), not the later stoppedAt
    assert m.stopped_at == datetime.fromtimestamp(1579802290.5, tz=timezone.utc)
    app, sidecar, cache = m.containers
    assert (app.state, app.exit_code, app.reason) == ("terminated", 2, "Error")
    assert app.image_id == "111122223333.dkr.ecr.us-west-2.amazonaws.com/report@sha256:74b2c688c700ec95a93e478cdb959737c148df3fbf5ea706abe0318726e885e6"
    assert app.container_id == "ecs://c13b4cb40f1f4fe4a2971f76ae5a47ad-2531612879"
    assert app.finished_at == datetime.fromtimestamp(1579802290.5, tz=timezone.utc)  # executionStoppedAt
    assert (sidecar.state, sidecar.exit_code, sidecar.reason, sidecar.image_id) == ("terminated", 137, "Error", None)
    assert (cache.state, cache.exit_code, cache.reason) == ("terminated", 137, "OOMKilled")
    assert cache.message == "OutOfMemoryError: Container killed due to memory usage"


def test_exit_zero_is_completed():
    t = json.loads(json.dumps(STOPPED_MULTI))
    for c in t["containers"]:
        c["exitCode"] = 0
        c.pop("reason", None)
    m = machine_from_task(describe_tasks_response(t))
    assert [c.reason for c in m.containers] == ["Completed"] * 3


def test_image_pull_failure_is_failed_to_start_with_the_cloud_message():
    reason = ("CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref "
              "docker.io/library/doesnotexist:latest: docker.io/library/doesnotexist:latest: not found")
    t = {
        **STOPPED_MULTI,
        "containers": [container("app", "doesnotexist:latest", "STOPPED", reason=reason)],
        "stopCode": "TaskFailedToStart",
        "stoppedReason": reason,
    }
    for k in ("startedAt", "pullStoppedAt", "executionStoppedAt"):
        t.pop(k)
    m = machine_from_task(describe_tasks_response(t))
    assert m.phase == MachinePhase.STOPPED
    assert m.stop_cause == StopCause.FAILED_TO_START
    assert m.stop_reason == reason
    (app,) = m.containers
    assert (app.state, app.reason, app.message) == ("waiting", "ErrImagePull", reason)
    assert m.started_at is None


def test_sibling_of_the_container_that_failed_to_start_keeps_no_false_reason():
    reason = "CannotPullContainerError: ref not found"
    t = {**STOPPED_MULTI, "stopCode": "TaskFailedToStart", "stoppedReason": reason,
         "containers": [container("app", "nope:1", "STOPPED", reason=reason), container("side", "busybox", "STOPPED")]}
    t.pop("startedAt")
    m = machine_from_task(describe_tasks_response(t))
    assert [c.reason for c in m.containers] == ["ErrImagePull", "ContainerCreating"]


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        ("EssentialContainerExited", StopCause.EXITED),
        ("UserInitiated", StopCause.REQUESTED),
        ("ServiceSchedulerInitiated", StopCause.REQUESTED),
        ("TaskFailedToStart", StopCause.FAILED_TO_START),
        ("SpotInterruption", StopCause.LOST),
        ("TerminationNotice", StopCause.LOST),
        ("InfrastructureHealth", StopCause.LOST),
    ],
)
def test_stop_codes(code, cause):
    m = machine_from_task(describe_tasks_response({**STOPPED_MULTI, "stopCode": code}))
    assert m.stop_cause == cause


def test_lost_host_without_exit_codes():
    t = {**STOPPED_MULTI, "stopCode": "SpotInterruption", "stoppedReason": "Your Spot Task was interrupted.",
         "containers": [container("app", "busybox", "STOPPED")]}
    (app,) = machine_from_task(describe_tasks_response(t)).containers
    assert (app.state, app.reason, app.exit_code) == ("terminated", "ContainerStatusUnknown", 137)
    assert app.message == "Your Spot Task was interrupted."


@pytest.mark.parametrize(
    ("last", "desired", "containers_status", "phase"),
    [
        ("PROVISIONING", "RUNNING", "PENDING", MachinePhase.PENDING),
        ("PENDING", "RUNNING", "PENDING", MachinePhase.PENDING),
        ("ACTIVATING", "RUNNING", "PENDING", MachinePhase.PENDING),
        ("RUNNING", "RUNNING", "RUNNING", MachinePhase.RUNNING),
        ("RUNNING", "STOPPED", "RUNNING", MachinePhase.STOPPING),
        ("DEACTIVATING", "STOPPED", "RUNNING", MachinePhase.STOPPING),
        ("STOPPING", "STOPPED", "RUNNING", MachinePhase.STOPPING),
        ("STOPPING", "STOPPED", "STOPPED", MachinePhase.STOPPED),  # only teardown left
        ("DEPROVISIONING", "STOPPED", "STOPPED", MachinePhase.STOPPED),
        ("STOPPED", "STOPPED", "STOPPED", MachinePhase.STOPPED),
    ],
)
def test_phase_mapping(last, desired, containers_status, phase):
    c = container("app", "busybox", containers_status, exit_code=0 if containers_status == "STOPPED" else None)
    t = {**STOPPED_MULTI, "lastStatus": last, "desiredStatus": desired, "containers": [c]}
    if desired == "RUNNING":
        for k in ("stopCode", "stoppedReason", "stoppingAt", "stoppedAt", "executionStoppedAt"):
            t.pop(k)
    m = machine_from_task(describe_tasks_response(t))
    assert m.phase == phase
    if phase == MachinePhase.PENDING:
        assert m.containers[0].state == "waiting" and m.containers[0].reason == "ContainerCreating"
        assert m.stop_cause is None
    if phase == MachinePhase.RUNNING:
        assert m.containers[0].state == "running"
        assert m.containers[0].started_at == m.started_at


def test_task_without_our_tags_is_not_ours():
    t = {k: v for k, v in STOPPED_MULTI.items() if k != "tags"}
    assert machine_from_task(describe_tasks_response(t)) is None
    assert machine_from_task(describe_tasks_response({**t, "tags": [{"key": "team", "value": "x"}]})) is None


# The example "ECS Task State Change" event of the ECS developer guide (Fargate),
# with our startedBy; AWS documents no `tags` in the event detail.
EVENT = {
    "version": "0",
    "id": "3317b2af-7005-947d-b652-f55e762e571a",
    "detail-type": "ECS Task State Change",
    "source": "aws.ecs",
    "account": ACCOUNT,
    "time": "2020-01-23T17:57:58Z",
    "region": "us-west-2",
    "resources": [TASK],
    "detail": {
        "attachments": [{
            "id": "1789bcae-ddfb-4d10-8ebe-8ac87ddba5b8",
            "type": "eni",
            "status": "ATTACHED",
            "details": [
                {"name": "subnetId", "value": "subnet-abcd1234"},
                {"name": "networkInterfaceId", "value": "eni-abcd1234"},
                {"name": "macAddress", "value": "0a:98:eb:a7:29:ba"},
                {"name": "privateIPv4Address", "value": "10.0.0.139"},
            ],
        }],
        "availabilityZone": "us-west-2c",
        "clusterArn": CLUSTER,
        "containers": [{
            "containerArn": f"arn:aws:ecs:us-west-2:{ACCOUNT}:container/cf159fd6-3e3f-4a9e-84f9-66cbe726af01",
            "lastStatus": "RUNNING",
            "name": "FargateApp",
            "image": f"{ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com/hello-repository:latest",
            "imageDigest": "sha256:74b2c688c700ec95a93e478cdb959737c148df3fbf5ea706abe0318726e885e6",
            "runtimeId": "ad64cbc71c7fb31c55507ec24c9f77947132b03d48d9961115cf24f3b7307e1e",
            "taskArn": TASK,
            "networkInterfaces": [{"attachmentId": "1789bcae-ddfb-4d10-8ebe-8ac87ddba5b8", "privateIpv4Address": "10.0.0.139"}],
            "cpu": "0",
        }],
        "createdAt": "2020-01-23T17:57:34.402Z",
        "launchType": "FARGATE",
        "cpu": "256",
        "memory": "512",
        "desiredStatus": "RUNNING",
        "group": "family:sample-fargate",
        "lastStatus": "RUNNING",
        "overrides": {"containerOverrides": [{"name": "FargateApp"}]},
        "connectivity": "CONNECTED",
        "connectivityAt": "2020-01-23T17:57:38.453Z",
        "pullStartedAt": "2020-01-23T17:57:52.103Z",
        "startedAt": "2020-01-23T17:57:58.103Z",
        "startedBy": "lambdalet/vk-ecs",
        "pullStoppedAt": "2020-01-23T17:57:55.103Z",
        "updatedAt": "2020-01-23T17:57:58.103Z",
        "taskArn": TASK,
        "taskDefinitionArn": f"arn:aws:ecs:us-west-2:{ACCOUNT}:task-definition/sample-fargate:1",
        "version": 4,
        "platformVersion": "1.3.0",
    },
}


def test_event_detail_with_iso_timestamps():
    assert is_task_state_change(EVENT)
    assert machine_from_task(EVENT["detail"]) is None  # no tags in the event
    m = machine_from_task(EVENT["detail"], tags=TAGS)
    assert m.phase == MachinePhase.RUNNING
    assert m.created_at == datetime(2020, 1, 23, 17, 57, 34, 402000, tzinfo=timezone.utc)
    assert m.started_at == datetime(2020, 1, 23, 17, 57, 58, 103000, tzinfo=timezone.utc)
    assert m.ip == m.host_ip == "10.0.0.139"  # attachment type "eni" in events
    (c,) = m.containers
    assert c.state == "running"
    assert c.container_id == "ecs://ad64cbc71c7fb31c55507ec24c9f77947132b03d48d9961115cf24f3b7307e1e"
    assert c.image_id.endswith("/hello-repository@sha256:74b2c688c700ec95a93e478cdb959737c148df3fbf5ea706abe0318726e885e6")


def test_event_identity_from_started_by_and_group():
    detail = {**EVENT["detail"], "startedBy": "lambdalet/vk-ecs",
              "group": f"lambdalet:vk-ecs:batch:report-28d9q:{UID}:1"}
    m = machine_from_task(detail)
    assert (m.pod.namespace, m.pod.name, m.pod.uid, m.node, m.attempt) == ("batch", "report-28d9q", UID, "vk-ecs", 1)
    assert machine_from_task({**detail, "startedBy": "ecs-svc/9223370545345641169"}) is None
    assert machine_from_task({**detail, "startedBy": "lambdalet/other-node"}) is None
    assert machine_from_task({**detail, "group": "lambdalet:vk-ecs:batch"}) is None


def test_stopped_event_detail_maps_like_describe_tasks():
    d = json.loads(json.dumps(EVENT["detail"]))
    d.update(lastStatus="STOPPED", desiredStatus="STOPPED", stopCode="EssentialContainerExited",
             stoppedReason="Essential container in task exited", stoppingAt="2020-01-23T17:59:00.000Z",
             stoppedAt="2020-01-23T17:59:30.000Z", executionStoppedAt="2020-01-23T17:59:10.000Z")
    d["containers"][0].update(lastStatus="STOPPED", exitCode=1)
    m = machine_from_task(d, tags={t["key"]: t["value"] for t in TAGS})  # a mapping works too
    assert (m.phase, m.stop_cause) == (MachinePhase.STOPPED, StopCause.EXITED)
    assert m.stopped_at == datetime(2020, 1, 23, 17, 59, 10, tzinfo=timezone.utc)
    assert (m.containers[0].exit_code, m.containers[0].reason) == (1, "Error")
    assert m.containers[0].finished_at == datetime(2020, 1, 23, 17, 59, 10, tzinfo=timezone.utc)


def test_not_a_task_state_change():
    assert not is_task_state_change({**EVENT, "detail-type": "ECS Container Instance State Change"})


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("nginx", "nginx@sha256:ab"),
        ("nginx:1.27", "nginx@sha256:ab"),
        ("registry:5000/team/app:v1", "registry:5000/team/app@sha256:ab"),
        ("registry:5000/team/app", "registry:5000/team/app@sha256:ab"),
        ("app@sha256:00", "app@sha256:ab"),
    ],
)
def test_image_id(image, expected):
    assert image_id(image, "sha256:ab") == expected
    assert image_id(image, None) is None


def test_pull_throttling_is_a_start_failure_that_passes():
    from chalicelib.machines.contract import StopCause
    from chalicelib.machines.ecs import machine_from_task

    base = {
        "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/c/0123", "lastStatus": "STOPPED",
        "desiredStatus": "STOPPED", "stopCode": "TaskFailedToStart", "createdAt": "2026-11-27T12:00:00Z",
        "containers": [{"name": "main", "image": "busybox", "lastStatus": "STOPPED"}],
        "tags": [{"key": "lambdalet.io/pod-namespace", "value": "d"}, {"key": "lambdalet.io/pod-name", "value": "p"},
                 {"key": "lambdalet.io/pod-uid", "value": "u"}, {"key": "lambdalet.io/node", "value": "n"},
                 {"key": "lambdalet.io/attempt", "value": "0"}],
    }
    throttled = {**base, "stoppedReason": "CannotPullContainerError: pull image manifest: toomanyrequests: "
                                          "You have reached your pull rate limit."}
    missing = {**base, "stoppedReason": "CannotPullContainerError: pull access denied, repository does not exist"}
    assert machine_from_task(throttled).stop_cause == StopCause.START_RETRYABLE
    assert machine_from_task(missing).stop_cause == StopCause.FAILED_TO_START


def test_a_stop_made_outside_lambdalet_is_said_on_each_container():
    """issue 13 "say what happened": stopCode + stoppedReason reach the
    container's terminated message; lambdalet's own stops stay quiet."""
    foreign = machine_from_task(describe_tasks_response(
        {**STOPPED_MULTI, "stopCode": "UserInitiated", "stoppedReason": "ops: draining"}))
    assert foreign.stop_code == "UserInitiated" and foreign.stopped_by_others()
    said = [c for c in foreign.containers if c.reason != "OOMKilled"]  # the OOM one keeps its own reason
    assert said and all("UserInitiated: ops: draining" in (c.message or "") for c in said)
    ours = machine_from_task(describe_tasks_response(
        {**STOPPED_MULTI, "stopCode": "UserInitiated", "stoppedReason": "lambdalet: pod default/x deleted"}))
    assert not ours.stopped_by_others()
    assert all(c.message is None for c in ours.containers if c.reason != "OOMKilled")


def test_a_user_stop_that_exits_zero_still_says_who_stopped_it():
    """issue 8 ECS 8: "A container stopped by the user may exit 0 (nginx did)".
    The exit code stays what the process said (kubelet reports a container
    stopped from outside the same way), but the pod is told why it ended."""
    t = {**STOPPED_MULTI, "stopCode": "UserInitiated", "stoppedReason": "Task stopped by user",
         "containers": [container("app", "nginx", "STOPPED", exit_code=0)]}
    m = machine_from_task(describe_tasks_response(t))
    (app,) = m.containers
    assert (m.stop_cause, app.exit_code, app.reason) == (StopCause.REQUESTED, 0, "Completed")
    assert app.message == "Machine stopped outside lambdalet (UserInitiated: Task stopped by user)"
