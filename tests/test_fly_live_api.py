"""Fly Machines as the live API behaves, beyond the Swagger file (issue 8, Fly
items 1-8): each test reproduces a documented behaviour in the Fly fake and
checks the client copes. Sources: ``tests/fixtures/fly/README.md``."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from chalicelib.machines.claims import Claims
from chalicelib.machines.contract import MachinePhase, PermanentMachineError, StopCause, TransientMachineError
from chalicelib.machines.fly import FlyApi, FlyApiError, FlyBackend, classify, machine_from_fly
from chalicelib.machines.fly.api import CapacityError, NameTaken
from chalicelib.machines.fly.config import META_UID
from chalicelib.pod_spec import machine_spec
from tests.test_fly_backend import TOKEN, UID, api, aws_env, dynamodb, fly, pod, sleeps  # noqa: F401 - fixtures
from tests.world.fly_fake.server import LOG_RETENTION

NODE = "vk"


def spec(*containers: dict, **kw):
    return machine_spec(pod(*containers, **kw), NODE, 0)


def started(fly, backend, s=None):
    m = backend.create(s or spec())
    fly.settle()
    return m


# -- 1. host_status unknown/unreachable, incomplete_config ------------------------------


@pytest.mark.parametrize("host", ["unreachable", "unknown"])
def test_a_machine_on_an_unreachable_host_stays_listed_as_ours(fly, api, host):
    backend = FlyBackend(api, region="iad")
    m = started(fly, backend)
    fly.unreachable(m.id, host)
    raw = requests.get(f"{fly.url}/v1/apps/app/machines/{m.id}", headers={"Authorization": f"Bearer {TOKEN}"},
                       timeout=5).json()
    assert "config" not in raw and raw["host_status"] == host and raw["incomplete_config"]["metadata"]
    [seen] = backend.list(NODE)
    assert seen.id == m.id and seen.pod.uid == UID and seen.phase == MachinePhase.RUNNING


def test_incomplete_config_is_read_when_config_is_missing():
    meta = {"lambdalet": "v1", META_UID: UID, "lambdalet_node": NODE, "lambdalet_attempt": "2"}
    m = machine_from_fly({"id": "m1", "state": "started", "host_status": "unreachable",
                          "incomplete_config": {"image": "nginx", "metadata": meta}})
    assert (m.id, m.pod.uid, m.node, m.attempt, m.phase) == ("m1", UID, NODE, 2, MachinePhase.RUNNING)
    assert machine_from_fly({"id": "m1", "state": "started", "host_status": "unreachable"}) is None


def test_a_machine_on_an_unreachable_host_is_never_created_twice(fly, api, dynamodb):
    backend = FlyBackend(api, region="iad", claims=Claims(dynamodb, "claims", scope="app"))
    m = started(fly, backend)
    fly.unreachable(m.id)
    assert backend.create(spec()).id == m.id
    assert FlyBackend(api, region="iad").create(spec()).id == m.id  # without the claim: the lookup
    assert len(fly.machines) == 1


def test_an_unreachable_machine_without_metadata_makes_the_create_wait(fly, api, dynamodb):
    """The pessimistic reading: incomplete_config may not even hold our metadata."""
    backend = FlyBackend(api, region="iad", claims=Claims(dynamodb, "claims", scope="app"))
    m = started(fly, backend)
    fly.unreachable(m.id)
    fly.machines[m.id].config = {"image": fly.machines[m.id].config["image"]}
    with pytest.raises(TransientMachineError, match="host Fly cannot reach"):
        backend.create(spec())
    assert len(fly.machines) == 1


# -- 2. capacity refusals ------------------------------------------------------------------


@pytest.mark.parametrize(("status", "error", "code"), [
    (412, "insufficient resources available to fulfill request", "insufficient_capacity"),
    (409, "could not reserve resource for machine: insufficient memory available", None),
    (422, "could not reserve resource for machine: insufficient CPUs available", None),
    (500, "placement failed", "insufficient_capacity"),
])
def test_every_reported_capacity_refusal_moves_to_the_fallback_region(fly, api, status, error, code):
    fly.no_capacity("iad", status=status, error=error, code=code)
    m = FlyBackend(api, region="iad", fallback_regions=["ams"]).create(spec())
    assert fly.machines[m.id].region == "ams"


def test_classify_reads_the_error_body_status():
    assert type(classify(FlyApiError("create", 422, {"error": "x", "status": "insufficient_capacity"}))) is CapacityError
    assert type(classify(FlyApiError("create", 409, {"error": "taken", "status": "name_taken"}))) is NameTaken


def test_name_taken_is_the_earlier_machine_never_a_failed_pod(fly, api):
    """Names are unique in an app: our name (uid, attempt) taken means it was created."""
    s = spec()
    FlyBackend(api, region="iad").create(s)
    [first] = fly.machines.values()
    # an older lambdalet's machine: our name, metadata the lookup does not match
    first.config = {**first.config, "metadata": {"lambdalet": "v1"}}
    with pytest.raises(TransientMachineError) as err:
        FlyBackend(api, region="iad").create(s)
    assert not isinstance(err.value, PermanentMachineError) and "name_taken" in str(err.value)
    assert len(fly.machines) == 1


# -- 3. rate limits: tests/test_fly_backend.py (per identifier, Get Machine, per app) --------


# -- 4. images: MANIFEST_UNKNOWN (sync, often transient) and launch_failed (async) -----------


def test_an_image_just_pushed_is_retried_until_the_registry_serves_it(fly, api, sleeps):
    fly.fresh_image("nginx:1.27", times=2)
    m = FlyBackend(api, region="iad").create(spec())
    assert m.phase == MachinePhase.PENDING
    assert [s for (meth, p, s) in fly.requests if meth == "POST"] == [400, 400, 200]
    assert len(sleeps) == 2 and sleeps[1] >= sleeps[0]  # back-off


def test_an_image_that_never_appears_is_a_permanent_failure_after_the_retries(fly, api, sleeps):
    with pytest.raises(PermanentMachineError, match="MANIFEST_UNKNOWN"):
        FlyBackend(api, region="iad").create(spec(*[{"name": "app", "image": "doesnotexist:1"}]))
    assert [s for (meth, p, s) in fly.requests if meth == "POST"] == [400] * (1 + api.manifest_retries)


@pytest.mark.parametrize("with_claims", [True, False])
def test_an_asynchronous_launch_failure_is_a_failed_start_with_the_reason(fly, api, dynamodb, with_claims):
    claims = Claims(dynamodb, "claims", scope="app") if with_claims else None
    backend = FlyBackend(api, region="iad", claims=claims)
    fly.fail_launch("nginx:1.27")
    m = backend.create(spec())
    fly.step()  # launch_failed
    [seen] = backend.list(NODE)
    assert seen.phase == MachinePhase.STOPPED and seen.stop_cause == StopCause.FAILED_TO_START
    assert "MANIFEST_UNKNOWN" in seen.stop_reason and seen.containers[0].state == "waiting"
    fly.step()  # destroyed: gone from lists; the next create must not launch it again
    assert m.id in fly.destroyed and backend.list(NODE) == []
    with pytest.raises(PermanentMachineError, match="could not launch"):
        backend.create(spec())
    assert len(fly.machines) == 0 and len(fly.destroyed) == 1


# -- 5. metadata filter -------------------------------------------------------------------------


def test_the_list_is_filtered_by_metadata_on_the_server(fly, api):
    backend = FlyBackend(api, region="iad")
    mine = backend.create(spec())
    requests.post(f"{fly.url}/v1/apps/app/machines", json={"config": {"image": "nginx"}},
                  headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert [m["id"] for m in api.list_machines({META_UID: UID})] == [mine.id]
    assert len(api.list_machines()) == 2
    fly.urls.clear()
    backend.list(NODE)
    backend.create(spec())
    lists = [u for u in fly.urls if u.split("?")[0].endswith("/machines")]
    assert lists and all("metadata." in u for u in lists)


# -- 6. propagation: a GET right after create may 404 ---------------------------------------------


def test_a_404_right_after_create_does_not_create_a_second_machine(fly, api, dynamodb):
    now = [1000.0]
    backend = FlyBackend(api, region="iad", claims=Claims(dynamodb, "claims", scope="app", clock=lambda: now[0]))
    fly.propagation = 5.0
    m = backend.create(spec())
    with pytest.raises(TransientMachineError, match="does not show it yet"):
        backend.create(spec())
    assert len(fly.machines) == 1
    fly.clock.advance(5)
    now[0] += 5
    assert backend.create(spec()).id == m.id and len(fly.machines) == 1


# -- 7. the 2026 schema: multi-container, files -----------------------------------------------------


def test_the_fake_accepts_containers_with_depends_on_and_files_with_mode(fly):
    config = {"image": "nginx", "containers": [
        {"name": "init", "image": "busybox", "cmd": ["true"], "files": [
            {"guest_path": "/etc/app/conf", "raw_value": base64.b64encode(b"x=1").decode(), "mode": 0o644}]},
        {"name": "app", "image": "nginx", "depends_on": [{"name": "init", "condition": "exited_successfully"}],
         "env": {"A": "1"}},
    ]}
    r = requests.post(f"{fly.url}/v1/apps/app/machines", json={"config": config},
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert r.status_code == 200 and fly.violations == []


# -- 8. logs from the platform API -----------------------------------------------------------------


def test_machine_logs_come_from_the_platform_logs_endpoint(fly, sleeps):
    api = FlyApi(fly.url, "app", lambda: TOKEN, sleep=sleeps.append, platform_url=fly.url)
    backend = FlyBackend(api, region="iad")
    one = started(fly, backend, spec(*[{"name": "app", "image": "busybox", "command": ["sh", "-c", "echo hello; echo world; sleep 1000"]}]))
    other = started(fly, backend, machine_spec(pod(*[{"name": "app", "image": "busybox", "command": ["echo", "other"]}],
                                                   uid="00000000-0000-4000-8000-0000000000b2"), NODE, 0))
    entries, token = api.machine_logs(one.id)
    messages = [e["message"] for e in entries]
    assert "hello" in messages and "world" in messages and "other" not in messages
    assert all(e["instance"] == one.id and e["region"] == "iad" and e["timestamp"] for e in entries)
    assert any(u.startswith(f"/api/v1/apps/app/logs?instance={one.id}") for u in fly.urls)
    assert api.machine_logs(one.id, token) == ([], token)  # nothing newer yet
    assert "other" in [e["message"] for e in api.machine_logs(other.id)[0]]


def test_logs_older_than_the_retention_are_gone(fly, sleeps):
    api = FlyApi(fly.url, "app", lambda: TOKEN, sleep=sleeps.append, platform_url=fly.url)
    m = started(fly, FlyBackend(api, region="iad"),
                spec(*[{"name": "app", "image": "busybox", "command": ["sh", "-c", "echo early; sleep 1000"]}]))
    assert "early" in [e["message"] for e in api.machine_logs(m.id)[0]]
    fly.clock.advance(LOG_RETENTION.total_seconds() + 1)
    assert api.machine_logs(m.id)[0] == []


# -- say what happened: Machine.stop_code / stop_reason from Fly's own words ---------------------


def test_fly_says_what_happened_oom_exit_and_launch_failure(fly, api):
    backend = FlyBackend(api, region="iad")
    oom = started(fly, backend)
    fly.oom(oom.id)
    fly.settle()
    seen = backend.get(oom.id)
    assert seen.stop_code == "oom" and "out of memory" in seen.stop_reason
    assert seen.containers[0].reason == "OOMKilled" and seen.containers[0].exit_code == 137
    done = started(fly, backend, machine_spec(pod(*[{"name": "app", "image": "busybox", "command": ["sh", "-c", "exit 3"]}],
                                                  uid="00000000-0000-4000-8000-0000000000c3"), NODE, 0))
    seen = backend.get(done.id)
    assert (seen.stop_cause, seen.stop_code) == (StopCause.EXITED, "exited") and "code 3" in seen.stop_reason
    fly.fail_launch("nginx:2")
    bad = backend.create(machine_spec(pod(*[{"name": "app", "image": "nginx:2"}],
                                          uid="00000000-0000-4000-8000-0000000000d4"), NODE, 0))
    fly.step()
    seen = backend.get(bad.id)
    assert seen.stop_code == "launch_failed" and seen.cloud_says().startswith("launch_failed: Fly could not launch")


def sh(script: str) -> list[str]:
    return ["-c", script]


def test_the_fake_honours_depends_on_exited_successfully(fly):
    from tests.world.fly_fake.server import pilot

    init = {"name": "init", "image": "busybox", "entrypoint": ["sh"], "cmd": sh("echo migrated; sleep 2; exit 0")}
    app = {"name": "app", "image": "nginx", "entrypoint": ["sh"], "cmd": sh("echo serving; sleep 5; exit 0"),
           "depends_on": [{"name": "init", "condition": "exited_successfully"}]}
    program, output = pilot([init, app])
    assert (program.seconds, program.exit_code) == (7.0, 0) and output == ["migrated", "serving"]
    failing = {**init, "cmd": sh("sleep 1; exit 3")}
    program, output = pilot([failing, app])
    assert (program.seconds, program.exit_code) == (1.0, 3) and output == []  # app never started
    side = {"name": "side", "image": "envoy", "entrypoint": ["sh"], "cmd": sh("sleep 100000"),
            "depends_on": [{"name": "app", "condition": "started"}]}
    assert pilot([init, app, side])[0].seconds > 100000  # runs on while the sidecar runs
    healthy = {**side, "depends_on": [{"name": "init", "condition": "healthy"}]}
    assert pilot([init, healthy])[0].seconds == 100000  # started with init: healthy once started


@pytest.mark.parametrize("containers", [
    [{"name": "a", "image": "x", "depends_on": [{"name": "zz", "condition": "started"}]}],
    [{"name": "a", "image": "x", "depends_on": [{"name": "b", "condition": "started"}]},
     {"name": "b", "image": "x", "depends_on": [{"name": "a", "condition": "started"}]}],
])
def test_the_fake_refuses_unknown_or_circular_dependencies(fly, containers):
    r = requests.post(f"{fly.url}/v1/apps/app/machines", json={"config": {"containers": containers}},
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert r.status_code == 400 and ("unknown container" in r.json()["error"] or "cycle" in r.json()["error"])


def test_a_multi_container_machine_exits_as_pilot_says(fly, api):
    backend = FlyBackend(api, region="iad")
    s = spec({"name": "init", "image": "busybox", "command": ["sh", "-c", "sleep 1; exit 0"]},
             {"name": "app", "image": "nginx", "command": ["sh", "-c", "sleep 2; exit 5"]})
    m = backend.create(s)
    fly.settle()
    fly.clock.advance(3)
    fly.settle()
    seen = backend.get(m.id)
    assert seen.phase == MachinePhase.STOPPED and [c.name for c in seen.containers] == ["init", "app"]
    assert [c.image for c in seen.containers] == ["busybox", "nginx"]
    assert {c.exit_code for c in seen.containers} == {5}


def test_the_fake_writes_files_with_their_mode_from_a_value_or_an_app_secret(fly):
    fly.app_secrets["TLS_KEY"] = base64.b64encode(b"-----KEY-----").decode()
    config = {"image": "nginx", "files": [{"guest_path": "/etc/tls.key", "secret_name": "TLS_KEY", "mode": 0o600}],
              "containers": [{"name": "app", "image": "nginx", "files": [
                  {"guest_path": "/etc/app.conf", "raw_value": base64.b64encode(b"a=1").decode()}]}]}
    r = requests.post(f"{fly.url}/v1/apps/app/machines", json={"config": config},
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert r.status_code == 200
    files = fly.machines[r.json()["id"]].files
    assert files == {("", "/etc/tls.key"): (b"-----KEY-----", 0o600), ("app", "/etc/app.conf"): (b"a=1", 0o644)}


@pytest.mark.parametrize("f", [
    {"guest_path": "/x", "secret_name": "MISSING"},
    {"guest_path": "relative", "raw_value": "eA=="},
    {"guest_path": "/x", "raw_value": "not base64!"},
    {"guest_path": "/x"},
])
def test_the_fake_refuses_files_it_could_not_write(fly, f):
    r = requests.post(f"{fly.url}/v1/apps/app/machines", json={"config": {"image": "nginx", "files": [f]}},
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert r.status_code == 400 and fly.machines == {}


# -- 10. machine volumes: temp_dir shared by the containers that mount it --------------------------


def post(fly, config: dict) -> requests.Response:
    return requests.post(f"{fly.url}/v1/apps/app/machines", json={"config": config},
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)


def relay_config(reader_mounts: list[dict]) -> dict:
    return {"volumes": [{"name": "scratch", "temp_dir": {"storage_type": "disk", "size_mb": 64}}], "containers": [
        {"name": "init", "image": "busybox", "entrypoint": ["sh", "-c", "echo hi > /w/note; echo more >> /w/note"],
         "mounts": [{"name": "scratch", "path": "/w"}]},
        {"name": "app", "image": "busybox", "entrypoint": ["sh", "-c", "cat /r/note; test -f /w/note"],
         "mounts": reader_mounts, "depends_on": [{"name": "init", "condition": "exited_successfully"}]}]}


def test_a_temp_dir_volume_is_shared_by_the_containers_that_mount_it(fly):
    r = post(fly, relay_config([{"name": "scratch", "path": "/r"}]))
    assert r.status_code == 200, r.text
    m = fly.machines[r.json()["id"]]
    assert m.output == ["hi", "more"] and m.program.exit_code == 1  # /w is not mounted in app: test -f fails
    assert m.fs.volumes == {"scratch": {"note": b"hi\nmore\n"}} and m.fs.roots["app"] == {}
    unmounted = post(fly, relay_config([]))
    m = fly.machines[unmounted.json()["id"]]
    assert m.output == ["cat: can't open '/r/note': No such file or directory"] and m.program.exit_code == 1
    assert fly.violations == []


@pytest.mark.parametrize("config, problem", [
    ({"containers": [{"name": "a", "image": "x", "mounts": [{"name": "nope", "path": "/d"}]}]}, "not a volume"),
    ({"volumes": [{"name": "v", "temp_dir": {"storage_type": "disk"}}] * 2, "containers": [{"name": "a", "image": "x"}]},
     "unique"),
    ({"volumes": [{"name": "v"}], "containers": [{"name": "a", "image": "x"}]}, "temp_dir is required"),
])
def test_the_fake_refuses_mounts_of_no_volume_and_duplicate_volumes(fly, config, problem):
    r = post(fly, config)
    assert r.status_code == 400 and problem in r.json()["error"] and fly.machines == {}


@pytest.mark.parametrize("config", [
    {"volumes": [{"name": "v", "temp_dir": {"storage_type": "tmpfs"}}], "containers": [{"name": "a", "image": "x"}]},
    {"volumes": [{"name": "v", "temp_dir": {"size_mb": 5}}], "containers": [{"name": "a", "image": "x"}]},
    {"volumes": [{"name": "v", "temp_dir": {"storage_type": "disk", "size_gb": 1}}], "containers": [{"name": "a", "image": "x"}]},
    {"volumes": [{"name": "v", "temp_dir": {"storage_type": "disk"}}],
     "containers": [{"name": "a", "image": "x", "mounts": [{"volume": "v", "path": "/d"}]}]},
])
def test_volume_fields_are_checked_against_the_2026_definitions(fly, config):
    r = post(fly, config)
    assert r.status_code == 400 and "invalid request body" in r.json()["error"]
    [violation] = fly.violations
    assert "volumes/0/temp_dir" in violation or "mounts/0" in violation
    fly.violations.clear()  # expected: the fixture checks for others


def test_lambdalet_never_uses_app_secrets(fly, api):
    """App secrets are env vars on every machine of the app: a pod's Secret must never go there."""
    backend = FlyBackend(api, region="iad")
    m = started(fly, backend, spec({"name": "a", "image": "x", "env": [{"name": "K", "value": "v"}]},
                                   {"name": "b", "image": "y"}))
    backend.list(NODE)
    backend.delete(m.id, 0, "lambdalet: test")
    assert not any("/secrets" in u for u in fly.urls)
    config = fly.machines[m.id].config
    assert "secrets" not in json.dumps(config) and "secret_name" not in json.dumps(config)
