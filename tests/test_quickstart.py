"""The README's quick start, and the kubectl commands a new user tries in their
first hour, run with the real kubectl against the sandbox (`./dev sandbox`:
simulator + moto + lambdalet), each answer compared with what a real cluster
prints (the golden transcript's kubectl output where it has one).

First-hour list: version; get nodes (-o wide); describe node; get/create/delete
ns; apply a pod; wait; get pods -o wide; describe pod; get events; label,
annotate; run; create deployment, scale, get rs; apply a Deployment; rollout
status; create job; apply a Job; wait for it; create configmap/secret; get
lease; get all; api-resources; explain; an invalid pod (422); delete --wait.
Left out: cluster-info (the sandbox serves no Services; the README says so);
logs, exec and top have their own tests (the kubelet API).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.samples import GOLDEN
from tests.world.kube_sim.discovery import served
from tests.world.sandbox import Sandbox

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH")

README = Path(__file__).resolve().parents[1] / "README.md"
IMAGE = "public.ecr.aws/docker/library/busybox:1.36"
VIRTUAL = {"nodeSelector": {"type": "virtual-kubelet"},
           "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists", "effect": "NoSchedule"}]}


@pytest.fixture
def sandbox(tmp_path):
    sb = Sandbox(run_dir=tmp_path / "sandbox-run")
    with sb.up() as stack:
        yield sb, stack, tmp_path


def kubectl(sb, cwd, *args, stdin=None, check=True, timeout=120):
    env = {**os.environ, "KUBECONFIG": sb.kubeconfig}
    r = subprocess.run(["kubectl", "--cache-dir", str(cwd / "kube-cache"), *args], input=stdin, capture_output=True,
                       text=True, timeout=timeout, env=env, cwd=cwd)
    if check:
        assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
    return r


def readme_block(lang: str, after: str) -> str:
    text = README.read_text()
    start = text.index(after)
    m = re.search(rf"```{lang}\n(.*?)```", text[start:], re.S)
    return m.group(1)


def test_readme_lists_what_the_api_serves():
    text = README.read_text()
    block = text[text.index("<!-- sandbox-api:start"):text.index("<!-- sandbox-api:end")]
    assert served() in block


def test_readme_quick_start_runs(sandbox):
    sb, stack, cwd = sandbox
    script = readme_block("sh", "## Quick start")
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, capture_output=True, text=True,
                       timeout=240, env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"})
    assert r.returncode == 0, r.stderr
    assert re.search(rf"^{stack.nodes[0]}\s+Ready\s+agent\s", r.stdout, re.M), r.stdout
    assert "pod/hello created" in r.stdout and "pod/hello condition met" in r.stdout
    assert re.search(rf"^hello\s+1/1\s+Running\s+0\s+\S+\s+\d+\.\d+\.\d+\.\d+\s+{stack.nodes[0]}\s", r.stdout, re.M)
    assert 'pod "hello" deleted' in r.stdout
    assert stack.pod("hello") is None, "delete waited until lambdalet finalized the pod"
    # The one-line variant from the README
    line = next(ln for ln in README.read_text().splitlines() if ln.startswith("`kubectl run hello2"))
    r = subprocess.run(["bash", "-c", line.strip("`.")], cwd=cwd, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "KUBECONFIG": sb.kubeconfig})
    assert r.returncode == 0 and "pod/hello2 created" in r.stdout, r.stderr
    kubectl(sb, cwd, "wait", "--for=condition=Ready", "pod/hello2", "--timeout=60s")
    assert stack.pod("hello2")["spec"]["nodeName"] == stack.nodes[0]


def manifest(kind: str, name: str, **spec) -> str:
    template = {"metadata": {"labels": {"app": name, "lambdalet.io/enabled": "true"}},
                "spec": {**VIRTUAL, "containers": [{"name": "main", "image": IMAGE,
                                                    "command": spec.pop("command", ["sleep", "3600"])}],
                         **({"restartPolicy": "Never"} if kind == "Job" else {})}}
    body = {"apiVersion": "apps/v1" if kind == "Deployment" else "batch/v1", "kind": kind,
            "metadata": {"name": name}, "spec": {"template": template, **spec}}
    if kind == "Deployment":
        body["spec"]["selector"] = {"matchLabels": {"app": name}}
    return yaml.safe_dump(body)


def test_first_hour_commands(sandbox):
    sb, stack, cwd = sandbox
    node = stack.nodes[0]

    def k(*args, **kw):
        return kubectl(sb, cwd, *args, **kw)

    out = k("version", "-o", "json").stdout
    assert json.loads(out)["serverVersion"]["gitVersion"] == "v1.36.2"

    lines = k("get", "nodes", "-o", "wide").stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE",
                                "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    assert lines[1].split()[:3] == [node, "Ready", "agent"]
    described = k("describe", "node", node).stdout
    assert "virtual-kubelet.io/provider=ecs:NoSchedule" in described or "virtual-kubelet.io/provider" in described
    labels = json.loads(k("get", "node", node, "-o", "json").stdout)
    # v1.36 control plane: the lifecycle controller's beta labels, and no startup not-ready taint once Ready
    assert labels["metadata"]["labels"].get("beta.kubernetes.io/os") == "linux"
    assert "node.kubernetes.io/not-ready" not in [t["key"] for t in labels["spec"].get("taints") or []]

    assert k("create", "ns", "demo").stdout.strip() == "namespace/demo created"
    assert re.search(r"^demo\s+Active\s", k("get", "ns").stdout, re.M)

    pod = yaml.safe_dump({"apiVersion": "v1", "kind": "Pod",
                          "metadata": {"name": "first", "labels": {"lambdalet.io/enabled": "true"}},
                          "spec": {**VIRTUAL, "containers": [{"name": "main", "image": IMAGE,
                                                              "command": ["sleep", "3600"]}]}})
    assert k("apply", "-f", "-", stdin=pod).stdout.strip() == "pod/first created"
    k("wait", "--for=condition=Ready", "pod/first", "--timeout=90s")
    table = k("get", "pods", "-o", "wide").stdout.splitlines()
    golden_header = (GOLDEN / "kubectl-get.txt").read_text().splitlines()[0]
    assert table[0].split() == golden_header.split()
    row = next(ln.split() for ln in table if ln.startswith("first "))
    assert row[1:3] == ["1/1", "Running"] and row[6] == node

    described = k("describe", "pod", "first").stdout
    golden_keys = {ln.split(":")[0] for ln in (GOLDEN / "kubectl-describe.txt").read_text().splitlines()
                   if re.match(r"^[A-Z][\w -]*:", ln)}
    keys = {ln.split(":")[0] for ln in described.splitlines() if re.match(r"^[A-Z][\w -]*:", ln)}
    assert golden_keys - keys - {"Message"} == set(), described  # Message: only when status.message is set
    assert "PodReadyToStartContainers   True" in described
    assert re.search(r"Normal\s+Scheduled\s.*Successfully assigned default/first to " + node, described)

    events = k("get", "events").stdout.splitlines()
    assert events[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert any("pod/first" in ln and "Scheduled" in ln for ln in events)

    assert k("label", "pod", "first", "tier=demo").stdout.strip() == "pod/first labeled"
    assert k("get", "pods", "-l", "tier=demo", "-o", "name").stdout.split() == ["pod/first"]
    assert k("annotate", "pod", "first", "note=hi").stdout.strip() == "pod/first annotated"

    # Controllers: create deployment (no toleration: Pending, as on a real cluster), scale
    assert k("create", "deployment", "plain", f"--image={IMAGE}").stdout.strip() == "deployment.apps/plain created"
    assert k("scale", "deployment", "plain", "--replicas=2").stdout.strip() == "deployment.apps/plain scaled"
    k("wait", "--for=jsonpath={.status.replicas}=2", "deployment/plain", "--timeout=30s")
    rs = k("get", "rs", "-l", "app=plain").stdout.splitlines()
    assert rs[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"] and rs[1].split()[1:3] == ["2", "2"]
    k("wait", "--for=jsonpath={.status.conditions[0].reason}=Unschedulable", "pod", "-l", "app=plain",
      "--timeout=30s")

    assert k("apply", "-f", "-", stdin=manifest("Deployment", "site", replicas=2)).stdout.strip() == \
        "deployment.apps/site created"
    assert "successfully rolled out" in k("rollout", "status", "deployment/site", "--timeout=120s").stdout
    deploy = k("get", "deployment", "site").stdout.splitlines()
    assert deploy[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert deploy[1].split()[1:4] == ["2/2", "2", "2"]

    assert k("create", "job", "plain-job", f"--image={IMAGE}", "--", "true").stdout.strip() == \
        "job.batch/plain-job created"
    assert k("apply", "-f", "-", stdin=manifest("Job", "batch", command=["sh", "-c", "echo done"],
                                                completions=2)).stdout.strip() == "job.batch/batch created"
    k("wait", "--for=condition=complete", "job/batch", "--timeout=180s")
    jobs = k("get", "jobs").stdout.splitlines()
    assert jobs[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert next(ln.split() for ln in jobs if ln.startswith("batch "))[1:3] == ["Complete", "2/2"]

    assert k("create", "configmap", "settings", "--from-literal=mode=demo").stdout.strip() == "configmap/settings created"
    assert k("create", "secret", "generic", "creds", "--from-literal=pw=s3cret").stdout.strip() == "secret/creds created"
    cm = k("get", "cm,secret").stdout
    assert re.search(r"^configmap/settings\s+1\s", cm, re.M) and re.search(r"^secret/creds\s+Opaque\s+1\s", cm, re.M)

    lease = k("get", "lease", "-n", "kube-node-lease").stdout.splitlines()
    assert lease[0].split() == ["NAME", "HOLDER", "AGE"] and lease[1].split()[:2] == [node, node]

    everything = k("get", "all").stdout
    assert "pod/first" in everything and "deployment.apps/site" in everything and "job.batch/batch" in everything
    resources = k("api-resources", "--no-headers").stdout
    for name in ("pods", "deployments", "replicasets", "jobs", "configmaps", "secrets", "leases"):
        assert re.search(rf"^{name}\s", resources, re.M), name
    assert "restartPolicy" in k("explain", "pod.spec").stdout

    bad = yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"},
                          "spec": {"containers": [{"name": "main", "image": IMAGE,
                                                   "resources": {"requests": {"cpu": "-1"}}}]}})
    r = k("apply", "-f", "-", stdin=bad, check=False)
    assert r.returncode != 0
    assert 'The Pod "bad" is invalid: spec.containers[0].resources.requests[cpu]: Invalid value: "-1": ' \
           "must be greater than or equal to 0" in r.stderr

    assert k("delete", "pod", "first", "--wait").stdout.strip() == 'pod "first" deleted'
    assert stack.pod("first") is None
    assert k("delete", "deployment", "site").stdout.strip() == 'deployment.apps "site" deleted'
    k("wait", "--for=delete", "pod", "-l", "app=site", "--timeout=150s")  # garbage-collected, then finalized
    assert k("delete", "ns", "demo", "--wait").stdout.strip() == 'namespace "demo" deleted'
