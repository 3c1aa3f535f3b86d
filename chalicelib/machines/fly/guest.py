"""Fly Machine sizes: the guest presets and the smallest one that holds a pod.

Source: the preset table of Fly's Go client (superfly/fly-go
``machine_types.go``, ``MachinePresets``) and Fly's pricing/size docs:

* ``shared-cpu-Nx`` (N = 1, 2, 4, 6, 8): memory from 256 MB x N to 2048 MB x N;
* ``performance-Nx`` (N = 1, 2, 4, 6, 8, 10, 12, 14, 16): memory from
  2048 MB x N to 8192 MB x N;
* memory in steps of 256 MB.

CPU is matched on what the preset *guarantees*, as a Kubernetes request means:
a performance vCPU is a whole core (1000m); a shared vCPU is guaranteed a
1/16 share of a core (62.5m, Fly's documented shared-CPU baseline) and bursts
above it. So ``cpu: 100m`` gets shared-cpu-2x, ``cpu: 1`` gets performance-1x.
GPU presets are not offered (pods cannot ask for Fly GPUs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..contract import PermanentMachineError

MEMORY_STEP_MB = 256
SHARED_BASELINE_MILLIS = 62.5  # 1/16 of a core per shared vCPU


@dataclass(frozen=True)
class Preset:
    name: str
    cpu_kind: str  # "shared" | "performance"
    cpus: int
    min_memory_mb: int
    max_memory_mb: int

    @property
    def guaranteed_millis(self) -> float:
        return self.cpus * (SHARED_BASELINE_MILLIS if self.cpu_kind == "shared" else 1000)


PRESETS: tuple[Preset, ...] = tuple(
    [Preset(f"shared-cpu-{n}x", "shared", n, 256 * n, 2048 * n) for n in (1, 2, 4, 6, 8)]
    + [Preset(f"performance-{n}x", "performance", n, 2048 * n, 8192 * n)
       for n in (1, 2, 4, 6, 8, 10, 12, 14, 16)]
)

SMALLEST, LARGEST = PRESETS[0], PRESETS[-1]  # what a pod asking for nothing gets / the ceiling


@dataclass(frozen=True)
class Guest:
    preset: str
    cpu_kind: str
    cpus: int
    memory_mb: int

    def body(self) -> dict:
        """The ``fly.MachineGuest`` object."""
        return {"cpu_kind": self.cpu_kind, "cpus": self.cpus, "memory_mb": self.memory_mb}


def fit(cpu_millis: int, memory_mib: int) -> Guest:
    """The smallest preset (in table order: shared before performance, fewer
    vCPUs first) that guarantees ``cpu_millis`` and holds ``memory_mib``;
    memory is the request rounded up to 256 MB, at least the preset's minimum.
    Raises PermanentMachineError when nothing fits."""
    cpu_millis, memory_mib = max(0, cpu_millis), max(0, memory_mib)
    wanted_mb = math.ceil(memory_mib / MEMORY_STEP_MB) * MEMORY_STEP_MB
    for p in PRESETS:
        if p.guaranteed_millis >= cpu_millis and wanted_mb <= p.max_memory_mb:
            return Guest(p.name, p.cpu_kind, p.cpus, max(p.min_memory_mb, wanted_mb))
    biggest = PRESETS[-1]
    raise PermanentMachineError(
        f"the pod asks for {cpu_millis}m CPU and {memory_mib}Mi memory; the largest Fly Machine "
        f"({biggest.name}) has {biggest.cpus} CPUs and {biggest.max_memory_mb} MB"
    )


def _admission_sizes():
    from ..contract import MachineSizes

    return MachineSizes(
        label="Fly Machines",
        smallest_cpu=f"{math.floor(SMALLEST.guaranteed_millis)}m",
        smallest_memory=f"{SMALLEST.min_memory_mb}Mi",
        largest_cpu_millis=int(LARGEST.guaranteed_millis),
        largest_memory_mib=LARGEST.max_memory_mb,
        max_containers=10,  # multi-container machines; Fly documents no maximum: as many as ECS takes
    )


SIZES = _admission_sizes()
