"""The mutual-TLS front of the kubelet API in the test world, standing in for an
API Gateway custom domain with a truststore (the cluster CA).

Like API Gateway: the TLS handshake fails unless the client presents a
certificate that chains to the truststore; a request that gets through reaches
the Chalice app as an API Gateway proxy event (chalice's own LocalGateway) whose
``requestContext.identity.clientCert`` holds the verified certificate
(``clientCertPem``, ``subjectDN``, ``issuerDN``, ``serialNumber``, ``validity``),
the fields API Gateway documents for mutual TLS. The body is buffered, as a
Lambda proxy integration buffers it.
"""

from __future__ import annotations

import base64
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from chalice.local import LocalGateway


def _dn(name: tuple) -> str:
    """ssl's subject tuples as an RFC 2253 string (most specific last in, first out)."""
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
             "localityName": "L", "stateOrProvinceName": "ST"}
    parts = [f"{short.get(k, k)}={v.replace(',', chr(92) + ',')}" for rdn in name for k, v in rdn]
    return ",".join(reversed(parts))


class _Gateway(LocalGateway):
    """chalice's LocalGateway, with the client certificate in the event as API Gateway puts it."""

    client_cert: threading.local = threading.local()

    def _generate_lambda_event(self, method, path, headers, body):
        event = super()._generate_lambda_event(method, path, headers, body)
        cert = getattr(self.client_cert, "value", None)
        if cert:
            event["requestContext"].setdefault("identity", {})["clientCert"] = cert
        return event


class KubeletFront:
    """HTTPS with required client certificates on 127.0.0.1, into ``app``'s routes."""

    def __init__(self, app, config, server: tuple[str, str], truststore: str, host: str = "127.0.0.1"):
        self.gateway = _Gateway(app, config)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*server)
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(truststore)
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                front.gateway.client_cert.value = front.client_cert(self.connection)
                try:
                    response = front.gateway.handle_request(self.command, self.path, dict(self.headers.items()),
                                                            body)
                finally:
                    front.gateway.client_cert.value = None
                payload = response.get("body") or b""
                if response.get("isBase64Encoded"):
                    payload = base64.b64decode(payload)
                elif isinstance(payload, str):
                    payload = payload.encode()
                self.send_response(response["statusCode"])
                for key, value in (response.get("headers") or {}).items():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # refused handshakes, dropped clients
                pass

        self.httpd = Server((host, 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="kubelet-front", daemon=True)

    @staticmethod
    def client_cert(connection: ssl.SSLSocket) -> dict | None:
        peer = connection.getpeercert()
        if not peer:
            return None
        der = connection.getpeercert(binary_form=True)
        return {"clientCertPem": ssl.DER_cert_to_PEM_cert(der), "subjectDN": _dn(peer.get("subject", ())),
                "issuerDN": _dn(peer.get("issuer", ())), "serialNumber": peer.get("serialNumber", ""),
                "validity": {"notBefore": peer.get("notBefore", ""), "notAfter": peer.get("notAfter", "")}}

    def start(self) -> "KubeletFront":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
