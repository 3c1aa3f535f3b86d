"""Workload features → ECS task definitions (with Secrets Manager mirrors, over moto) and Fly machine configs."""

from __future__ import annotations

import base64
import json

import boto3
import pytest
from moto import mock_aws

from chalicelib.machines.ecs import workload as ecs_workload
from chalicelib.machines.contract import PermanentMachineError, PodRef
from chalicelib.machines.ecs import task_definition
from chalicelib.machines.fly.config import create_request
from chalicelib.machines.secret_store import GRACE_SECONDS, SecretStore
from chalicelib.pod_spec import Sources, machine_spec
from tests.world.pods import pod as world_pod

UID = "5a1e2d4c-0000-4000-8000-000000000003"
SECRET = "hunter2-the-db-password"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


SOURCES = Sources({
    ("ConfigMap", "cfg"): {"data": {"MODE": "fast", "app.conf": "listen 80\n"}},
    ("Secret", "db"): {"data": {"password": b64(SECRET)}},
})


def workload_pod(**spec) -> dict:
    return {
        "metadata": {"name": "web", "namespace": "shop", "uid": UID},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "busybox", "command": ["sh", "-c", "exit 0"],
                                "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]},
                               {"name": "warm", "image": "busybox", "command": ["sh", "-c", "sleep 1"]}],
            "containers": [{"name": "app", "image": "nginx",
                            "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
                                    {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
                            "volumeMounts": [{"name": "conf", "mountPath": "/etc/app"},
                                             {"name": "creds", "mountPath": "/run/creds", "readOnly": True},
                                             {"name": "scratch", "mountPath": "/scratch"}],
                            "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 3,
                                               "timeoutSeconds": 1, "failureThreshold": 20},
                            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 80}}}],
            "volumes": [{"name": "conf", "configMap": {"name": "cfg", "items": [{"key": "app.conf", "path": "app.conf"}]}},
                        {"name": "creds", "secret": {"secretName": "db", "defaultMode": 0o400}},
                        {"name": "scratch", "emptyDir": {"sizeLimit": "30Gi"}}],
            **spec,
        },
    }


def arns_for(spec) -> dict[str, str]:
    return {v: f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:lambdalet/pods/{i}" for i, v in
            enumerate(ecs_workload.secret_values(spec))}


def test_ecs_task_definition_chains_init_containers_and_names_secrets_by_arn_only():
    spec = machine_spec(workload_pod(), "vk", 0, SOURCES)
    arns = arns_for(spec)
    td = task_definition(spec, execution_role_arn="arn:aws:iam::1:role/lambdalet-dev-task-exec", secret_arns=arns)
    assert SECRET not in json.dumps(td) and b64(SECRET) not in json.dumps(td)
    defs = {d["name"]: d for d in td["containerDefinitions"]}
    assert [d["name"] for d in td["containerDefinitions"]] == ["lambdalet-files", "migrate", "warm", "app"]
    assert [d["essential"] for d in td["containerDefinitions"]] == [False, False, False, True]
    assert defs["migrate"]["dependsOn"] == [{"containerName": "lambdalet-files", "condition": "SUCCESS"}]
    assert defs["warm"]["dependsOn"] == [{"containerName": "migrate", "condition": "SUCCESS"}]
    assert defs["app"]["dependsOn"] == [{"containerName": "warm", "condition": "SUCCESS"}]
    assert defs["migrate"]["secrets"] == [{"name": "PW", "valueFrom": arns[SECRET]}]
    assert defs["app"]["environment"] == [{"name": "MODE", "value": "fast"}]
    assert defs["app"]["secrets"] == [{"name": "PW", "valueFrom": arns[SECRET]}]
    assert defs["app"]["mountPoints"] == [{"sourceVolume": "conf", "containerPath": "/etc/app", "readOnly": False},
                                          {"sourceVolume": "creds", "containerPath": "/run/creds", "readOnly": True},
                                          {"sourceVolume": "scratch", "containerPath": "/scratch", "readOnly": False}]
    assert defs["app"]["healthCheck"] == {"command": ["CMD", "cat", "/tmp/ready"], "interval": 5, "timeout": 2,
                                          "retries": 10, "startPeriod": 0}
    assert td["volumes"] == [{"name": "conf"}, {"name": "creds"}, {"name": "scratch"}]
    assert td["ephemeralStorage"] == {"sizeInGiB": 31}
    writer = defs["lambdalet-files"]
    assert writer["image"] == ecs_workload.DEFAULT_FILES_IMAGE
    assert writer["environment"] == [{"name": "F_0", "value": b64("listen 80\n")}]
    assert writer["secrets"] == [{"name": "F_1", "valueFrom": arns[b64(SECRET)]}]
    assert "chmod 400 /lambdalet-files/creds/password" in writer["command"][0]


