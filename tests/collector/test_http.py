"""HTTP/1.1 framing: keep-alive across answers and errors, and requests the server must survive."""

from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import urlsplit

import pytest

from support.documents import profile_document


def address(collector):
    parts = urlsplit(collector.url)
    return parts.hostname, parts.port


@pytest.fixture
def connection(collector):
    connection = http.client.HTTPConnection(*address(collector), timeout=10)
    yield connection
    connection.close()


def exchange(connection, method, path, body=None, headers=None):
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response.status, response.getheader("x-amzn-ErrorType"), response.read(), response


def test_one_connection_carries_answers_and_errors(collector, connection):
    collector.create_group("orders")
    profile = json.dumps(profile_document())

    status, code, body, _ = exchange(connection, "GET", "/profilingGroups/orders/nowhere")
    sock = connection.sock
    assert (status, code) == (404, "UnknownOperationException")
    assert b"no operation at GET /profilingGroups/orders/nowhere" in body
    assert exchange(
        connection, "POST", "/profilingGroups/orders/agentProfile", b"{", {"Content-Type": "application/json"}
    )[:2] == (
        400,
        "ValidationException",
    )
    assert (
        exchange(
            connection, "POST", "/profilingGroups/orders/agentProfile", profile, {"Content-Type": "application/json"}
        )[0]
        == 204
    )
    status, _, body, response = exchange(connection, "GET", "/profilingGroups")
    assert status == 200 and json.loads(body) == {"profilingGroupNames": ["orders"]}
    assert response.getheader("Content-Type") == "application/json"
    assert connection.sock is sock


def test_chunked_bodies_are_refused_and_the_connection_closed(collector, connection):
    connection.putrequest("POST", "/profilingGroups")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    connection.send(b"2\r\n{}\r\n0\r\n\r\n")
    response = connection.getresponse()

    assert response.status == 411
    assert b"send a Content-Length" in response.read()
    assert response.getheader("Connection") == "close"


def test_an_oversized_body_announced_with_expect_100_is_refused_before_it_is_sent(collector):
    with socket.create_connection(address(collector), timeout=10) as raw:
        raw.sendall(
            b"POST /profilingGroups/orders/agentProfile HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 999999999\r\nExpect: 100-continue\r\n\r\n"
        )
        answer = raw.makefile("rb").read()

    assert answer.startswith(b"HTTP/1.1 413")
    assert b"request body of 999999999 bytes is over the collector's limit" in answer


def test_a_body_cut_short_is_not_stored_and_the_server_carries_on(collector):
    collector.create_group("orders")
    profile = json.dumps(profile_document()).encode()
    with socket.create_connection(address(collector), timeout=10) as raw:
        raw.sendall(
            b"POST /profilingGroups/orders/agentProfile?profileToken=cut HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(profile) + profile[:-10]
        )
        raw.shutdown(socket.SHUT_WR)
        assert raw.makefile("rb").read() == b""

    assert collector.profiles("orders") == []
    assert collector.client().list_profiling_groups()["profilingGroupNames"] == ["orders"]


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n\r\n",
        b"GET\r\n\r\n",
        b"POST /profilingGroups HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    ],
    ids=["tls-hello", "no-path", "negative-length"],
)
def test_garbage_gets_an_error_and_the_server_carries_on(collector, garbage):
    with socket.create_connection(address(collector), timeout=10) as raw:
        raw.sendall(garbage)
        raw.shutdown(socket.SHUT_WR)
        answer = raw.makefile("rb").read()

    assert b"400" in answer
    assert collector.client().list_profiling_groups()["profilingGroupNames"] == []
