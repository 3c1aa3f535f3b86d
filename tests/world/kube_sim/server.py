"""HTTP/1.1 front end (stdlib ThreadingHTTPServer): adapts requests to Api.handle and
streams watches with chunked transfer encoding. With an ``ssl.SSLContext`` it serves
HTTPS, each connection's handshake in its own thread, and hands the client certificate
(if one was presented) to the API's authenticators."""
from __future__ import annotations

import json
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .api import Api, Request


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY every
    # keep-alive response waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    server_version = "kube-sim"
    api: Api = None  # set per server class

    def log_message(self, *args):  # quiet
        pass

    def _handle(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        cert = self.connection.getpeercert(binary_form=True) if isinstance(self.connection, ssl.SSLSocket) else None
        req = Request(self.command, url.path, query, headers, body, self.client_address[0], raw_query=url.query,
                      client_cert=cert)
        try:
            resp = self.api.handle(req)
        except Exception as e:  # a simulator bug: answer 500 loudly rather than hang the client
            import traceback
            traceback.print_exc()
            err = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": f"kube_sim internal error: {e!r}", "reason": "InternalError", "code": 500}
            self._send(500, json.dumps(err).encode(), "application/json", {})
            return
        if resp.stream is not None:
            self._stream(resp)
            return
        body = resp.body
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self._send(resp.status, body or b"", resp.content_type, resp.headers)

    def _send(self, status, body: bytes, ctype, headers):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            for item in (v if isinstance(v, list) else [v]):
                self.send_header(k, item)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _stream(self, resp):
        self.send_response(resp.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        gen = resp.stream
        try:
            for chunk in gen:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            gen.close()
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # kube-apiserver (Go's net/http) listens with the system's backlog (somaxconn,
    # 4096 on Linux >= 5.4), not socketserver's 5: a burst of clients is queued, not reset.
    request_queue_size = 4096
    tls: ssl.SSLContext | None = None

    def finish_request(self, request, client_address):
        if self.tls is None:
            return super().finish_request(request, client_address)
        # In the connection's thread: a slow or failing handshake blocks no one else.
        try:
            request = self.tls.wrap_socket(request, server_side=True)  # takes the socket over
        except (ssl.SSLError, OSError):
            return  # refused handshake (untrusted client certificate, plain http): the client sees it
        try:
            super().finish_request(request, client_address)
        finally:
            request.close()

    def handle_error(self, request, client_address):
        # Clients (kubectl, urllib3 pools at exit) drop keep-alive connections:
        # normal life for an apiserver, not a traceback on stderr.
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class HttpServer:
    def __init__(self, api: Api, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None):
        handler = type("Handler", (_Handler,), {"api": api})
        self.httpd = _Server((host, port), handler)
        self.httpd.tls = tls
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="kube-sim-http", daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
