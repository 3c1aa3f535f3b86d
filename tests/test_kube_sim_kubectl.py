"""The real kubectl binary against the simulator: get -o wide, describe, apply
(create and update paths, strict field validation) and delete (which waits on a
watch until the pod is really gone)."""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time

import pytest

from tests.world.kube_sim.testing import node_body, pod_body, sim  # noqa: F401

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH")

POD_YAML = """apiVersion: v1
kind: Pod
metadata:
  name: ap
  labels: {{rev: "{rev}"}}
spec:
  containers:
  - name: main
    image: busybox
{extra}"""


@pytest.fixture
def kubectl(sim, tmp_path):
    kc = sim.write_kubeconfig(tmp_path / "kubeconfig")

    def run(*args, check=True, timeout=40):
        r = subprocess.run(["kubectl", "--kubeconfig", kc, "--cache-dir", str(tmp_path / "cache"), *args],
                           capture_output=True, text=True, timeout=timeout)
        if check:
            assert r.returncode == 0, r.stderr
        return r
    return run


def running(sim, name, node="vk"):
    sim.request("POST", f"/api/v1/namespaces/default/pods/{name}/binding",
                {"metadata": {"name": name}, "target": {"name": node}})
    sim.request("PATCH", f"/api/v1/namespaces/default/pods/{name}/status", {"status": {
        "phase": "Running", "podIP": "10.1.0.5", "hostIP": "10.0.0.1", "startTime": "2026-11-27T12:00:00Z",
        "conditions": [{"type": t, "status": "True"} for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
        "containerStatuses": [{"name": "main", "ready": True, "restartCount": 2, "image": "busybox", "imageID": "",
                               "started": True, "state": {"running": {"startedAt": "2026-11-27T12:00:00Z"}}}]}},
                content_type="application/merge-patch+json")


def test_get_wide_shows_kubectl_status(sim, kubectl):
    for n in ("run", "pend", "term", "done", "crash"):
        sim.request("POST", "/api/v1/namespaces/default/pods", pod_body(n))
    running(sim, "run")
    running(sim, "term")
    sim.request("DELETE", "/api/v1/namespaces/default/pods/term")
    sim.request("PATCH", "/api/v1/namespaces/default/pods/done/status", {"status": {"phase": "Succeeded",
                "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}},
                content_type="application/merge-patch+json")
    sim.request("PATCH", "/api/v1/namespaces/default/pods/crash/status", {"status": {
                "containerStatuses": [{"name": "main", "state": {"waiting": {"reason": "ContainerCreating"}}}]}},
                content_type="application/merge-patch+json")
    out = kubectl("get", "pods", "-o", "wide").stdout.splitlines()
    assert out[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE",
                              "READINESS", "GATES"]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert rows["run"][1:4] == ["1/1", "Running", "2"] and rows["run"][5:7] == ["10.1.0.5", "vk"]
    assert rows["term"][2] == "Terminating"
    assert rows["done"][2] == "Completed"
    assert rows["crash"][2] == "ContainerCreating"
    assert rows["pend"][1:3] == ["0/1", "Pending"]


def test_describe_shows_events_and_conditions(sim, kubectl):
    sim.request("POST", "/api/v1/nodes", node_body("vk"))
    sim.request("POST", "/api/v1/namespaces/default/pods", pod_body("d"))
    sim.scheduler.run_once()
    out = kubectl("describe", "pod", "d").stdout
    assert "Node:             vk/" in out
    assert "Successfully assigned default/d to vk" in out and "default-scheduler" in out
    assert re.search(r"PodScheduled\s+True", out)


def test_apply_create_update_and_strict_validation(sim, kubectl, tmp_path):
    f = tmp_path / "pod.yaml"
    f.write_text(POD_YAML.format(rev=1, extra=""))
    assert "pod/ap created" in kubectl("apply", "-f", str(f)).stdout
    f.write_text(POD_YAML.format(rev=2, extra=""))
    assert "pod/ap configured" in kubectl("apply", "-f", str(f)).stdout
    pod = sim.request("GET", "/api/v1/namespaces/default/pods/ap").body
    assert pod["metadata"]["labels"] == {"rev": "2"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in pod["metadata"]["annotations"]
    f.write_text(POD_YAML.format(rev=3, extra="    bogusField: x\n").replace("name: ap", "name: bad"))
    r = kubectl("apply", "--validate=false", "-f", str(f), check=False)
    assert r.returncode == 0  # validate=false -> fieldValidation=Ignore: dropped silently
    f.write_text(POD_YAML.format(rev=3, extra="    bogusField: x\n").replace("name: ap", "name: bad2"))
    r = kubectl("apply", "-f", str(f), check=False)
    assert r.returncode != 0 and "bogusField" in r.stderr


def test_delete_unbound_pod(sim, kubectl):
    sim.request("POST", "/api/v1/namespaces/default/pods", pod_body("gone"))
    assert 'pod "gone" deleted' in kubectl("delete", "pod", "gone").stdout
    assert sim.request("GET", "/api/v1/namespaces/default/pods/gone").status == 404


def test_delete_bound_pod_waits_for_kubelet_finalization(sim, kubectl):
    sim.request("POST", "/api/v1/namespaces/default/pods", pod_body("b"))
    running(sim, "b")
    uid = sim.request("GET", "/api/v1/namespaces/default/pods/b").body["metadata"]["uid"]
    finalized = []

    def kubelet():  # what lambdalet does once the machine is gone
        deadline = time.time() + 10
        while time.time() < deadline:
            p = sim.request("GET", "/api/v1/namespaces/default/pods/b").body
            if p.get("metadata", {}).get("deletionTimestamp"):
                time.sleep(0.5)
                r = sim.request("DELETE", "/api/v1/namespaces/default/pods/b",
                                {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
                finalized.append(r.status)
                return
            time.sleep(0.05)
    t = threading.Thread(target=kubelet)
    t.start()
    start = time.time()
    r = kubectl("delete", "pod", "b")
    t.join()
    assert 'pod "b" deleted' in r.stdout and finalized == [200]
    assert time.time() - start >= 0.5  # kubectl really waited for the watch's DELETED