def test_ecs_task_storage_follows_the_pod_ephemeral_storage_limit():
    pod = world_pod("big-scratch", containers=[{"name": "app", "image": "nginx:1.27",
                                                 "resources": {"limits": {"ephemeral-storage": "50Gi"}}}])
    td = task_definition(machine_spec(pod, "vk", 0), execution_role_arn="arn:aws:iam::1:role/x")
    assert td["ephemeralStorage"] == {"sizeInGiB": 51}
    pod["spec"]["containers"][0]["resources"] = {"limits": {"ephemeral-storage": "1Gi"}}
    td = task_definition(machine_spec(pod, "vk", 0), execution_role_arn="arn:aws:iam::1:role/x")
    assert "ephemeralStorage" not in td  # the default 20 GiB holds it


def test_ecs_equal_pods_share_a_task_definition_and_a_changed_secret_changes_it():
    spec = machine_spec(workload_pod(), "vk", 0, SOURCES)
    other = machine_spec({**workload_pod(), "metadata": {"name": "web-2", "namespace": "shop", "uid": "u2"}}, "vk", 0,
                         SOURCES)
    assert task_definition(spec, secret_arns=arns_for(spec))["family"] == task_definition(
        other, secret_arns=arns_for(other))["family"]


def test_ecs_refuses_sub_path_mounts_naming_the_mount():
    pod = workload_pod()
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "conf", "mountPath": "/etc/app.conf", "subPath": "app.conf"}]
    spec = machine_spec(pod, "vk", 0, SOURCES)
    with pytest.raises(PermanentMachineError, match="subPath"):
        task_definition(spec, secret_arns=arns_for(spec))


def test_fly_single_container_machine_has_env_files_with_modes_and_checks():
    pod = workload_pod()
    del pod["spec"]["initContainers"]
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "conf", "mountPath": "/etc/one.conf", "subPath": "app.conf"})
    config = create_request(machine_spec(pod, "vk", 0, SOURCES), "ams")["config"]
    assert config["env"] == {"MODE": "fast", "PW": SECRET}  # the machine's own env: never app secrets
    assert config["files"] == [
        {"guest_path": "/etc/app/app.conf", "raw_value": b64("listen 80\n"), "mode": 0o644},
        {"guest_path": "/run/creds/password", "raw_value": b64(SECRET), "mode": 0o400},
        {"guest_path": "/scratch/.lambdalet-emptydir", "raw_value": b64("lambdalet emptyDir\n")},
        {"guest_path": "/etc/one.conf", "raw_value": b64("listen 80\n"), "mode": 0o644},
    ]
    assert config["checks"] == {"liveness": {"type": "http", "port": 80, "interval": "10s", "timeout": "1s",
                                             "grace_period": "1s", "method": "GET", "path": "/healthz"}}


def test_fly_init_containers_make_a_multi_container_machine_chained_by_depends_on():
    config = create_request(machine_spec(workload_pod(), "vk", 0, SOURCES), "ams")["config"]
    containers = {c["name"]: c for c in config["containers"]}
    assert [c["name"] for c in config["containers"]] == ["migrate", "warm", "app"]
    assert "depends_on" not in containers["migrate"]
    assert containers["warm"]["depends_on"] == [{"name": "migrate", "condition": "exited_successfully"}]
    assert containers["app"]["depends_on"] == [{"name": "warm", "condition": "exited_successfully"}]
    assert containers["migrate"]["env"] == {"PW": SECRET} and containers["app"]["env"]["MODE"] == "fast"
    assert [f["guest_path"] for f in containers["app"]["files"]][:2] == ["/etc/app/app.conf", "/run/creds/password"]
    assert containers["app"]["healthchecks"] == [{"name": "readiness", "kind": "readiness",
                                                  "exec": {"command": ["cat", "/tmp/ready"]}, "interval": 3,
                                                  "timeout": 1, "grace_period": 0, "failure_threshold": 20}]
    assert not any(f.get("secret_name") for c in config["containers"] for f in c.get("files", []))
    # the emptyDir: a temp_dir machine volume, its sizeLimit (30Gi) in size_mb, mounted by the app container
    assert config["volumes"] == [{"name": "scratch", "temp_dir": {"storage_type": "disk", "size_mb": 30720}}]
    assert containers["app"]["mounts"] == [{"name": "scratch", "path": "/scratch"}]
    assert "mounts" not in containers["migrate"]
    assert not any(f["guest_path"].startswith("/scratch") for f in containers["app"]["files"])  # no marker file
    # httpGet/tcpSocket probes stay machine checks on a multi-container machine, named by container
    assert config["checks"] == {"app-liveness": {"type": "http", "port": 80, "interval": "10s", "timeout": "1s",
                                                 "grace_period": "1s", "method": "GET", "path": "/healthz"}}


