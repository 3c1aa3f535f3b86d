"""FlyBackend specifics: sizes, the request it sends, status mapping, errors,
retries and limits, the DynamoDB claim, and the fake's own spec checks.
What every backend must do is in test_backend_contract.py."""

from __future__ import annotations

import logging
import time
import threading

import boto3
import pytest
import requests
from moto import mock_aws

from chalicelib.machines.claims import Claims, Held
from chalicelib.machines.contract import (
    MachineNotFound,
    MachinePhase,
    PermanentMachineError,
    StopCause,
    TransientMachineError,
)
from chalicelib.machines.fly import (
    CapacityError,
    FlyApi,
    FlyApiError,
    FlyBackend,
    TokenBuckets,
    classify,
    create_request,
    machine_from_fly,
    machine_name,
    metadata,
)
from chalicelib.machines.fly.backend import PROPAGATION_SECONDS
from chalicelib.machines.fly.guest import fit
from chalicelib.pod_spec import machine_spec
from tests.world.fargate_plane import Clock
from tests.world.fly_fake import FlyFake
from tests.world.fly_fake import spec as swagger
from tests.world.stack import create_claims_table

TOKEN = "fly-secret-token-value"
UID = "6c8f7b36-0c1d-4b8e-9d0a-1f2e3d4c5b6a"


def pod(*containers: dict, uid: str = UID, grace: int = 30, **spec) -> dict:
    return {"metadata": {"name": "web", "namespace": "shop", "uid": uid},
            "spec": {"containers": list(containers) or [{"name": "app", "image": "nginx:1.27"}],
                     "terminationGracePeriodSeconds": grace, **spec}}


@pytest.fixture
def aws_env(monkeypatch):
    for k, v in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                 "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.fixture
def fly():
    with FlyFake(apps={"app"}, token=TOKEN, clock=Clock()) as fake:
        yield fake
        assert fake.violations == []


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def api(fly, sleeps):
    return FlyApi(fly.url, "app", lambda: TOKEN, sleep=sleeps.append)


@pytest.fixture
def dynamodb(aws_env):
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_claims_table(client, "claims")
        yield client


# -- sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize(("cpu", "mem", "expected"), [
    (0, 0, ("shared-cpu-1x", "shared", 1, 256)),
    (50, 200, ("shared-cpu-1x", "shared", 1, 256)),
    (100, 300, ("shared-cpu-2x", "shared", 2, 512)),
    (250, 1024, ("shared-cpu-4x", "shared", 4, 1024)),
    (500, 4096, ("shared-cpu-8x", "shared", 8, 4096)),
    (1000, 0, ("performance-1x", "performance", 1, 2048)),
    (1000, 9000, ("performance-2x", "performance", 2, 9216)),
    (3000, 5120, ("performance-4x", "performance", 4, 8192)),
    (100, 20480, ("performance-4x", "performance", 4, 20480)),
    (16000, 131072, ("performance-16x", "performance", 16, 131072)),
])
def test_guest_is_the_smallest_preset_at_or_above_the_request(cpu, mem, expected):
    g = fit(cpu, mem)
    assert (g.preset, g.cpu_kind, g.cpus, g.memory_mb) == expected
    assert g.memory_mb % 256 == 0


def test_a_pod_bigger_than_any_fly_machine_is_permanent():
    with pytest.raises(PermanentMachineError, match="largest Fly Machine"):
        fit(64000, 512 * 1024)


# -- the request -------------------------------------------------------------------------


