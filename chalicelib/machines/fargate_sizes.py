"""The fixed AWS Fargate task sizes (Linux), and the cheapest one that fits a pod.

Fargate does not take arbitrary CPU/memory: the task-level ``cpu`` (CPU units,
1024 = 1 vCPU) and ``memory`` (MiB) must be one of the combinations below
(AWS docs, "Task CPU and memory" for Fargate). Pure data, no I/O.
"""

from __future__ import annotations

from .contract import PermanentMachineError

GIB = 1024


def _gib_range(lo: int, hi: int, step: int) -> tuple[int, ...]:
    return tuple(g * GIB for g in range(lo, hi + 1, step))


#: CPU units -> allowed task memory values in MiB, ascending.
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: _gib_range(1, 4, 1),
    1024: _gib_range(2, 8, 1),
    2048: _gib_range(4, 16, 1),
    4096: _gib_range(8, 30, 1),
    8192: _gib_range(16, 60, 4),
    16384: _gib_range(32, 120, 8),
}

#: Every (cpu_units, memory_mib) pair, cheapest first: least CPU, then least memory.
ALL_SIZES: tuple[tuple[int, int], ...] = tuple(
    (cpu, mem) for cpu in sorted(FARGATE_SIZES) for mem in FARGATE_SIZES[cpu]
)

LARGEST_CPU_UNITS = max(FARGATE_SIZES)
LARGEST_MEMORY_MIB = max(max(v) for v in FARGATE_SIZES.values())


def _vcpu(millis_or_units: float) -> str:
    return f"{millis_or_units:g} vCPU"


def memory_text(mib: int) -> str:
    """512 MiB, 4 GiB: memory as people read it."""
    if mib % GIB == 0:
        return f"{mib // GIB} GiB"
    return f"{mib} MiB"


def fit(cpu_millis: int, memory_mib: int) -> tuple[int, int]:
    """The smallest Fargate size ``(cpu_units, memory_mib)`` holding both.

    ``cpu_millis`` is Kubernetes millicores (1000 = 1 vCPU = 1024 CPU units);
    0 for both gives the smallest size (0.25 vCPU / 512 MiB).
    Raises PermanentMachineError when no Fargate size is large enough.
    """
    if cpu_millis < 0 or memory_mib < 0:
        raise PermanentMachineError(
            f"pod asks for a negative size ({cpu_millis}m CPU / {memory_mib} MiB)"
        )
    # 1 vCPU is 1000 millicores in Kubernetes and 1024 CPU units in ECS.
    need_units = -(-cpu_millis * 1024 // 1000)  # ceil
    for cpu, mem in ALL_SIZES:
        if cpu >= need_units and mem >= memory_mib:
            return cpu, mem
    raise PermanentMachineError(
        f"pod asks for {_vcpu(cpu_millis / 1000)} / {memory_text(memory_mib)}; "
        f"the largest Fargate task is {_vcpu(LARGEST_CPU_UNITS / 1024)} / "
        f"{memory_text(LARGEST_MEMORY_MIB)}"
    )


def _admission_sizes():
    from .contract import MachineSizes

    smallest = min(FARGATE_SIZES)
    return MachineSizes(
        label="ECS Fargate",
        smallest_cpu=f"{smallest * 1000 // 1024}m",  # 256 CPU units = 250m
        smallest_memory=f"{min(FARGATE_SIZES[smallest])}Mi",
        largest_cpu_millis=LARGEST_CPU_UNITS * 1000 // 1024,
        largest_memory_mib=LARGEST_MEMORY_MIB,
        max_containers=10,  # containerDefinitions per task definition
    )


SIZES = _admission_sizes()
