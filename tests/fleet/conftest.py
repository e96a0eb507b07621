"""Local stand-ins for the metadata services, on 127.0.0.1, speaking their real protocols."""

from __future__ import annotations

import ipaddress
import json
import secrets
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Callable, Dict, Iterator, List, Mapping, Tuple

import pytest

Answer = Tuple[int, bytes]
Responder = Callable[[str, str, Mapping[str, str]], Answer]

IMDS_TOKEN_PATH = "/latest/api/token"
IMDS_METADATA_PATH = "/latest/meta-data/"
ECS_TASK_ID = "9781c248-0edd-4cdb-9a93-f63cb662a5d3"
ECS_TASK_ARN = "arn:aws:ecs:us-west-2:111122223333:task/default/" + ECS_TASK_ID


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: Dict[str, str]


class LocalServer:
    """An HTTP/1.0 server in a thread that records each request and answers with ``respond``."""

    def __init__(self, respond: Responder) -> None:
        self.requests: List[Seen] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def handle_one_request_as(self) -> None:
                headers = {name.lower(): value for name, value in self.headers.items()}
                requests.append(Seen(self.command, self.path, headers))
                status, body = respond(self.command, self.path, headers)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = handle_one_request_as

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        # A short poll interval only so that shutdown() returns quickly at teardown.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="test-metadata-server"
        )

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self._server.server_address[1]

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class FakeImds:
    """IMDSv2: a token only from PUT with a TTL header; metadata only with a token it issued."""

    prefix = ""

    def __init__(self) -> None:
        self.metadata = {
            "instance-id": "i-0123456789abcdef0",
            "instance-type": "m5.large",
            "local-hostname": "ip-10-0-1-23.us-west-2.compute.internal",
        }
        self.tokens: List[str] = []

    def __call__(self, method: str, path: str, headers: Mapping[str, str]) -> Answer:
        if path == IMDS_TOKEN_PATH:
            if method != "PUT":
                return 405, b""
            ttl = headers.get("x-aws-ec2-metadata-token-ttl-seconds", "")
            if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return 400, b""
            self.tokens.append(secrets.token_urlsafe(32))
            return 200, self.tokens[-1].encode()
        if method != "GET":
            return 405, b""
        if headers.get("x-aws-ec2-metadata-token") not in self.tokens:
            return 401, b""
        value = self.metadata.get(path[len(IMDS_METADATA_PATH) :]) if path.startswith(IMDS_METADATA_PATH) else None
        return (404, b"") if value is None else (200, value.encode())


def fargate_task() -> Dict[str, Any]:
    """A task metadata v4 document as Fargate serves it (trimmed to one container)."""
    return {
        "Cluster": "arn:aws:ecs:us-west-2:111122223333:cluster/default",
        "TaskARN": ECS_TASK_ARN,
        "Family": "query-metadata",
        "Revision": "7",
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Limits": {"CPU": 0.25, "Memory": 512},
        "PullStartedAt": "2020-10-02T00:43:06.202617438Z",
        "PullStoppedAt": "2020-10-02T00:43:06.31288465Z",
        "AvailabilityZone": "us-west-2d",
        "LaunchType": "FARGATE",
        "Containers": [
            {
                "DockerId": ECS_TASK_ID.replace("-", "") + "-524788293",
                "Name": "~internal~ecs~pause",
                "DockerName": "ecs-query-metadata-7-internalecspause-e8c8b3c5b5d5a4e6",
                "Image": "amazon/amazon-ecs-pause:0.1.0",
                "Labels": {"com.amazonaws.ecs.task-arn": ECS_TASK_ARN},
                "Limits": {"CPU": 0, "Memory": 0},
                "Type": "CNI_PAUSE",
                "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.0.108"]}],
            }
        ],
        "ClockDrift": {"ClockErrorBound": 0.5, "ReferenceTime": "2021-09-07T16:57:44Z"},
    }


class FakeEcsMetadata:
    """Task metadata endpoint v4: ``{uri}/task`` and ``{uri}`` (the container); bytes are served as they are."""

    prefix = "/v4/" + ECS_TASK_ID.replace("-", "") + "-524788293"

    def __init__(self) -> None:
        self.task: Any = fargate_task()

    def __call__(self, method: str, path: str, headers: Mapping[str, str]) -> Answer:
        if method != "GET":
            return 405, b""
        if path == self.prefix + "/task":
            return 200, self.task if isinstance(self.task, bytes) else json.dumps(self.task).encode()
        if path == self.prefix:
            return 200, json.dumps(self.task["Containers"][0]).encode()
        return 404, b""


@dataclass
class Service:
    """A fake service and its server; ``url`` is the base URL a client is given."""

    fake: Any
    server: LocalServer

    @property
    def url(self) -> str:
        return self.server.url + self.fake.prefix

    @property
    def requests(self) -> List[Seen]:
        return self.server.requests


@pytest.fixture
def imds() -> Iterator[Service]:
    fake = FakeImds()
    with LocalServer(fake) as server:
        yield Service(fake, server)


@pytest.fixture
def ecs_metadata() -> Iterator[Service]:
    fake = FakeEcsMetadata()
    with LocalServer(fake) as server:
        yield Service(fake, server)


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A port that completes TCP connections (from its backlog) but never reads or answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield "http://127.0.0.1:%d" % listener.getsockname()[1]


@pytest.fixture
def refusing_endpoint() -> Iterator[str]:
    """A port that is bound but not listening: every connection is refused at once."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield "http://127.0.0.1:%d" % bound.getsockname()[1]


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any test that lets detection connect anywhere but loopback (169.254.169.254 above all).

    Detection swallows errors by design, so the refused address is recorded and checked afterwards.
    """
    for name in (
        "AWS_LAMBDA_FUNCTION_NAME",
        "LAMBDA_TASK_ROOT",
        "ECS_CONTAINER_METADATA_URI_V4",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    refused: List[str] = []
    connect = socket.create_connection

    def loopback_connection(address: Tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        if not _is_loopback(address[0]):
            refused.append(address[0])
            raise ConnectionRefusedError(f"test refused a connection to {address[0]}")
        return connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", loopback_connection)
    yield
    assert refused == [], f"connections attempted outside loopback: {refused}"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"
