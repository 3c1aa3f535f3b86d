"""End to end: pods that use ConfigMaps, Secrets, init containers, volumes and probes, on
ECS (simulator + moto + Fargate plane + Secrets Manager in moto) and on Fly (the Fly fake),
through the app's real entry points. Judged on what a user sees (the pod, its Events) and
on what the cloud holds (task definitions, Secrets Manager, machine configs). Every test's
logs, Events and statuses are also searched for the pod Secret value (tests/conftest.py)."""

from __future__ import annotations

import json

import boto3
import pytest

from tests.world.stack import POD_SECRET, POD_SECRETS_PREFIX, REGION, Stack, pod_sources, virtual_pod

SLEEP_FOREVER = ["sh", "-c", "sleep 100000"]


def workload(name: str, **extra) -> dict:
    """Everything a chart's pod commonly uses (the Fly variant drops the init container)."""
    return virtual_pod(
        name, command=SLEEP_FOREVER,
        container={
            "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "MODE"}}},
                    {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "password"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "envFrom": [{"configMapRef": {"name": "app-config"}, "prefix": "CFG_"}],
            "volumeMounts": [{"name": "conf", "mountPath": "/etc/app"}, {"name": "creds", "mountPath": "/run/creds"},
                             {"name": "scratch", "mountPath": "/scratch"}],
            "readinessProbe": {"exec": {"command": ["cat", "/etc/app/app.conf"]}, "periodSeconds": 5},
        },
        initContainers=[{"name": "migrate", "image": "public.ecr.aws/docker/library/busybox:1.36",
                         "command": ["sh", "-c", "sleep 2; exit 0"], "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
        volumes=[{"name": "conf", "configMap": {"name": "app-config", "items": [{"key": "app.conf", "path": "app.conf"}]}},
                 {"name": "creds", "secret": {"secretName": "app-secret", "defaultMode": 0o400}},
                 {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}],
        **extra,
    )


def conditions(pod: dict) -> dict[str, str]:
    return {c["type"]: c["status"] for c in pod["status"]["conditions"]}


# -- ECS -----------------------------------------------------------------------------------------


@pytest.fixture
def ecs():
    with Stack() as s:
        s.reconcile()
        pod_sources(s.core)
        yield s


def task_definitions(stack: Stack) -> list[dict]:
    client = boto3.client("ecs", region_name=REGION)
    return [client.describe_task_definition(taskDefinition=t["taskDefinitionArn"])["taskDefinition"]
            for t in stack.tasks()]


def mirrors() -> list[dict]:
    client = boto3.client("secretsmanager", region_name=REGION)
    return [s for s in client.list_secrets()["SecretList"] if s["Name"].startswith(POD_SECRETS_PREFIX)]


def test_ecs_runs_a_workload_pod_init_first_secrets_by_arn_ready_from_its_health_check(ecs):
    ecs.create_pod(workload("app"))
    ecs.settle(rounds=12, reconcile=True)
    pod = ecs.pod("app")
    assert pod["status"]["phase"] == "Running", pod["status"]
    assert {"PodScheduled": "True", "Initialized": "True", "ContainersReady": "True", "Ready": "True"}.items() <= conditions(pod).items()
    [init] = pod["status"]["initContainerStatuses"]
    assert init["name"] == "migrate" and init["state"]["terminated"]["exitCode"] == 0 and init["ready"]
    [td] = task_definitions(ecs)
    text = json.dumps(td, default=str)
    assert POD_SECRET not in text  # never in the task definition, in any encoding we write
    defs = {d["name"]: d for d in td["containerDefinitions"]}
    assert [d["name"] for d in td["containerDefinitions"]] == ["lambdalet-files", "migrate", "main"]
    assert defs["main"]["dependsOn"] == [{"containerName": "migrate", "condition": "SUCCESS"}]
    env = {e["name"]: e["value"] for e in defs["main"]["environment"]}
    assert env["MODE"] == "fast" and env["CFG_MODE"] == "fast" and env["POD_NAME"] == "app"
    [secret_ref] = defs["main"]["secrets"]
    assert secret_ref["name"] == "DB_PASSWORD" and f":secret:{POD_SECRETS_PREFIX}" in secret_ref["valueFrom"]
    assert defs["main"]["healthCheck"]["command"] == ["CMD", "cat", "/etc/app/app.conf"]
    assert td["executionRoleArn"].endswith("lambdalet-dev-task-execution")
    sm = boto3.client("secretsmanager", region_name=REGION)
    assert sm.get_secret_value(SecretId=secret_ref["valueFrom"])["SecretString"] == POD_SECRET
    tags = {t["Key"]: t["Value"] for t in sm.describe_secret(SecretId=secret_ref["valueFrom"])["Tags"]}
    assert tags[f"lambdalet.io/pod/{pod['metadata']['uid']}"] == "default/app"


def test_ecs_mirrors_are_shared_by_equal_values_and_swept_once_no_live_machine_needs_them(ecs):
    ecs.create_pod(workload("a"))
    ecs.create_pod(workload("b"))
    ecs.settle(rounds=10, reconcile=True)
    assert {ecs.pod(n)["status"]["phase"] for n in ("a", "b")} == {"Running"}
    tds = task_definitions(ecs)  # two families (POD_NAME differs), the same mirrors
    assert len({json.dumps(td["containerDefinitions"][-1]["secrets"]) for td in tds}) == 1
    assert len(mirrors()) == 2  # the password (env), its base64 (the secret volume's file): one each, shared
    ecs.core.delete_namespaced_pod("a", "default")
    ecs.settle(rounds=6, seconds=10, reconcile=True)
    ecs.advance(3600)
    ecs.settle(rounds=2, reconcile=True)
    assert len(mirrors()) == 2  # b still runs
    ecs.core.delete_namespaced_pod("b", "default")
    ecs.settle(rounds=6, seconds=10, reconcile=True)
    ecs.advance(3600)
    ecs.settle(rounds=2, reconcile=True)
    assert ecs.pod("b") is None and mirrors() == []


def test_a_missing_configmap_keeps_the_pod_waiting_then_it_starts_once_it_appears(ecs):
    ecs.create_pod(virtual_pod("late", command=SLEEP_FOREVER, container={"env": [
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "x"}}},
        {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "nowhere", "key": "y", "optional": True}}}]}))
    ecs.settle(rounds=6, reconcile=True)
    pod = ecs.pod("late")
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert pod["status"]["phase"] == "Pending" and ecs.tasks() == []
    assert waiting == {"reason": "CreateContainerConfigError", "message": 'configmap "later" not found'}
    assert any(e["reason"] == "Failed" and e["message"] == 'Error: configmap "later" not found'
               for e in ecs.events_of("late"))
    ecs.core.create_namespaced_config_map("default", {"metadata": {"name": "later"}, "data": {"x": "1"}})
    ecs.settle(rounds=6, reconcile=True)
    pod = ecs.pod("late")
    assert pod["status"]["phase"] == "Running"
    [td] = task_definitions(ecs)
    assert td["containerDefinitions"][0]["environment"] == [{"name": "X", "value": "1"}]  # optional, absent: unset


