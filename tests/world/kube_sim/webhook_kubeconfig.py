"""A webhook kubeconfig read as kube-apiserver reads it (client-go's clientcmd).

kube-apiserver builds its audit and admission webhook clients from a
kubeconfig through client-go: ``DirectClientConfig.ClientConfig()``
(k8s.io/client-go/tools/clientcmd/client_config.go) sets the server URL and
then, "only try to read the auth information if we are secure", merges the
user's credentials (token, tokenFile, client certificate) and the cluster's
CA only when ``rest.IsConfigTransportTLS`` holds — the server URL's scheme is
https (rest/transport.go, through ``DefaultServerURL``; at that point the
config has no TLS material yet, so a scheme-less host counts as http). An
``http://`` webhook URL is therefore called with no Authorization header at
all: seen against a real v1.36 apiserver (DESIGN.md, platform facts).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field


@dataclass(frozen=True)
class WebhookClient:
    url: str
    headers: dict[str, str] = field(default_factory=dict)  # what each call carries
    ca_data: str | None = None  # None: the system trust store (or no TLS)


def _named(items: list[dict], name: str, what: str) -> dict:
    for item in items or []:
        if item.get("name") == name:
            return item
    raise ValueError(f"kubeconfig: no {what} named {name!r}")


def client_for(kubeconfig: dict) -> WebhookClient:
    """The URL and headers of the calls kube-apiserver makes with ``kubeconfig``."""
    context = _named(kubeconfig.get("contexts"), kubeconfig.get("current-context", ""), "context")["context"]
    cluster = _named(kubeconfig.get("clusters"), context["cluster"], "cluster")["cluster"]
    user = {}
    if context.get("user"):
        user = _named(kubeconfig.get("users"), context["user"], "user").get("user") or {}
    server = cluster["server"]
    headers = {"Content-Type": "application/json"}
    if urllib.parse.urlsplit(server).scheme != "https":
        return WebhookClient(server, headers)  # client-go reads no credentials, no CA
    token = user.get("token")
    if not token and user.get("tokenFile"):
        with open(user["tokenFile"]) as f:
            token = f.read().strip()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return WebhookClient(server, headers, cluster.get("certificate-authority-data"))
