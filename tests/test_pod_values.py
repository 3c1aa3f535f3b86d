"""Values a pod takes from ConfigMaps, Secrets and the downward API (pod_values, via pod_spec.machine_spec)."""

import base64

import pytest

from chalicelib.machines.contract import Reference
from chalicelib.pod_spec import MissingReference, Sources, machine_spec, unsupported
from chalicelib.pod_values import references

UID = "3f1e2d4c-0000-4000-8000-000000000002"
SECRET = "s3cr3t-Value-never-printed"


def pod(container=None, **spec):
    c = {"name": "app", "image": "nginx:1.27", **(container or {})}
    return {"metadata": {"name": "web-1", "namespace": "shop", "uid": UID, "labels": {"app": "web"},
                         "annotations": {"team": "core"}},
            "spec": {"containers": [c], "serviceAccountName": "builder", **spec}}


def cm(data=None, binary=None):
    return {"kind": "ConfigMap", "data": data or {}, **({"binaryData": binary} if binary else {})}


def secret(data):
    return {"kind": "Secret", "type": "Opaque", "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


SOURCES = Sources({("ConfigMap", "cfg"): cm({"MODE": "fast", "LEVEL": "3", "bad key": "x"}),
                   ("Secret", "db"): secret({"password": SECRET, "user": "app"})})


def test_env_from_configmap_secret_field_and_resource_in_kubelet_order():
    p = pod({"envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "db"}}],
             "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
                     {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                     {"name": "user", "value": "override"},  # a literal after envFrom wins over the Secret's key
                     {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                     {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                     {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                     {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                     {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                     {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                     {"name": "GREETING", "value": "$(POD) in $(MODE) with $(PW)"}],
             "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}}})
    c = machine_spec(p, "vk", 0, SOURCES).containers[0]
    env = dict(c.env)
    assert env["CFG_MODE"] == "fast" and env["CFG_LEVEL"] == "3" and "CFG_bad key" not in env
    assert env["MODE"] == "fast" and env["user"] == "override" and env["POD"] == "web-1" and env["NS"] == "shop"
    assert env["NODE"] == "vk" and env["SA"] == "builder" and env["APP"] == "web" and env["MEM"] == "256"
    # A Secret value is never expanded into a literal (it would land in the task definition).
    assert env["GREETING"] == "web-1 in fast with $(PW)"
    secrets = {k: (v.secret, v.key, v.value.get_secret_value()) for k, v in c.secret_env}
    assert secrets == {"PW": ("db", "password", SECRET), "password": ("db", "password", SECRET)}
    assert SECRET not in repr(c) and SECRET not in c.model_dump_json()


def test_without_sources_the_spec_names_its_references_and_holds_no_values():
    p = pod({"env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                     {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE", "optional": True}}}]},
            volumes=[{"name": "conf", "configMap": {"name": "cfg"}}], imagePullSecrets=[{"name": "regcred"}])
    spec = machine_spec(p, "vk", 0)
    assert spec.containers[0].env == () and spec.containers[0].secret_env == ()
    assert spec.references == (Reference(kind="ConfigMap", name="cfg", optional=False),
                               Reference(kind="Secret", name="db", optional=False),
                               Reference(kind="Secret", name="regcred", optional=True))


@pytest.mark.parametrize(("env", "message"), [
    ([{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}], 'configmap "nope" not found'),
    ([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "db", "key": "nokey"}}}],
     "couldn't find key nokey in Secret shop/db"),
])
def test_a_missing_reference_names_it_in_the_kubelets_words(env, message):
    with pytest.raises(MissingReference) as err:
        machine_spec(pod({"env": env}), "vk", 0, SOURCES)
    assert str(err.value) == message


def test_optional_references_that_are_missing_set_nothing():
    p = pod({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": True}}}],
             "envFrom": [{"secretRef": {"name": "gone", "optional": True}}]})
    c = machine_spec(p, "vk", 0, SOURCES).containers[0]
    assert c.env == () and c.secret_env == ()


def test_volumes_become_files_with_items_and_modes():
    p = pod({"volumeMounts": [{"name": "conf", "mountPath": "/etc/app"}, {"name": "scratch", "mountPath": "/tmp/s"}]},
            volumes=[{"name": "conf", "configMap": {"name": "cfg", "items": [{"key": "MODE", "path": "mode.txt", "mode": 0o600}],
                                                     "defaultMode": 0o640}},
                     {"name": "creds", "secret": {"secretName": "db", "defaultMode": 0o400}},
                     {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                     {"name": "all", "projected": {"sources": [{"configMap": {"name": "cfg", "items": [{"key": "LEVEL", "path": "l"}]}},
                                                               {"secret": {"name": "db", "items": [{"key": "user", "path": "u"}]}}]}},
                     {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}])
    spec = machine_spec(p, "vk", 0, SOURCES)
    vols = {v.name: v for v in spec.volumes}
    files = lambda name: [(f.path, base64.b64decode(f.content.get_secret_value()).decode(), oct(f.mode), f.secret)  # noqa: E731
                          for f in vols[name].files]
    assert files("conf") == [("mode.txt", "fast", "0o600", False)]
    assert files("creds") == [("password", SECRET, "0o400", True), ("user", "app", "0o400", True)]
    assert files("info") == [("labels", 'app="web"', "0o644", False)]
    assert files("all") == [("l", "3", "0o644", False), ("u", "app", "0o644", True)]
    assert vols["scratch"].kind == "emptyDir" and vols["scratch"].memory and vols["scratch"].size_limit_mib == 64
    assert [(m.volume, m.path) for m in spec.containers[0].mounts] == [("conf", "/etc/app"), ("scratch", "/tmp/s")]
    assert SECRET not in repr(spec)


def test_init_containers_in_order_and_the_machine_fits_the_largest_step():
    p = pod({"resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}},
            initContainers=[{"name": "migrate", "image": "busybox", "command": ["sh", "-c", "exit 0"],
                             "resources": {"requests": {"memory": "1Gi"}}},
                            {"name": "warm", "image": "busybox"}])
    spec = machine_spec(p, "vk", 0, Sources())
    assert [c.name for c in spec.init_containers] == ["migrate", "warm"]
    assert (spec.cpu_millis, spec.memory_mib) == (250, 1024)


def test_probes_are_carried():
    p = pod({"readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 5, "failureThreshold": 2},
             "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "initialDelaySeconds": 3}})
    probes = machine_spec(p, "vk", 0).containers[0].probes
    assert probes.readiness.command == ("cat", "/tmp/ready") and probes.readiness.period == 5
    assert probes.liveness.kind == "http" and probes.liveness.port == 8080 and probes.liveness.initial_delay == 3


def test_image_pull_secrets_give_the_registry_credentials():
    auth = base64.b64encode(b"robot:tok3n").decode()
    config = '{"auths": {"registry.example.com": {"auth": "%s"}, "other.io": {"username": "u", "password": "p"}}}' % auth
    sources = Sources({("Secret", "regcred"): {"type": "kubernetes.io/dockerconfigjson",
                                               "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()}}})
    p = pod({"image": "registry.example.com/team/app:1"}, imagePullSecrets=[{"name": "regcred"}, {"name": "absent"}])
    [cred] = machine_spec(p, "vk", 0, sources).registry_auth
    assert (cred.registry, cred.username.get_secret_value(), cred.password.get_secret_value()) == (
        "registry.example.com", "robot", "tok3n")


def test_claims_and_host_paths_are_refused_on_both_backends_naming_the_volume():
    p = pod(volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "pvc"}}, {"name": "h", "hostPath": {"path": "/x"}}])
    for backend in ("ecs", "fly", None):
        found = unsupported(p, backend)
        assert [path for path, _ in found] == ["spec.volumes[0] (data: persistentVolumeClaim)", "spec.volumes[1] (h: hostPath)"]
        assert "cloud volumes are not supported yet; use emptyDir" in found[0][1]


def test_references_ignore_the_token_volume_and_are_optional_only_if_every_use_is():
    p = pod({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k", "optional": True}}}]},
            volumes=[{"name": "v", "configMap": {"name": "cfg"}}])
    assert references(p) == (Reference(kind="ConfigMap", name="cfg", optional=False),)