def test_a_failing_init_container_fails_a_never_restarting_pod_and_the_app_never_starts(ecs):
    ecs.create_pod(virtual_pod("broken", restart="Never", command=SLEEP_FOREVER, initContainers=[
        {"name": "check", "image": "public.ecr.aws/docker/library/busybox:1.36", "command": ["sh", "-c", "exit 3"]}]))
    ecs.settle(rounds=12, reconcile=True)
    pod = ecs.pod("broken")
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert conditions(pod)["Initialized"] == "False"
    assert "running" not in pod["status"]["containerStatuses"][0]["state"]


def test_an_unhealthy_readiness_check_keeps_the_pod_running_but_not_ready(ecs):
    ecs.create_pod(virtual_pod("sick", command=SLEEP_FOREVER, container={
        "readinessProbe": {"exec": {"command": ["sh", "-c", "exit 1"]}}}))
    ecs.settle(rounds=10, reconcile=True)
    pod = ecs.pod("sick")
    assert pod["status"]["phase"] == "Running"
    assert conditions(pod)["Ready"] == "False" and not pod["status"]["containerStatuses"][0]["ready"]


# -- Fly -----------------------------------------------------------------------------------------


@pytest.fixture
def fly():
    with Stack(backend="fly") as s:
        s.reconcile()
        pod_sources(s.core)
        yield s
        assert s.fly.violations == []


def test_fly_puts_values_in_the_machines_own_env_and_files_never_app_secrets(fly):
    pod = workload("app")
    del pod["spec"]["initContainers"]
    pod["spec"]["containers"][0]["livenessProbe"] = {"tcpSocket": {"port": 8080}}
    fly.create_pod(pod)
    fly.settle(rounds=8, reconcile=True)
    assert fly.pod("app")["status"]["phase"] == "Running"
    [machine] = [m.view() for m in fly.fly.machines.values()]
    config = machine["config"]
    assert config["env"]["DB_PASSWORD"] == POD_SECRET and config["env"]["MODE"] == "fast"
    paths = sorted(f["guest_path"] for f in config["files"])
    assert paths == ["/etc/app/app.conf", "/run/creds/password", "/scratch/.lambdalet-emptydir"]
    assert not any(f.get("secret_name") for f in config["files"])
    assert config["checks"]["liveness"]["type"] == "tcp" and config["checks"]["liveness"]["port"] == 8080