def test_create_request_translates_the_pod():
    spec = machine_spec(pod({"name": "app", "image": "busybox:1.36", "command": ["sh", "-c"], "args": ["echo hi"],
                             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                             "resources": {"requests": {"cpu": "2", "memory": "3Gi"}}},
                            grace=45, restartPolicy="OnFailure"), "vk", 2)
    body = create_request(spec, "ams")
    assert swagger.errors({"$ref": "#/definitions/CreateMachineRequest"}, body) == []
    assert body["name"] == machine_name(UID, 2) == f"lambdalet-{UID}-2"
    assert body["region"] == "ams"
    config = body["config"]
    assert config["image"] == "busybox:1.36"
    assert config["init"] == {"entrypoint": ["sh", "-c"], "cmd": ["echo hi"]}
    assert config["env"] == {"A": "1", "B": "2"}
    assert config["guest"] == {"cpu_kind": "performance", "cpus": 2, "memory_mb": 4096}
    assert config["restart"] == {"policy": "no"}  # the core restarts: a new machine per attempt
    assert config["stop_config"] == {"signal": "SIGTERM", "timeout": "45s"}
    assert config["metadata"] == metadata(spec) and config["metadata"]["lambdalet"] == "v1"
    assert config["metadata"]["lambdalet_attempt"] == "2" and config["metadata"]["lambdalet_container"] == "app"


def test_create_request_without_command_keeps_the_image_defaults_and_caps_the_grace():
    body = create_request(machine_spec(pod(grace=3600), "vk", 0), None)
    assert "init" not in body["config"] and "region" not in body
    assert body["config"]["stop_config"]["timeout"] == "300s"
    args_only = create_request(machine_spec(pod({"name": "a", "image": "x", "args": ["--port", "80"]}), "vk", 0), None)
    assert args_only["config"]["init"] == {"cmd": ["--port", "80"]}


def test_two_containers_make_a_multi_container_machine():
    spec = machine_spec(pod({"name": "a", "image": "x", "command": ["sh"], "args": ["-c", "true"],
                             "env": [{"name": "K", "value": "v"}]}, {"name": "b", "image": "y"}), "vk", 0)
    config = create_request(spec, "iad")["config"]
    assert config["containers"] == [{"name": "a", "image": "x", "entrypoint": ["sh"], "cmd": ["-c", "true"],
                                     "env": {"K": "v"}}, {"name": "b", "image": "y"}]
    assert "init" not in config and "env" not in config
    assert swagger.errors({"$ref": "#/definitions/CreateMachineRequest"}, create_request(spec, "iad")) == []


def test_machine_names_are_deterministic_dns_labels():
    assert machine_name(UID, 0) == machine_name(UID, 0) != machine_name(UID, 1)
    odd = machine_name("Weird UID with spaces" * 5, 3)
    assert len(odd) <= 63 and odd.startswith("lambdalet-h") and odd.endswith("-3")


def test_region_annotation_on_the_pod_overrides_the_region(fly, api):
    annotated = pod()
    annotated["metadata"]["annotations"] = {"lambdalet.io/fly-region": "syd", "other.io/x": "y"}
    spec = machine_spec(annotated, "vk", 0)
    assert spec.annotations == (("lambdalet.io/fly-region", "syd"),)  # only ours travel
    m = FlyBackend(api, region="iad").create(spec)
    assert fly.machines[m.id].region == "syd"


# -- status ----------------------------------------------------------------------------


def raw(state: str, events: list[dict] | None = None, **extra) -> dict:
    spec = machine_spec(pod(), "vk", 1)
    return {"id": "m1", "state": state, "private_ip": "fdaa::2", "created_at": "2026-01-02T03:04:05Z",
            "config": {"image": "nginx:1.27", "metadata": metadata(spec)}, "events": events or [], **extra}


def start(ts: int = 1_000_000) -> dict:
    return {"type": "start", "status": "started", "source": "flyd", "timestamp": ts}


def exit_(ts: int = 2_000_000, **exit_event) -> dict:
    return {"type": "exit", "status": "stopped", "source": "flyd", "timestamp": ts,
            "request": {"exit_event": exit_event}}


