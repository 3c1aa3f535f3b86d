"""Pod dict -> MachineSpec."""

from decimal import Decimal

import pytest

from chalicelib.pod_spec import (
    FEATURES,
    UnsupportedPod,
    cpu_millis,
    expand,
    machine_spec,
    memory_mib,
    parse_quantity,
    unsupported,
)

UID = "3f1e2d4c-0000-4000-8000-000000000001"


def pod(*containers, **spec):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "shop", "uid": UID},
        "spec": {"containers": list(containers) or [{"name": "app", "image": "nginx:1.27"}], **spec},
    }


TOKEN_VOLUME = {
    "name": "kube-api-access-x7k2p",
    "projected": {"defaultMode": 420, "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]},
}
TOKEN_MOUNT = {"name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True}


@pytest.mark.parametrize(
    ("text", "cores"),
    [("250m", "0.25"), ("1", "1"), ("0.5", "0.5"), ("2000m", "2"), ("100u", "0.0001"), (2, "2"), ("1e3", "1000")],
)
def test_parse_cpu_quantities(text, cores):
    assert parse_quantity(text) == Decimal(cores)


@pytest.mark.parametrize(
    ("text", "mib"),
    [
        ("512Mi", 512), ("1Gi", 1024), ("1G", 954), ("500M", 477), ("1e9", 954),
        ("134217728", 128), (134217728, 128), ("1Ki", 1), ("0", 0), ("1.5Gi", 1536), ("2Ti", 2 * 1024 * 1024),
    ],
)
def test_parse_memory_quantities(text, mib):
    assert memory_mib(text) == mib


def test_cpu_rounds_up_to_a_millicore():
    assert cpu_millis("1500u") == 2
    assert cpu_millis("0.1") == 100


@pytest.mark.parametrize("bad", ["12XB", "", "one", "1.2.3", "Mi"])
def test_bad_quantity_names_the_field(bad):
    with pytest.raises(UnsupportedPod) as e:
        machine_spec(pod({"name": "app", "image": "x", "resources": {"requests": {"memory": bad}}}), "vk", 0)
    assert "spec.containers[0].resources.requests.memory" in str(e.value)


def test_translation_of_a_two_container_pod():
    p = pod(
        {
            "name": "app",
            "image": "python:3.12",
            "command": ["python", "-m"],
            "args": ["http.server", "$(PORT)"],
            "env": [{"name": "PORT", "value": "8080"}, {"name": "URL", "value": "http://x:$(PORT)/"}],
            "ports": [{"containerPort": 8080, "protocol": "TCP", "name": "http"}],
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
            "volumeMounts": [TOKEN_MOUNT],
        },
        {
            "name": "sidecar",
            "image": "busybox",
            "ports": [{"containerPort": 53, "protocol": "UDP"}],
            "resources": {"limits": {"cpu": "1", "memory": "1G"}},  # limits alone count as requests
        },
        volumes=[TOKEN_VOLUME],
        restartPolicy="OnFailure",
        terminationGracePeriodSeconds=45,
    )
    s = machine_spec(p, "vk-ecs", 2)
    assert (s.pod.namespace, s.pod.name, s.pod.uid) == ("shop", "web-1", UID)
    assert (s.node, s.attempt) == ("vk-ecs", 2)
    assert s.cpu_millis == 500 + 1000
    assert s.memory_mib == 512 + 954
    assert s.restart_policy == "OnFailure"
    assert s.termination_grace_seconds == 45
    app, sidecar = s.containers
    assert app.command == ("python", "-m")
    assert app.args == ("http.server", "8080")  # $(VAR) expanded as kubelet does
    assert app.env == (("PORT", "8080"), ("URL", "http://x:8080/"))
    assert [(p.container_port, p.protocol) for p in app.ports] == [(8080, "TCP")]
    assert sidecar.command is None and sidecar.args is None
    assert sidecar.ports[0].protocol == "UDP"


def test_defaults():
    s = machine_spec({"metadata": {"name": "a", "uid": UID}, "spec": {"containers": [{"name": "c", "image": "i"}]}}, "vk", 0)
    assert s.pod.namespace == "default"
    assert s.restart_policy == "Always"
    assert s.termination_grace_seconds == 30
    assert (s.cpu_millis, s.memory_mib) == (0, 0)


def test_expand_escapes_and_leaves_unknown_refs():
    assert expand("$$(A) $(A) $(B)", {"A": "1"}) == "$(A) 1 $(B)"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p["spec"].update(initContainers=[{"name": "i", "image": "x", "restartPolicy": "Always"}]),
         "spec.initContainers[0].restartPolicy"),
        (lambda p: p["spec"]["containers"][0].update(env=[{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]),
         "spec.containers[0].env[0].valueFrom.fieldRef"),
        (lambda p: p["spec"].update(volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}]),
         "spec.volumes[0] (data: persistentVolumeClaim)"),
        (lambda p: p["spec"].update(volumes=[{"name": "h", "hostPath": {"path": "/"}}]), "spec.volumes[0] (h: hostPath)"),
        (lambda p: p["spec"]["containers"][0].update(volumeMounts=[{"name": "data", "mountPath": "/d"}]),
         "spec.containers[0].volumeMounts[0]"),
        (lambda p: p["spec"].update(hostNetwork=True), "spec.hostNetwork"),
        (lambda p: p["spec"].update(hostPID=True), "spec.hostPID"),
        (lambda p: p["spec"].update(hostIPC=True), "spec.hostIPC"),
        (lambda p: p["spec"]["containers"][0].update(securityContext={"privileged": True}),
         "spec.containers[0].securityContext.privileged"),
        (lambda p: p["spec"]["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 8080}]),
         "spec.containers[0].ports[0].hostPort"),
        (lambda p: p["spec"]["containers"][0].update(ports=[{"containerPort": 80, "protocol": "SCTP"}]),
         "spec.containers[0].ports[0].protocol"),
    ],
)
def test_unsupported_features_name_the_field(mutate, field):
    p = pod()
    mutate(p)
    with pytest.raises(UnsupportedPod) as e:
        machine_spec(p, "vk", 0)
    assert isinstance(e.value, ValueError)
    assert field in str(e.value)
    assert any(field in path for path, _ in e.value.violations)


