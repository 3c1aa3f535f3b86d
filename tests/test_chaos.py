"""The chaos run at CI size on each backend (tests/chaos.py; ``./dev chaos``
runs the full 1,000 lifecycles): after the storm and two clean reconcile passes
every invariant holds. The figures are printed in the test summary
(tests/conftest.py)."""

from __future__ import annotations

import io
import os

import pytest

from tests import chaos


@pytest.mark.parametrize("backend", ["ecs", "fly"])
def test_the_chaos_run_leaves_every_invariant_holding(backend, record_property):
    lifecycles = int(os.environ.get("LAMBDALET_CHAOS_LIFECYCLES", "40"))
    out = io.StringIO()
    figures = chaos.run(lifecycles=lifecycles, drop=0.2, duplicate=0.2, failing=0.1, seed=7, out=out,
                        backend=backend)
    record_property("figures", out.getvalue())
    storm, cloud = figures["_storm"], figures["_cloud"]
    assert sum(v for k, v in storm.items() if k.startswith("lifecycles")) == lifecycles
    # The storm really happened: Kubernetes and cloud calls failed, invocations were
    # killed right after a create the cloud accepted, reconciles ran out of time.
    assert storm["kube faults injected"] > 0 and cloud["cloud faults injected"] > 0, out.getvalue()
    assert sum(v for k, v in cloud.items() if k.startswith("killed after")) > 0, out.getvalue()
    assert storm["reconciles out of time"] > 0 and storm["invocations killed"] > 0, out.getvalue()
    assert chaos.failed(figures) == [], out.getvalue()
