"""AWS ECS Fargate backend: each machine is one Fargate task.

Modules: ``identity`` (tags, startedBy, group, clientToken; pure), ``taskdef``
(MachineSpec -> task definition; pure), ``workload`` (init containers, secrets
by ARN, volumes, health checks, registry credentials in that definition; pure), ``status`` (task/event -> Machine;
pure), ``client`` (client config, error classification), ``backend``
(``EcsBackend``: the calls); for the kubelet API: ``logs`` (awslogs
configuration and CloudWatch Logs reads), ``insights`` (Container Insights
figures), ``connect`` (the ECS Exec commands; pure).

Identity and idempotency
    A machine is the task for ``(pod uid, attempt)``. ``create`` sends one
    RunTask whose ``clientToken`` derives from that pair: ECS keeps a token
    per cluster for 24 h, so a retry, a concurrent call or a call after a
    crash gets the same task back; a retry whose parameters changed (a task
    definition registered twice by racing invocations, a changed subnet)
    gets ``ConflictException`` with ``resourceIds``, and those tasks are
    adopted. The identity is written where it survives: ``startedBy`` =
    ``lambdalet/<node>`` (the ListTasks key: one listing per node, the only
    filter ECS allows beside it) and ``group`` =
    ``lambdalet:<node>:<namespace>:<name>:<uid>:<attempt>`` (ECS shows both
    in DescribeTasks and in EventBridge events for as long as the task is
    visible). The ``lambdalet.io/...`` tags are for people: StopTask deletes
    them.

Task definitions
    Content-addressed: the family is ``lambdalet-<hash>`` of the canonical JSON
    of everything that goes into the task definition (containers, size,
    stopTimeout, roles). Identical pod templates (Deployment replicas) share
    one family/revision; it is registered once, on first use.

    * Every app container is ``essential`` (init containers and the files
      writer are not: ``workload``): a pod ends when its containers end,
      and ECS stops the whole task as soon as one essential container exits.
      A pod whose sidecar outlives its main container therefore ends with the
      main container (the sidecar gets SIGTERM), which is the right outcome
      for batch pods and a documented limit for pods mixing lifetimes.
    * Size: task-level cpu/memory is the cheapest Fargate size holding the
      pod's sum of max(request, limit) (``fargate_sizes.fit``). Each container
      gets a soft ``memoryReservation`` (the task memory split evenly, which
      ECS needs when it places containers and moto needs to run the task) and
      no hard per-container ``memory`` limit: the task memory is the pod's
      hard limit, per-container limits are not enforced separately.
    * ``stopTimeout`` is the pod's terminationGracePeriodSeconds, clamped to
      Fargate's 2-120 s. StopTask cannot override it per call, so
      ``delete(grace_seconds=...)`` gets the template's grace period.
    * Kubernetes ``command`` -> ECS ``entryPoint``; ``args`` -> ECS ``command``.

Observed state
    ``machine_from_task`` translates a DescribeTasks task (datetimes) or the
    ``detail`` of an EventBridge "ECS Task State Change" event (ISO strings)
    into a Machine. AWS documents no ``tags`` in that event detail: the
    identity comes from ``startedBy`` and ``group``; ``machine_from_event`` is
    pure. Events are at-least-once and unordered; each carries the task's
    ``version`` (``Machine.version``), which orders them.
    ECS keeps stopped tasks visible for only about an hour: after that
    ``list``/``get`` no longer report them.
"""


from .backend import DESCRIBE_BATCH, EcsBackend
from .client import classify, client_config, conflicting_tasks, failure_error, make_client
from .identity import (
    GROUP_PREFIX,
    STARTED_BY_PREFIX,
    TAG_ATTEMPT,
    TAG_NAME,
    TAG_NAMESPACE,
    TAG_NODE,
    TAG_PREFIX,
    TAG_UID,
    client_token,
    identity_from_task,
    node_of_started_by,
    started_by,
    task_group,
    task_tags,
)
from .status import image_id, is_task_state_change, machine_from_task
from .taskdef import FAMILY_PREFIX, FARGATE_MAX_STOP_TIMEOUT, MAX_CONTAINERS, task_definition

__all__ = [
    "DESCRIBE_BATCH", "EcsBackend", "classify", "conflicting_tasks", "client_config", "failure_error", "make_client",
    "GROUP_PREFIX", "STARTED_BY_PREFIX", "TAG_ATTEMPT", "TAG_NAME", "TAG_NAMESPACE", "TAG_NODE",
    "TAG_PREFIX", "TAG_UID", "client_token", "identity_from_task", "node_of_started_by", "started_by",
    "task_group", "task_tags", "image_id", "is_task_state_change", "machine_from_task",
    "FAMILY_PREFIX", "FARGATE_MAX_STOP_TIMEOUT", "MAX_CONTAINERS", "task_definition",
]
