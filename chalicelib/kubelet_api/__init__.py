"""The kubelet API a node without a kubelet serves: what kube-apiserver calls for
``kubectl logs|exec|attach|port-forward`` and what metrics-server scrapes.

kube-apiserver opens HTTPS to the address and port the Node advertises
(``node.status.addresses``, ``daemonEndpoints.kubeletEndpoint.Port``) and presents
its kubelet client certificate. In AWS that address is an API Gateway custom
domain whose mTLS truststore holds the cluster CA; API Gateway hands the verified
certificate to the function (``requestContext.identity.clientCert``).

- ``auth.py`` (pure): who is calling (the certificate, or a trusted front's
  header) and whether that caller may use this path, by the kubelet's own
  request attributes (``nodes/proxy``, ``nodes/stats``, ...).
- ``logs.py`` (pure): the ``/containerLogs`` query, and the body kubectl prints.
- ``stats.py`` (pure): ``/stats/summary`` and ``/metrics/resource`` from what the cloud measured.
- ``service.py``: the use cases behind each path (reads the pod, asks its node's backend).

Streams (exec, attach, port-forward) cannot be held open by a function: those
paths answer 400 with the cloud's native command for that pod, which kubectl
prints as ``error: Internal error occurred: unable to upgrade connection: <it>``.
"""
