"""EcsBackend: the MachineBackend on ECS Fargate (the calls; translation
lives in taskdef/status, error kinds in client). See the package docstring."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from ..contract import ContainerUsage, LogLine, Machine, MachinePhase, MachineSpec, TransientMachineError
from ..fargate_sizes import SIZES
from . import connect, insights, logs
from .client import _is_missing_task, _is_missing_task_definition, classify, client_config, conflicting_tasks, failure_error
from .identity import STARTED_BY_PREFIX, client_token, started_by, task_group, task_tags
from .status import is_task_state_change, machine_from_task
from . import workload
from .taskdef import task_definition

DESCRIBE_BATCH = 100  # DescribeTasks takes at most 100 tasks


class EcsBackend:
    """MachineBackend on ECS Fargate. See the module docstring.

    ``ecs_client``: a boto3 ECS client, ideally built with ``client_config()``
    (``make_client``) so the SDK retries throttling/5xx with backoff.
    """

    def __init__(
        self,
        ecs_client: Any,
        *,
        cluster: str,
        subnets: Iterable[str],
        security_groups: Iterable[str] = (),
        assign_public_ip: bool = False,
        name: str = "ecs",
        execution_role_arn: str | None = None,
        task_role_arn: str | None = None,
        log_group: str = "",
        exec_enabled: bool = False,
        region: str | None = None,
        secrets: Any = None,
        files_image: str = workload.DEFAULT_FILES_IMAGE,
        run_task_pace: Any = None,
    ):
        self.ecs = ecs_client
        self.region = region or getattr(getattr(ecs_client, "meta", None), "region_name", None) or ""
        self.log_group = log_group  # awslogs destination of the containers' output ("": not kept)
        self.exec_enabled = exec_enabled  # RunTask enableExecuteCommand (ECS Exec)
        self._clients: dict[str, Any] = {}  # CloudWatch Logs / CloudWatch, made on first use
        self.secrets = secrets  # a secret_store.SecretStore: where pod Secret values go
        self.files_image = files_image
        self.cluster = cluster
        self.subnets = list(subnets)
        self.security_groups = list(security_groups)
        self.assign_public_ip = assign_public_ip
        self.name = name
        self.sizes = SIZES
        self.keeps_stopped = False
        self.execution_role_arn = execution_role_arn
        self.task_role_arn = task_role_arn
        self._families: dict[str, str] = {}  # family -> task definition ARN (warm cache)
        # A pacing.TokenBuckets at RunTask's published rate (wiring.run_task_pace), or None.
        self.run_task_pace = run_task_pace

    # -- helpers ---------------------------------------------------------

    def _call(self, action: str, method: str, **kwargs: Any) -> dict:
        try:
            return getattr(self.ecs, method)(**kwargs)
        except Exception as e:  # classified in one place; nothing raw escapes
            raise classify(e, action) from e

    def _describe(self, arns: list[str]) -> list[dict]:
        return [task for page in self._described(arns) for task in page]

    def _described(self, arns: list[str], tags: bool = True) -> Iterator[list[dict]]:
        """The tasks of ``arns``, a DescribeTasks page at a time (a listing keeps only its Machines);
        without their tags unless ``tags``."""
        for i in range(0, len(arns), DESCRIBE_BATCH):
            resp = self._call(
                "DescribeTasks", "describe_tasks",
                cluster=self.cluster, tasks=arns[i : i + DESCRIBE_BATCH], **({"include": ["TAGS"]} if tags else {}),
            )
            yield resp.get("tasks") or []

    def _list_arns(self, **filters: Any) -> list[str]:
        try:
            paginator = self.ecs.get_paginator("list_tasks")
            arns: list[str] = []
            for page in paginator.paginate(cluster=self.cluster, **filters):
                arns.extend(page.get("taskArns") or [])
            return arns
        except Exception as e:
            raise classify(e, "ListTasks") from e

    def _mirror(self, spec: MachineSpec) -> dict[str, str]:
        """Secret value -> ARN of its Secrets Manager mirror, for every value the spec holds."""
        values = workload.secret_values(spec)
        if not values:
            return {}
        if self.secrets is None or not self.execution_role_arn:
            raise TransientMachineError(
                "this pod uses Secret values, which ECS reads from Secrets Manager with the task execution role: "
                "set LAMBDALET_ECS_EXECUTION_ROLE_ARN (a role allowed secretsmanager:GetSecretValue on "
                "lambdalet's pod secrets prefix); retrying")
        return {value: self.secrets.put(value, spec.pod) for value in values}

    def ensure_task_definition(self, spec: MachineSpec, secret_arns: Mapping[str, str] | None = None) -> str:
        """ARN of the (shared) task definition for ``spec``; registers it once."""
        td = task_definition(
            spec, execution_role_arn=self.execution_role_arn, task_role_arn=self.task_role_arn,
            log_configuration=logs.log_configuration(self.log_group, self.region) if self.log_group else None,
            files_image=self.files_image, secret_arns=secret_arns,
        )
        family = td["family"]
        if family in self._families:
            return self._families[family]
        try:
            resp = self.ecs.describe_task_definition(taskDefinition=family)
            found = resp.get("taskDefinition") or {}
            if found.get("status", "ACTIVE") == "ACTIVE":
                self._families[family] = found["taskDefinitionArn"]
                return found["taskDefinitionArn"]
        except Exception as e:
            err = classify(e, "DescribeTaskDefinition")
            if not _is_missing_task_definition(e):
                raise err from e
        resp = self._call("RegisterTaskDefinition", "register_task_definition", **td)
        arn = resp["taskDefinition"]["taskDefinitionArn"]
        self._families[family] = arn
        return arn

    def _adopt(self, arns: list[str], error: BaseException) -> Machine:
        """The machine a RunTask ``ConflictException`` points at: the token
        was used before with other parameters (a task definition registered
        twice by racing invocations, a changed subnet), and ``resourceIds``
        are the tasks it started. They are this pod's: take the oldest."""
        machines = [m for m in map(machine_from_task, self._describe(arns)) if m is not None]
        if not machines:
            raise classify(error, "RunTask") from error
        return min(machines, key=lambda m: (m.created_at, m.id))

    # -- MachineBackend ----------------------------------------------------

    def create(self, spec: MachineSpec) -> Machine:
        # Idempotent through RunTask's clientToken alone (per cluster, 24 h,
        # "Ensuring idempotency" in the ECS API reference): the same call again
        # returns the same task, a changed one answers ConflictException with
        # the existing tasks. No listing first: a create costs one call.
        td_arn = self.ensure_task_definition(spec, self._mirror(spec))
        awsvpc: dict[str, Any] = {
            "subnets": self.subnets,
            "assignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED",
        }
        if self.security_groups:
            awsvpc["securityGroups"] = self.security_groups
        tags = task_tags(spec)
        if self.run_task_pace is not None:  # wait for our turn rather than be throttled
            self.run_task_pace.acquire(("RunTask", self.cluster))
        try:
            resp = self.ecs.run_task(
                cluster=self.cluster,
                taskDefinition=td_arn,
                launchType="FARGATE",
                count=1,
                networkConfiguration={"awsvpcConfiguration": awsvpc},
                startedBy=started_by(spec.node),
                clientToken=client_token(spec.pod.uid, spec.attempt),
                tags=tags,
                enableECSManagedTags=True,
                **({"enableExecuteCommand": True} if self.exec_enabled else {}),
                **({"group": group} if (group := task_group(spec)) else {}),
            )
        except Exception as e:
            if arns := conflicting_tasks(e):
                return self._adopt(arns, e)
            raise classify(e, "RunTask") from e
        tasks = resp.get("tasks") or []
        if not tasks:
            raise failure_error(resp.get("failures") or [{"reason": "no task and no failure reported"}])
        machine = machine_from_task(tasks[0], tags=tasks[0].get("tags") or tags)
        assert machine is not None  # we just gave it our tags
        return machine

    def list(self, node: str) -> list[Machine]:
        return self.list_nodes([node])[node]

    def collect(self, machines: Iterable[Machine]) -> int:
        """Delete the Secrets Manager mirrors no live machine needs (``machines``:
        every machine of every node this backend serves). Returns how many."""
        if self.secrets is None:
            return 0
        live = {m.pod.uid for m in machines if m.phase != MachinePhase.STOPPED}
        try:
            return self.secrets.sweep(live)
        except Exception as e:  # noqa: BLE001 - classified; the next reconcile sweeps again
            raise classify(e, "Secrets Manager sweep") from e

    def list_nodes(self, nodes: Iterable[str]) -> dict[str, list[Machine]]:
        """Per node, the tasks ECS wants RUNNING: ListTasks with the node's
        ``startedBy`` as the only filter (ECS refuses it beside any other;
        ECS's default desiredStatus filter is RUNNING). Then the tasks ECS
        wants STOPPED, which a startedBy listing cannot ask for: one listing
        of the cluster's stopped tasks, which ECS keeps only for about an
        hour, so it holds the last hour's stops, not the cluster's load."""
        out: dict[str, list[Machine]] = {node: [] for node in nodes}
        arns: list[str] = []
        for node in out:
            arns += self._list_arns(startedBy=started_by(node))
        seen = set(arns)
        arns += [a for a in self._list_arns(desiredStatus="STOPPED") if a not in seen]
        # Without tags: a task's ``group`` and ``startedBy`` name its pod (identity.py), and the
        # tags were half of what botocore parsed. A task of ours whose group could not hold
        # the whole identity (over 255 characters) is described again with its tags.
        tagged: list[str] = []
        for page in self._described(arns, tags=False):
            for task in page:
                machine = machine_from_task(task)
                if machine is None or not machine.pod.name:
                    if str(task.get("startedBy") or "").startswith(STARTED_BY_PREFIX):
                        tagged.append(task["taskArn"])
                elif machine.node in out:
                    out[machine.node].append(machine)
        for page in self._described(tagged):
            for task in page:
                machine = machine_from_task(task)
                if machine is not None and machine.node in out:
                    out[machine.node].append(machine)
        return out

    def get(self, machine_id: str) -> Machine | None:
        tasks = self._describe([machine_id])
        return machine_from_task(tasks[0]) if tasks else None

    def delete(self, machine_id: str, grace_seconds: int, reason: str) -> None:
        # grace_seconds: ECS applies the task definition's stopTimeout (the
        # pod's terminationGracePeriodSeconds, <= 120 s); StopTask has no
        # per-call override.
        try:
            self.ecs.stop_task(cluster=self.cluster, task=machine_id, reason=(reason or "")[:255])
        except Exception as e:
            if _is_missing_task(e):
                return
            raise classify(e, "StopTask") from e

    # -- the kubelet API ---------------------------------------------------

    def find(self, node: str, pod_uid: str, attempt: int) -> Machine | None:
        # The node's listing (tasks carry the pod's identity in their group, not in a key
        # ListTasks can filter on): the oldest machine of that attempt.
        mine = [m for m in self.list(node) if m.pod.uid == pod_uid and m.attempt == attempt]
        return min(mine, key=lambda m: (m.created_at, m.id)) if mine else None

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.client(service, region_name=self.region or None, config=client_config())
        return self._clients[service]

    def read_logs(self, machine: Machine, container: str, *, since: datetime | None = None,
                  tail: int | None = None) -> list[LogLine]:
        return logs.read(self._client("logs"), self.log_group, machine.id, container, since=since, tail=tail)

    def connect_command(self, machine: Machine, container: str, action: str, command: tuple[str, ...] = (),
                        ports: tuple[int, ...] = ()) -> str:
        return connect.command(machine, container, action, command, ports, cluster=self.cluster,
                               region=self.region, exec_enabled=self.exec_enabled)

    def usage(self, machines: list[Machine], now: datetime) -> dict[str, list[ContainerUsage]]:
        if not machines:
            return {}
        tasks = self._describe([m.id for m in machines])
        try:
            return insights.usage(self._client("cloudwatch"), self.cluster, tasks, {m.id: m for m in machines}, now)
        except Exception as e:  # classified in one place; nothing raw escapes
            raise classify(e, "GetMetricData") from e

    def machine_from_event(self, event: Mapping) -> Machine | None:
        """The Machine an EventBridge "ECS Task State Change" event is about,
        or None when it is not about a task of ours in our cluster. Pure: the
        identity comes from the detail's ``startedBy`` and ``group`` (AWS
        sends no tags in this event). A pod whose names do not fit a task
        group (over 255 characters) has no event fast path: None, and the
        reconciler picks the change up."""
        if not is_task_state_change(event):
            return None
        detail = event.get("detail") or {}
        cluster_arn = str(detail.get("clusterArn", ""))
        if cluster_arn and cluster_arn.rsplit("/", 1)[-1] != self.cluster.rsplit("/", 1)[-1]:
            return None
        return machine_from_task(detail)