def test_all_violations_are_reported_at_once():
    p = pod(hostNetwork=True, initContainers=[{"name": "i", "image": "x"}])
    p["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    assert [path for path, _ in unsupported(p)] == ["spec.hostNetwork"]  # imagePullSecrets work on ECS
    assert [path for path, _ in unsupported(p, "fly")] == ["spec.imagePullSecrets", "spec.hostNetwork"]
    assert [path for path, _ in unsupported(p, "ecs")] == ["spec.hostNetwork"]


def test_token_volume_and_its_mount_are_accepted():
    p = pod({"name": "app", "image": "nginx", "volumeMounts": [TOKEN_MOUNT]}, volumes=[TOKEN_VOLUME])
    assert unsupported(p) == []
    assert machine_spec(p, "vk", 0).containers[0].name == "app"


def test_a_volume_merely_named_like_the_token_volume_is_not_accepted():
    p = pod(volumes=[{"name": "kube-api-access-fake", "hostPath": {"path": "/"}}])
    assert unsupported(p)


def test_privileged_false_and_host_port_equal_are_fine():
    p = pod({"name": "a", "image": "i", "securityContext": {"privileged": False},
             "ports": [{"containerPort": 80, "hostPort": 80}]})
    assert unsupported(p) == []


def test_feature_table_is_one_table_with_checks_for_every_unsupported_row():
    for backend in ("ecs", "fly"):
        assert {f.status(backend) for f in FEATURES} == {"supported", "ignored", "unsupported"}
        assert all(f.check is not None for f in FEATURES if f.status(backend) == "unsupported")


def test_missing_identity_or_containers():
    with pytest.raises(UnsupportedPod, match="metadata.uid"):
        machine_spec({"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}, "vk", 0)
    with pytest.raises(UnsupportedPod, match="spec.containers"):
        machine_spec({"metadata": {"name": "a", "uid": UID}, "spec": {"containers": []}}, "vk", 0)
    with pytest.raises(UnsupportedPod, match=r"spec.containers\[0\].image"):
        machine_spec(pod({"name": "c"}), "vk", 0)


def test_a_subpath_of_an_emptydir_is_refused_on_both_backends_naming_the_mount():
    pod = {"metadata": {"name": "p", "uid": "u"}, "spec": {
        "containers": [{"name": "c", "image": "x", "volumeMounts": [
            {"name": "scratch", "mountPath": "/a", "subPath": "a"}, {"name": "conf", "mountPath": "/b", "subPath": "k"}]}],
        "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "conf", "configMap": {"name": "cm"}}]}}
    found = unsupported(pod, "fly")
    assert [path for path, _ in found] == ["spec.containers[0].volumeMounts[0].subPath (scratch: an emptyDir)"]
    assert "mount the emptyDir at a directory" in found[0][1]
    assert ("spec.containers[0].volumeMounts[0].subPath (scratch: an emptyDir)", found[0][1]) in unsupported(pod, "ecs")
