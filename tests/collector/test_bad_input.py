"""Bad PostAgentProfile requests: each is refused with the right status, error code and a message
that names the problem; nothing is stored, and the collector keeps serving."""

from __future__ import annotations

import gzip
import json

import pytest
from botocore.exceptions import ClientError

from codeguru_agent.collector.server import CollectorOptions, CollectorServer
from codeguru_agent.reporting.encoding import encode_ion, encode_json
from support.collector_client import CollectorHandle
from support.documents import deep_document, profile_document


def document_with(change):
    document = profile_document()
    change(document)
    return json.dumps(document).encode()


def frame(document):
    """The first frame below the root of a document's call graph."""
    return next(iter(document["callgraph"]["children"].values()))


def deep_with_bad_leaf():
    document = deep_document(3_000)
    node = document["callgraph"]
    while node.get("children"):
        node = next(iter(node["children"].values()))
    node["counts"] = {"WALL_TIME": "many"}
    return encode_json(document)


BAD_BODIES = {
    "malformed JSON": (b'{"start": 1,', "application/json", "body is not valid JSON"),
    "malformed Ion": (b"\xe0\x01\x00\xea\xee\xff\x00", "application/x-amzn-ion", "body is not valid Ion"),
    "Ion declared as JSON": (encode_ion(profile_document()), "application/json", "body is Ion binary"),
    "unsupported content type": (b"{}", "text/plain", "unsupported content type 'text/plain'"),
    "empty body": (b"", "application/json", "body is empty"),
    "not an object": (b"[1, 2]", "application/json", "profile document must be an object, got a list"),
    "missing start": (document_with(lambda d: d.pop("start")), "application/json", "missing the required key 'start'"),
    "missing callgraph": (
        document_with(lambda d: d.pop("callgraph")),
        "application/json",
        "missing the required key 'callgraph'",
    ),
    "start not an integer": (
        document_with(lambda d: d.update(start="yesterday")),
        "application/json",
        "start must be an integer",
    ),
    "end a boolean": (document_with(lambda d: d.update(end=True)), "application/json", "end must be an integer"),
    "end before start": (document_with(lambda d: d.update(end=d["start"] - 1)), "application/json", "is before start"),
    "agentMetadata a list": (
        document_with(lambda d: d.update(agentMetadata=[])),
        "application/json",
        "agentMetadata must be an object",
    ),
    "durationInMs a string": (
        document_with(lambda d: d["agentMetadata"].update(durationInMs="60s")),
        "application/json",
        "agentMetadata.durationInMs must be an integer",
    ),
    "agentInfo.type a number": (
        document_with(lambda d: d["agentMetadata"]["agentInfo"].update(type=7)),
        "application/json",
        "agentMetadata.agentInfo.type must be a string",
    ),
    "sampleWeights not numbers": (
        document_with(lambda d: d["agentMetadata"].update(sampleWeights={"WALL_TIME": "fast"})),
        "application/json",
        "agentMetadata.sampleWeights.WALL_TIME must be a number",
    ),
    "debugInfo a string": (
        document_with(lambda d: d.update(debugInfo="none")),
        "application/json",
        "debugInfo must be an object",
    ),
    "callgraph a list": (
        document_with(lambda d: d.update(callgraph=[])),
        "application/json",
        "callgraph must be an object",
    ),
    "children a list": (
        document_with(lambda d: d["callgraph"].update(children=[])),
        "application/json",
        "callgraph root: children must be an object",
    ),
    "a node not an object": (
        document_with(lambda d: d["callgraph"]["children"].update({"app:broken": 3})),
        "application/json",
        "callgraph node 'app:broken' at depth 1 must be an object",
    ),
    "a count a string": (
        document_with(lambda d: frame(d).update(counts={"WALL_TIME": "3"})),
        "application/json",
        "counts.WALL_TIME must be a non-negative integer",
    ),
    "a count negative": (
        document_with(lambda d: frame(d).update(counts={"WALL_TIME": -1})),
        "application/json",
        "counts.WALL_TIME must be a non-negative integer",
    ),
    "line not a list": (
        document_with(lambda d: frame(d).update(line=3)),
        "application/json",
        "line must be [n] or [min, max]",
    ),
    "line too long": (
        document_with(lambda d: frame(d).update(line=[1, 2, 3])),
        "application/json",
        "line must be [n] or [min, max]",
    ),
    "file a number": (document_with(lambda d: frame(d).update(file=1)), "application/json", "file must be a string"),
    "deep bad count": (deep_with_bad_leaf(), "application/json", "at depth 3000: counts.WALL_TIME"),
    "broken gzip": (b"\x1f\x8b\x08\x00garbage", "application/json", "gzip"),
}


