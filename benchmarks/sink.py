"""A local endpoint that accepts every upload: CodeGuru, Datadog and Pyroscope requests alike.

Run as ``python sink.py``; it prints ``listening on http://127.0.0.1:PORT`` and serves until killed.
CodeGuru's ConfigureAgent gets a valid AgentConfiguration (so the official agent keeps profiling)
and PostAgentProfile gets 204; everything else gets 200 ``{}``. ``GET /__counts`` tells how many
requests and bytes each kind of request brought, so the suite can show that every agent uploaded.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

CONFIGURATION: Final = json.dumps({"shouldProfile": True, "periodInSeconds": 300, "agentParameters": {}}).encode()

_lock = threading.Lock()
_requests: Counter[str] = Counter()
_bytes: Counter[str] = Counter()


class SinkHandler(BaseHTTPRequestHandler):
    """Reads each request body whole, counts it, and answers what its client expects."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.startswith("/__counts"):
            with _lock:
                body = json.dumps({"requests": dict(_requests), "bytes": dict(_bytes)}).encode()
            self._answer(200, body)
            return
        self._count(0)
        self._answer(200, b"{}")

    def do_POST(self) -> None:
        size = len(self._body())
        self._count(size)
        if "/configureAgent" in self.path:
            self._answer(200, CONFIGURATION)
        elif "/agentProfile" in self.path:
            self._answer(204, b"")
        else:
            self._answer(200, b"{}")

    do_PUT = do_POST

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                chunk = self.rfile.read(size + 2)[:size]
                if size == 0:
                    return b"".join(chunks)
                chunks.append(chunk)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _count(self, size: int) -> None:
        kind = self.path.split("?", 1)[0].rsplit("/", 1)[-1] or "/"
        with _lock:
            _requests[kind] += 1
            _bytes[kind] += size

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None  # one line per request would only be noise


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SinkHandler)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
