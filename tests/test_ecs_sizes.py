"""Fargate size table and fit()."""

import pytest

from chalicelib.machines.contract import PermanentMachineError
from chalicelib.machines.fargate_sizes import ALL_SIZES, FARGATE_SIZES, fit


def test_table_matches_aws_docs():
    assert FARGATE_SIZES[256] == (512, 1024, 2048)
    assert FARGATE_SIZES[512] == (1024, 2048, 3072, 4096)
    assert FARGATE_SIZES[1024] == tuple(g * 1024 for g in range(2, 9))
    assert FARGATE_SIZES[2048] == tuple(g * 1024 for g in range(4, 17))
    assert FARGATE_SIZES[4096] == tuple(g * 1024 for g in range(8, 31))
    assert FARGATE_SIZES[8192] == tuple(g * 1024 for g in range(16, 61, 4))
    assert FARGATE_SIZES[16384] == tuple(g * 1024 for g in range(32, 121, 8))
    # cheapest first: cpu ascending, then memory ascending
    assert list(ALL_SIZES) == sorted(ALL_SIZES)


@pytest.mark.parametrize(
    ("cpu_millis", "memory_mib", "expected"),
    [
        (0, 0, (256, 512)),
        (250, 512, (256, 512)),  # 250m = 256 CPU units exactly
        (251, 0, (512, 1024)),
        (100, 1500, (256, 2048)),
        (100, 2049, (512, 3072)),  # 0.25 vCPU tops out at 2 GiB
        (1000, 0, (1024, 2048)),
        (1000, 8192, (1024, 8192)),
        (1000, 8193, (2048, 9216)),
        (4000, 31 * 1024, (8192, 32 * 1024)),  # 4 vCPU tops out at 30 GiB
        (8000, 61 * 1024, (16384, 64 * 1024)),
        (16000, 120 * 1024, (16384, 120 * 1024)),
    ],
)
def test_fit_picks_the_cheapest_size(cpu_millis, memory_mib, expected):
    assert fit(cpu_millis, memory_mib) == expected


@pytest.mark.parametrize(
    ("cpu_millis", "memory_mib", "words"),
    [
        (20000, 200 * 1024, "pod asks for 20 vCPU / 200 GiB; the largest Fargate task is 16 vCPU / 120 GiB"),
        (16001, 0, "16.001 vCPU"),
        (1000, 121 * 1024, "121 GiB"),
    ],
)
def test_too_big_is_permanent_and_readable(cpu_millis, memory_mib, words):
    with pytest.raises(PermanentMachineError) as e:
        fit(cpu_millis, memory_mib)
    assert words in str(e.value)
