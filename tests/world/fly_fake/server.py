"""A Fly Machines API on 127.0.0.1, faithful to the public Swagger spec.

What it implements (``/v1``):

* ``GET /apps/{app}/machines`` (``include_deleted``, ``region``),
  ``POST /apps/{app}/machines`` (CreateMachineRequest),
  ``GET /apps/{app}/machines/{id}``, ``DELETE /apps/{app}/machines/{id}``
  (``force``), ``POST /apps/{app}/machines/{id}/stop`` (StopRequest),
  ``POST /apps/{app}/machines/{id}/start``,
  ``GET /apps/{app}/machines/{id}/events``.
  Anything else of the spec answers 404 ``not implemented by the fake``.
* Every request body and query string is validated against the spec
  (``spec.py``: closed objects, ``fly.Duration`` as a Go duration string); a
  violation answers 400 and is recorded in ``violations``. Every response
  the fake sends is validated too (a violation there is the fake's own bug,
  recorded the same way). Tests assert ``violations == []``.
* ``Authorization: Bearer <token>`` is required (401 otherwise); an unknown
  app is 404.

Machines walk one state per ``step()`` on an injectable clock (the
``Clock`` of ``tests.world.fargate_plane``):
``created -> starting -> started``; a program that exits (``program_of`` of
``init.entrypoint + init.cmd``: ``sh -c "sleep 2; exit 3"``...) gets an
``exit`` event then ``stopping -> stopped``; ``stop`` makes it ``stopping``:
an interpreted script (PID 1, no SIGTERM handler) is killed once the stop
timeout has passed (exit 137, signal 9), anything else exits on SIGTERM
(143, signal 15); ``DELETE`` on a stopped machine: ``destroying ->
destroyed`` (then gone from lists unless ``include_deleted``); ``force=true``
kills a live machine first. DELETE of a live machine without force is 412,
stop of a machine that is not started is 400. Images containing
``doesnotexist`` are refused at create (400, manifest unknown), as Fly
resolves the image synchronously. Events are newest first, with
``exit_event`` (exit_code, signal, oom_killed, requested_stop, exited_at).

Faults, on demand: ``fail(action, status, ...)`` (429 with Retry-After, 5xx,
anything), ``no_capacity(region)`` (412 ``insufficient_capacity`` on
create in that region; other statuses/texts as reported), ``oom(id)`` (the
kernel kills the machine), ``vanish(id)`` (the machine disappears),
``latency`` (seconds per request) and ``rate_limit``; ``chaos``: a callable
given each call's action that may answer for it (``(status, error, headers)``:
429 with Retry-After, 5xx, a 409 lease conflict...; status 0: the call is
done, then the connection drops before the answer, as a timeout after the
fact looks to the client). ``stop_out_of_band(id)``: someone else stops the
machine (``fly machine stop``, a host drain). ``late_ips``: a machine shows no
``private_ip`` until it has started (the field is optional: not required in
the Swagger ``Machine`` definition, ``omitempty`` in fly-go's ``Machine``; our
pessimistic reading of a machine not yet placed on a host).

The live API as documented beyond the Swagger file (issue 8; sources in
``tests/fixtures/fly/README.md``):

* ``unreachable(id)``: the machine's host cannot be reached: it comes back
  with ``host_status`` unreachable (or unknown) and ``incomplete_config``
  instead of ``config`` (fly-go ``Machine``).
* ``rate_limit``: Fly's per-identifier limits (``RATE_LIMITS``): per action
  and machine id, or per app for creates and lists; 1 req/s burst 3, Get
  Machine 5/s burst 10; 429 with Retry-After beyond, on the real monotonic clock.
* Images: ``fresh_image(image, times)`` answers ``MANIFEST_UNKNOWN`` to the
  next creates of an image just pushed (then it resolves); an image containing
  ``doesnotexist`` always does. ``fail_launch(image)``: the create succeeds,
  then the launch fails asynchronously: a failed ``launch`` event, state
  ``launch_failed``, then ``destroyed``.
* Machine names are unique in an app: a create reusing a live machine's name
  is 409 ``name_taken``.
* ``GET /machines?metadata.<key>=<value>`` filters on config metadata.
* ``propagation`` (seconds of the fake clock): a new machine is not in GETs
  (404) nor lists yet (flyctl retries such GETs: "propagation delays").
* ``files`` (machine-wide and per container): ``raw_value`` or an app secret's
  ``secret_name`` (``app_secrets``: which every machine of the app could read),
  ``mode``; kept in ``FakeMachine.files`` for tests to look at. Multi-container
  ``containers`` run as Pilot runs them (``pilot``: ``depends_on``), each on
  its own root filesystem plus the ``temp_dir`` ``volumes`` it ``mounts``
  (shared with the other containers mounting them); their file commands
  (``echo > f``, ``cat f``) run on ``FakeMachine.fs`` (``tests/world/container_fs.py``).
* Logs: ``GET /api/v1/apps/{app}/logs?instance=<id>&next_token=`` (the
  platform API, served here on the same port), flyctl's ``GetAppLogs``
  shape; the machine's output (what its ``echo`` commands print) and flyd's
  lines, kept ``LOG_RETENTION`` (about 7 days).
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from tests.world.fargate_plane import Clock, Program, program_of
from tests.world.fly_fake import spec as swagger
from tests.world.container_fs import MachineFS, run

ACTIONS = ("list", "create", "get", "delete", "stop", "start", "events", "logs")

# Fly's Machines API rate limits (docs "Machines API rate limits", issue 8 item 3).
RATE_LIMITS = {"get": (5.0, 10.0)}
DEFAULT_RATE_LIMIT = (1.0, 3.0)
APP_SCOPED = {"create", "list"}
LOG_RETENTION = timedelta(days=7)
LOG_PAGE = 100
_LOGS = re.compile(r"^/api/v1/apps/(?P<app>[^/]+)/logs$")


def pilot(containers: list[dict], fs: MachineFS | None = None) -> tuple[Program, list[str]]:
    """A multi-container machine as Pilot runs it, folded into one Program:
    each container starts once its ``depends_on`` conditions hold
    (``started``; ``healthy``: no health checks are run here, so healthy once
    started; ``exited_successfully``: the dependency exited 0; one that failed
    keeps its dependents from ever starting). Each runs on ``fs`` when it
    starts (what it writes to a shared volume, those started later read). The
    machine exits when every started container has exited, with the first
    non-zero code (else 0); it runs on while any runs forever. Raises
    ApiError 400 for an unknown dependency or a cycle."""
    fs = fs or MachineFS([], {}, {})
    by_name = {c["name"]: c for c in containers}
    if len(by_name) != len(containers):
        raise ApiError(400, "container names must be unique")
    for c in containers:
        for dep in c.get("depends_on") or []:
            if dep["name"] not in by_name or dep["name"] == c["name"]:
                raise ApiError(400, f"container {c['name']} depends on unknown container {dep['name']}")
    inf = float("inf")
    start: dict[str, float] = {}
    end: dict[str, float] = {}
    code: dict[str, int | None] = {}
    programs: dict[str, Program] = {}
    output: list[str] = []
    pending = list(containers)
    while pending:
        ready = [c for c in pending if all(d["name"] in start for d in c.get("depends_on") or [])]
        if not ready:
            raise ApiError(400, "containers depends_on has a cycle")
        at_of = {}
        for c in ready:
            at = 0.0
            for dep in c.get("depends_on") or []:
                if dep["condition"] == "exited_successfully":
                    ok = code.get(dep["name"]) == 0 and end[dep["name"]] < inf
                    at = max(at, end[dep["name"]] if ok else inf)
                else:
                    at = max(at, start[dep["name"]])
            at_of[c["name"]] = at
        for c in sorted(ready, key=lambda c: at_of[c["name"]]):  # in the order they start
            pending.remove(c)
            name, at = c["name"], at_of[c["name"]]
            programs[name] = p = _run_on(fs, name, c.get("entrypoint"), c.get("cmd"), output if at < inf else None)
            start[name] = at
            end[name] = at + p.seconds if at < inf and p.exit_code is not None else inf
            code[name] = p.exit_code if at < inf else None
    ran = [n for n in by_name if start[n] < inf]
    ignores = any(programs[n].ignores_sigterm for n in ran)
    if any(end[n] == inf for n in ran):
        # Runs on, unless a dependency failed and nothing else is left running.
        forever = [n for n in ran if end[n] == inf and code[n] is None and programs[n].exit_code is None]
        if forever:
            return Program(ignores_sigterm=ignores), output
    finished = sorted((end[n], code[n]) for n in ran if end[n] < inf)
    failed = next((c for _, c in finished if c), 0)
    return Program(seconds=max((t for t, _ in finished), default=0.0), exit_code=failed,
                   ignores_sigterm=ignores), output


def _run_on(fs: MachineFS, container: str, entrypoint: list[str] | None, cmd: list[str] | None,
            output: list[str] | None) -> Program:
    """``program_of``'s Program for a container, with the status its file commands
    give it on ``fs`` (a ``cat`` of a missing file fails); what it prints goes to
    ``output`` (None: it never starts, nothing runs)."""
    program = program_of(entrypoint, cmd)
    if output is None:
        return program
    printed, status = run(fs, container, list(entrypoint or []) + list(cmd or []))
    output += [line for _, line in printed]
    if program.exit_code is not None and status is not None and status != program.exit_code:
        program = dataclasses.replace(program, exit_code=status)
    return program


def machine_fs(config: dict, files: dict[tuple[str, str], tuple[bytes, int]]) -> MachineFS:
    """The machine's filesystems: its ``temp_dir`` volumes and who mounts them where.
    Raises ApiError 400 for a duplicate volume name, a volume without ``temp_dir``
    (the only kind modelled) or a mount of no volume of this machine."""
    volumes = [v["name"] for v in config.get("volumes") or []]
    if len(set(volumes)) != len(volumes):
        raise ApiError(400, f"volume names must be unique: {', '.join(volumes)}")
    for v in config.get("volumes") or []:
        if "temp_dir" not in v:
            raise ApiError(400, f"volume {v['name']}: temp_dir is required (the fake models temp_dir volumes only)")
    mounts: dict[str, list[tuple[str, str]]] = {}
    for c in config.get("containers") or []:
        for m in c.get("mounts") or []:
            if m["name"] not in volumes:
                raise ApiError(400, f"container {c['name']} mounts {m['name']}, which is not a volume of this machine")
            if not m["path"].startswith("/"):
                raise ApiError(400, f"container {c['name']}: mount path must be absolute: {m['path']!r}")
            mounts.setdefault(c["name"], []).append((m["path"], m["name"]))
    return MachineFS(volumes, mounts, files)


_ROUTES: list[tuple[str, str, re.Pattern, str]] = [
    ("GET", "/apps/{app_name}/machines", re.compile(r"^/v1/apps/(?P<app>[^/]+)/machines$"), "list"),
    ("POST", "/apps/{app_name}/machines", re.compile(r"^/v1/apps/(?P<app>[^/]+)/machines$"), "create"),
    ("GET", "/apps/{app_name}/machines/{machine_id}",
     re.compile(r"^/v1/apps/(?P<app>[^/]+)/machines/(?P<id>[^/]+)$"), "get"),
    ("DELETE", "/apps/{app_name}/machines/{machine_id}",
     re.compile(r"^/v1/apps/(?P<app>[^/]+)/machines/(?P<id>[^/]+)$"), "delete"),
    ("POST", "/apps/{app_name}/machines/{machine_id}/stop",
     re.compile(r"^/v1/apps/(?P<app>[^/]+)/machines/(?P<id>[^/]+)/stop$"), "stop"),
    ("POST", "/apps/{app_name}/machines/{machine_id}/start",
     re.compile(r"^/v1/apps/(?P<app>[^/]+)/machines/(?P<id>[^/]+)/start$"), "start"),
    ("GET", "/apps/{app_name}/machines/{machine_id}/events",
     re.compile(r"^/v1/apps/(?P<app>[^/]+)/machines/(?P<id>[^/]+)/events$"), "events"),
]


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def parse_go_duration(text: str) -> float:
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(ns|us|µs|ms|s|m|h)", text))


class ApiError(Exception):
    def __init__(self, status: int, error: str, code: str | None = None, headers: dict | None = None):
        super().__init__(error)
        self.status, self.error, self.code, self.headers = status, error, code, headers or {}

    def body(self) -> dict:
        body: dict[str, Any] = {"error": self.error}
        if self.code:
            body["status"] = self.code
        return body


@dataclass
class Fault:
    action: str
    status: int
    error: str
    code: str | None = None
    retry_after: float | None = None
    region: str | None = None  # create only: fail only in this region


@dataclass
class FakeMachine:
    id: str
    name: str
    region: str
    config: dict
    created_at: datetime
    private_ip: str
    instance_id: str
    program: Program
    state: str = "created"
    updated_at: datetime | None = None
    events: list[dict] = field(default_factory=list)  # newest first
    started_at: datetime | None = None
    stop_at: datetime | None = None  # when the stop was asked for
    stop_timeout: float = 5.0
    stop_signal: str = "SIGTERM"
    kill: bool = False  # force destroy: kill at once
    destroy_after_stop: bool = False
    pending_exit: dict | None = None  # exit_event to report on the next step
    oom: bool = False
    host_status: str = "ok"
    launch_error: str | None = None  # the launch fails asynchronously with this
    output: list[str] = field(default_factory=list)  # what the program prints once started
    files: dict[tuple[str, str], tuple[bytes, int]] = field(default_factory=dict)  # (container, path) -> (data, mode)
    fs: MachineFS | None = None  # what its containers wrote: fs.volumes[name], fs.roots[container]

    def view(self, late_ip: bool = False) -> dict:
        image = self.config.get("image", "")
        repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
        registry, _, repository = repo.partition("/") if "." in repo.split("/", 1)[0] else ("registry-1.docker.io", "", repo)
        out = {
            "id": self.id, "name": self.name, "state": self.state, "region": self.region,
            "instance_id": self.instance_id, "private_ip": self.private_ip,
            "config": self.config,
            "image_ref": {"registry": registry, "repository": repository or repo, "tag": tag or "latest",
                          "digest": "sha256:" + uuid.uuid5(uuid.NAMESPACE_URL, image).hex * 2, "labels": {}},
            "created_at": _iso(self.created_at), "updated_at": _iso(self.updated_at or self.created_at),
            "events": list(self.events), "host_status": self.host_status,
        }
        if late_ip and self.started_at is None:
            del out["private_ip"]
        if self.host_status != "ok":
            # What the API knows without the host: the config it stored, not what the host resolved.
            del out["config"]
            out["incomplete_config"] = {k: self.config[k] for k in ("image", "metadata") if k in self.config}
        return out


class FlyFake:
    """The fake Machines API. ``with FlyFake(apps={"lambdalet"}, token="t") as fly: fly.url``."""

    def __init__(self, *, apps: set[str] | None = None, token: str = "fly-test-token",
                 clock: Callable[[], datetime] | None = None, default_region: str = "iad"):
        self.apps = set(apps or {"lambdalet"})
        self.token = token
        self.clock = clock or Clock()
        self.default_region = default_region
        self.machines: dict[str, FakeMachine] = {}
        self.destroyed: dict[str, FakeMachine] = {}
        self.violations: list[str] = []
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.faults: list[Fault] = []
        self.latency = 0.0
        self.chaos: Callable[[str], tuple[int, str, dict] | None] | None = None
        self.late_ips = False
        self.rate_limit = False
        self.monotonic = time.monotonic  # the limiter's clock; tests may freeze it
        self._buckets: dict[tuple, tuple[float, float]] = {}
        self.fresh_images: dict[str, int] = {}  # image -> creates still answered MANIFEST_UNKNOWN
        self.launch_failures: set[str] = set()
        self.propagation = 0.0  # seconds a new machine stays out of GETs and lists
        self.app_secrets: dict[str, str] = {}  # name -> value: env of EVERY machine of the app, file sources
        self.urls: list[str] = []  # every request's path and query, in order
        self.logs: list[dict] = []  # the app's log, oldest first: {"at", "instance", "region", "message", "level"}
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    # -- life cycle ----------------------------------------------------------
    def start(self) -> "FlyFake":
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                         name="fly-fake").start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FlyFake":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- faults ----------------------------------------------------------------
    def fail(self, action: str, status: int = 503, error: str = "service unavailable", *, times: int = 1,
             retry_after: float | None = None, code: str | None = None) -> None:
        """The next ``times`` calls of ``action`` answer ``status``."""
        assert action in ACTIONS, action
        with self._lock:
            self.faults += [Fault(action, status, error, code, retry_after) for _ in range(times)]

    def throttle(self, action: str, *, times: int = 1, retry_after: float | None = 0.0) -> None:
        self.fail(action, 429, "rate limit exceeded", times=times, retry_after=retry_after)

    def no_capacity(self, region: str | None = None, *, times: int = 1, status: int = 412,
                    error: str = "insufficient resources available to fulfill request: could not reserve "
                                 "resource for machine", code: str | None = "insufficient_capacity") -> None:
        """The next ``times`` creates (in ``region``, or anywhere) fail for capacity, as Fly does:
        412 ``insufficient_capacity`` by default; 409/422 and bare texts such as
        "could not reserve resource for machine: insufficient memory available" have been reported."""
        with self._lock:
            self.faults += [Fault("create", status, error, code, None, region) for _ in range(times)]

    def unreachable(self, machine_id: str, status: str = "unreachable") -> None:
        """The machine's host drops out of reach (``status``: unreachable or unknown); ``reachable`` undoes it."""
        with self._lock:
            self.machines[machine_id].host_status = status

    def reachable(self, machine_id: str) -> None:
        with self._lock:
            self.machines[machine_id].host_status = "ok"

    def fresh_image(self, image: str, times: int = 1) -> None:
        """``image`` was just pushed: the next ``times`` creates of it see MANIFEST_UNKNOWN."""
        with self._lock:
            self.fresh_images[image] = times

    def fail_launch(self, image: str) -> None:
        """Machines of ``image`` are created, then fail to launch (the pull fails on the host)."""
        with self._lock:
            self.launch_failures.add(image)

    def _log(self, m: FakeMachine, message: str, level: str = "info") -> None:
        self.logs.append({"at": self.clock(), "instance": m.id, "region": m.region,
                          "message": message, "level": level})

    def oom(self, machine_id: str) -> None:
        """The guest kernel's OOM killer ends the machine's main process."""
        with self._lock:
            m = self.machines[machine_id]
            m.oom = True

    def stop_out_of_band(self, machine_id: str) -> None:
        """Someone other than lambdalet stops the machine (``fly machine stop``, a host drain): SIGTERM."""
        with self._lock:
            m = self.machines[machine_id]
            if m.state == "started":
                m.stop_at, m.stop_signal = self.clock(), "SIGTERM"
                m.state = "stopping"
                self._event(m, "stop", "stopping", "user")

    def vanish(self, machine_id: str) -> None:
        with self._lock:
            self.machines.pop(machine_id, None)

    def _take_fault(self, action: str, region: str | None = None) -> Fault | None:
        with self._lock:
            for i, f in enumerate(self.faults):
                if f.action == action and (f.region is None or f.region == region):
                    return self.faults.pop(i)
        return None

    # -- state walk ------------------------------------------------------------
    def _event(self, m: FakeMachine, type_: str, status: str, source: str, request: dict | None = None) -> None:
        event: dict[str, Any] = {"id": uuid.uuid4().hex[:26].upper(), "type": type_, "status": status,
                                 "source": source, "timestamp": _ms(self.clock())}
        if request is not None:
            event["request"] = request
        m.events.insert(0, event)
        m.updated_at = self.clock()

    def _exit(self, m: FakeMachine, code: int, signal: int = -1, *, requested: bool, oom: bool = False) -> None:
        now = self.clock()
        exit_event = {"exit_code": code, "guest_exit_code": code if signal < 0 else 0,
                      "guest_signal": signal, "signal": signal, "oom_killed": oom,
                      "requested_stop": requested, "restarting": False,
                      "exited_at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        self._event(m, "exit", "stopped", "flyd", {"exit_event": exit_event, "restart_count": 0})
        self._log(m, f"Main child exited with code: {code}" + (" (out of memory)" if oom else ""))
        m.state = "stopping" if m.state == "started" else m.state

    def step(self) -> None:
        """Advance every machine one state."""
        with self._lock:
            now = self.clock()
            for m in list(self.machines.values()):
                self._advance(m, now)

    def settle(self, max_steps: int = 20) -> None:
        for _ in range(max_steps):
            before = {k: (m.state, len(m.events)) for k, m in self.machines.items()}
            self.step()
            if before == {k: (m.state, len(m.events)) for k, m in self.machines.items()}:
                break

    def _advance(self, m: FakeMachine, now: datetime) -> None:
        if m.state == "created" and m.launch_error:
            m.state = "launch_failed"
            self._event(m, "launch", "failed", "flyd", {"error": m.launch_error})
            self._log(m, f"Error: {m.launch_error}", "error")
        elif m.state == "launch_failed":
            m.state = "destroyed"
            self._event(m, "destroy", "destroyed", "flyd")
            self.destroyed[m.id] = self.machines.pop(m.id)
        elif m.state == "created":
            m.state = "starting"
            m.updated_at = now
        elif m.state == "starting":
            m.state = "started"
            m.started_at = now
            self._event(m, "start", "started", "flyd")
            self._log(m, f"Machine started; running {m.config.get('image', '')}")
            for line in m.output:
                self._log(m, line)
        elif m.state == "started":
            if m.oom:
                self._exit(m, 137, 9, requested=False, oom=True)
            elif m.program.exit_code is not None and (now - m.started_at).total_seconds() >= m.program.seconds:
                self._exit(m, m.program.exit_code, requested=False)
        elif m.state == "stopping":
            if m.events and m.events[0]["type"] == "exit":
                m.state = "stopped"
                m.updated_at = now
                if m.destroy_after_stop:
                    m.state = "destroying"
                    self._event(m, "destroy", "destroying", "user")
                return
            p = m.program
            if m.kill:
                self._exit(m, 137, 9, requested=True)
            elif p.exit_code is not None and m.started_at and (now - m.started_at).total_seconds() >= p.seconds:
                self._exit(m, p.exit_code, requested=True)
            elif m.stop_signal == "SIGKILL":
                self._exit(m, 137, 9, requested=True)
            elif not p.ignores_sigterm:
                self._exit(m, 143, 15, requested=True)
            elif (now - m.stop_at).total_seconds() >= m.stop_timeout:
                self._exit(m, 137, 9, requested=True)
        elif m.state == "destroying":
            m.state = "destroyed"
            self._event(m, "destroy", "destroyed", "flyd")
            self.destroyed[m.id] = self.machines.pop(m.id)

    # -- API actions (under the lock) --------------------------------------------
    def _machine(self, app: str, machine_id: str) -> FakeMachine:
        m = self.machines.get(machine_id)
        if m is None:
            raise ApiError(404, "machine not found")
        return m

    def api_list(self, app: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        include_deleted = query.get("include_deleted") == "true"
        region = query.get("region")
        wanted = {k[len("metadata."):]: v for k, v in query.items() if k.startswith("metadata.")}
        machines = list(self.machines.values()) + (list(self.destroyed.values()) if include_deleted else [])
        return 200, [m.view(self.late_ips) for m in sorted(machines, key=lambda m: m.created_at)
                     if self._propagated(m) and (region is None or m.region == region)
                     and all((m.config.get("metadata") or {}).get(k) == v for k, v in wanted.items())]

    def api_create(self, app: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        config = dict(body.get("config") or {})
        region = body.get("region") or self.default_region
        fault = self._take_fault("create", region)
        if fault is not None:
            raise ApiError(fault.status, fault.error, fault.code,
                           {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None)
        containers = config.get("containers") or []
        image = config.get("image") or (containers[0].get("image") if containers else None)
        if not image:
            raise ApiError(400, "invalid config.image, image is required")
        images = [c.get("image") or image for c in containers] or [image]
        for each in images:
            if "doesnotexist" in each or self.fresh_images.get(each, 0) > 0:
                if self.fresh_images.get(each, 0) > 0:
                    self.fresh_images[each] -= 1
                raise ApiError(400, f"failed to get manifest {each}: MANIFEST_UNKNOWN: manifest unknown")
        if body.get("name") and any(m.name == body["name"] for m in self.machines.values()):
            raise ApiError(409, f"a machine named {body['name']} already exists in this app", "name_taken")
        if body.get("skip_launch"):
            raise ApiError(400, "skip_launch is not supported by the fake")
        files = self._files(config)
        fs = machine_fs(config, files)
        if containers:
            program, output = pilot(containers, fs)
        else:
            init = config.get("init") or {}
            output = []
            program = _run_on(fs, "", init.get("entrypoint") or init.get("exec"), init.get("cmd"), output)
        now = self.clock()
        machine_id = secrets.token_hex(7)
        stop_config = config.get("stop_config") or {}
        failing = next((each for each in images if each in self.launch_failures), None)
        m = FakeMachine(
            id=machine_id, name=body.get("name") or f"machine-{machine_id[:6]}", region=region, config=config,
            created_at=now, private_ip=f"fdaa:0:1:a7b:{secrets.token_hex(2)}:{secrets.token_hex(2)}:{secrets.token_hex(2)}:2",
            instance_id=uuid.uuid4().hex[:26].upper(),
            program=program,
            stop_timeout=parse_go_duration(stop_config.get("timeout", "5s")),
            stop_signal=stop_config.get("signal", "SIGINT"),
            launch_error=f"failed to pull image {failing}: MANIFEST_UNKNOWN: manifest unknown" if failing else None,
            output=output,
            files=files,
            fs=fs,
        )
        self._event(m, "launch", "created", "user")
        self.machines[machine_id] = m
        return 200, m.view(self.late_ips)

    def _files(self, config: dict) -> dict[tuple[str, str], tuple[bytes, int]]:
        """The files a machine's containers see: ``raw_value`` (base64) or an app
        secret named by ``secret_name`` (its value, base64), with ``mode``
        (default 0644). A missing secret or bad base64 refuses the create."""
        import base64
        import binascii

        out: dict[tuple[str, str], tuple[bytes, int]] = {}
        owners = [("", config.get("files") or [])] + [(c["name"], c.get("files") or [])
                                                       for c in config.get("containers") or []]
        for owner, files in owners:
            for f in files:
                path = f.get("guest_path") or ""
                if not path.startswith("/"):
                    raise ApiError(400, f"file guest_path must be absolute: {path!r}")
                if ("raw_value" in f) == ("secret_name" in f):
                    raise ApiError(400, f"file {path}: exactly one of raw_value or secret_name must be set")
                if "secret_name" in f and f["secret_name"] not in self.app_secrets:
                    raise ApiError(400, f"file {path}: app secret {f['secret_name']} not found")
                encoded = f["raw_value"] if "raw_value" in f else self.app_secrets[f["secret_name"]]
                try:
                    data = base64.b64decode(encoded, validate=True)
                except (binascii.Error, ValueError):
                    raise ApiError(400, f"file {path}: value is not base64") from None
                out[(owner, path)] = (data, int(f.get("mode", 0o644)))
        return out

    def _propagated(self, m: FakeMachine) -> bool:
        return (self.clock() - m.created_at).total_seconds() >= self.propagation

    def api_get(self, app: str, machine_id: str, query: dict, body: Any) -> tuple[int, Any]:
        live = self.machines.get(machine_id)
        if live is not None and not self._propagated(live):
            raise ApiError(404, "machine not found")
        if machine_id in self.destroyed:
            return 200, self.destroyed[machine_id].view(self.late_ips)
        return 200, self._machine(app, machine_id).view(self.late_ips)

    def api_events(self, app: str, machine_id: str, query: dict, body: Any) -> tuple[int, Any]:
        m = self.machines.get(machine_id) or self.destroyed.get(machine_id)
        if m is None:
            raise ApiError(404, "machine not found")
        return 200, list(m.events)

    def api_stop(self, app: str, machine_id: str, query: dict, body: Any) -> tuple[int, Any]:
        m = self._machine(app, machine_id)
        if m.state != "started":
            raise ApiError(400, f"unable to stop machine, not currently started (state: {m.state})")
        body = body or {}
        m.stop_at = self.clock()
        if body.get("timeout"):
            m.stop_timeout = parse_go_duration(body["timeout"])
        if body.get("signal"):
            m.stop_signal = body["signal"]
        m.state = "stopping"
        self._event(m, "stop", "stopping", "user")
        return 200, {"ok": True}

    def api_start(self, app: str, machine_id: str, query: dict, body: Any) -> tuple[int, Any]:
        m = self._machine(app, machine_id)
        if m.state not in ("stopped", "suspended"):
            raise ApiError(400, f"unable to start machine from current state: '{m.state}'")
        m.state, m.oom, m.kill = "starting", False, False
        self._event(m, "start", "starting", "user")
        return 200, {"message": "", "status": "", "previous_state": "stopped"}

    def api_delete(self, app: str, machine_id: str, query: dict, body: Any) -> tuple[int, Any]:
        m = self._machine(app, machine_id)
        force = query.get("force") == "true"
        if m.state in ("stopped", "suspended", "failed"):
            m.state = "destroying"
            self._event(m, "destroy", "destroying", "user")
        elif m.state in ("destroying", "destroyed"):
            pass
        elif not force:
            raise ApiError(412, f"failed_precondition: unable to destroy machine, not currently stopped "
                                f"or suspended (state: {m.state})")
        elif m.state in ("created", "starting"):
            m.state = "destroying"
            self._event(m, "destroy", "destroying", "user")
        else:
            m.kill, m.destroy_after_stop, m.stop_at = True, True, self.clock()
            if m.state == "started":
                m.state = "stopping"
                self._event(m, "stop", "stopping", "user")
        return 200, {"ok": True}

    # -- rate limit --------------------------------------------------------------
    def _limited(self, action: str, app: str, machine_id: str | None) -> bool:
        identifier = app if action in APP_SCOPED else machine_id
        if not self.rate_limit or identifier is None:
            return False
        rate, burst = RATE_LIMITS.get(action, DEFAULT_RATE_LIMIT)
        key = (action, identifier)
        with self._lock:
            now = self.monotonic()
            tokens, at = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - at) * rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return True
            self._buckets[key] = (tokens - 1, now)
            return False

    def api_logs(self, app: str, query: dict[str, str]) -> tuple[int, Any]:
        """One page of the app's log after ``next_token`` (an opaque position here)."""
        try:
            start = int(query.get("next_token") or 0)
        except ValueError:
            return 400, {"error": "invalid next_token"}
        oldest = self.clock() - LOG_RETENTION
        instance, region = query.get("instance"), query.get("region")
        data, position = [], start
        while position < len(self.logs) and len(data) < LOG_PAGE:
            line = self.logs[position]
            position += 1
            if line["at"] < oldest or (instance and line["instance"] != instance) or (region and line["region"] != region):
                continue
            data.append({"id": f"{position:016x}", "type": "logs", "attributes": {
                "timestamp": line["at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "message": line["message"],
                "level": line["level"], "instance": line["instance"], "region": line["region"],
                "meta": {"instance": line["instance"], "region": line["region"], "event": {"provider": "app"}}}})
        return 200, {"data": data, "meta": {"next_token": str(position)}}

    def violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)

    # -- dispatch --------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes) -> tuple[int, Any, dict]:
        split = urlsplit(raw_path)
        where = f"{method} {split.path}"
        logs = _LOGS.match(split.path) if method == "GET" else None
        if logs is not None:  # the platform API: not in the Machines spec
            if headers.get("authorization") != f"Bearer {self.token}":
                return 401, {"error": "You must be authenticated to view this."}, {}
            if logs["app"] not in self.apps:
                return 404, {"error": "app not found"}, {}
            query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
            if self._limited("logs", logs["app"], query.get("instance")):
                return 429, {"error": "rate limit exceeded"}, {"Retry-After": "1"}
            with self._lock:
                status, out = self.api_logs(logs["app"], query)
            return status, out, {}
        route = next(((template, pattern, action) for m_, template, pattern, action in _ROUTES
                      if m_ == method and pattern.match(split.path)), None)
        if route is None:
            return 404, {"error": f"{where}: not implemented by the fake"}, {}
        template, pattern, action = route
        params = pattern.match(split.path).groupdict()
        op = swagger.operation(template, method)
        # query string
        query: dict[str, str] = {}
        allowed = swagger.query_params(op)
        for key, values in parse_qs(split.query, keep_blank_values=True).items():
            if action == "list" and key.startswith("metadata.") and len(key) > len("metadata."):
                query[key] = values[-1]  # documented filter, not in the Swagger file
                continue
            if key not in allowed:
                self.violation(f"{where}: query parameter {key!r} is not in the spec")
                return 400, {"error": f"unknown query parameter {key}"}, {}
            value = values[-1]
            if allowed[key].get("type") == "boolean" and value not in ("true", "false"):
                self.violation(f"{where}: query parameter {key}={value!r} is not a boolean")
                return 400, {"error": f"invalid {key}"}, {}
            query[key] = value
        # auth
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "You must be authenticated to view this."}, {}
        if params["app"] not in self.apps:
            return 404, {"error": "app not found"}, {}
        # body
        schema, required = swagger.body_schema(op)
        body: Any = None
        if raw_body:
            try:
                body = json.loads(raw_body)
            except ValueError:
                self.violation(f"{where}: body is not JSON")
                return 400, {"error": "invalid JSON body"}, {}
            if schema is None:
                self.violation(f"{where}: the spec takes no body here")
                return 400, {"error": "unexpected body"}, {}
            problems = swagger.errors(schema, body)
            if problems:
                self.violation(f"{where}: " + "; ".join(problems))
                return 400, {"error": "invalid request body: " + "; ".join(problems)}, {}
        elif required:
            self.violation(f"{where}: the request body is required")
            return 400, {"error": "request body required"}, {}
        if self._limited(action, params["app"], params.get("id")):
            return 429, {"error": "rate limit exceeded"}, {"Retry-After": "1"}
        chaos = self.chaos(action) if self.chaos is not None else None
        if chaos is not None and chaos[0]:
            return chaos[0], {"error": chaos[1]}, chaos[2]
        fault = self._take_fault(action) if action != "create" else None
        if fault is not None:
            extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            error = ApiError(fault.status, fault.error, fault.code)
            return fault.status, error.body(), extra
        if self.latency:
            time.sleep(self.latency)
        try:
            with self._lock:
                if "id" in params:
                    status, out = getattr(self, f"api_{action}")(params["app"], params["id"], query, body)
                else:
                    status, out = getattr(self, f"api_{action}")(params["app"], query, body)
            extra: dict = {}
        except ApiError as err:
            status, out, extra = err.status, err.body(), err.headers
        if chaos is not None:  # done, but the answer never reaches the client
            return 0, None, {}
        return status, out, extra

    def check_response(self, method: str, raw_path: str, status: int, body: Any) -> None:
        split = urlsplit(raw_path)
        route = next(((template, pattern) for m_, template, pattern, _ in _ROUTES
                      if m_ == method and pattern.match(split.path)), None)
        if route is None:
            return
        schema = swagger.response_schema(swagger.operation(route[0], method), status)
        if schema is not None:
            problems = swagger.errors(schema, body)
            if problems:
                self.violation(f"response to {method} {split.path} ({status}): " + "; ".join(problems))


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client closing its keep-alive connection
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    fake: FlyFake
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # keep-alive answers would stall 40 ms otherwise

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, body, extra = self.fake.handle(self.command, self.path, headers, raw)
        except Exception as err:  # noqa: BLE001 - the fake's own bug: say so loudly
            self.fake.violation(f"fake crashed on {self.command} {self.path}: {type(err).__name__}: {err}")
            status, body, extra = 500, {"error": f"fake crashed: {err}"}, {}
        if status == 0:  # chaos: the connection drops before the answer
            with self.fake._lock:
                self.fake.requests.append((self.command, urlsplit(self.path).path, 0))
            self.close_connection = True
            return
        self.fake.check_response(self.command, self.path, status, body)
        with self.fake._lock:
            self.fake.requests.append((self.command, urlsplit(self.path).path, status))
            self.fake.urls.append(self.path)
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_PUT = _serve
