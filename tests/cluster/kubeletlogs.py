"""The kubelet's log endpoint for pods the pod bridge runs, so `GET …/pods/<pod>/log` works end to end.

kube-apiserver answers a pod's log request by calling the kubelet of the pod's node:
`https://<node InternalIP>:<status.daemonEndpoints.kubeletEndpoint.Port>/containerLogs/<ns>/<pod>/<container>`.
The fake nodes advertise 127.0.0.1 and this server's port (tests/cluster/controlplane.py), and the
API server verifies this server's certificate against the tier's CA (`--kubelet-certificate-authority`).
It serves the pod's output as the bridge captured it; `follow=true` streams until the pod's process ends.
"""

from __future__ import annotations

import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

# (namespace, pod) → (log file, still running?) or None when the bridge never ran that pod.
LogLookup = Callable[[str, str], "tuple[Path, Callable[[], bool]] | None"]


class KubeletLogServer:
    def __init__(self, port: int, cert: Path, key: Path, lookup: LogLookup):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                parts = url.path.strip("/").split("/")
                if len(parts) != 4 or parts[0] != "containerLogs":
                    self.send_error(404, "only /containerLogs/<namespace>/<pod>/<container>")
                    return
                found = lookup(parts[1], parts[2])
                if found is None:
                    self.send_error(404, f"pod {parts[1]}/{parts[2]} has not run on this node")
                    return
                path, running = found
                follow = parse_qs(url.query).get("follow", ["false"])[0] == "true"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    server.stream(path, running if follow else (lambda: False), self.chunk)
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="kubelet-logs", daemon=True)

    @staticmethod
    def stream(path: Path, running: Callable[[], bool], send: Callable[[bytes], None]) -> None:
        """What the file holds, then (while `running()`) what is appended to it."""
        offset = 0
        while True:
            alive = running()
            data = path.read_bytes()[offset:] if path.exists() else b""
            if data:
                send(data)
                offset += len(data)
            if not alive:
                return
            time.sleep(0.2)

    def start(self) -> "KubeletLogServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
