"""The audit webhook backend: payloads shaped like the real ones in
tests/fixtures/kube-apiserver-1.36/audit-eventlist*.json, and the batch-mode
delivery behaviour (size/time batching, retry, drop, duplicate, reorder, overflow)
that lambdalet's /audit endpoint must tolerate."""
from __future__ import annotations

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.world.kube_sim import KubeSim
from tests.samples import SAMPLES
from tests.world.kube_sim.testing import node_body, pod_body, sim  # noqa: F401



def sample(name):
    return json.loads((SAMPLES / name).read_text())["items"]


def lifecycle(sim):
    """create -> scheduler binding -> get -> graceful delete -> kubelet's grace-0 delete."""
    sim.request("POST", "/api/v1/nodes", node_body("vk"))
    sim.request("POST", "/api/v1/namespaces/default/pods", pod_body("demo-pod"), query={"fieldValidation": "Strict"},
                headers={"User-Agent": "kubectl/v1.32.4"})
    assert sim.scheduler.run_once() == 1
    uid = sim.request("GET", "/api/v1/namespaces/default/pods/demo-pod").body["metadata"]["uid"]
    sim.request("DELETE", "/api/v1/namespaces/default/pods/demo-pod", {"propagationPolicy": "Background"})
    sim.request("DELETE", "/api/v1/namespaces/default/pods/demo-pod",
                {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
    return uid


def test_events_match_real_payload_shapes(sim):
    got_batches = []
    b = sim.add_audit_webhook(lambda body: got_batches.append(json.loads(body)) or 200)
    uid = lifecycle(sim)
    b.flush()
    assert got_batches[0]["kind"] == "EventList" and got_batches[0]["apiVersion"] == "audit.k8s.io/v1"
    events = b.events
    real = sample("audit-eventlist.json") + sample("audit-eventlist-delete-grace0.json")

    def key(e):
        return (e["verb"], e["objectRef"].get("subresource", ""), e["stage"])
    real_by_key = {key(e): e for e in real}
    assert [key(e) for e in events] == [
        ("create", "", "RequestReceived"), ("create", "", "ResponseComplete"),
        ("create", "binding", "RequestReceived"), ("create", "binding", "ResponseComplete"),
        ("get", "", "RequestReceived"), ("get", "", "ResponseComplete"),
        ("delete", "", "RequestReceived"), ("delete", "", "ResponseComplete"),
        ("delete", "", "RequestReceived"), ("delete", "", "ResponseComplete")]
    for e in events:
        r = real_by_key[key(e)]
        assert set(e) == set(r), (key(e), set(e) ^ set(r))
        assert set(e["objectRef"]) == set(r["objectRef"]), key(e)
        assert e["level"] == "RequestResponse"
    for a, c in zip(events[::2], events[1::2]):
        assert a["auditID"] == c["auditID"] and a["requestReceivedTimestamp"] == c["requestReceivedTimestamp"]
    binding = events[3]
    assert binding["user"]["username"] == "system:kube-scheduler"
    assert binding["requestObject"]["kind"] == "Binding" and binding["requestObject"]["target"]["name"] == "vk"
    assert binding["responseObject"] == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
    assert binding["objectRef"]["uid"] == uid
    graceful, final = events[7], events[9]
    assert graceful["requestObject"] == {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/__internal",
                                         "propagationPolicy": "Background"}
    assert graceful["responseObject"]["metadata"]["deletionGracePeriodSeconds"] == 30
    assert final["requestObject"]["preconditions"] == {"uid": uid}
    assert final["responseObject"]["kind"] == "Pod" and final["responseStatus"] == {"metadata": {}, "code": 200}
    assert events[1]["requestURI"] == "/api/v1/namespaces/default/pods?fieldValidation=Strict"
    assert events[1]["userAgent"] == "kubectl/v1.32.4"
    assert "pod-security.kubernetes.io/enforce-policy" in events[1]["annotations"]


def test_policy_skips_other_resources(sim):
    b = sim.add_audit_webhook(lambda body: 200)
    sim.request("POST", "/api/v1/nodes", node_body("n"))
    sim.request("GET", "/api/v1/namespaces/default")
    b.flush()
    assert b.events == []


def test_batches_by_size_and_flush(sim):
    b = sim.add_audit_webhook(lambda body: 200, batch_max_size=4, batch_max_wait=3600)
    for i in range(3):
        sim.request("GET", f"/api/v1/namespaces/default/pods/p{i}")   # 2 events each
    deadline = time.time() + 2
    while not b.sent and time.time() < deadline:
        time.sleep(0.01)
    assert [len(x["items"]) for x in b.sent] == [4]                # full batch sent by the background thread
    b.flush()
    assert [len(x["items"]) for x in b.sent] == [4, 2]


def test_batch_max_wait_uses_injected_clock():
    now = [dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)]
    with KubeSim(clock=lambda: now[0]) as s:
        b = s.add_audit_webhook(lambda body: 200, batch_max_wait=30)
        s.request("GET", "/api/v1/namespaces/default/pods/x")
        time.sleep(0.15)
        assert b.sent == []                                       # simulated time has not moved
        now[0] += dt.timedelta(seconds=31)
        deadline = time.time() + 2
        while not b.sent and time.time() < deadline:
            time.sleep(0.01)
        assert len(b.sent) == 1 and len(b.sent[0]["items"]) == 2


def test_retry_then_success_and_exhaustion(sim):
    answers = iter([500, 503, 200])
    b = sim.add_audit_webhook(lambda body: next(answers), retries=3, initial_backoff=0.001)
    sim.request("GET", "/api/v1/namespaces/default/pods/x")
    b.flush()
    assert [s for s, _ in b.attempts] == [500, 503, 200] and len(b.sent) == 1
    b2 = sim.add_audit_webhook(lambda body: 500, retries=2, initial_backoff=0.001)
    sim.request("GET", "/api/v1/namespaces/default/pods/y")
    b2.flush()
    assert len(b2.attempts) == 3 and b2.sent == [] and len(b2.dropped_batches) == 1


def test_drop_duplicate_reorder_are_deterministic(sim):
    dropper = sim.add_audit_webhook(lambda body: 200, drop=True)
    dup = sim.add_audit_webhook(lambda body: 200, duplicate=True)
    shuf = [sim.add_audit_webhook(lambda body: 200, reorder=True, seed=7) for _ in range(2)]
    between = sim.add_audit_webhook(lambda body: 200, reorder=True, seed=3, batch_max_size=2)
    for i in range(4):
        sim.request("GET", f"/api/v1/namespaces/default/pods/p{i}")
    time.sleep(0.2)  # let `between` send some full batches in the background, holding events back
    for b in [dropper, dup, between] + shuf:
        b.flush()
    assert dropper.sent == [] and sum(len(x) for x in dropper.dropped_batches) == 8
    assert len(dup.sent) == 2 and dup.sent[0] == dup.sent[1]
    ids = lambda b: [(e["auditID"], e["stage"]) for e in b.events]  # noqa: E731
    assert ids(shuf[0]) == ids(shuf[1])                                 # same seed, same order
    assert sorted(ids(shuf[0])) == sorted(ids(dup)[:8])                # nothing lost
    assert ids(shuf[0]) != ids(dup)[:8]                                 # but reordered
    assert sorted(ids(between)) == sorted(ids(dup)[:8]) and len(between.sent) > 1


def test_buffer_overflow_drops_events(sim):
    gate = threading.Event()
    b = sim.add_audit_webhook(lambda body: gate.wait(2) and 200, buffer_size=3, batch_max_wait=3600)
    for i in range(3):
        sim.request("GET", f"/api/v1/namespaces/default/pods/p{i}")
    assert b.dropped_events == 3
    gate.set()
    b.flush()
    assert len(b.events) == 3


def test_http_sink_receives_eventlists(sim):
    received = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.headers["Content-Type"], json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(200 if len(received) > 1 else 500)   # first delivery fails: retried
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        b = sim.add_audit_webhook(f"http://127.0.0.1:{srv.server_address[1]}/audit", initial_backoff=0.001)
        sim.request("POST", "/api/v1/namespaces/default/pods", pod_body("a"))
        b.flush()
    finally:
        srv.shutdown()
    assert len(received) == 2 and received[0] == received[1]
    ctype, body = received[1]
    assert ctype == "application/json" and body["kind"] == "EventList" and len(body["items"]) == 2
    assert len(b.sent) == 1