def refused(call):
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response


def assert_still_serving(collector):
    client = collector.client()
    answer = client.post_agent_profile(
        profilingGroupName="orders", agentProfile=json.dumps(profile_document()), contentType="application/json"
    )
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 204


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_a_bad_body_is_a_validation_error(collector, case):
    body, content_type, message = BAD_BODIES[case]
    collector.create_group("orders")
    client = collector.client(max_attempts=1)

    response = refused(
        lambda: client.post_agent_profile(profilingGroupName="orders", agentProfile=body, contentType=content_type)
    )

    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == "ValidationException"
    assert message in response["Error"]["Message"]
    assert collector.profiles("orders") == []
    assert_still_serving(collector)


@pytest.mark.parametrize(
    "token, problem",
    [("has spaces", "profileToken 'has spaces' is invalid"), ("x" * 65, "1 to 64 letters"), ("ünïcode", "is invalid")],
)
def test_an_invalid_profile_token_is_a_validation_error(collector, token, problem):
    collector.create_group("orders")
    client = collector.client(max_attempts=1)

    response = refused(
        lambda: client.post_agent_profile(
            profilingGroupName="orders",
            agentProfile=json.dumps(profile_document()),
            contentType="application/json",
            profileToken=token,
        )
    )

    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == "ValidationException"
    assert problem in response["Error"]["Message"]
    assert collector.profiles("orders") == []


def test_an_unsupported_content_encoding_is_a_validation_error(collector):
    collector.create_group("orders")
    client = collector.client(max_attempts=1)
    client.meta.events.register(
        "before-sign.codeguruprofiler.PostAgentProfile",
        lambda request, **_: request.headers.__setitem__("Content-Encoding", "br"),
    )

    response = refused(
        lambda: client.post_agent_profile(
            profilingGroupName="orders", agentProfile=b"{}", contentType="application/json"
        )
    )

    assert response["Error"]["Code"] == "ValidationException"
    assert "unsupported Content-Encoding 'br'" in response["Error"]["Message"]


def test_an_unknown_group_is_not_found(collector):
    client = collector.client(max_attempts=1)

    response = refused(
        lambda: client.post_agent_profile(
            profilingGroupName="ghost", agentProfile=json.dumps(profile_document()), contentType="application/json"
        )
    )

    assert response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert response["Error"]["Code"] == "ResourceNotFoundException"
    assert "'ghost' does not exist" in response["Error"]["Message"]
    assert collector.profiles("ghost") == []


@pytest.fixture
def small_collector(tmp_path):
    """A collector that takes bodies of at most 64 KiB."""
    options = CollectorOptions(db_path=str(tmp_path / "db"), test_hooks=True, max_body_bytes=64 * 1024)
    with CollectorServer(options) as server:
        handle = CollectorHandle(server.url)
        handle.create_group("orders")
        yield handle


def test_a_body_over_the_limit_is_refused_before_it_is_read(small_collector):
    client = small_collector.client(max_attempts=1)
    body = b" " * (4 * 2**20) + json.dumps(profile_document()).encode()

    response = refused(
        lambda: client.post_agent_profile(
            profilingGroupName="orders", agentProfile=body, contentType="application/json"
        )
    )

    assert response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert response["Error"]["Code"] == "ValidationException"
    assert (
        f"request body of {len(body)} bytes is over the collector's limit of 65536 bytes"
        in response["Error"]["Message"]
    )
    assert small_collector.profiles("orders") == []
    assert_still_serving(small_collector)


def test_a_body_that_decompresses_over_the_limit_is_refused(small_collector):
    client = small_collector.client(max_attempts=1)
    bomb = gzip.compress(b'{"start": ' + b" " * (8 * 2**20) + b"1}")

    response = refused(
        lambda: client.post_agent_profile(
            profilingGroupName="orders", agentProfile=bomb, contentType="application/json"
        )
    )

    assert response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert "decompresses to more than the collector's limit of 65536 bytes" in response["Error"]["Message"]
    assert small_collector.profiles("orders") == []
