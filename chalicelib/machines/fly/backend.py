"""FlyBackend: the MachineBackend contract on Fly Machines (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ...timefmt import EPOCH
from ..claims import Claim, Claims, Held
from ..contract import (ContainerUsage, LogLine, LogsUnavailable, Machine, MachineError, MachineNotFound, MachineSpec,
                        PermanentMachineError, TransientMachineError)
from . import connect
from .api import CapacityError, FlyApi, FlyApiError, NameTaken, classify
from .config import MAX_STOP_TIMEOUT, META_ATTEMPT, META_NODE, META_UID, MARKER, MARKER_VALUE, create_request, region_override
from .guest import SIZES
from .status import _STOPPED, UNREACHABLE_HOST, _events, _time, config_of, launch_failure, machine_from_fly

# How long after a create a GET may still answer 404: the API's view of a new
# machine propagates (flyctl retries such GETs: "propagation delays"; issue 8,
# item 6). Within it a missing machine is not taken for gone.
PROPAGATION_SECONDS = 60.0


def _refused(err: MachineError) -> bool:
    """Did the API refuse the request (so nothing was created)? 4xx and
    capacity yes; 5xx, timeouts and connection errors: unknown."""
    if isinstance(err, (CapacityError, PermanentMachineError)):
        return True
    cause = err.__cause__
    return isinstance(cause, FlyApiError) and cause.status < 500


LOG_PAGES = 20  # platform log pages read for one kubectl logs call
_LIVE = {"created", "starting", "started", "replacing", "updating"}
_DESTROYABLE = {"stopped", "failed", "suspended"}


class FlyBackend:
    """MachineBackend on Fly Machines. See the module docstring."""

    def __init__(
        self,
        api: FlyApi,
        *,
        region: str | None,
        fallback_regions: Iterable[str] = (),
        claims: Claims | None = None,
        name: str = "fly",
    ):
        self.api = api
        self.region = region or None
        self.fallback_regions = [r for r in fallback_regions if r and r != region]
        self.claims = claims
        self.name = name
        self.sizes = SIZES
        self.keeps_stopped = True

    # -- helpers ---------------------------------------------------------

    def _call(self, action: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # classified in one place; nothing raw escapes
            raise classify(e, action) from e

    def _find(self, uid: str, attempt: int) -> list[dict]:
        """Machines already created for ``(uid, attempt)``, oldest first: one
        list call filtered by the API on the pod's UID (``metadata.<key>=``),
        destroyed ones included so that a launch that failed is seen as such
        (raises PermanentMachineError then) instead of being launched again."""
        found = []
        for m in self._call("list", self.api.list_machines, {META_UID: uid}, include_deleted=True):
            meta = config_of(m).get("metadata") or {}
            if meta.get(META_UID) != uid or meta.get(META_ATTEMPT) != str(attempt):
                continue
            failed = launch_failure(m, _events(m))
            if failed:
                raise PermanentMachineError(failed)
            if m.get("state") not in ("destroyed", "destroying"):
                found.append(m)
        return sorted(found, key=lambda m: (_time(m.get("created_at")) or EPOCH, str(m.get("id"))))

    def _existing(self, machine_id: str, settled_at: float | None) -> Machine | None:
        """The machine a settled claim names, if it still stands for the pod.
        Raises TransientMachineError while it cannot be told (a host the API
        cannot reach; a 404 within PROPAGATION_SECONDS of the create), and
        PermanentMachineError when its launch failed."""
        raw = self._get_raw(machine_id)
        if raw is None:
            if settled_at is not None and self.claims.clock() - settled_at < PROPAGATION_SECONDS:
                raise TransientMachineError(
                    f"machine {machine_id} was created moments ago and Fly does not show it yet; checking again")
            return None
        failed = launch_failure(raw, _events(raw))
        if failed:
            raise PermanentMachineError(failed)
        if raw.get("state") in ("destroyed", "destroying"):
            return None
        machine = machine_from_fly(raw)
        if machine is None and raw.get("host_status") in UNREACHABLE_HOST:
            raise TransientMachineError(
                f"machine {machine_id} is on a host Fly cannot reach now (host_status {raw.get('host_status')})")
        return machine

    def _regions(self, spec: MachineSpec) -> list[str | None]:
        first = region_override(spec) or self.region
        return [first, *[r for r in self.fallback_regions if r != first]]

    def _launch(self, spec: MachineSpec) -> dict:
        """POST create, moving on to the next region on a capacity error."""
        errors: list[str] = []
        for region in self._regions(spec):
            body = create_request(spec, region)
            try:
                return self._call("create", self.api.create_machine, body)
            except CapacityError as err:
                errors.append(f"{region or 'default region'}: {err}")
            except NameTaken:
                # Our name is (uid, attempt): an earlier call created it.
                found = self._find(spec.pod.uid, spec.attempt)
                if found:
                    return found[0]
                raise
        raise CapacityError("no Fly region has capacity for this machine now: " + "; ".join(errors))

    # -- MachineBackend ----------------------------------------------------

    def create(self, spec: MachineSpec) -> Machine:
        create_request(spec, self.region)  # refuse what Fly cannot run before any call
        uid, attempt = spec.pod.uid, spec.attempt
        claim: Claim | None = None
        if self.claims is not None:
            got = self.claims.claim(uid, attempt)
            if isinstance(got, Held) and got.machine_id:
                existing = self._existing(got.machine_id, got.settled_at)
                if existing is not None:
                    return existing
                got = self.claims.claim(uid, attempt, replacing=got.machine_id)
            if isinstance(got, Held):
                raise TransientMachineError(
                    "another lambdalet invocation is creating the machine of this pod; it shows up on the next pass"
                )
            claim = got
        try:
            for m in self._find(uid, attempt):
                machine = machine_from_fly(m)
                if machine is not None:
                    if claim is not None:
                        self.claims.settle(claim, machine.id)
                    return machine
            created = self._launch(spec)
        except MachineError as err:
            # Refused before anything was created: free the key for the retry.
            # After a 5xx/timeout the machine may exist: keep the claim, the
            # lease expires and the lookup finds it.
            if claim is not None and _refused(err):
                self.claims.release(claim)
            raise
        if claim is not None:
            self.claims.settle(claim, str(created.get("id")))
        machine = machine_from_fly(created)
        if machine is None:  # the API echoed no config: build it from what we sent
            sent = create_request(spec, self.region)
            machine = machine_from_fly({**created, "config": sent["config"]})
        assert machine is not None
        return machine

    def list(self, node: str) -> list[Machine]:
        return self.list_nodes([node])[node]

    def collect(self, machines: Iterable[Machine]) -> int:
        """Nothing to collect: a machine's env and files go with it."""
        return 0

    def list_nodes(self, nodes: Iterable[str]) -> dict[str, list[Machine]]:
        # One listing of the app serves every node on it.
        out: dict[str, list[Machine]] = {node: [] for node in nodes}
        for m in self._call("list", self.api.list_machines, {MARKER: MARKER_VALUE}):
            meta = config_of(m).get("metadata") or {}
            node = meta.get(META_NODE)
            if node not in out or meta.get(MARKER) != MARKER_VALUE:
                continue
            if m.get("state") in _STOPPED | {"failed"} and not m.get("events"):
                # Where a list omits events, the exit is in the machine itself.
                m = self._get_raw(str(m.get("id"))) or m
            machine = machine_from_fly(m)
            if machine is not None:
                out[node].append(machine)
        return out

    def _get_raw(self, machine_id: str) -> dict | None:
        try:
            return self._call("get", self.api.get_machine, machine_id)
        except MachineNotFound:
            return None

    def get(self, machine_id: str) -> Machine | None:
        raw = self._get_raw(machine_id)
        if raw is None or raw.get("state") == "destroyed":
            return None
        return machine_from_fly(raw)

    def delete(self, machine_id: str, grace_seconds: int, reason: str) -> None:
        # ``reason``: the Machines API takes none; it is in our Kubernetes Event.
        raw = self._get_raw(machine_id)
        state = (raw or {}).get("state")
        if raw is None or state in ("destroyed", "destroying", "stopping"):
            return
        try:
            if state in _DESTROYABLE:
                self.api.destroy_machine(machine_id)
            elif grace_seconds <= 0 or state in ("created", "starting"):
                # Nothing ran yet (or no grace asked): kill and destroy in one call.
                self.api.destroy_machine(machine_id, force=True)
            else:
                timeout = max(1, min(int(grace_seconds), MAX_STOP_TIMEOUT))
                self.api.stop_machine(machine_id, "SIGTERM", timeout)
        except Exception as e:
            err = classify(e, "delete")
            if isinstance(err, MachineNotFound):
                return
            if isinstance(e, FlyApiError) and e.status in (400, 409, 412):
                # "not currently started": it stopped meanwhile; fine if so.
                again = self._get_raw(machine_id)
                if again is None or again.get("state") not in _LIVE:
                    return
            raise err from e

    def machine_from_event(self, event: Mapping) -> Machine | None:
        """Fly has no EventBridge feed: status comes through the reconcile."""
        return None

    # -- the kubelet API ---------------------------------------------------

    def find(self, node: str, pod_uid: str, attempt: int) -> Machine | None:
        found = self._find(pod_uid, attempt)
        return machine_from_fly(found[0]) if found else None

    def read_logs(self, machine: Machine, container: str, *, since=None, tail=None) -> list[LogLine]:
        """Fly's platform logs of the machine (``FlyApi.machine_logs``, paged with its
        next_token until a page comes back empty), at most ``LOG_PAGES`` pages."""
        reader = getattr(self.api, "machine_logs", None)
        if reader is None:  # a client without the platform logs call
            raise LogsUnavailable(f"this lambdalet reads no Fly logs; run: fly logs --app {self.api.app} "
                                  f"--machine {machine.id}")
        lines: list[LogLine] = []
        token = ""
        for _ in range(LOG_PAGES):
            entries, following = self._call("logs", reader, machine.id, token)
            for entry in entries:
                stamp = _time(entry.get("timestamp"))
                if stamp is not None and (since is None or stamp >= since):
                    lines.append(LogLine(time=stamp, text=str(entry.get("message", ""))))
            if not entries or not following or following == token:
                break
            token = following
        lines.sort(key=lambda line: line.time)
        return lines[len(lines) - tail:] if tail else ([] if tail == 0 else lines)

    def connect_command(self, machine: Machine, container: str, action: str, command: tuple[str, ...] = (),
                        ports: tuple[int, ...] = ()) -> str:
        return connect.command(machine, container, action, command, ports, app=self.api.app)

    def usage(self, machines: list[Machine], now) -> dict[str, list[ContainerUsage]]:
        """The Machines API measures nothing (Fly's metrics are in its Prometheus
        service, outside the API lambdalet holds a token for): no figures."""
        return {}