def test_states_map_to_phases():
    assert machine_from_fly(raw("created")).phase == MachinePhase.PENDING
    assert machine_from_fly(raw("starting")).phase == MachinePhase.PENDING
    running = machine_from_fly(raw("started", [start()]))
    assert running.phase == MachinePhase.RUNNING and running.containers[0].state == "running"
    assert (running.pod.uid, running.node, running.attempt, running.ip, running.host_ip) == (UID, "vk", 1, "fdaa::2", "fdaa::2")
    assert running.created_at.isoformat() == "2026-01-02T03:04:05+00:00"
    assert machine_from_fly(raw("stopping", [start()])).phase == MachinePhase.STOPPING
    # the exit is known while flyd still tears down: the outcome is final
    assert machine_from_fly(raw("stopping", [exit_(exit_code=0), start()])).phase == MachinePhase.STOPPED


def test_exit_events_give_codes_reasons_and_causes():
    done = machine_from_fly(raw("stopped", [exit_(exit_code=0, exited_at="2026-01-02T03:05:00.123456789Z"), start()]))
    assert done.stop_cause == StopCause.EXITED
    run = done.containers[0]
    assert (run.state, run.exit_code, run.reason) == ("terminated", 0, "Completed")
    assert run.finished_at.isoformat().startswith("2026-01-02T03:05:00.123456")
    signalled = machine_from_fly(raw("stopped", [exit_(exit_code=-1, signal=15, requested_stop=True), start()]))
    assert signalled.stop_cause == StopCause.REQUESTED and signalled.containers[0].exit_code == 143
    oom = machine_from_fly(raw("stopped", [exit_(exit_code=137, signal=9, oom_killed=True), start()]))
    assert (oom.containers[0].reason, oom.containers[0].exit_code) == ("OOMKilled", 137)
    # only the latest run counts: an exit before the latest start is history
    restarted = machine_from_fly(raw("started", [start(3_000_000), exit_(2_000_000, exit_code=1), start()]))
    assert restarted.phase == MachinePhase.RUNNING


def test_failed_lost_and_foreign_machines():
    failed = machine_from_fly(raw("failed"))
    assert failed.phase == MachinePhase.STOPPED and failed.stop_cause == StopCause.FAILED_TO_START
    assert failed.containers[0].reason == "CreateContainerError"
    lost = machine_from_fly(raw("stopped", [start()]))
    assert lost.stop_cause == StopCause.LOST and lost.containers[0].reason == "ContainerStatusUnknown"
    suspended = machine_from_fly(raw("suspended", [start()]))
    assert suspended.phase == MachinePhase.STOPPED and suspended.stop_cause == StopCause.REQUESTED
    assert machine_from_fly({"id": "x", "state": "started", "config": {"image": "nginx"}}) is None


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "body", "action", "kind"), [
    (429, {"error": "rate limit exceeded"}, "get", TransientMachineError),
    (500, {"error": "internal"}, "create", TransientMachineError),
    (503, "upstream connect error", "list", TransientMachineError),
    (408, {"error": "timeout"}, "get", TransientMachineError),
    (401, {"error": "You must be authenticated"}, "list", TransientMachineError),
    (412, {"error": "insufficient resources", "status": "insufficient_capacity"}, "create", CapacityError),
    (409, {"error": "aborted: could not reserve resource for machine: insufficient memory available"}, "create", CapacityError),
    (403, {"error": "organization is using 1970176 MB of memory in dfw which is over the allowed quota"}, "create", CapacityError),
    (404, {"error": "machine not found"}, "get", MachineNotFound),
    (404, {"error": "app not found"}, "create", TransientMachineError),
    (400, {"error": "invalid config.guest"}, "create", PermanentMachineError),
    (422, {"error": "failed to get manifest"}, "create", PermanentMachineError),
])
def test_classify(status, body, action, kind):
    err = classify(FlyApiError(action, status, body), action)
    assert type(err) is kind and str(err).startswith(f"Fly {action} failed: HTTP {status}")


