"""The Kubernetes side: a thin, scoped client over the official `kubernetes` library.

We call the generated ``CoreV1Api``/``CoordinationV1Api`` methods with
``_preload_content=False`` and read raw JSON: the typed models cost cold-start
time and memory on every Lambda scale-out (DESIGN.md, Budgets) and we read only
a handful of fields. Every method does exactly one API call (lists: one per
page) and maps the HTTP outcomes we act on to return values, so the core never
inspects an ApiException.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from typing import Any

from kubernetes.client import ApiClient, Configuration, CoordinationV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PAGE_SIZE = 500
# (connect, read) seconds: a hung apiserver must not eat a webhook's or a
# heartbeat's whole budget; the next invocation retries.
TIMEOUT = (3, 10)
POOL_SIZE = 16  # pooled connections (the default is 5 per CPU)


class KubeError(RuntimeError):
    """An API answer we cannot act on (auth, 5xx, ...): the invocation fails and is retried."""


def api_client(url: str, token: str | Callable[[], str] | None, ca_bundle: str = "",
               client_pem: str = "") -> ApiClient:
    """An ApiClient for ``url``. ``token`` may be a callable: it is asked again
    before every request (cache it), so a rotated service-account token is
    picked up by warm Lambda containers. ``client_pem`` (certificate + key, the
    node identity mode) authenticates by TLS client certificate instead."""
    config = Configuration(host=url)
    config.connection_pool_maxsize = POOL_SIZE  # the converger's threads share one client
    if token is not None:
        config.api_key_prefix = {"BearerToken": "Bearer"}  # the key the generated client's auth settings read
        # auth_settings() only sends a key that is present: the hook replaces it before each use.
        config.api_key = {"BearerToken": "" if callable(token) else token}
        if callable(token):
            config.refresh_api_key_hook = lambda conf: conf.api_key.update(BearerToken=token())
    if client_pem:
        # One PEM holds both: the client reads the key from the certificate file too (ssl.load_cert_chain).
        with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as handle:
            handle.write(client_pem)
        config.cert_file = config.key_file = handle.name
    if ca_bundle:
        # The client wants a file; Lambda's /tmp is writable and per-container.
        with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as handle:
            handle.write(ca_bundle)
        config.ssl_ca_cert = handle.name
    return ApiClient(config)


def _json(response: Any) -> dict:
    return json.loads(response.data)


class KubeClient:
    """The calls lambdalet's service account is allowed to make, nothing more."""

    def __init__(self, client: ApiClient):
        self.core = CoreV1Api(client)
        self.coordination = CoordinationV1Api(client)

    # pods ---------------------------------------------------------------
    def list_node_pods(self, node: str) -> list[dict]:
        """Every pod bound to ``node``, all namespaces, one call per page.

        A continue token that expired (410 Expired: the apiserver compacted
        the list's resourceVersion) restarts the list once from the first page,
        as client-go's pager does (tools/pager ListPager, FullListIfExpired):
        pages from two resourceVersions are never mixed."""
        for attempt in range(2):
            pods, token = [], None
            try:
                while True:
                    kwargs = {"_continue": token} if token else {}
                    page = self._send(self.core.list_pod_for_all_namespaces,
                                      field_selector=f"spec.nodeName={node}", limit=PAGE_SIZE, **kwargs)
                    pods.extend(page.get("items") or [])
                    token = (page.get("metadata") or {}).get("continue")
                    if not token:
                        return pods
            except KubeError as err:
                if attempt or token is None or getattr(err.__cause__, "status", None) != 410:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def get_pod(self, namespace: str, name: str) -> dict | None:
        """The pod, or None when it is gone, or (node identity: the Node authorizer answers
        403 for any pod not bound to the node) not ours to read."""
        return self._send(self.core.read_namespaced_pod, name, namespace, absent=(403, 404))

    def patch_pod_status(self, pod: dict, status: dict) -> dict | None:
        """Replace the pod's status lists (merge patch), guarded by its resourceVersion.

        Returns the updated pod, or None when the pod changed or vanished since
        we read it (409/404): the next pass recomputes from fresh state.
        """
        meta = pod["metadata"]
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status}
        return self._send(self.core.patch_namespaced_pod_status, meta["name"], meta["namespace"], body,
                          absent=(404, 409), _content_type=MERGE_PATCH)

    def finalize_pod(self, namespace: str, name: str, uid: str) -> bool:
        """Delete the pod object for good, as a kubelet does once its containers are gone:
        grace period 0 and a UID precondition, so a new pod of the same name is never hit."""
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        return self._send(self.core.delete_namespaced_pod, name, namespace, body=body, absent=(404, 409)) is not None

    # what pods reference ------------------------------------------------
    def get_config_map(self, namespace: str, name: str) -> dict | None:
        return self._send(self.core.read_namespaced_config_map, name, namespace, absent=(404,))

    def get_secret(self, namespace: str, name: str) -> dict | None:
        """A Secret the pod references. Its values go to the backend only, never to a log or an error."""
        return self._send(self.core.read_namespaced_secret, name, namespace, absent=(404,))

    # events -------------------------------------------------------------
    def create_event(self, namespace: str, event: dict) -> bool:
        """Create a core/v1 Event; False when one of that name exists already."""
        return self._send(self.core.create_namespaced_event, namespace, event, absent=(409,)) is not None

    def get_event(self, namespace: str, name: str) -> dict | None:
        """None also when forbidden: a node identity may create and patch Events but not
        read them (the Node authorizer's NodeRules), so a repeat is then not counted."""
        return self._send(self.core.read_namespaced_event, name, namespace, absent=(403, 404))

    def patch_event(self, namespace: str, name: str, patch: dict) -> None:
        self._send(self.core.patch_namespaced_event, name, namespace, patch,
                   absent=(404, 409), _content_type=MERGE_PATCH)

    # nodes and leases ---------------------------------------------------
    def get_node(self, name: str) -> dict | None:
        return self._send(self.core.read_node, name, absent=(404,))

    def create_node(self, node: dict) -> dict | None:
        return self._send(self.core.create_node, node, absent=(409,))

    def patch_node_status(self, name: str, status: dict) -> None:
        self._send(self.core.patch_node_status, name, {"status": status}, _content_type=STRATEGIC_MERGE_PATCH)

    def get_lease(self, namespace: str, name: str) -> dict | None:
        return self._send(self.coordination.read_namespaced_lease, name, namespace, absent=(404,))

    def create_lease(self, namespace: str, lease: dict) -> dict | None:
        return self._send(self.coordination.create_namespaced_lease, namespace, lease, absent=(409,))

    def replace_lease(self, namespace: str, lease: dict) -> dict | None:
        """PUT the lease with its resourceVersion; None on a conflict."""
        return self._send(self.coordination.replace_namespaced_lease, lease["metadata"]["name"], namespace, lease,
                          absent=(404, 409))

    # the one place an ApiException is looked at ---------------------------
    def _send(self, method, *args, absent: tuple[int, ...] = (), **kwargs) -> dict | None:
        """Call ``method``; its JSON body, or None for the statuses in ``absent``
        (the outcomes the caller acts on). Anything else is a KubeError."""
        try:
            return _json(method(*args, _preload_content=False, _request_timeout=TIMEOUT, **kwargs))
        except ApiException as err:
            if err.status in absent:
                return None
            raise KubeError(f"{method.__name__}: {err.status} {err.reason}: {err.body}") from err
