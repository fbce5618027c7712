"""A recording reverse proxy in front of the session's SeaweedFS: the S3 endpoint of the tenant namespaces.

Every request that reaches it is recorded (method, bucket/key path, decoded query, the access key id
of its signature) and forwarded unchanged; the tenancy tests read the record to prove what a tenant's
identity read — and that a URI outside its allow-list was never listed or read by anyone through it.
"""

from __future__ import annotations

import http.client
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

# Headers that belong to one hop, not to the request (RFC 9110 §7.6.1).
HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
ACCESS_KEY = re.compile(r"Credential=([^/,\s]+)/")


@dataclass(frozen=True)
class S3Request:
    method: str
    path: str  # /bucket/key, decoded
    query: dict[str, str]
    access_key: str | None

    def touches(self, text: str) -> bool:
        """`text` in the path or any query value (a listing names its prefix in the query)."""
        return text in self.path or any(text in value for value in self.query.values())


class S3Recorder:
    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream)
        self.requests: list[S3Request] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # the record is the log
                pass

            def forward(self) -> None:
                url = urlsplit(self.path)
                auth = self.headers.get("Authorization", "")
                found = ACCESS_KEY.search(auth)
                recorder.record(S3Request(self.command, unquote(url.path), dict(parse_qsl(url.query, keep_blank_values=True)),
                                          found.group(1) if found else None))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                connection = http.client.HTTPConnection(recorder.upstream.hostname, recorder.upstream.port, timeout=120)
                try:
                    connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for name, value in self.headers.items():
                        if name.lower() not in HOP_HEADERS:
                            connection.putheader(name, value)
                    connection.endheaders(body)
                    response = connection.getresponse()
                    payload = response.read()
                except OSError as error:
                    self.send_error(502, f"upstream: {error}")
                    return
                finally:
                    connection.close()
                self.send_response(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in HOP_HEADERS and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="s3-recorder", daemon=True)

    def record(self, request: S3Request) -> None:
        with self._lock:
            self.requests.append(request)

    def seen(self) -> list[S3Request]:
        with self._lock:
            return list(self.requests)

    def start(self) -> "S3Recorder":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
