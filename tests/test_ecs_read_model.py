"""The ECS client's model (chalicelib/machines/ecs/read_model.py: a task handed over as
ECS sent it) and the tag-less listing, against moto with the Fargate plane: the same
Machines, tags asked for only where a task's group cannot name its pod."""

import boto3
import pytest
from moto import mock_aws

from chalicelib.machines.ecs import EcsBackend, make_client
from chalicelib.pod_spec import machine_spec
from chalicelib.wiring import ecs_client
from tests.test_ecs_backend import CLUSTER, aws_env, pod  # noqa: F401 - aws_env is a fixture
from tests.world.fargate_plane import FargatePlane, make_network


@pytest.fixture
def clouds(aws_env):  # noqa: F811
    with mock_aws():
        plane = FargatePlane(cluster=CLUSTER)
        full = make_client("us-east-1")
        full.create_cluster(clusterName=CLUSTER)
        net = make_network(boto3.client("ec2", region_name="us-east-1"))
        trimmed = ecs_client("us-east-1")  # as wiring builds it
        described: list[dict] = []
        trimmed.meta.events.register("provide-client-params.ecs.DescribeTasks",
                                     lambda params, **_: described.append(dict(params)))
        yield EcsBackend(full, cluster=CLUSTER, **net), EcsBackend(trimmed, cluster=CLUSTER, **net), plane, described
        plane.close()


def test_tasks_as_sent_list_the_same_machines(clouds):
    full, trimmed, plane, _ = clouds
    running = full.create(machine_spec(pod(), "vk", 0))
    exited = full.create(machine_spec(pod(uid="00000000-0000-4000-8000-0000000000e1", name="job",
                                          command=["sh", "-c", "exit 3"]), "vk", 0))
    plane.settle()
    full.delete(exited.id, 10, "lambdalet: test")
    plane.settle()
    assert {m.id for m in trimmed.list("vk")} == {running.id, exited.id}
    assert trimmed.list("vk") == full.list("vk")  # every field of every Machine
    task = trimmed.ecs.describe_tasks(cluster=CLUSTER, tasks=[running.id])["tasks"][0]
    whole = full.ecs.describe_tasks(cluster=CLUSTER, tasks=[running.id])["tasks"][0]
    assert set(task) == set(whole) - {"ResponseMetadata"}  # every member ECS sent
    # as sent: the epoch number, where botocore's walk would have made a datetime
    assert isinstance(task["createdAt"], (int, float)) and whole["createdAt"].timestamp() == task["createdAt"]
    page = trimmed.ecs.describe_tasks(cluster=CLUSTER, tasks=[running.id])
    assert page["ResponseMetadata"]["HTTPStatusCode"] == 200 and page["failures"] == []  # the rest: botocore's


def test_the_listing_asks_for_tags_only_where_the_group_cannot_name_the_pod(clouds):
    full, trimmed, plane, described = clouds
    short = trimmed.create(machine_spec(pod(), "vk", 0))
    long_name = "n" * 250  # the group leaves the name out (255 characters)
    long = trimmed.create(machine_spec(pod(uid="00000000-0000-4000-8000-0000000000f2", name=long_name), "vk", 0))
    plane.settle()
    described.clear()
    listed = {m.id: m for m in trimmed.list("vk")}
    assert listed[short.id].pod.name == "web-1" and listed[long.id].pod.name == long_name
    assert [d.get("include") for d in described] == [None, ["TAGS"]]  # one tag-less page, then the one task again
    assert described[1]["tasks"] == [long.id]
    described.clear()
    trimmed.list("vk-other")
    assert described == []  # nothing listed, nothing described
