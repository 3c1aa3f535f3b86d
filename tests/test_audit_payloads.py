"""Audit EventList parsing against batches captured from kube-apiserver 1.36."""

import json

import pytest
from pydantic import ValidationError

from chalicelib.kube.payloads import parse_batch, pod_touch
from tests.samples import sample


def touches(batch: dict):
    _, events, problems = parse_batch(json.dumps(batch).encode())
    return [t for t in map(pod_touch, events) if t], problems


def test_real_batch_yields_the_binding_and_the_delete():
    found, problems = touches(sample("audit-eventlist.json"))
    assert problems == []
    assert [(t.why, t.namespace, t.name, t.node) for t in found] == [
        ("binding", "demo", "demo-pod", "vk-test"),
        ("delete", "demo", "demo-pod", "vk-test"),
    ]
    assert all(t.uid == "1bd47beb-026c-4a60-95f6-3df9c511fb9c" for t in found)


def test_request_received_stage_and_gets_are_ignored():
    batch = sample("audit-eventlist.json")
    batch["items"] = [e for e in batch["items"] if e["stage"] == "RequestReceived" or e["verb"] == "get"]
    assert touches(batch) == ([], [])


def test_failed_binding_is_ignored():
    batch = sample("audit-eventlist.json")
    for event in batch["items"]:
        if event.get("responseStatus"):
            event["responseStatus"]["code"] = 409
    assert touches(batch)[0] == []


def test_one_malformed_event_is_reported_and_its_neighbours_kept():
    batch = sample("audit-eventlist.json")
    batch["items"].insert(2, {"stage": "ResponseComplete", "verb": 7})
    batch["items"].insert(0, "not an object")
    found, problems = touches(batch)
    assert len(found) == 2
    assert len(problems) == 2 and problems[0].startswith("items[0]")


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"kind": "Pod", "apiVersion": "v1", "items": []}',
                                  b'{"kind": "EventList", "apiVersion": "audit.k8s.io/v1"}'])
def test_a_body_that_is_no_eventlist_is_refused(body):
    with pytest.raises(ValidationError):
        parse_batch(body)


def test_a_kubelet_style_final_delete_costs_nothing():
    """Grace 0 with a UID precondition is what lambdalet sends once the machines
    have stopped: its audit echo wakes nothing (the reconciler still sweeps)."""
    found, _ = touches(sample("audit-eventlist-delete-grace0.json"))
    assert found == []


def test_a_forced_delete_without_precondition_is_still_a_delete():
    batch = sample("audit-eventlist-delete-grace0.json")
    for event in batch["items"]:
        if event["verb"] == "delete" and event.get("requestObject"):
            event["requestObject"] = {"kind": "DeleteOptions", "gracePeriodSeconds": 0,
                                      "propagationPolicy": "Background"}  # kubectl delete --force
    found, _ = touches(batch)
    assert [t.why for t in found] == ["delete"]