def test_classify_network_errors_and_the_unexpected():
    assert type(classify(requests.ConnectionError("refused"), "list")) is TransientMachineError
    assert type(classify(requests.ReadTimeout("slow"), "get")) is TransientMachineError
    assert type(classify(RuntimeError("surprise"))) is TransientMachineError


# -- retries, limits, the token -------------------------------------------------------------


def test_429_is_retried_with_backoff_honouring_retry_after(fly, api, sleeps):
    m = FlyBackend(api, region="iad").create(machine_spec(pod(), "vk", 0))
    fly.throttle("get", times=2, retry_after=2.5)
    assert FlyBackend(api, region="iad").get(m.id).id == m.id
    assert len(sleeps) == 2 and all(2.5 <= s <= api.max_wait for s in sleeps)


def test_retries_give_up_as_a_transient_error(fly, api, sleeps):
    m = FlyBackend(api, region="iad").create(machine_spec(pod(), "vk", 0))
    sleeps.clear()
    fly.fail("get", 503, times=api.max_attempts)
    with pytest.raises(TransientMachineError, match="HTTP 503"):
        FlyBackend(api, region="iad").get(m.id)
    assert len(sleeps) == api.max_attempts - 1


def test_create_is_not_retried_on_5xx_it_may_have_happened(fly, api, sleeps):
    fly.fail("create", 502, "bad gateway")
    with pytest.raises(TransientMachineError, match="HTTP 502"):
        FlyBackend(api, region="iad").create(machine_spec(pod(), "vk", 0))
    assert [s for (m, p, s) in fly.requests if m == "POST"] == [502] and sleeps == []


def test_token_buckets_allow_a_burst_of_three_then_one_per_second():
    now, slept = [0.0], []

    def sleep(s):
        slept.append(s)
        now[0] += s

    buckets = TokenBuckets(monotonic=lambda: now[0], sleep=sleep, margin=0)
    waits = [buckets.acquire(("stop", "m1")) for _ in range(5)]
    assert waits[:3] == [0, 0, 0] and waits[3] == pytest.approx(1.0) and waits[4] == pytest.approx(1.0)
    assert buckets.acquire(("stop", "m2")) == 0  # per identifier
    assert buckets.acquire(("destroy", "m1")) == 0  # per action


def test_get_machine_has_its_own_limit_five_per_second_burst_ten():
    now = [0.0]

    def sleep(s):
        now[0] += s

    buckets = TokenBuckets(monotonic=lambda: now[0], sleep=sleep, margin=0)
    waits = [buckets.acquire(("get", "m1")) for _ in range(12)]
    assert waits[:10] == [0] * 10 and waits[10] == pytest.approx(0.2) and waits[11] == pytest.approx(0.2)


def rate_limited_codes(fly, method, path, n, **kw):
    return [requests.request(method, f"{fly.url}/v1/apps/app{path}", headers={"Authorization": f"Bearer {TOKEN}"},
                             timeout=5, **kw).status_code for _ in range(n)]


def test_the_fake_limits_per_machine_and_get_more_loosely(fly, api):
    m = FlyBackend(api, region="iad").create(machine_spec(pod(), "vk", 0))
    fly.rate_limit = True
    fly.monotonic = lambda: 0.0  # no refill while we count: the burst alone decides, however slow the machine
    gets = rate_limited_codes(fly, "GET", f"/machines/{m.id}", 12)
    assert gets == [200] * 10 + [429] * 2  # Get Machine: burst 10
    events = rate_limited_codes(fly, "GET", f"/machines/{m.id}/events", 5)
    assert events == [200] * 3 + [429] * 2  # other actions: burst 3


def test_the_fake_limits_creates_and_lists_per_app_not_per_machine(fly):
    """Five creates of five different machines: the old per-machine limit let
    them all through; Fly limits creates (and lists) per app."""
    fly.rate_limit = True
    fly.monotonic = lambda: 0.0
    codes = [requests.post(f"{fly.url}/v1/apps/app/machines", json={"config": {"image": "nginx"}},
                           headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).status_code for _ in range(5)]
    assert codes[:3] == [200] * 3 and 429 in codes[3:]
    assert rate_limited_codes(fly, "GET", "/machines", 4) == [200] * 3 + [429]


