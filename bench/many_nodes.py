"""Many nodes (issue 12, goal 8): 100 virtual nodes x 1,000 pods each.

The scheduled reconcile serves more than ``FANOUT_NODES`` nodes by handing each
to its own asynchronous invocation (``reconcile_node``, Lambda Invoke with
InvocationType Event). Simulated with the zero-latency fakes of
bench/zero_latency (lambdalet's real code over in-process ECS and Kubernetes
answers): the scheduled invocation with all 100 nodes, then per-node
invocations, each in a world holding its node's 1,000 pods and tasks (what a
per-node run reads: its node's pods by fieldSelector, its tasks by startedBy).
A per-node world takes ~2 s to build, so by default ``sample`` of the nodes are
run and the total is their mean times 100 (every node is alike).

Time per invocation = its own wall time on the fakes + its calls x a round trip
per call (``LATENCY``: typical in-Region figures, an assumption, not a measure).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter

# Seconds per call, in the same Region (assumed): a page of 100 tasks described
# is the slow one; a page of 500 pods from the apiserver next.
LATENCY = {"ListTasks": 0.05, "DescribeTasks": 0.15, "list pods": 0.15, "Invoke": 0.03}
OTHER = 0.02  # any other call


def _modeled(wall: float, calls: Counter) -> float:
    return wall + sum(n * LATENCY.get(op, OTHER) for op, n in calls.items())


def many_nodes(nodes: int = 100, pods: int = 1000, sample: int = 10, budget: float = 60.0) -> None:
    from bench.zero_latency import REGION, steady_world
    from chalicelib import node as vnode
    from chalicelib.usecases.reconcile import FANOUT_NODES, reconcile
    from chalicelib.usecases.world import RESERVE, World
    from tests.world.pods import T0

    names = [f"vk-{i:03d}" for i in range(nodes)]
    # The scheduled invocation: every node configured, World.defer = Lambda's Event invoke.
    handed: list[tuple[str, dict]] = []
    world, api, ecs = steady_world(1, node=names[0])
    backend = world.backend_for(names[0])
    world = World(kube=world.kube, backends={n: backend for n in names},
                  nodes={n: vnode.node_object(n, "ecs", REGION, {"cpu": "1000", "memory": "4Ti", "pods": str(pods)}, T0)
                         for n in names},
                  clock=world.clock, defer=lambda function, payload: handed.append((function, payload)))
    t = time.perf_counter()
    report = reconcile(world, budget=budget)
    wall = time.perf_counter() - t
    calls = Counter(api.calls) + Counter(ecs.calls) + Counter({"Invoke": len(handed)})
    entry = _modeled(wall, calls)
    assert sorted(p["node"] for f, p in handed if f == "reconcile_node") == names and len(report) == nodes
    print(f"many nodes, {nodes} x {pods} pods: the scheduled reconcile hands each node to its own invocation "
          f"(> {FANOUT_NODES} nodes): {len(handed)} Invoke (Event) calls, other calls {sum(calls.values()) - len(handed)}, "
          f"{entry:.1f} s modeled ({wall * 1000:.0f} ms own)")

    runs = []
    for name in names[:sample]:
        world, api, ecs = steady_world(pods, node=name)
        t = time.perf_counter()
        done = reconcile(world, budget=budget, only=[name])[name]
        wall = time.perf_counter() - t
        calls = Counter(api.calls) + Counter(ecs.calls)
        assert done.get("pods") == pods and "error" not in done, done
        runs.append((wall, calls, _modeled(wall, calls)))
        del world, api, ecs
    modeled = [m for _, _, m in runs]
    per_node = runs[0][1]
    total_calls = sum(sum(c.values()) for _, c, _ in runs) / len(runs) * nodes
    serial = statistics.mean(modeled) * nodes
    print(f"  per-node invocation ({len(runs)} of {nodes} run, {pods} pods each): calls {dict(per_node)}; "
          f"own {statistics.median(w for w, _, _ in runs):.2f} s, modeled min {min(modeled):.1f} / median "
          f"{statistics.median(modeled):.1f} / max {max(modeled):.1f} s (budget {budget:.0f} s, new work stops at "
          f"{budget - RESERVE:.0f} s)")
    print(f"  total: {total_calls:.0f} calls a pass; fanned out the pass ends after ~{entry + max(modeled):.1f} s "
          f"(scheduled invocation + the slowest node, all nodes in parallel); one invocation doing every node "
          f"would need ~{serial:.0f} s = {serial / budget:.1f}x its {budget:.0f} s budget")
    ecs_reads = sum(n for op, n in per_node.items() if op in ("ListTasks", "DescribeTasks"))
    print(f"  on paper, real clouds: ECS reads {ecs_reads} a node a minute x {nodes} nodes = {ecs_reads * nodes} a "
          f"minute ({ecs_reads * nodes / 60:.0f}/s on average), most in the first seconds of the minute as every node's "
          f"invocation starts at once: to hold against the account's DescribeTasks/ListTasks buckets (per account "
          f"and Region; ECS API Reference, 'Request throttling'), past which the adaptive retries stretch the "
          f"pass; Kubernetes {sum(n for op, n in per_node.items() if op not in ('ListTasks', 'DescribeTasks'))} "
          f"calls a node a minute (+ 6 Lease renewals by the heartbeat); Fly: creates and lists 1/s (burst 3) "
          f"per app, so {nodes} nodes listing one shared app each minute need {nodes} s > 60 s: one app per node")
