"""The collector's HTTP server: framing, routing, signatures, injected faults, and its lifecycle.

Standard library only: ``http.server`` with HTTP/1.1 keep-alive (every answer has a Content-Length
or is a 204, every request body is read in full before answering, and a connection whose body is
not read is closed), one thread per connection, and a stop that ends idle connections, lets busy
ones finish their request, and joins every thread.

    with CollectorServer(CollectorOptions(port=0, test_hooks=True)) as server:
        boto3.client("codeguruprofiler", endpoint_url=server.url, ...)
"""

from __future__ import annotations

import ipaddress
import json
import logging
import selectors
import socket
import socketserver
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Callable, Dict, Final, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import parse_qsl, unquote, urlsplit

from codeguru_agent.collector import auth, hooks
from codeguru_agent.collector.api import AgentConfigurations, ApiError, Request, Response, Service
from codeguru_agent.collector.faults import Fault, FaultInjector, RequestJournal
from codeguru_agent.collector.store import Store, StoreError
from codeguru_agent.collector.validate import Invalid

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES: Final = 16 * 2**20
IDLE_TIMEOUT_S: Final = 60.0
"""How long a connection may sit between requests (or stall mid-request) before it is closed."""
STOP_TIMEOUT_S: Final = 5.0
DRAIN_TIMEOUT_S: Final = 2.0
_ROUTES: Final = {
    ("POST", ""): "CreateProfilingGroup",
    ("GET", ""): "ListProfilingGroups",
    ("GET", "{}"): "DescribeProfilingGroup",
    ("PUT", "{}"): "UpdateProfilingGroup",
    ("DELETE", "{}"): "DeleteProfilingGroup",
    ("POST", "{}/configureAgent"): "ConfigureAgent",
    ("POST", "{}/agentProfile"): "PostAgentProfile",
    ("GET", "{}/profile"): "GetProfile",
    ("GET", "{}/profileTimes"): "ListProfileTimes",
    ("GET", "{}/flamegraph.html"): "FlameGraph",
    ("GET", "{}/export"): "Export",
}
"""(method, path below /profilingGroups with the group name as {}) to the operation."""
_VIEWER_OPERATIONS: Final = ("FlameGraph", "Export", "Index")
"""The pages for people (collector/pages.py): served like operations, never journaled."""
_FORWARDED_HEADERS: Final = ("content-type", "content-encoding", "accept", "authorization")
"""The headers operations read (Authorization only for the region of an ARN)."""
_JOURNALED_HEADERS: Final = ("content-type", "content-encoding")


class CollectorError(Exception):
    """The collector cannot run as asked; the message says why and what to do."""


@dataclass(frozen=True)
class CollectorOptions:
    """How to run a collector; the command line maps one to one onto these."""

    host: str = "127.0.0.1"
    port: int = 0
    db_path: str = ":memory:"
    auto_create: bool = False
    test_hooks: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    access_key: Optional[str] = None
    secret_key: Optional[str] = None
    should_profile: Optional[bool] = None
    period_s: Optional[int] = None
    agent_parameters: Mapping[str, str] = field(default_factory=dict)
    faults: Sequence[Fault] = ()


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses, the only ones served without signatures."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def route(method: str, path: str) -> Optional[Tuple[str, Optional[str]]]:
    """The operation and profiling group name a request path stands for, or None."""
    if method == "GET" and path in ("/", "/index.html"):
        return "Index", None
    segments = path.split("/")
    if len(segments) < 2 or segments[0] or segments[1] != "profilingGroups":
        return None
    rest = segments[2:]
    group = unquote(rest[0]) if rest else None
    operation = _ROUTES.get((method, "/".join(["{}"] + rest[1:]) if rest else ""))
    return (operation, group) if operation else None


