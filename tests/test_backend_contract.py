"""The MachineBackend contract, once, for every backend.

Each backend enters through one fixture factory (``ecs_world``, ``fly_world``)
that returns a ``CloudWorld``: the backend under test plus the few knobs a test
needs on the cloud behind it (move time, kill a machine for memory, make a
machine vanish, make the next create fail in a given way). A new backend is
added by implementing the contract and adding its factory to ``WORLDS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import boto3
import pytest
import requests
from moto import mock_aws

from chalicelib.machines.contract import (
    MachineBackend,
    MachinePhase,
    PermanentMachineError,
    StopCause,
    TransientMachineError,
)
from chalicelib.pod_spec import machine_spec

NODE, OTHER_NODE = "vk", "vk-other"
FOREVER = ["sh", "-c", "sleep 100000"]


@dataclass
class CloudWorld:
    backend: MachineBackend
    advance: Callable[[float], None]  # move the cloud's clock
    settle: Callable[[], None]  # let every machine move as far as it can now
    oom: Callable[[str], None]  # the kernel kills the machine's process for memory
    vanish: Callable[[str], None]  # the machine disappears from the cloud
    fail_next_create: Callable[[str], bool]  # kind -> False when the cloud cannot fail that way
    foreign: Callable[[], None]  # start a machine that is not lambdalet's
    count: Callable[[], int]  # machines the cloud holds, any state
    missing_id: str


# -- ECS: moto + the Fargate plane --------------------------------------------------------


@contextmanager
def ecs_world(monkeypatch) -> Iterator[CloudWorld]:
    from chalicelib.machines.ecs import EcsBackend, client_config, make_client
    from tests.world.fargate_plane import FargatePlane, make_network

    cluster = "lambdalet"
    with mock_aws():
        plane = FargatePlane(cluster=cluster)
        ecs = make_client("us-east-1", config=client_config(retries=0))  # no SDK retry sleeps here
        ecs.create_cluster(clusterName=cluster)
        net = make_network(boto3.client("ec2", region_name="us-east-1"))
        backend = EcsBackend(ecs, cluster=cluster, **net)

        def arns() -> list[str]:
            return [a for s in ("RUNNING", "STOPPED") for a in ecs.list_tasks(cluster=cluster, desiredStatus=s)["taskArns"]]

        def oom(arn: str) -> None:
            # FargatePlane has no public OOM knob: end the container as ECS
            # reports an OOM kill (exit 137, reason OutOfMemoryError).
            run = plane._states[arn].runs[0]  # noqa: SLF001 - test world, see the report
            run.status, run.exit_code = "STOPPED", 137
            run.reason = "OutOfMemoryError: Container killed due to memory usage"

        def vanish(arn: str) -> None:
            from moto.ecs.models import ecs_backends

            ecs_backends[plane.account_id][plane.region].tasks[cluster].pop(arn)

        def fail(kind: str) -> bool:
            shapes = {
                "throttle": ("ThrottlingException", "Rate exceeded", 400),
                "server": ("ServerException", "Service unavailable", 500),
                "invalid": ("InvalidParameterException", "Invalid image", 400),
            }
            if kind not in shapes:
                return False  # capacity: RunTask "failures", which the plane cannot produce
            plane.fail_runs(1, *shapes[kind])
            return True

        def foreign() -> None:
            td = ecs.register_task_definition(
                family="not-lambdalet", requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
                cpu="256", memory="512",
                containerDefinitions=[{"name": "x", "image": "busybox", "memoryReservation": 512}],
            )["taskDefinition"]["taskDefinitionArn"]
            ecs.run_task(cluster=cluster, taskDefinition=td, launchType="FARGATE",
                         networkConfiguration={"awsvpcConfiguration": {"subnets": net["subnets"],
                                                                       "securityGroups": net["security_groups"]}})

        try:
            yield CloudWorld(
                backend=backend, advance=plane.clock.advance, settle=lambda: plane.settle(), oom=oom,
                vanish=vanish, fail_next_create=fail, foreign=foreign, count=lambda: len(arns()),
                missing_id=f"arn:aws:ecs:us-east-1:123456789012:task/{cluster}/0123456789abcdef0123456789abcdef",
            )
        finally:
            plane.close()


# -- Fly: the Fly fake + DynamoDB claims on moto -------------------------------------------


@contextmanager
def fly_world(monkeypatch) -> Iterator[CloudWorld]:
    from chalicelib.machines.claims import Claims
    from chalicelib.machines.fly import FlyApi, FlyBackend
    from tests.world.fargate_plane import Clock
    from tests.world.fly_fake import FlyFake
    from tests.world.stack import create_claims_table

    clock = Clock()
    with mock_aws(), FlyFake(apps={"lambdalet"}, token="t0k", clock=clock) as fly:
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_claims_table(dynamodb, "claims")
        api = FlyApi(fly.url, "lambdalet", lambda: "t0k", max_attempts=2, sleep=lambda s: None)
        backend = FlyBackend(api, region="iad", claims=Claims(dynamodb, "claims", scope="lambdalet"))

        def fail(kind: str) -> bool:
            if kind == "throttle":
                fly.throttle("create", times=api.max_attempts)
            elif kind == "server":
                fly.fail("create", 503, "service unavailable")
            elif kind == "capacity":
                fly.no_capacity(times=1)
            elif kind == "invalid":
                fly.fail("create", 400, "invalid config.guest.memory_mb")
            else:
                return False
            return True

        def foreign() -> None:
            r = requests.post(f"{fly.url}/v1/apps/lambdalet/machines", headers={"Authorization": "Bearer t0k"},
                              json={"config": {"image": "nginx"}, "region": "iad"}, timeout=5)
            r.raise_for_status()

        yield CloudWorld(
            backend=backend, advance=clock.advance, settle=fly.settle, oom=fly.oom, vanish=fly.vanish,
            fail_next_create=fail, foreign=foreign, count=lambda: len(fly.machines),
            missing_id="0123456789abcd",
        )
        assert fly.violations == []


WORLDS = {"ecs": ecs_world, "fly": fly_world}


@pytest.fixture(params=sorted(WORLDS))
def world(request, monkeypatch, aws_env) -> Iterator[CloudWorld]:
    with WORLDS[request.param](monkeypatch) as w:
        yield w


@pytest.fixture
def aws_env(monkeypatch):
    for k, v in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                 "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECS"):
        monkeypatch.delenv(k, raising=False)


def spec(uid: str = "00000000-0000-4000-8000-000000000001", *, name: str = "web", node: str = NODE,
         attempt: int = 0, command: list[str] | None = None, restart: str = "Never"):
    container = {"name": "app", "image": "public.ecr.aws/docker/library/busybox:1.36", "command": command or FOREVER}
    pod = {"metadata": {"name": name, "namespace": "shop", "uid": uid},
           "spec": {"containers": [container], "restartPolicy": restart, "terminationGracePeriodSeconds": 10}}
    return machine_spec(pod, node, attempt)


# -- create ------------------------------------------------------------------------


def test_create_starts_a_pending_machine_that_carries_its_pod(world):
    s = spec()
    m = world.backend.create(s)
    assert m.phase == MachinePhase.PENDING
    assert (m.pod, m.node, m.attempt) == (s.pod, NODE, 0)
    assert m.created_at.tzinfo is not None
    assert [c.name for c in m.containers] == ["app"] and m.containers[0].state == "waiting"


def test_create_is_idempotent_by_pod_uid_and_attempt(world):
    s = spec()
    first = world.backend.create(s)
    world.settle()
    again = world.backend.create(s)
    assert again.id == first.id and world.count() == 1
    restart = world.backend.create(spec(attempt=1))
    assert restart.id != first.id and restart.attempt == 1
    assert {m.id for m in world.backend.list(NODE)} == {first.id, restart.id}


def test_list_returns_exactly_the_nodes_machines_with_their_pods(world):
    a = world.backend.create(spec("00000000-0000-4000-8000-0000000000a1", name="a"))
    b = world.backend.create(spec("00000000-0000-4000-8000-0000000000b2", name="b"))
    c = world.backend.create(spec("00000000-0000-4000-8000-0000000000c3", name="c", node=OTHER_NODE))
    world.foreign()
    world.settle()
    world.backend.delete(b.id, 0, "bye")
    world.settle()
    listed = {m.id: m for m in world.backend.list(NODE)}
    assert a.id in listed and c.id not in listed
    assert set(listed) <= {a.id, b.id}  # a stopped machine may stay listed (ECS) or be gone (Fly)
    assert listed[a.id].pod.name == "a" and listed[a.id].pod.namespace == "shop"
    assert [m.id for m in world.backend.list(OTHER_NODE)] == [c.id]
    assert world.backend.list("nobody") == []


# -- status ------------------------------------------------------------------------


def test_running_machine(world):
    m = world.backend.create(spec())
    world.settle()
    got = world.backend.get(m.id)
    assert got.phase == MachinePhase.RUNNING and got.stop_cause is None
    run = got.containers[0]
    assert run.state == "running" and run.started_at is not None
    assert got.ip and got.started_at is not None


@pytest.mark.parametrize(("code", "reason"), [(0, "Completed"), (3, "Error")])
def test_machine_whose_process_exits(world, code, reason):
    m = world.backend.create(spec(command=["sh", "-c", f"sleep 2; exit {code}"]))
    world.settle()
    world.advance(3)
    world.settle()
    got = world.backend.get(m.id)
    assert got.phase == MachinePhase.STOPPED and got.stop_cause == StopCause.EXITED
    run = got.containers[0]
    assert (run.state, run.exit_code, run.reason) == ("terminated", code, reason)
    assert run.finished_at is not None and got.stopped_at is not None
    assert [x.id for x in world.backend.list(NODE)] == [m.id]


def test_machine_killed_for_memory_says_oomkilled(world):
    m = world.backend.create(spec())
    world.settle()
    world.oom(m.id)
    world.settle()
    got = world.backend.get(m.id)
    assert got.phase == MachinePhase.STOPPED and got.stop_cause == StopCause.EXITED
    run = got.containers[0]
    assert (run.state, run.reason, run.exit_code) == ("terminated", "OOMKilled", 137)


def test_vanished_machine_is_none_and_unlisted(world):
    m = world.backend.create(spec())
    world.settle()
    world.vanish(m.id)
    assert world.backend.get(m.id) is None
    assert world.backend.list(NODE) == []


# -- delete ------------------------------------------------------------------------


def test_delete_is_idempotent_and_ends_in_a_requested_stop(world):
    m = world.backend.create(spec())
    world.settle()
    world.backend.delete(m.id, 10, "pod deleted")
    world.backend.delete(m.id, 10, "pod deleted")
    got = world.backend.get(m.id)
    assert got is None or got.phase in (MachinePhase.STOPPING, MachinePhase.STOPPED)
    world.settle()
    world.advance(10)  # the grace: sh as PID 1 ignores SIGTERM
    world.settle()
    got = world.backend.get(m.id)
    if got is not None:
        assert got.phase == MachinePhase.STOPPED and got.stop_cause == StopCause.REQUESTED
        assert got.containers[0].exit_code == 137
    for _ in range(3):  # the reconciler may call again and again
        world.backend.delete(m.id, 10, "again")
        world.settle()
    world.backend.delete(world.missing_id, 10, "never existed")
    assert all(x.phase == MachinePhase.STOPPED for x in world.backend.list(NODE))


def test_delete_before_the_machine_runs(world):
    m = world.backend.create(spec())
    world.backend.delete(m.id, 30, "pod deleted at once")
    world.settle()
    got = world.backend.get(m.id)
    assert got is None or got.phase == MachinePhase.STOPPED


# -- errors ------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "expected"), [
    ("throttle", TransientMachineError),
    ("server", TransientMachineError),
    ("capacity", TransientMachineError),
    ("invalid", PermanentMachineError),
])
def test_create_errors_are_classified_the_same_way(world, kind, expected):
    if not world.fail_next_create(kind):
        pytest.skip(f"this cloud's test world cannot fail a create with {kind}")
    with pytest.raises(expected) as err:
        world.backend.create(spec())
    assert type(err.value) is expected or issubclass(type(err.value), expected)
    assert str(err.value)
    assert world.count() == 0


def test_unrelated_events_are_not_machines(world):
    assert world.backend.machine_from_event({"source": "aws.ec2", "detail-type": "EC2 Instance State-change"}) is None