def test_the_client_paces_creates_per_app_so_the_fake_never_throttles(fly, sleeps):
    # One virtual clock for the client's pacer and the fake's limiter: a sleep
    # advances it, so the pacing is judged without the wall clock's jitter (on a
    # loaded machine a request can reach the server later than it left).
    clock = [1000.0]
    fly.monotonic = lambda: clock[0]

    def sleep(seconds):
        sleeps.append(seconds)
        clock[0] += seconds

    fly.rate_limit = True
    api = FlyApi(fly.url, "app", lambda: TOKEN, sleep=sleep,
                 buckets=TokenBuckets(monotonic=lambda: clock[0], sleep=sleep))
    backend = FlyBackend(api, region="iad")
    for n in range(4):
        backend.create(machine_spec(pod(uid=f"00000000-0000-4000-8000-00000000000{n}"), "vk", 0))
    assert len(fly.machines) == 4 and 429 not in [s for (_, _, s) in fly.requests]
    assert sleeps and clock[0] - 1000.0 >= 0.9  # creates and lists paced at 1/s after the burst


def test_the_token_never_shows_in_errors_or_logs(fly, api, caplog):
    caplog.set_level(logging.DEBUG)
    fly.fail("list", 401, "You must be authenticated to view this.", times=1)
    with pytest.raises(TransientMachineError) as err:
        FlyBackend(api, region="iad").list("vk")
    assert TOKEN not in str(err.value) and TOKEN not in repr(err.value.__cause__)
    assert TOKEN not in caplog.text


def test_wiring_reads_the_token_from_secrets_manager(aws_env, monkeypatch, fly):
    from chalicelib import wiring
    from chalicelib.settings import load_settings

    env = {"LAMBDALET_K8S_API_URL": "http://127.0.0.1:1", "LAMBDALET_K8S_TOKEN_SECRET": "k8s",
           "LAMBDALET_NODE_NAMES": "vk", "AWS_REGION": "us-east-1", "LAMBDALET_BACKEND": "fly",
           "LAMBDALET_FLY_API_URL": fly.url, "LAMBDALET_FLY_APP": "app", "LAMBDALET_FLY_REGION": "iad",
           "LAMBDALET_FLY_FALLBACK_REGIONS": "ord, ams", "LAMBDALET_FLY_TOKEN_SECRET": "fly/token-wiring-test",
           "LAMBDALET_FLY_CLAIMS_TABLE": "claims"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="fly/token-wiring-test", SecretString=TOKEN)
        create_claims_table(boto3.client("dynamodb", region_name="us-east-1"), "claims")
        backend = wiring.build_backend(load_settings())
        assert backend.name == "fly" and backend.fallback_regions == ["ord", "ams"]
        assert backend.list("vk") == []  # authenticated with the secret's token


# -- settings --------------------------------------------------------------------------