def test_fly_runs_init_containers_first_in_a_multi_container_machine(fly):
    fly.create_pod(workload("app"))
    fly.settle(rounds=10, reconcile=True)
    pod = fly.pod("app")
    assert pod["status"]["phase"] == "Running", pod["status"]
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    [machine] = [m.view() for m in fly.fly.machines.values()]
    containers = {c["name"]: c for c in machine["config"]["containers"]}
    assert containers["main"]["depends_on"] == [{"name": "migrate", "condition": "exited_successfully"}]
    assert containers["main"]["env"]["DB_PASSWORD"] == POD_SECRET
    # the emptyDir is one machine volume that both containers mount
    assert machine["config"]["volumes"] == [{"name": "scratch", "temp_dir": {"storage_type": "disk", "size_mb": 1024}}]
    assert containers["migrate"]["mounts"] == containers["main"]["mounts"] == [{"name": "scratch", "path": "/scratch"}]
    assert conditions(pod)["Ready"] == "True"


BUSYBOX = "public.ecr.aws/docker/library/busybox:1.36"


def relay(name: str, *, app_mounts: bool = True) -> dict:
    """An init container writes a greeting into an emptyDir; the app container prints it."""
    return virtual_pod(
        name, restart="Never", command=["sh", "-c", "cat /in/greeting && echo relayed"],
        container={"volumeMounts": [{"name": "scratch", "mountPath": "/in"}] if app_mounts else []},
        initContainers=[{"name": "write", "image": BUSYBOX, "command": ["sh", "-c", "echo hello from init > /out/greeting"],
                         "volumeMounts": [{"name": "scratch", "mountPath": "/out"}]}],
        volumes=[{"name": "scratch", "emptyDir": {"medium": "Memory"}}])


def test_fly_an_emptydir_carries_what_an_init_container_wrote_to_the_app_container(fly):
    fly.create_pod(relay("relay"))
    fly.settle(rounds=10, reconcile=True)
    pod = fly.pod("relay")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    [machine] = [m for m in fly.fly.machines.values()] or list(fly.fly.destroyed.values())
    config = machine.config
    assert config["volumes"] == [{"name": "scratch", "temp_dir": {"storage_type": "memory"}}]
    assert [c.get("mounts") for c in config["containers"]] == [[{"name": "scratch", "path": "/out"}],
                                                                [{"name": "scratch", "path": "/in"}]]
    assert machine.fs.volumes == {"scratch": {"greeting": b"hello from init\n"}}
    log = fly.core.read_namespaced_pod_log("relay", "default", container="main", _preload_content=False).data.decode()
    assert "hello from init\nrelayed" in log


def test_fly_a_container_that_does_not_mount_the_emptydir_does_not_see_it(fly):
    fly.create_pod(relay("apart", app_mounts=False))
    fly.settle(rounds=10, reconcile=True)
    pod = fly.pod("apart")
    assert pod["status"]["phase"] == "Failed", pod["status"]
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    log = fly.core.read_namespaced_pod_log("apart", "default", container="main", _preload_content=False).data.decode()
    assert "can't open '/in/greeting'" in log and "relayed" not in log


def test_fly_readiness_follows_the_node_backend_not_a_pod_annotation(fly):
    """A pod that asked for its own size gets no lambdalet.io/backend annotation at
    admission; on a Fly node its exec probe still must not hold Ready back (Fly reports
    no per-container health: Ready follows the machine's state)."""
    for name, init in (("one", []), ("two", [{"name": "first", "image": "public.ecr.aws/docker/library/busybox:1.36",
                                               "command": ["sh", "-c", "exit 0"]}])):
        pod = virtual_pod(name, command=SLEEP_FOREVER, container={
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}},
            "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}}}, initContainers=init)
        fly.create_pod(pod)
    fly.settle(rounds=10, reconcile=True)
    for name in ("one", "two"):
        pod = fly.pod(name)
        assert "lambdalet.io/backend" not in (pod["metadata"].get("annotations") or {})
        assert pod["status"]["phase"] == "Running", pod["status"]
        assert conditions(pod)["Ready"] == "True" and pod["status"]["containerStatuses"][0]["ready"]
