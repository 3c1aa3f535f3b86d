"""The virtual Node: its object (pure builders) and its heartbeat (Node status + Lease)."""

from __future__ import annotations

from datetime import datetime

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # building the Node object (admission, wiring) needs no Kubernetes client
    from chalicelib.kube.client import KubeClient
from chalicelib.timefmt import micro_time, rfc3339


LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
KUBELET_VERSION = "v1.36.0-lambdalet"


def conditions(now: datetime, current: list[dict] | None = None) -> list[dict]:
    """Healthy node conditions; transition times kept where the status is unchanged."""
    stamp = rfc3339(now)
    before = {c.get("type"): c for c in current or []}

    def condition(kind: str, status: str, reason: str, message: str) -> dict:
        old = before.get(kind) or {}
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": stamp, "lastTransitionTime": since or stamp}

    return [
        condition("Ready", "True", "KubeletReady", "lambdalet is posting ready status"),
        condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "the cloud has memory"),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "the cloud has disk"),
        condition("PIDPressure", "False", "KubeletHasSufficientPID", "the cloud has PIDs"),
        condition("NetworkUnavailable", "False", "RouteCreated", "machines have their own network"),
    ]


def kubelet_address(name: str, endpoint: str) -> tuple[list[dict], int]:
    """(status.addresses, kubelet port) for the kubelet API at ``endpoint``
    ("host[:port]", "{node}" standing for the node's name; default port 443).

    kube-apiserver picks the first address of the first type in its
    ``--kubelet-preferred-address-types`` (default Hostname, InternalDNS,
    InternalIP, ExternalDNS, ExternalIP; kubeadm puts InternalIP first). The
    endpoint is a DNS name, so it is offered under every DNS type and no IP is
    offered at all: whatever the preference, the apiserver dials that name.
    No endpoint: the node's own name and port 0 (nothing served)."""
    if not endpoint:
        return [{"type": "Hostname", "address": name}], 0
    host, _, port = endpoint.replace("{node}", name).partition(":")
    return [{"type": kind, "address": host} for kind in ("Hostname", "InternalDNS", "ExternalDNS")], int(port or 443)


def node_object(name: str, backend: str, region: str, capacity: dict[str, str], now: datetime,
                kubelet_endpoint: str = "") -> dict:
    addresses, port = kubelet_address(name, kubelet_endpoint)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "type": "virtual-kubelet",
                "kubernetes.io/role": "agent",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "lambdalet.io/backend": backend,
                "topology.kubernetes.io/region": region,
            },
        },
        "spec": {
            "taints": [{"key": "virtual-kubelet.io/provider", "value": backend, "effect": "NoSchedule"}],
        },
        "status": {
            "capacity": dict(capacity),
            "allocatable": dict(capacity),
            "conditions": conditions(now),
            "addresses": addresses,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "nodeInfo": {
                "machineID": name, "systemUUID": name, "bootID": "",
                "kernelVersion": "", "osImage": f"lambdalet {backend}",
                "containerRuntimeVersion": f"{backend}://lambdalet",
                "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "",
                "operatingSystem": "linux", "architecture": "amd64",
            },
        },
    }


def lease_object(node: str, node_uid: str | None, now: datetime) -> dict:
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node, "namespace": LEASE_NAMESPACE},
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": micro_time(now),
        },
    }
    if node_uid:  # as kubelet does: the lease goes away with its node
        lease["metadata"]["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}
        ]
    return lease


def register(kube: KubeClient, node_obj: dict) -> dict:
    """The node as it is in the cluster, creating it on first use."""
    name = node_obj["metadata"]["name"]
    return kube.get_node(name) or kube.create_node(node_obj) or kube.get_node(name)
