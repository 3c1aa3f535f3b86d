"""``/stats/summary`` and ``/metrics/resource`` from what the cloud measured (pure).

The shapes are the kubelet's: the Summary API (``stats.k8s.io/v1alpha1``: node,
pods, containers with ``cpu.usageNanoCores``/``usageCoreNanoSeconds`` and
``memory.workingSetBytes``) and the resource metrics endpoint metrics-server
scrapes (Prometheus text: ``container_cpu_usage_seconds_total``,
``container_memory_working_set_bytes``, ``container_start_time_seconds``, the
pod and node sums, ``scrape_error``), each sample stamped with the time the cloud
measured it, so a consumer sees how fresh it is. The node's figures are the sum
of its pods': a virtual node has no machine of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from chalicelib.machines.contract import ContainerUsage
from chalicelib.timefmt import rfc3339


@dataclass(frozen=True)
class PodUsage:
    namespace: str
    name: str
    uid: str
    started_at: datetime | None
    containers: tuple[ContainerUsage, ...]


def _cpu(usages: Iterable[ContainerUsage]) -> tuple[float, float]:
    usages = list(usages)
    return sum(u.cpu_core_seconds for u in usages), sum(u.cpu_cores for u in usages)


def _at(usages: Iterable[ContainerUsage], now: datetime) -> datetime:
    return max((u.at for u in usages), default=now)


def summary(node: str, node_started: datetime, pods: list[PodUsage], now: datetime) -> dict:
    def block(usages: list[ContainerUsage]) -> dict:
        total, rate = _cpu(usages)
        at = rfc3339(_at(usages, now))
        return {"cpu": {"time": at, "usageNanoCores": int(rate * 1e9), "usageCoreNanoSeconds": int(total * 1e9)},
                "memory": {"time": at, "workingSetBytes": sum(u.memory_bytes for u in usages),
                           "usageBytes": sum(u.memory_bytes for u in usages)}}

    everything = [u for p in pods for u in p.containers]
    return {
        "node": {"nodeName": node, "startTime": rfc3339(node_started), **block(everything)},
        "pods": [
            {"podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
             "startTime": rfc3339(p.started_at or now),
             "containers": [{"name": u.name, "startTime": rfc3339(p.started_at or now), **block([u])}
                            for u in p.containers],
             **block(list(p.containers))}
            for p in pods
        ],
    }


_HELP = {
    "container_cpu_usage_seconds_total": ("counter", "[STABLE] Cumulative cpu time consumed by the container in core-seconds"),
    "container_memory_working_set_bytes": ("gauge", "[STABLE] Current working set of the container in bytes"),
    "container_start_time_seconds": ("gauge", "[STABLE] Start time of the container since unix epoch in seconds"),
    "node_cpu_usage_seconds_total": ("counter", "[STABLE] Cumulative cpu time consumed by the node in core-seconds"),
    "node_memory_working_set_bytes": ("gauge", "[STABLE] Current working set of the node in bytes"),
    "pod_cpu_usage_seconds_total": ("counter", "[STABLE] Cumulative cpu time consumed by the pod in core-seconds"),
    "pod_memory_working_set_bytes": ("gauge", "[STABLE] Current working set of the pod in bytes"),
    "scrape_error": ("gauge", "[ALPHA] 1 if there was an error while getting container metrics, 0 otherwise"),
}


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return "{" + inner + "}" if inner else ""


def resource_metrics(pods: list[PodUsage], now: datetime, error: bool = False) -> str:
    """The Prometheus text of ``/metrics/resource``."""
    samples: dict[str, list[str]] = {name: [] for name in _HELP}

    def ms(at: datetime) -> int:
        return int(at.timestamp() * 1000)

    for p in pods:
        for u in p.containers:
            labels = _labels(container=u.name, namespace=p.namespace, pod=p.name)
            samples["container_cpu_usage_seconds_total"].append(f"{labels} {u.cpu_core_seconds:.9f} {ms(u.at)}")
            samples["container_memory_working_set_bytes"].append(f"{labels} {u.memory_bytes} {ms(u.at)}")
            if p.started_at:
                samples["container_start_time_seconds"].append(f"{labels} {p.started_at.timestamp():.9f} {ms(u.at)}")
        if p.containers:
            labels = _labels(namespace=p.namespace, pod=p.name)
            total, _ = _cpu(p.containers)
            at = ms(_at(p.containers, now))
            samples["pod_cpu_usage_seconds_total"].append(f"{labels} {total:.9f} {at}")
            samples["pod_memory_working_set_bytes"].append(f"{labels} {sum(u.memory_bytes for u in p.containers)} {at}")
    everything = [u for p in pods for u in p.containers]
    if everything:
        total, _ = _cpu(everything)
        samples["node_cpu_usage_seconds_total"].append(f" {total:.9f} {ms(_at(everything, now))}")
        samples["node_memory_working_set_bytes"].append(
            f" {sum(u.memory_bytes for u in everything)} {ms(_at(everything, now))}")
    samples["scrape_error"].append(f" {1 if error else 0}")
    lines = []
    for name, (kind, help_text) in _HELP.items():
        if not samples[name]:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += [name + sample for sample in samples[name]]
    return "\n".join(lines) + "\n"