class CollectorServer:
    """A collector serving on a background thread; ``start()``/``stop()`` or a ``with`` block."""

    def __init__(self, options: CollectorOptions) -> None:
        _check(options)
        self.options = options
        self.keys = (
            auth.Keys(options.access_key, options.secret_key) if options.access_key and options.secret_key else None
        )
        self.stopping = threading.Event()
        self.faults = FaultInjector(options.faults)
        self.journal = RequestJournal() if options.test_hooks else None
        try:
            self.configurations = AgentConfigurations(
                options.should_profile, options.period_s, options.agent_parameters
            )
        except Invalid as error:
            raise CollectorError(f"bad agent configuration override: {error}") from None
        self.service: Optional[Service] = None
        self.admin: Optional[hooks.Admin] = None
        self._store: Optional[Store] = None
        self._httpd: Optional[_HTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        """``http://host:port`` with the port actually bound; valid once started."""
        if self._httpd is None:
            raise CollectorError("the collector is not started")
        port = self._httpd.server_address[1]
        host = f"[{self.options.host.strip('[]')}]" if ":" in self.options.host else self.options.host
        return f"http://{host}:{port}"

    def start(self) -> CollectorServer:
        """Open the database, bind the port and serve on a daemon thread."""
        if self._httpd is not None:
            return self
        try:
            self._store = Store(self.options.db_path)
        except StoreError as error:
            raise CollectorError(str(error)) from None
        self.service = Service(self._store, self.configurations, self.options.auto_create, self.options.max_body_bytes)
        if self.options.test_hooks:
            assert self.journal is not None
            self.admin = hooks.Admin(self._store, self.faults, self.journal, self.configurations)
        family = socket.AF_INET6 if ":" in self.options.host else socket.AF_INET
        try:
            self._httpd = _HTTPServer((self.options.host.strip("[]"), self.options.port), self, family)
        except OSError as error:
            self._store.close()
            raise CollectorError(
                f"cannot listen on {self.options.host}:{self.options.port}: {error.strerror or error}"
            ) from None
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, args=(self._httpd,), name="codeguru-collector", daemon=True)
        self._thread.start()
        return self

    def _serve(self, httpd: _HTTPServer) -> None:
        """Accept connections until stopped; a byte on the wake socket ends the wait at once,
        where ``serve_forever`` would poll."""
        with selectors.DefaultSelector() as selector:
            selector.register(httpd.socket, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not self.stopping.is_set():
                if any(key.fileobj is httpd.socket for key, _ in selector.select()):
                    httpd.handle_request()

    def stop(self) -> None:
        """Stop accepting, finish requests in flight, close connections and the database; idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.stopping.set()
        self._wake_writer.send(b"x")
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
        httpd.server_close()
        httpd.close_connections(STOP_TIMEOUT_S)
        self._wake_reader.close()
        self._wake_writer.close()
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> CollectorServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def _check(options: CollectorOptions) -> None:
    if bool(options.access_key) != bool(options.secret_key):
        raise CollectorError("give both --access-key and --secret-key, or neither")
    if not is_loopback(options.host):
        if not options.access_key:
            raise CollectorError(
                f"refusing to listen on {options.host}: it is not a loopback address, so anyone who can reach it "
                "could post and read profiles; give --access-key and --secret-key to require SigV4 signatures"
            )
        if options.test_hooks:
            raise CollectorError("--test-hooks is only allowed on a loopback address")
    if options.max_body_bytes < 1:
        raise CollectorError("the body size limit must be at least 1 byte")


class _HTTPServer(HTTPServer):
    """HTTPServer with one tracked daemon thread per connection, so that stop can end them all."""

    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: Tuple[str, int], collector: CollectorServer, family: int) -> None:
        self.address_family = family
        self.collector = collector
        self._lock = threading.Lock()
        self._connections: Dict[socket.socket, List[Any]] = {}
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind also resolves its fully qualified name, which can hang without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection, args=(request, client_address), name="codeguru-collector-conn", daemon=True
        )
        with self._lock:
            self._connections[request] = [thread, False]
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # the connection's boundary: one broken connection must not end the server
            self.handle_error(request, client_address)
        finally:
            with self._lock:
                self._connections.pop(request, None)
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)

    def set_busy(self, connection: socket.socket, busy: bool) -> None:
        """Mark a connection as in a request (stop waits for it) or idle (stop closes it)."""
        with self._lock:
            entry = self._connections.get(connection)
            if entry is not None:
                entry[1] = busy

    def close_connections(self, timeout_s: float) -> None:
        """End idle connections now and join every connection thread within ``timeout_s``."""
        with self._lock:
            entries = list(self._connections.items())
        for connection, (_, busy) in entries:
            if not busy:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        deadline = time.monotonic() + timeout_s
        for _, (thread, _) in entries:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    """One connection: reads each request in full, answers it, and keeps the connection alive."""

    protocol_version = "HTTP/1.1"
    server_version = "codeguru-collector"
    timeout = IDLE_TIMEOUT_S
    disable_nagle_algorithm = True
    server: _HTTPServer
    _journal: Optional[Callable[[Optional[int], bool], None]] = None
    """Records the request being answered in the test journal, once, just before its answer goes out."""
    _faulted = False

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_GET

    def handle_expect_100(self) -> bool:
        """Refuse an oversized body before the client sends it, when it asks first."""
        length = self.headers.get("Content-Length", "")
        limit = self.server.collector.options.max_body_bytes
        if length.isdigit() and int(length) > limit:
            self.close_connection = True
            self._send_error(_too_large(int(length), limit))
            return False
        return super().handle_expect_100()

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        finally:
            self.server.set_busy(self.connection, False)

    def parse_request(self) -> bool:
        # A request has begun once its first line is in: from here a stop waits for its answer,
        # through the headers, a ``100 Continue`` and the body, instead of closing the connection.
        self.server.set_busy(self.connection, True)
        return super().parse_request()

    def _serve(self) -> None:
        self._serve_request(self.server.collector)

    def _serve_request(self, collector: CollectorServer) -> None:
        received_ms = int(time.time() * 1000)
        target = urlsplit(self.path)
        body = self._read_body(collector.options.max_body_bytes)
        if body is None:
            return
        query = dict(parse_qsl(target.query, keep_blank_values=True))
        if target.path.startswith("/_test/"):
            hook = hooks.ROUTES.get((self.command, target.path[len("/_test/") :]))
            if hook is None or collector.admin is None:
                self._send_error(_unknown(self.command, target.path))
            else:
                self._send_result(lambda: collector.admin.handle(hook, query, body))  # type: ignore[union-attr]
            return
        found = route(self.command, target.path)
        if found is None:
            self._send_error(_unknown(self.command, target.path))
            return
        operation, group = found
        headers = {name: str(self.headers[name]) for name in _FORWARDED_HEADERS if name in self.headers}
        request = Request(operation, group, query, headers, body)
        journal = collector.journal if operation not in _VIEWER_OPERATIONS else None
        if journal is not None:
            # Journaled before the answer goes out: a client that reads the journal right after its
            # answer must find its own request there.
            self._journal = lambda status, faulted: journal.record(
                _journal_entry(request, received_ms, status, faulted)
            )
        try:
            status, faulted = self._answer(collector, request)
            if status is None and self._journal is not None:  # a dropped connection sends nothing
                self._journal(None, faulted)
        finally:
            self._journal = None

    def _answer(self, collector: CollectorServer, request: Request) -> Tuple[Optional[int], bool]:
        """Authenticate, apply any injected fault, run the operation; the status sent (None if dropped)."""
        self._faulted = False
        if collector.keys is not None:
            try:
                auth.verify(collector.keys, self.command, self.path, self.headers, request.body)
            except auth.AuthError as error:
                return self._send_error(ApiError(error.code, str(error), 403)), False
        fault = collector.faults.take(request.operation)
        self._faulted = fault is not None
        if fault is not None:
            if fault.delay_ms:
                collector.stopping.wait(fault.delay_ms / 1000)
            if fault.drop:
                self.close_connection = True
                return None, True
            if fault.status is not None:
                return self._send_error(ApiError(fault.error_code, fault.error_message, fault.status)), True
        assert collector.service is not None
        service = collector.service
        return self._send_result(lambda: service.handle(request)), fault is not None

    def _read_body(self, limit: int) -> Optional[bytes]:
        """The whole request body, or None after answering (and closing) when it cannot be read."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._send_error(
                ApiError("ValidationException", "Transfer-Encoding is not supported: send a Content-Length", 411)
            )
            return None
        text = self.headers.get("Content-Length") or "0"
        if not text.isdigit():
            self.close_connection = True
            self._send_error(ApiError("ValidationException", f"Content-Length {text!r} is not a number"))
            return None
        length = int(text)
        if length > limit:
            self.close_connection = True
            self._send_error(_too_large(length, limit))
            self._drain(length)
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            return None
        return body

    def _drain(self, length: int) -> None:
        """Discard what the client is still sending (a lingering close): closing with unread data
        would reset the connection and could destroy our answer before the client reads it."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        try:
            while length > 0 and time.monotonic() < deadline:
                self.connection.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = self.rfile.read1(min(length, 2**16))
                if not chunk:
                    return
                length -= len(chunk)
        except OSError:
            pass

    def _send_result(self, produce: Callable[[], Response]) -> int:
        try:
            response = produce()
        except ApiError as error:
            return self._send_error(error)
        except Exception:  # the API boundary: a bug costs one request a 500, never the server
            logger.exception("%s %s failed", self.command, self.path)
            return self._send_error(
                ApiError("InternalServerException", "the collector failed on this request: see its log", 500)
            )
        return self._send(response)

    def _send_error(self, error: ApiError) -> int:
        body = json.dumps({"message": error.message}).encode("utf-8")
        return self._send(Response(error.status, body, "application/json"), error.code)

    def _send(self, response: Response, error_code: Optional[str] = None) -> int:
        if self._journal is not None:
            self._journal(response.status, self._faulted)
            self._journal = None
        if self.server.collector.stopping.is_set():
            self.close_connection = True
        self.send_response(response.status)
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if error_code is not None:
            self.send_header("x-amzn-ErrorType", error_code)
        has_body = response.status not in (204, 304)
        if has_body:
            self.send_header("Content-Type", response.content_type or "application/octet-stream")
            self.send_header("Content-Length", str(len(response.body)))
        if response.filename is not None:
            self.send_header("Content-Disposition", f'attachment; filename="{response.filename}"')
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if has_body:
            self.wfile.write(response.body)
        return response.status


def _unknown(method: str, path: str) -> ApiError:
    return ApiError("UnknownOperationException", f"the collector serves no operation at {method} {path}", 404)


def _too_large(length: int, limit: int) -> ApiError:
    return ApiError(
        "ValidationException",
        f"request body of {length} bytes is over the collector's limit of {limit} bytes (see --max-body-mb)",
        413,
    )


def _journal_entry(request: Request, received_ms: int, status: Optional[int], faulted: bool) -> Dict[str, Any]:
    entry: Dict[str, Any] = {
        "operation": request.operation,
        "profilingGroupName": request.group_name,
        "query": dict(request.query),
        "headers": {name: request.headers[name] for name in _JOURNALED_HEADERS if name in request.headers},
        "receivedAt": received_ms,
        "status": status,
        "fault": faulted,
    }
    if request.operation != "PostAgentProfile" and request.body:
        try:
            entry["body"] = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            entry["body"] = request.body.decode("utf-8", "replace")
    return entry
