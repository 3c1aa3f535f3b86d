"""Cold start (issue 12 goal 1): what every Lambda scale-out pays before its answer.

- ``cold_start``: fresh processes importing the libraries and the app;
- ``cold_reconcile``: against the simulator + a moto server, a fresh process
  answering one admission review through the app's real entry point (the
  API Gateway proxy event Chalice's local gateway makes, the bearer token
  checked against Secrets Manager), as a ratio to a fresh ``import boto3``; and
  a fresh process doing its first reconcile (imports, clients, secrets,
  heartbeat, lists), reported beside it.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from tests.world.stack import REPO, WEBHOOK_HEADERS, Stack

PY = sys.executable


def run_fresh(code: str, env: dict | None = None) -> tuple[float, float, float]:
    """Wall ms, CPU ms (user + sys) and peak RSS MiB of ``python -c code`` in a new process."""
    # VmHWM: this process's peak RSS (ru_maxrss would carry the parent's over exec).
    probe = code + "\nprint([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    # Bytecode cached for every module alike (site-packages has it; a shell may say
    # PYTHONDONTWRITEBYTECODE, which would compile only lambdalet's own on every run).
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k != "PYTHONDONTWRITEBYTECODE"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run([PY, "-c", probe], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    wall = (time.perf_counter() - t) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu, int(out) / 1024


def fresh(code: str, env: dict | None = None, runs: int = 5) -> tuple[float, float]:
    """Median wall ms and median peak RSS MiB of ``python -c code`` in a new process."""
    runs_ = [run_fresh(code, env) for _ in range(runs)]
    return statistics.median(r[0] for r in runs_), statistics.median(r[2] for r in runs_)


def against_boto3(code: str, env: dict, runs: int = 7) -> dict:
    """``code`` in fresh processes, each run beside a fresh ``import boto3`` (interleaved, so a
    busy machine slows both alike): medians, and the median of the per-pair ratios."""
    run_fresh(code, env)  # writes the bytecode caches
    pairs = [(run_fresh("import boto3"), run_fresh(code, env)) for _ in range(runs)]
    return {"wall": statistics.median(c[0] for _, c in pairs), "cpu": statistics.median(c[1] for _, c in pairs),
            "rss": statistics.median(c[2] for _, c in pairs),
            "boto3": statistics.median(b[0] for b, _ in pairs),
            "ratio": statistics.median(c[0] / b[0] for b, c in pairs),
            "cpu_ratio": statistics.median(c[1] / b[1] for b, c in pairs)}


def cold_start() -> None:
    wall, mib = fresh("pass")
    print(f"python -c pass                     {wall:8.1f} ms  {mib:6.1f} MiB")
    for module in ("boto3", "kubernetes", "app"):
        wall, mib = fresh(f"import {module}")
        print(f"import {module:27s} {wall:8.1f} ms  {mib:6.1f} MiB")


def admission_event(path: str = "/admission/validate") -> dict:
    """The API Gateway proxy event of one admission review, as chalice's local gateway makes it."""
    from chalice.config import Config
    from chalice.local import LocalGateway

    import app

    review = (REPO / "tests/fixtures/kube-apiserver-1.36/admission-pod-create.json").read_bytes()
    gateway = LocalGateway(app.app, Config(chalice_stage="local"))
    event = gateway._generate_lambda_event("POST", path, {**WEBHOOK_HEADERS, "Content-Length": str(len(review))},
                                           review)
    return {**event, "body": event["body"].decode()}  # API Gateway's JSON carries the body as text


# One admission review through the app's entry point, in the process that imports it.
ADMIT = """import json
import app
answer = app.app(json.loads({event!r}), None)
review = json.loads(answer["body"])
assert answer["statusCode"] == 200 and review["response"]["allowed"] is True, answer
"""

RECONCILE = """import app
from chalicelib import wiring
from chalicelib.usecases.reconcile import reconcile
reconcile(wiring.world())
"""


def cold_reconcile() -> None:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        with Stack(moto_endpoint=f"http://{host}:{port}") as stack:
            stack.reconcile()
            env = {k: v for k, v in os.environ.items() if k.startswith(("LAMBDALET_", "AWS_"))}
            env["POWERTOOLS_LOG_LEVEL"] = "WARNING"
            for name, code in (("import app + 1 admission review", ADMIT.format(event=json.dumps(admission_event()))),
                               ("first reconcile, fresh process ", RECONCILE)):
                r = against_boto3(code, env)
                goal = "goal <= 2x, stretch 1.5x" if name.startswith("import") else "reported beside it"
                print(f"{name}    {r['wall']:8.1f} ms  {r['rss']:6.1f} MiB  = {r['ratio']:.2f}x a fresh import boto3 "
                      f"({r['boto3']:.0f} ms; {goal}; CPU {r['cpu']:.0f} ms = {r['cpu_ratio']:.2f}x)")
            print("  (admission: through the entry point, token checked against Secrets Manager; reconcile: imports, "
                  "clients, secrets, heartbeat, lists)")
    finally:
        server.stop()