@mock_aws
def test_secret_store_shares_equal_values_tags_pods_and_sweeps_what_no_live_machine_needs():
    client = boto3.client("secretsmanager", region_name="eu-west-1")
    now = [1_000_000.0]
    store = SecretStore(client, "lambdalet/pods/", scope="cluster-a", clock=lambda: now[0])
    a, b = PodRef(namespace="shop", name="a", uid="uid-a"), PodRef(namespace="shop", name="b", uid="uid-b")
    arn = store.put(SECRET, a)
    assert store.put(SECRET, b) == arn  # equal values share one secret
    other = store.put("another value", b)
    assert other != arn and SECRET not in store.name_for(SECRET)
    tags = {t["Key"]: t["Value"] for t in client.describe_secret(SecretId=arn)["Tags"]}
    assert tags["lambdalet.io/pod/uid-a"] == "shop/a" and tags["lambdalet.io/pod/uid-b"] == "shop/b"
    assert client.get_secret_value(SecretId=arn)["SecretString"] == SECRET
    # Another deployment's mirror under the same prefix is never ours to sweep.
    SecretStore(client, "lambdalet/pods/", scope="cluster-b", clock=lambda: now[0]).put("theirs", a)
    assert store.sweep({"uid-a", "uid-b"}) == 0
    assert store.sweep(set()) == 0  # just used: within the grace between put and the task's start
    now[0] += GRACE_SECONDS + 1
    assert store.sweep({"uid-a"}) == 1  # "another value" was only b's
    names = sorted(s["Name"] for s in client.list_secrets()["SecretList"])
    assert names == sorted([store.name_for(SECRET), SecretStore(client, "lambdalet/pods/", "cluster-b").name_for("theirs")])
    tags = {t["Key"] for t in client.describe_secret(SecretId=arn)["Tags"]}
    assert "lambdalet.io/pod/uid-b" not in tags and "lambdalet.io/pod/uid-a" in tags  # dead pods' tags pruned
    assert store.sweep(set()) == 1


@pytest.mark.parametrize("empty_dir, limits, temp_dir", [
    ({"medium": "Memory", "sizeLimit": "64Mi"}, {}, {"storage_type": "memory"}),  # size_mb: disk only (fly-go)
    ({"sizeLimit": "1G"}, {"ephemeral-storage": "8Gi"}, {"storage_type": "disk", "size_mb": 954}),  # rounded up
    ({}, {"ephemeral-storage": "2Gi"}, {"storage_type": "disk", "size_mb": 2048 + 512}),  # the pod's limit
    ({}, {}, {"storage_type": "disk"}),  # no limit anywhere: the machine's disk
])
def test_fly_emptydir_sizes_and_medium(empty_dir, limits, temp_dir):
    pod = workload_pod(volumes=[{"name": "scratch", "emptyDir": empty_dir}, {"name": "unused", "emptyDir": {}}])
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
    pod["spec"]["containers"][0]["resources"] = {"limits": limits}
    if limits:  # a second container: the pod's limit is the sum
        pod["spec"]["containers"].append({"name": "side", "image": "busybox", "resources": {
            "limits": {"ephemeral-storage": "512Mi"}}, "volumeMounts": [{"name": "scratch", "mountPath": "/s"}]})
    config = create_request(machine_spec(pod, "vk", 0, SOURCES), "ams")["config"]
    assert config["volumes"] == [{"name": "scratch", "temp_dir": temp_dir}]  # an emptyDir nobody mounts: no volume
    if limits:
        assert {c["name"]: c.get("mounts") for c in config["containers"]}["side"] == [{"name": "scratch", "path": "/s"}]
