"""The machine backend contract: what every cloud backend offers the core.

A *machine* is one run of one pod on a cloud compute API (an ECS Fargate task,
a Fly Machine). A pod that restarts (restartPolicy Always/OnFailure) gets a new
machine per run; ``attempt`` counts the runs and becomes ``restartCount``.

Identity: a machine is identified by (pod UID, attempt). Backends derive every
cloud-side idempotency key from that pair, and tag every machine with the pod's
namespace, name, UID, the node and the attempt, so that the reconciler can
rebuild the whole picture from one list call and no local state.

Errors carry their kind (virtual-kubelet's errdefs): the core decides on the
class, never on message text.
"""

from __future__ import annotations

import enum
from datetime import datetime
from collections.abc import Iterable
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr

# Every model here is ``defer_build``: pydantic builds its validator on first use, not at
# import, so a path that never makes a machine (an admission review) does not pay for them.


class PodRef(BaseModel):
    """The pod a machine runs: enough to find it again in Kubernetes."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    namespace: str
    name: str
    uid: str


class PortSpec(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    container_port: int
    protocol: Literal["TCP", "UDP"] = "TCP"


class SecretRef(BaseModel):
    """A value taken from a Kubernetes Secret. The value is a ``SecretStr``: it
    never shows in a repr, a log line or ``model_dump_json``; backends read it
    with ``get_secret_value()`` only to hand it to the cloud's secret store."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    secret: str  # the Kubernetes Secret's name (in the pod's namespace)
    key: str
    value: SecretStr


class ExecProbe(BaseModel):
    """A Kubernetes exec probe, in seconds."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    command: tuple[str, ...]
    initial_delay: int = 0
    period: int = 10
    timeout: int = 1
    failure_threshold: int = 3


class CheckProbe(BaseModel):
    """A Kubernetes httpGet/tcpSocket probe: something the network can check."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    kind: Literal["http", "tcp"]
    port: int
    path: str = "/"
    initial_delay: int = 0
    period: int = 10
    timeout: int = 1


class Probes(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    liveness: ExecProbe | CheckProbe | None = None
    readiness: ExecProbe | CheckProbe | None = None
    startup: ExecProbe | CheckProbe | None = None


class MountSpec(BaseModel):
    """A volumeMount: ``volume`` (a VolumeSpec name) at ``path``; ``sub_path``
    mounts one entry of the volume instead of all of it."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    volume: str
    path: str
    read_only: bool = False
    sub_path: str = ""


class ContainerSpec(BaseModel):
    """One container of the pod, as the backend must run it."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    name: str
    image: str
    command: tuple[str, ...] | None = None  # Kubernetes `command` = entrypoint
    args: tuple[str, ...] | None = None  # Kubernetes `args` = cmd
    # Literal env, in pod order: values, ConfigMap values, fieldRef/resourceFieldRef, all resolved.
    env: tuple[tuple[str, str], ...] = ()
    # Env taken from Secrets: never written where the machine's definition is readable.
    secret_env: tuple[tuple[str, SecretRef], ...] = ()
    ports: tuple[PortSpec, ...] = ()
    mounts: tuple[MountSpec, ...] = ()
    probes: Probes = Probes()


class FileSpec(BaseModel):
    """One file of a configMap/secret/downwardAPI/projected volume."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    path: str  # relative to the volume's root
    content: SecretStr  # base64 of the bytes (a SecretStr whatever the source: one type, never printed)
    mode: int = 0o644
    secret: bool = False  # from a Secret: travels only through the cloud's secret store
    source: str = ""  # "secret/<name>/<key>", "configmap/<name>/<key>", "downwardAPI/<path>": for names and messages


class VolumeSpec(BaseModel):
    """A pod volume the machine provides: scratch space shared by the
    containers (``emptyDir``) or files written before the containers start."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    name: str
    kind: Literal["emptyDir", "files"]
    memory: bool = False  # emptyDir medium Memory
    size_limit_mib: int | None = None
    files: tuple[FileSpec, ...] = ()


class Reference(BaseModel):
    """A ConfigMap or Secret the pod needs, in its namespace."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    kind: Literal["ConfigMap", "Secret"]
    name: str
    optional: bool = False


class RegistryAuth(BaseModel):
    """Credentials for the registry of the pod's images (from imagePullSecrets)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    registry: str
    username: SecretStr
    password: SecretStr
    secret: str  # the Kubernetes Secret it came from


def registry_of(image: str) -> str:
    """The registry host of an image reference (docker.io when it names none)."""
    first, _, rest = image.partition("/")
    return first if rest and ("." in first or ":" in first or first == "localhost") else "docker.io"


RestartPolicy = Literal["Always", "OnFailure", "Never"]


class MachineSpec(BaseModel):
    """What to run for one attempt of one pod: pure data, built from the Pod."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    pod: PodRef
    node: str
    attempt: int = 0
    containers: tuple[ContainerSpec, ...] = Field(min_length=1)
    # Run first, in order, each to success, before ``containers`` start.
    init_containers: tuple[ContainerSpec, ...] = ()
    volumes: tuple[VolumeSpec, ...] = ()
    registry_auth: tuple[RegistryAuth, ...] = ()
    # The ConfigMaps/Secrets this spec's values came from (or would, once read):
    # a spec built without them (``sources=None``) leaves those values out.
    references: tuple[Reference, ...] = ()
    # Sum over containers of max(request, limit); 0 means "nothing asked".
    cpu_millis: int = 0
    memory_mib: int = 0
    # The pod's ephemeral-storage limit (MiB, 0: none): what an emptyDir without sizeLimit may fill.
    ephemeral_storage_mib: int = 0
    restart_policy: RestartPolicy = "Always"
    termination_grace_seconds: int = 30
    # The pod's own lambdalet.io/* annotations: per-pod choices a backend may honour
    # (e.g. lambdalet.io/fly-region). Never part of what a machine runs.
    annotations: tuple[tuple[str, str], ...] = ()


class MachineSizes(BaseModel):
    """What a backend can run, in Kubernetes units: admission refuses and
    defaults from it before anything reaches the cloud."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    label: str  # for users: "ECS Fargate"
    smallest_cpu: str  # Kubernetes quantities: what a pod asking for nothing gets
    smallest_memory: str
    largest_cpu_millis: int
    largest_memory_mib: int
    max_containers: int


class MachinePhase(str, enum.Enum):
    PENDING = "pending"  # accepted by the cloud, not running yet (provisioning, pulling)
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"  # terminal: containers have exit codes or the start failed


class StopCause(str, enum.Enum):
    EXITED = "exited"  # the containers ran and exited on their own
    REQUESTED = "requested"  # someone asked for the stop (us, or out of band)
    FAILED_TO_START = "failed_to_start"  # e.g. image does not exist: a permanent error
    START_RETRYABLE = "start_retryable"  # did not start for a passing reason (registry throttling, network setup)
    LOST = "lost"  # the cloud took it away (host failure, spot interruption)


# Every reason lambdalet passes to ``MachineBackend.delete`` starts with this,
# so a stop we asked for is told apart from one the cloud or a user made.
OWN_STOP_PREFIX = "lambdalet:"


class ContainerRun(BaseModel):
    """Observed state of one container in one machine."""

    model_config = ConfigDict(defer_build=True)

    name: str
    image: str
    state: Literal["waiting", "running", "terminated"]
    reason: str | None = None  # ContainerCreating, Completed, Error, OOMKilled, ...
    message: str | None = None
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    image_id: str | None = None  # digest, where the cloud reports one
    container_id: str | None = None  # e.g. "ecs://<runtime id>"
    # The backend's readiness verdict: ECS the health check's (healthStatus; None
    # until it has one); Fly True while the machine runs (it reports no container health).
    ready: bool | None = None


class Machine(BaseModel):
    """Observed state of one machine, as a backend reports it."""

    model_config = ConfigDict(defer_build=True)

    id: str  # the cloud's id (task ARN, machine id)
    pod: PodRef
    node: str
    attempt: int = 0
    phase: MachinePhase
    created_at: datetime
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    ip: str | None = None
    host_ip: str | None = None
    stop_cause: StopCause | None = None
    # Why the machine stopped, for the pod's status and Events ("say what
    # happened"): ``stop_code`` is the cloud's own short code, verbatim (ECS
    # stopCode: UserInitiated, SpotInterruption, TerminationNotice,
    # TaskFailedToStart, EssentialContainerExited, ...; Fly: the exit event's
    # reason, e.g. oom, launch_failed); ``stop_reason`` its words (ECS
    # stoppedReason). A stop lambdalet asked for carries the reason given to
    # ``delete``, which starts with OWN_STOP_PREFIX (see ``stopped_by_others``).
    stop_code: str | None = None
    stop_reason: str | None = None

    def stopped_by_others(self) -> bool:
        """True when the machine was stopped on request, but not by lambdalet
        (a user in the console/CLI, the cloud's scheduler, a Spot reclaim):
        the pod must say so instead of showing an ordinary exit code."""
        if self.stop_cause not in (StopCause.REQUESTED, StopCause.LOST):
            return False
        return not (self.stop_reason or "").startswith(OWN_STOP_PREFIX)

    def cloud_says(self) -> str | None:
        """``"<stop_code>: <stop_reason>"`` (whichever is known), for messages."""
        parts = [p for p in (self.stop_code, self.stop_reason) if p]
        return ": ".join(parts) or None
    containers: tuple[ContainerRun, ...] = ()
    # The cloud's change counter for this machine, where it keeps one (ECS task
    # ``version``): later views have higher numbers, whatever order events came in.
    version: int | None = None


class LogLine(BaseModel):
    """One line a container wrote (stdout and stderr together, as the cloud keeps them)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    time: datetime  # when the cloud received it
    text: str  # without its trailing newline


class ContainerUsage(BaseModel):
    """What the cloud measured of one running container, as the kubelet's resource
    metrics report it: a cumulative CPU counter (metrics-server derives the rate
    from two scrapes), the current CPU rate and the memory working set."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    name: str
    at: datetime  # the end of the measurement the figures come from (its freshness)
    cpu_core_seconds: float  # CPU used since the container started
    cpu_cores: float  # average rate over the latest measurement
    memory_bytes: int  # working set at the latest measurement


ConnectAction = Literal["exec", "attach", "portforward", "run"]


class MachineError(Exception):
    """Base of every backend error. ``str(err)`` is shown to users: make it readable."""


class TransientMachineError(MachineError):
    """Throttling, capacity, 5xx, timeouts: retry later with backoff."""


class PermanentMachineError(MachineError):
    """The request can never succeed as it is (bad image, invalid size): fail the pod."""


class MachineNotFound(MachineError):
    """The machine does not exist (any more)."""


class LogsUnavailable(MachineError):
    """The cloud keeps no output for this container (logging off, an API without
    logs, the log stream not written yet). ``str(err)`` says why and where to look."""


class MachineBackend(Protocol):
    """What the core needs from a cloud. Every method is safe to call again.

    Implementations classify every cloud error into the three kinds above and
    never let a raw SDK exception escape.
    """

    name: str  # short provider name: "ecs", "fly"; used in labels and taints
    sizes: MachineSizes  # the smallest and largest machine, and how many containers fit
    # True when stopped machines stay (and cost) until deleted (Fly); False when
    # the cloud forgets them by itself (ECS, after about an hour).
    keeps_stopped: bool

    def create(self, spec: MachineSpec) -> Machine:
        """Start the machine for ``(spec.pod.uid, spec.attempt)``.

        Idempotent: if a machine with that identity already exists (running or
        not) it is returned and no second one is started. Two concurrent calls
        should not both create; where the cloud cannot guarantee it, the
        reconciler removes the younger duplicate on its next pass.
        Raises TransientMachineError or PermanentMachineError.
        """
        ...

    def list(self, node: str) -> list[Machine]:
        """Every machine of ``node`` the cloud still reports, stopped ones
        included, in O(pages) calls whatever their number."""
        ...

    def list_nodes(self, nodes: Iterable[str]) -> dict[str, list[Machine]]:
        """``list`` for several nodes at once, in the calls of one listing:
        nodes served by one cluster/app are listed once, not once per node."""
        ...

    def get(self, machine_id: str) -> Machine | None:
        """One machine, or None when it no longer exists."""
        ...

    def collect(self, machines: Iterable[Machine]) -> int:
        """Delete what the backend keeps in the cloud for machines (e.g. ECS's
        Secrets Manager mirrors of pod Secret values) that none of ``machines``
        (every machine of every node it serves, as just listed) needs any more.
        Returns how many things were deleted. Safe to call again."""
        ...

    def delete(self, machine_id: str, grace_seconds: int, reason: str) -> None:
        """Stop the machine: SIGTERM, then SIGKILL after ``grace_seconds``
        (as far as the cloud supports it). Stopping a stopped or missing
        machine succeeds: DeletePod may be called many times for one pod."""
        ...

    def machine_from_event(self, event: dict) -> Machine | None:
        """The machine a cloud event (e.g. an EventBridge "ECS Task State Change")
        describes, or None when the event is not about a machine of this
        backend's cluster. Pure: no API call."""
        ...

    # -- the kubelet API (chalicelib/kubelet_api) ---------------------------------

    def find(self, node: str, pod_uid: str, attempt: int) -> Machine | None:
        """The machine of ``(pod_uid, attempt)`` on ``node`` while the cloud still
        reports it (ECS: about an hour after it stopped; Fly: until it is
        destroyed), else None (the oldest, should there be duplicates). At most
        the calls of one ``list(node)``; never creates."""
        ...

    def read_logs(self, machine: Machine, container: str, *, since: datetime | None = None,
                  tail: int | None = None) -> list[LogLine]:
        """What ``container`` of ``machine`` wrote, oldest first: the lines received
        at or after ``since`` (all when None); with ``tail``, only the last ``tail``
        of those. At most about 1 MB of lines per call (the rest is cut from the
        start: the newest output is kept). Read-only and repeatable.
        Raises LogsUnavailable when the cloud keeps none (the message says why),
        TransientMachineError when the cloud cannot answer now."""
        ...

    def connect_command(self, machine: Machine, container: str, action: ConnectAction,
                        command: tuple[str, ...] = (), ports: tuple[int, ...] = ()) -> str:
        """What a user runs instead of ``kubectl exec|attach|port-forward|run`` for
        this machine: the cloud's native command for this exact machine and
        container (``command`` for exec, ``ports`` for port-forward), or, when the
        cloud has none or the operator left it off, why not and what to do.
        Pure: no API call. A function cannot hold the upgraded stream open."""
        ...

    def usage(self, machines: list[Machine], now: datetime) -> dict[str, list[ContainerUsage]]:
        """The latest measurements of the running ``machines`` (machine id ->
        its containers), in O(len(machines) / batch) calls. Machines the cloud
        has no figures for yet (started in the last minutes) are left out; a
        backend whose cloud measures nothing returns {}."""
        ...
