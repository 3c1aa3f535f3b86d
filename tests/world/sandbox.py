"""The local sandbox: `./dev sandbox`.

Starts, on loopback, the Kubernetes API simulator (with its scheduler and audit
webhook), a moto server standing in for AWS with the Fargate data plane, and
lambdalet's Chalice app: its HTTP routes served by `chalice local`'s server (the
simulator's audit webhook and the admission webhooks of infra/k8s/webhooks.yaml
post there), its schedule and its ECS event handler invoked as Lambda would.
Then it applies examples/*.yaml (opted in to admission with the
lambdalet.io/enabled label, in the labelled default namespace), and shows a pod
admission refuses. `kubectl --kubeconfig
<printed path> get pods -o wide` shows them; Ctrl-C stops everything.

LAMBDALET_BACKEND=fly or `--backend fly`: the machines run on the local Fly
Machines fake (tests/world/fly_fake) instead of the Fargate plane.

LAMBDALET_SANDBOX_ONESHOT=1: run the example scenario, print each pod's final
phase and exit 0 only if each reached the phase its `lambdalet.io/sandbox-expect`
annotation names.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone

import yaml

from tests.world.kube_sim.admission import http_sink
from tests.world.kube_sim.discovery import served
from tests.world.stack import OPT_IN, REPO, WEBHOOK_URL_PLACEHOLDER, Stack

RUN_DIR = REPO / "sandbox-run"  # the kubeconfig the README's quick start uses
EXPECT = "lambdalet.io/sandbox-expect"
RECONCILE_EVERY = 10.0  # seconds; Lambda's schedule is 1 min, the sandbox is impatient
FLY_RECONCILE_EVERY = 3.0
CLOUD_STEP_EVERY = 1.0
ONESHOT_TIMEOUT = 120.0
# A pod admission must refuse: it targets the virtual node and asks for the host's network.
REFUSED = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "refused-host-network", "labels": dict(OPT_IN)},
           "spec": {"hostNetwork": True, "nodeSelector": {"type": "virtual-kubelet"},
                    "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
                    "containers": [{"name": "c", "image": "public.ecr.aws/docker/library/busybox:1.36"}]}}


def quick_run_overrides() -> dict:
    """What `kubectl run` needs to land a pod on the virtual node besides the opt-in label: the
    node selector and the provider toleration (--overrides is merged into the pod kubectl builds)."""
    return {"spec": {"nodeSelector": {"type": "virtual-kubelet"},
                     "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists",
                                      "effect": "NoSchedule"}]}}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def start_moto() -> tuple[object, str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per AWS call is noise here

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def start_http(app) -> tuple[object, str]:
    """The app's API routes on loopback through `chalice local`'s own server. It changes the app
    object's class (to chalice's LocalChalice): stop_http puts it back."""
    from chalice.cli.factory import CLIFactory
    from chalice.local import CustomLocalChalice, create_local_server

    config = CLIFactory(str(REPO)).create_config_obj(chalice_stage_name="local")
    server = create_local_server(app, config, "127.0.0.1", 0)
    # The underlying HTTP server directly: LocalDevServer.serve_forever would print
    # "Serving on http://127.0.0.1:0" (the port asked for, not the one bound).
    threading.Thread(target=server.server.serve_forever, daemon=True, name="chalice-local").start()
    host, port = server.server.server_address[:2]
    return server, f"http://{host}:{port}"


def forget_aws_clients() -> None:
    """powertools keeps its Secrets Manager client (bound to the AWS endpoint of the moment) and
    cached values per process: a sandbox must neither inherit nor leave them."""
    from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS

    DEFAULT_PROVIDERS.clear()


def stop_http(server, app) -> None:
    from chalice.local import CustomLocalChalice

    server.shutdown()
    if type(app) is CustomLocalChalice:
        app.__class__ = CustomLocalChalice.__bases__[-1]


def examples() -> list[dict]:
    """Every document of examples/*.yaml (ConfigMaps and Secrets first within a file, as written)."""
    return [doc for path in sorted((REPO / "examples").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
            if doc]


def create(stack: Stack, manifest: dict, namespace: str = "default") -> dict:
    """Create any kind the simulator serves (as `kubectl create -f` would), pods through the client."""
    if manifest["kind"] == "Pod":
        return stack.create_pod(manifest, namespace)
    from tests.world.kube_sim.resources import RESOURCES

    group, _, version = manifest["apiVersion"].rpartition("/")
    rt = next(r for r in RESOURCES if (r.group, r.version, r.kind) == (group, version, manifest["kind"]))
    base = f"/apis/{group}/{version}" if group else "/api/v1"
    path = f"{base}/namespaces/{namespace}/{rt.plural}" if rt.namespaced else f"{base}/{rt.plural}"
    r = stack.sim.request("POST", path, manifest)
    if r.status != 201:
        raise RuntimeError(f"{manifest['kind']} {manifest['metadata']['name']}: {r.status} {r.body.get('message')}")
    return r.body


class Sandbox:
    def __init__(self, backend: str = "ecs", run_dir=RUN_DIR):
        self.run_dir = run_dir
        self.backend = backend  # "fly": machines on the local Fly fake instead of the Fargate plane
        self.node = f"lambdalet-{backend}"  # the virtual node's name says where its pods run
        self.stop_event = threading.Event()
        self.lock = threading.Lock()  # one invocation at a time, like a reserved concurrency of 1

    @contextlib.contextmanager
    def up(self):
        """Everything started, the examples applied: yields the Stack; stops it all on exit."""
        moto, endpoint = start_moto()
        stack = Stack(moto_endpoint=endpoint, clock=utcnow, connect_audit=False, anonymous=True,
                      audit={"batch_max_size": 400, "batch_max_wait": 1.0}, admission=False,
                      backend=self.backend, nodes=(self.node,))
        servers: list = []
        forget_aws_clients()
        try:
            stack.start()
            http, self.api_url = start_http(stack.app)
            servers.append(http)
            stack.connect_audit(f"{self.api_url}/audit")  # the real path: HTTP from the apiserver
            # The admission webhooks too, their placeholder URL pointing at chalice local.
            stack.connect_admission(lambda url, body, timeout: http_sink(
                url.replace(WEBHOOK_URL_PLACEHOLDER, self.api_url), body, timeout))
            stack.core.patch_namespace("default", {"metadata": {"labels": OPT_IN}})  # the binding fast path
            stack.sim.start_scheduler(interval=0.5)
            self.run_dir.mkdir(exist_ok=True)
            self.kubeconfig = stack.sim.write_kubeconfig(str(self.run_dir / "kubeconfig"))
            self.invoke(stack.reconcile)  # registers the virtual node
            for manifest in examples():
                create(stack, manifest)
            self.refused = refuse_demo(stack)
            threading.Thread(target=self.eventbridge, args=(stack,), daemon=True).start()
            threading.Thread(target=self.heartbeats, args=(stack,), daemon=True).start()
            self.moto_url = endpoint
            yield stack
        finally:
            self.stop_event.set()
            with self.lock:
                for http in servers:
                    stop_http(http, stack.app)
                stack.stop()
            # moto keeps its state per process, not per server: leave none for the next sandbox or test
            urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=60)  # slow only on a loaded machine
            moto.stop()
            forget_aws_clients()

    def run(self, oneshot: bool) -> int:
        with self.up() as stack:
            print(f"lambdalet sandbox: Kubernetes API {stack.sim.url}, AWS (moto) {self.moto_url}, "
                  f"lambdalet's API {self.api_url} (/audit, /admission/*)")
            print(f"  virtual node {self.node}: pods run as "
                  + (f"Fly Machines on the local Fly fake {stack.fly.url} (no cloud events: the reconcile reads them)"
                     if self.backend == "fly" else "ECS Fargate tasks (moto's ECS + the simulated Fargate data plane)"))
            print(f"  the Kubernetes API serves: {served()}")
            sys.stdout.flush()
            if oneshot:  # the cluster stops when the scenario ends: no kubectl hints
                return self.oneshot(stack)
            print("kubectl, while the sandbox runs:")
            print(f"  export KUBECONFIG={self.kubeconfig}")
            print("  kubectl get nodes; kubectl get pods -o wide; kubectl describe pod job-fails")
            print("  kubectl logs job-fails; kubectl logs crash-loop --previous; kubectl exec web -- ls; "
                  f"kubectl top pod   (the kubelet API, behind its mTLS front at https://localhost:{stack.front.port})")
            print("  kubectl run hello --image=public.ecr.aws/docker/library/busybox:1.36 --restart=Never "
                  f"--labels=lambdalet.io/enabled=true --overrides='{json.dumps(quick_run_overrides(), separators=(',', ':'))}' "
                  "-- echo hello")
            sys.stdout.flush()
            return self.forever()

    def invoke(self, call, *args):
        with self.lock:
            try:
                return call(*args)
            except Exception as err:  # noqa: BLE001 - the sandbox keeps running; say what broke
                print(f"sandbox: {getattr(call, '__name__', call)} failed: {err}", file=sys.stderr)

    def eventbridge(self, stack: Stack) -> None:
        """What EventBridge does in AWS: the schedule, and ECS task state changes."""
        # Fly sends no state-change events: statuses only move with the reconcile.
        every = FLY_RECONCILE_EVERY if self.backend == "fly" else RECONCILE_EVERY
        next_reconcile = time.monotonic() + every
        while not self.stop_event.wait(CLOUD_STEP_EVERY):
            self.invoke(stack.cloud_step)
            if time.monotonic() >= next_reconcile:
                self.invoke(stack.reconcile)
                next_reconcile = time.monotonic() + every

    def heartbeats(self, stack: Stack) -> None:
        """The heartbeat function, invoked every minute; it renews the Leases
        every 10 s for most of that minute. Runs beside the other invocations,
        as concurrent Lambdas do."""
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                stack.heartbeat(sleep=self.stop_event.wait)
            except Exception as err:  # noqa: BLE001 - say it, try again next minute
                print(f"sandbox: heartbeat failed: {err}", file=sys.stderr)
            self.stop_event.wait(max(0.0, 60.0 - (time.monotonic() - started)))

    def forever(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stop_event.set())
        print("Running until Ctrl-C.")
        try:
            while not self.stop_event.wait(1.0):
                pass
        except KeyboardInterrupt:
            print("\nstopping the sandbox")
        return 0

    def oneshot(self, stack: Stack) -> int:
        manifests = {m["metadata"]["name"]: m for m in examples()
                     if EXPECT in (m["metadata"].get("annotations") or {})}
        wanted = {name: m["metadata"]["annotations"][EXPECT] for name, m in manifests.items()}
        deadline = time.monotonic() + ONESHOT_TIMEOUT
        phases: dict[str, str] = {}
        while time.monotonic() < deadline:
            with self.lock:
                phases = {name: state(stack, m, wanted[name]) for name, m in manifests.items()}
            if phases == wanted:
                break
            time.sleep(1.0)
        # kubectl logs through the kubelet API (ECS: CloudWatch Logs; Fly: the fake's platform logs)
        logs_ok = phases == wanted and self.kubelet_demo(stack, deadline)
        ok = phases == wanted and self.refused and logs_ok
        print(f"  {REFUSED['metadata']['name']}: {'refused at creation (ok)' if self.refused else 'NOT refused'}")
        for name, phase in phases.items():
            mark = "ok" if phase == wanted[name] else f"expected {wanted[name]}"
            print(f"  {name}: {phase} ({mark})")
        print("sandbox scenario:", "passed" if ok else "FAILED")
        return 0 if ok else 1

    def kubelet_demo(self, stack: Stack, deadline: float) -> bool:
        """kubectl logs through the apiserver's path (the simulator dials the node's kubelet
        endpoint with its client certificate): job-fails' output, and crash-loop's previous run."""
        from kubernetes.client.exceptions import ApiException

        def log(name: str, **kwargs) -> str | None:
            try:
                return stack.core.read_namespaced_pod_log(name, "default", _preload_content=False, **kwargs).data.decode()
            except ApiException:
                return None

        def web_app() -> str | None:  # what its init container left in the shared emptyDir
            pods = stack.core.list_namespaced_pod("default", label_selector="app=web-app").items
            return log(pods[0].metadata.name, container="app") if pods else None

        wanted = {"job-fails": "giving up\n", "crash-loop --previous": "starting\ncrashing\n",
                  "web-app -c app": "done\n"}
        got: dict[str, str | None] = {}
        while time.monotonic() < deadline:
            got = {"job-fails": log("job-fails"), "crash-loop --previous": log("crash-loop", previous=True),
                   "web-app -c app": web_app()}
            if all(self.shows(got[what], text) for what, text in wanted.items()):
                break
            time.sleep(1.0)
        for what, text in got.items():
            print(f"  kubectl logs {what}: {text!r} "
                  f"({'ok' if self.shows(text, wanted[what]) else f'expected {wanted[what]!r}'})")
        return all(self.shows(got[what], text) for what, text in wanted.items())

    def shows(self, log: str | None, wanted: str) -> bool:
        """ECS: the container's own lines (awslogs). Fly: the machine's log, which also holds
        Fly's platform lines (``Machine started``, ``Main child exited``) and, on a
        multi-container machine, its other containers' lines around them."""
        if log is None:
            return False
        return log == wanted if self.backend == "ecs" else wanted in log


def state(stack: Stack, manifest: dict, expect: str) -> str:
    """A Pod's phase; for other kinds `expect` names a condition (Available, Complete): it, once True."""
    name = manifest["metadata"]["name"]
    if manifest["kind"] == "Pod":
        return ((stack.pod(name) or {}).get("status") or {}).get("phase", "Gone")
    group, _, version = manifest["apiVersion"].rpartition("/")
    plural = manifest["kind"].lower() + "s"
    r = stack.sim.request("GET", f"/apis/{group}/{version}/namespaces/default/{plural}/{name}")
    if r.status != 200:
        return "Gone"
    true = [c["type"] for c in (r.body.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    return expect if expect in true else ",".join(true) or "no condition yet"


def refuse_demo(stack: Stack) -> bool:
    """Create a pod lambdalet cannot run: admission refuses it with a message a user can act on."""
    from kubernetes.client.exceptions import ApiException

    try:
        stack.create_pod(REFUSED)
    except ApiException as err:
        print(f"admission refused {REFUSED['metadata']['name']} ({err.status}): "
              f"{yaml.safe_load(err.body).get('message')}")
        return err.status == 403
    print(f"admission did not refuse {REFUSED['metadata']['name']}", file=sys.stderr)
    return False


def main(argv: list[str] | None = None) -> int:
    """``--backend ecs|fly`` (or LAMBDALET_BACKEND) picks the machine backend."""
    import argparse

    parser = argparse.ArgumentParser(prog="./dev sandbox")
    parser.add_argument("--backend", choices=("ecs", "fly"), default=os.environ.get("LAMBDALET_BACKEND") or "ecs")
    args = parser.parse_args(argv)
    return Sandbox(backend=args.backend).run(oneshot=os.environ.get("LAMBDALET_SANDBOX_ONESHOT") == "1")


if __name__ == "__main__":
    sys.exit(main())
