"""Goal 3 of issue 12: a steady reconcile at 10,000 pods on one node, lambdalet's own cost.

Each case runs in a fresh lambdalet process against the zero-latency fakes in
their own process (``remote_fakes``: real kubernetes client and botocore over
HTTP on loopback), so CPU (``time.process_time``) and peak RSS (``VmHWM``) are
lambdalet's alone: imports, clients, the listings, the plan, the writes.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

from tests.world.stack import REPO

CASE = """
import json, time
def status(key): return int([l.split()[1] for l in open('/proc/self/status') if l.startswith(key)][0]) / 1024
from bench.remote_fakes import Remote
from chalicelib.usecases.reconcile import reconcile
with Remote({pods}, {changed}) as fakes:
    world = fakes.world()
    base = status('VmRSS')
    t, c = time.perf_counter(), time.process_time()
    report = reconcile(world)
    cpu, wall = time.process_time() - c, time.perf_counter() - t
    print(json.dumps(dict(wall=wall, cpu=cpu, base=base, peak=status('VmHWM'), calls=fakes.calls(), report=report)))
"""


def steady_at_scale(pods: int = 10000) -> None:
    kube_max, ecs_max = 2 * math.ceil(pods / 500) + 2, 2 * math.ceil(pods / 100) + 2
    for changed in (0.0, 0.01):
        out = subprocess.run([sys.executable, "-c", CASE.format(pods=pods, changed=changed)], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        kube, ecs = r["calls"]["kube"], r["calls"]["ecs"]
        reads = sum(n for k, n in kube.items() if k.startswith(("list", "get")))
        writes = {k: n for k, n in kube.items() if not k.startswith(("list", "get"))}
        print(f"reconcile, {pods} pods, {changed:.0%} changed: k8s reads {reads} (goal <= {kube_max}), "
              f"writes {json.dumps(writes)} (goal: pod writes = {int(pods * changed)} changed pods), "
              f"ecs {sum(ecs.values())} {json.dumps(ecs)} (goal <= {ecs_max}); lambdalet's process alone: "
              f"CPU {r['cpu']:.2f} s (goal <= 2), wall {r['wall']:.2f} s, peak RSS {r['peak']:.0f} MiB "
              f"(goal <= 200; {r['base']:.0f} MiB before the reconcile: imports and clients)")
