"""Fuzzing every HTTP entry point (/audit, /admission/validate, /admission/mutate)
with hypothesis: bodies generated and mutated from the real samples in
tests/fixtures/kube-apiserver-1.36, sent through the app's real routes
(chalice.test.Client) into the whole test world (simulator + moto + Fargate
plane), with the webhook token. Properties: no 5xx and no escaped exception;
no internal error logged (an admission bug is answered "allowed": the answer
alone would hide it); every rejection is a 4xx with a reason; a rejected call
changes nothing (the simulator's resourceVersion and the ECS tasks stay as
they were).

Size: ``LAMBDALET_FUZZ_EXAMPLES`` bodies in all (CI: 300; ``./dev fuzz``: 10,000).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.samples import SAMPLES, sample
from tests.world.stack import NODE, WEBHOOK_HEADERS, Stack, virtual_pod

TOTAL = int(os.environ.get("LAMBDALET_FUZZ_EXAMPLES", "300"))
ROUTES = ("/audit", "/admission/validate", "/admission/mutate")
FIGURES: dict[str, Counter] = {route: Counter() for route in ROUTES}

# Keys the entry points read: mutations put odd values under them too.
KEYS = ["kind", "apiVersion", "request", "uid", "operation", "dryRun", "object", "oldObject", "subResource",
        "resource", "namespace", "name", "target", "metadata", "spec", "containers", "resources", "requests",
        "limits", "cpu", "memory", "tolerations", "nodeSelector", "nodeName", "items", "stage", "verb",
        "objectRef", "responseStatus", "code", "requestObject", "responseObject", "auditID", "subresource"]


def _seeds() -> dict[str, list]:
    """The real samples, pointed at the stack's node and its pod ("demo/demo-pod")."""
    reviews = [sample(p.name) for p in sorted(SAMPLES.glob("admission-*.json"))]
    audits = [sample(p.name) for p in sorted(SAMPLES.glob("audit-*.json"))]
    text = json.dumps({"r": reviews, "a": audits}).replace('"vk-test"', json.dumps(NODE))
    seeds = json.loads(text)
    return {"/audit": seeds["a"], "/admission/validate": seeds["r"], "/admission/mutate": seeds["r"]}


SEEDS = _seeds()

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                    st.text(max_size=20), st.sampled_from(["-1", "1e999999", "NaN", "", "CREATE", "pods", "binding",
                                                           NODE, "100000", "0.5", "yes", "true"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner,
                                                 max_size=4)), max_leaves=8)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from _paths(value, prefix + (index,))


def _mutate_once(draw, doc):
    paths = list(_paths(doc))
    path = draw(st.sampled_from(paths))
    op = draw(st.sampled_from(["replace", "delete", "add-key", "wrap", "empty"]))
    if not path:
        return draw(json_values) if op == "replace" else doc
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if op == "replace":
        parent[last] = draw(json_values)
    elif op == "delete":
        del parent[last]
    elif op == "add-key" and isinstance(parent[last], dict):
        parent[last][draw(st.sampled_from(KEYS))] = draw(json_values)
    elif op == "wrap":
        parent[last] = [parent[last]]
    else:
        parent[last] = {} if isinstance(parent[last], dict) else [] if isinstance(parent[last], list) else ""
    return doc


@st.composite
def bodies(draw, route: str) -> bytes:
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "bytes", "generated"]))
    if kind == "generated":
        return json.dumps(draw(json_values)).encode()
    doc = copy.deepcopy(draw(st.sampled_from(SEEDS[route])))
    for _ in range(draw(st.integers(1, 3))):
        doc = _mutate_once(draw, doc)
    raw = json.dumps(doc).encode()
    if kind == "bytes":  # truncate, splice or flip bytes of a real body
        at = draw(st.integers(0, len(raw)))
        raw = draw(st.sampled_from([raw[:at], raw[:at] + draw(st.binary(max_size=8)) + raw[at:],
                                    raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1:] if at < len(raw) else raw]))
    return raw


@pytest.fixture(scope="module")
def world():
    logging.getLogger("lambdalet").addHandler(ERRORS)
    with Stack(connect_audit=False, admission=False) as stack:
        stack.reconcile()
        stack.core.create_namespace({"metadata": {"name": "demo"}})
        stack.create_pod(virtual_pod("demo-pod", command=["sh", "-c", "sleep 100000"]), namespace="demo")
        yield stack
    logging.getLogger("lambdalet").removeHandler(ERRORS)


def _world_state(stack: Stack) -> tuple:
    """The simulator's last resourceVersion and moto's tasks (read in-process: a boto
    call through mock_aws costs ~80 ms, too much per fuzzed body)."""
    tasks = stack.plane._backend().tasks
    return stack.sim.api.store.rv, sum(len(by_arn) for by_arn in tasks.values())


class _Errors(logging.Handler):
    """lambdalet's ERROR records: an internal error answered "allowed" is a bug the answer hides."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()} {record.exc_text or ''}")


ERRORS = _Errors()


def _check(stack: Stack, route: str, body: bytes) -> None:
    before = _world_state(stack)
    ERRORS.records.clear()
    response = stack.client.http.post(route, headers=WEBHOOK_HEADERS, body=body)
    FIGURES[route][response.status_code] += 1
    assert ERRORS.records == [], (ERRORS.records, body[:500])
    assert response.status_code < 500, (response.status_code, response.body[:500], body[:500])
    answer = json.loads(response.body)
    if response.status_code >= 400:
        assert response.status_code in (400, 413), response.status_code
        assert isinstance(answer.get("Message"), str) and len(answer["Message"]) > 10, answer
        assert _world_state(stack) == before, ("a rejected call changed the world", body[:500])
    elif route != "/audit":
        assert answer["kind"] == "AdmissionReview" and isinstance(answer["response"]["allowed"], bool)


def test_fuzz_every_http_entry_point(world, record_property):
    for route in ROUTES:
        @settings(max_examples=max(1, -(-TOTAL // len(ROUTES))), deadline=None, database=None,  # at least TOTAL
                  suppress_health_check=list(HealthCheck))
        @given(body=bodies(route))
        def run(body):
            _check(world, route, body)
        run()
    figures = "; ".join(f"{route}: {sum(c.values())} bodies, by status {dict(sorted(c.items()))}"
                        for route, c in FIGURES.items())
    record_property("figures", f"fuzz: {figures}")
    print(f"\nfuzz: {figures}")
    assert sum(sum(c.values()) for c in FIGURES.values()) >= TOTAL
    assert all(c[400] > 0 and c[200] > 0 for c in FIGURES.values())  # both kinds of answer were exercised


def test_the_seeds_themselves_are_accepted(world):
    for route in ROUTES:
        for seed in SEEDS[route]:
            response = world.client.http.post(route, headers=WEBHOOK_HEADERS, body=json.dumps(seed).encode())
            assert response.status_code == 200, (route, response.body[:300])
