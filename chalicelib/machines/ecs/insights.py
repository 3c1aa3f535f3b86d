"""What CloudWatch Container Insights measured of running tasks.

With Container Insights (enhanced observability) on the cluster, ECS publishes
per-container metrics to the ``ECS/ContainerInsights`` namespace once a minute:
``ContainerCpuUtilized`` (CPU units, 1024 per vCPU) and ``ContainerMemoryUtilized``
(MiB), dimensions ``ClusterName``, ``TaskDefinitionFamily``, ``TaskId``,
``ContainerName`` (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Container-Insights-enhanced-observability-metrics-ECS.html).
Freshness: one-minute datapoints, published about a minute after the minute
they measure; the samples carry that time.

The kubelet's resource metrics want a cumulative CPU counter: it is the
integral of the per-period averages since the task started (Average x the
seconds of each complete period the task ran), which is the same whichever period is used, so the
period grows with the task's age (1 min up to 3 h, 5 min up to 15 h, 1 h after)
to keep each query within GetMetricData's datapoint limits.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from ..contract import ContainerUsage, Machine

NAMESPACE = "ECS/ContainerInsights"
CPU, MEMORY = "ContainerCpuUtilized", "ContainerMemoryUtilized"
CPU_UNITS_PER_CORE = 1024
MAX_QUERIES = 500  # GetMetricData: metric data queries per call


def _period(age: timedelta) -> int:
    if age <= timedelta(hours=3):
        return 60
    if age <= timedelta(hours=15):
        return 300
    return 3600


def _floor(moment: datetime, seconds: int) -> datetime:
    return datetime.fromtimestamp(int(moment.timestamp()) // seconds * seconds, tz=timezone.utc)


def queries(cluster: str, task: dict) -> list[tuple[str, dict]]:
    """(query id, MetricDataQuery) pairs for each container of a DescribeTasks task."""
    task_id = task["taskArn"].rsplit("/", 1)[-1]
    family = task["taskDefinitionArn"].rsplit("/", 1)[-1].split(":")[0]
    out = []
    for index, container in enumerate(task.get("containers") or []):
        for metric in (CPU, MEMORY):
            dims = [{"Name": "ClusterName", "Value": cluster.rsplit("/", 1)[-1]},
                    {"Name": "TaskDefinitionFamily", "Value": family},
                    {"Name": "TaskId", "Value": task_id},
                    {"Name": "ContainerName", "Value": container["name"]}]
            out.append((container["name"], {"MetricStat": {"Metric": {
                "Namespace": NAMESPACE, "MetricName": metric, "Dimensions": dims}, "Stat": "Average"},
                "Id": f"{'c' if metric == CPU else 'm'}{index}_{task_id.replace('-', '_')}"}))
    return out


def usage(cloudwatch: Any, cluster: str, tasks: list[dict], machines: dict[str, Machine],
          now: datetime) -> dict[str, list[ContainerUsage]]:
    """machine id -> usage of its containers, for DescribeTasks ``tasks``."""
    out: dict[str, list[ContainerUsage]] = {}
    for task in tasks:
        machine = machines.get(task["taskArn"])
        if machine is None or machine.started_at is None:
            continue
        period = _period(now - machine.started_at)
        start, end = _floor(machine.started_at, period), _floor(now, period)
        if end <= start:
            continue
        pairs = queries(cluster, task)
        found: dict[str, dict] = {}
        for i in range(0, len(pairs), MAX_QUERIES):
            chunk = [{**q, "MetricStat": {**q["MetricStat"], "Period": period}} for _, q in pairs[i:i + MAX_QUERIES]]
            token = None
            while True:
                page = cloudwatch.get_metric_data(MetricDataQueries=chunk, StartTime=start, EndTime=end,
                                                  ScanBy="TimestampAscending", **({"NextToken": token} if token else {}))
                for result in page.get("MetricDataResults") or []:
                    got = found.setdefault(result["Id"], {"t": [], "v": []})
                    got["t"] += result.get("Timestamps") or []
                    got["v"] += result.get("Values") or []
                token = page.get("NextToken")
                if not token:
                    break
        containers = []
        for (name, cpu_q), (_, mem_q) in zip(pairs[0::2], pairs[1::2]):
            cpu, mem = found.get(cpu_q["Id"]), found.get(mem_q["Id"])
            if not cpu or not cpu["v"] or not mem or not mem["v"]:
                continue  # nothing measured yet (Container Insights lags a minute or two)
            points = sorted(zip(cpu["t"], cpu["v"]))
            latest_memory = sorted(zip(mem["t"], mem["v"]))[-1][1]
            containers.append(ContainerUsage(
                name=name, at=_aware(points[-1][0]) + timedelta(seconds=period),
                cpu_core_seconds=sum(v * _ran(machine, _aware(t), period) for t, v in points) / CPU_UNITS_PER_CORE,
                cpu_cores=points[-1][1] / CPU_UNITS_PER_CORE,
                memory_bytes=int(latest_memory * 2**20)))
        if containers:
            out[machine.id] = containers
    return out


def _ran(machine: Machine, start: datetime, period: int) -> float:
    """Seconds of the period starting at ``start`` the task ran: its average covers only those."""
    began = max(start, machine.started_at)
    return max(0.0, (start + timedelta(seconds=period) - began).total_seconds())


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
