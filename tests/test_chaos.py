"""The chaos run at CI size (tests/chaos.py; ``./dev chaos`` runs the full 1,000
lifecycles): after the storm and two clean reconcile passes every invariant
holds. The figures are printed in the test summary (tests/conftest.py)."""

from __future__ import annotations

import io
import os

from tests import chaos


def test_the_chaos_run_leaves_every_invariant_holding(record_property):
    lifecycles = int(os.environ.get("LAMBDALET_CHAOS_LIFECYCLES", "40"))
    out = io.StringIO()
    figures = chaos.run(lifecycles=lifecycles, drop=0.2, duplicate=0.2, failing=0.1, seed=7, out=out)
    record_property("figures", out.getvalue())
    assert sum(v for k, v in figures["_storm"].items() if k.startswith("lifecycles")) == lifecycles
    assert figures["_storm"]["kube faults injected"] > 0 and figures["_storm"].get("ecs RunTask failed", 0) > 0
    assert chaos.failed(figures) == [], out.getvalue()
