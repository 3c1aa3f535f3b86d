"""Kubernetes Events for the pod lifecycle, aggregated as kubelet's recorder does.

One Event object per (pod, type, reason, message): its name is derived from
them, so a repeat is a 409 on create and becomes count+1 on the existing
object, never one object per reconcile.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from chalicelib.kube.client import KubeClient
from chalicelib.timefmt import rfc3339

COMPONENT = "lambdalet"


def event_name(pod: dict, type_: str, reason: str, message: str) -> str:
    meta = pod["metadata"]
    digest = hashlib.sha256(f"{meta['uid']}|{type_}|{reason}|{message}".encode()).hexdigest()[:16]
    return f"{meta['name']}.{digest}"


def event_body(pod: dict, node: str, type_: str, reason: str, message: str, now: datetime) -> dict:
    meta = pod["metadata"]
    stamp = rfc3339(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": event_name(pod, type_, reason, message), "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT, "host": node},
        "reportingComponent": COMPONENT,
        "reportingInstance": node,
        "count": 1,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
    }


def record(kube: KubeClient, node: str, pod: dict, type_: str, reason: str, message: str, now: datetime) -> None:
    body = event_body(pod, node, type_, reason, message, now)
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    if kube.create_event(namespace, body):
        return
    existing = kube.get_event(namespace, name)
    if existing is None:
        return
    kube.patch_event(namespace, name, {
        "metadata": {"resourceVersion": existing["metadata"]["resourceVersion"]},
        "count": int(existing.get("count") or 1) + 1,
        "lastTimestamp": rfc3339(now),
    })