def test_settings_require_the_chosen_backends_variables_only(monkeypatch):
    from chalicelib.settings import SettingsError, load_settings

    for key in list(__import__("os").environ):
        if key.startswith("LAMBDALET_"):
            monkeypatch.delenv(key)
    for key, value in {"LAMBDALET_K8S_API_URL": "https://k", "LAMBDALET_K8S_TOKEN_SECRET": "t",
                       "LAMBDALET_NODE_NAMES": "vk", "AWS_REGION": "us-east-1", "LAMBDALET_BACKEND": "fly"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    for var in ("LAMBDALET_FLY_APP", "LAMBDALET_FLY_REGION", "LAMBDALET_FLY_TOKEN_SECRET", "LAMBDALET_FLY_CLAIMS_TABLE"):
        assert var in str(err.value)
    assert "LAMBDALET_ECS" not in str(err.value)
    for key, value in {"LAMBDALET_FLY_APP": "a", "LAMBDALET_FLY_REGION": "iad", "LAMBDALET_FLY_TOKEN_SECRET": "s",
                       "LAMBDALET_FLY_CLAIMS_TABLE": "c"}.items():
        monkeypatch.setenv(key, value)
    s = load_settings()
    assert s.backend == "fly" and s.fly_api_url == "https://api.machines.dev" and s.ecs_cluster == ""
    monkeypatch.setenv("LAMBDALET_BACKEND", "ecs")
    with pytest.raises(SettingsError, match="LAMBDALET_ECS_CLUSTER"):
        load_settings()


# -- delete ------------------------------------------------------------------------------


def test_delete_walks_stop_then_destroy_and_is_cheap_when_repeated(fly, api):
    backend = FlyBackend(api, region="iad")
    m = backend.create(machine_spec(pod(), "vk", 0))  # the image's own program: exits on SIGTERM
    fly.settle()
    backend.delete(m.id, 20, "pod deleted")
    stop = [(meth, p) for (meth, p, s) in fly.requests if p.endswith("/stop")]
    assert len(stop) == 1 and fly.machines[m.id].stop_timeout == 20
    before = len(fly.requests)
    backend.delete(m.id, 20, "again")  # stopping: one GET, nothing else
    assert [r[0] for r in fly.requests[before:]] == ["GET"]
    fly.settle()
    assert backend.get(m.id).containers[0].exit_code == 143
    backend.delete(m.id, 20, "stopped: destroy")
    fly.settle()
    assert backend.get(m.id) is None and m.id not in fly.machines
    backend.delete(m.id, 20, "destroyed")
    backend.delete("00000000000000", 20, "never existed")


def test_delete_without_grace_destroys_a_live_machine_at_once(fly, api):
    backend = FlyBackend(api, region="iad")
    m = backend.create(machine_spec(pod(), "vk", 0))
    fly.settle()
    backend.delete(m.id, 0, "duplicate")
    assert ("DELETE", f"/v1/apps/app/machines/{m.id}", 200) in fly.requests
    fly.settle()
    assert backend.get(m.id) is None


# -- claims: no two machines for one (pod, attempt) -------------------------------------------


def test_concurrent_creates_make_exactly_one_machine(fly, dynamodb):
    fly.latency = 0.05  # widen the race window
    spec = machine_spec(pod(), "vk", 0)
    results, errors = [], []
    barrier = threading.Barrier(4)

    def run():
        api = FlyApi(fly.url, "app", lambda: TOKEN, sleep=lambda s: None)
        backend = FlyBackend(api, region="iad", claims=Claims(dynamodb, "claims", scope="app"))
        barrier.wait()
        try:
            results.append(backend.create(spec).id)
        except TransientMachineError as err:
            errors.append(str(err))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fly.machines) == 1
    assert set(results) <= set(fly.machines) and results
    assert all("another lambdalet invocation" in e for e in errors)
    # once settled, everyone gets the machine
    backend = FlyBackend(FlyApi(fly.url, "app", lambda: TOKEN), region="iad", claims=Claims(dynamodb, "claims", scope="app"))
    assert backend.create(spec).id in fly.machines


def test_a_stale_claim_stops_blocking_once_its_lease_expires(fly, api, dynamodb):
    now = [1000.0]
    claims = Claims(dynamodb, "claims", scope="app", lease_seconds=60, clock=lambda: now[0])
    crashed = claims.claim(UID, 0)  # an invocation that died before creating
    assert not isinstance(crashed, Held)
    backend = FlyBackend(api, region="iad", claims=claims)
    spec = machine_spec(pod(), "vk", 0)
    with pytest.raises(TransientMachineError, match="another lambdalet invocation"):
        backend.create(spec)
    now[0] += 61
    m = backend.create(spec)
    assert list(fly.machines) == [m.id]
    assert claims.holder(UID, 0).machine_id == m.id


def test_a_crash_between_create_and_claim_bookkeeping_leaves_one_machine(fly, api, dynamodb):
    now = [1000.0]
    claims = Claims(dynamodb, "claims", scope="app", lease_seconds=60, clock=lambda: now[0])
    spec = machine_spec(pod(), "vk", 0)
    claims.claim(UID, 0)
    crashed = api.create_machine(create_request(spec, "iad"))  # created, then the invocation died
    now[0] += 61
    m = FlyBackend(api, region="iad", claims=claims).create(spec)
    assert m.id == crashed["id"] and len(fly.machines) == 1


def test_a_settled_claim_whose_machine_is_gone_is_replaced(fly, api, dynamodb):
    now = [1000.0]
    claims = Claims(dynamodb, "claims", scope="app", clock=lambda: now[0])
    backend = FlyBackend(api, region="iad", claims=claims)
    spec = machine_spec(pod(), "vk", 0)
    first = backend.create(spec)
    assert backend.create(spec).id == first.id
    fly.vanish(first.id)
    now[0] += PROPAGATION_SECONDS + 1  # long after its create: gone, not still propagating
    second = backend.create(spec)
    assert second.id != first.id and claims.holder(UID, 0).machine_id == second.id


def test_a_refused_create_releases_the_claim_for_the_retry(fly, api, dynamodb):
    backend = FlyBackend(api, region="iad", claims=Claims(dynamodb, "claims", scope="app"))
    spec = machine_spec(pod(), "vk", 0)
    fly.no_capacity(times=1)
    with pytest.raises(CapacityError):
        backend.create(spec)
    assert backend.create(spec).phase == MachinePhase.PENDING


def test_capacity_falls_back_region_by_region(fly, api):
    backend = FlyBackend(api, region="iad", fallback_regions=["ord", "iad", "ams"])
    fly.no_capacity("iad")
    fly.no_capacity("ord")
    m = backend.create(machine_spec(pod(), "vk", 0))
    assert fly.machines[m.id].region == "ams"
    regions = [r for (meth, p, r) in fly.requests if meth == "POST"]
    assert regions == [412, 412, 200]


# -- the fake checks what we send ----------------------------------------------------------


@pytest.mark.parametrize("body", [
    {"config": {"image": "x", "containers": [{"name": "a", "image": "x", "depends_on": [{"name": "b", "condition": "ready"}]}]}},
    {"config": {"image": "x", "containers": [{"name": "a", "image": "x", "privileged": True}]}},
    {"config": {"image": "x", "files": [{"guest_path": "/a", "raw_value": "eA==", "mode": "0644"}]}},
    {"config": {"image": "x", "stop_config": {"timeout": 30}}},  # a Duration is a Go duration string
    {"config": {"image": "x", "guest": {"cpus": "2"}}},
    {"config": {"image": "x", "restart": {"policy": "sometimes"}}},
    {"name": "x", "config": {"image": "x"}, "kill_timeout": 5},
])
def test_the_fake_rejects_what_the_spec_does_not_allow(fly, body):
    r = requests.post(f"{fly.url}/v1/apps/app/machines", json=body, headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=5)
    assert r.status_code == 400 and "invalid request body" in r.json()["error"]
    assert len(fly.violations) == 1
    fly.violations.clear()


def test_the_fake_rejects_unknown_query_parameters_and_bad_tokens(fly):
    r = requests.get(f"{fly.url}/v1/apps/app/machines?lambdalet_node=vk",
                     headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert r.status_code == 400 and fly.violations
    fly.violations.clear()
    assert requests.get(f"{fly.url}/v1/apps/app/machines", timeout=5).status_code == 401
    assert requests.get(f"{fly.url}/v1/apps/nope/machines", headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=5).status_code == 404
