"""PostAgentProfile: every accepted encoding is stored, re-posts are stored once, deep call graphs work."""

from __future__ import annotations

import gzip
import json

import pytest
from amazon.ion import simpleion

from codeguru_agent.collector.server import CollectorOptions, CollectorServer
from codeguru_agent.reporting import deepjson
from codeguru_agent.reporting.encoding import encode_json
from support.collector_client import CollectorHandle
from support.documents import deep_document, profile_document

ENCODERS = {
    "json": (lambda document: json.dumps(document).encode(), "application/json"),
    "ion-binary": (lambda document: simpleion.dumps(document, binary=True), "application/x-amzn-ion"),
    "ion-text": (lambda document: simpleion.dumps(document, binary=False).encode(), "application/x-amzn-ion"),
}


def with_header(client, name, value):
    """Make the client send one more header on PostAgentProfile, as an agent compressing its body would."""

    def add(request, **_):
        request.headers[name] = value

    client.meta.events.register("before-sign.codeguruprofiler.PostAgentProfile", add)
    return client


@pytest.mark.parametrize("compression", ["plain", "gzip", "gzip-undeclared"])
@pytest.mark.parametrize("body_format", sorted(ENCODERS))
def test_each_format_is_stored_as_sent(collector, body_format, compression):
    collector.create_group("orders")
    encode, content_type = ENCODERS[body_format]
    document = profile_document()
    body = encode(document)
    client = collector.client(max_attempts=1)
    if compression != "plain":
        body = gzip.compress(body)
    if compression == "gzip":
        with_header(client, "Content-Encoding", "gzip")

    response = client.post_agent_profile(
        profilingGroupName="orders", agentProfile=body, contentType=content_type, profileToken="t-1"
    )

    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    [stored] = collector.profiles("orders")
    assert stored["document"] == document
    assert stored["profileToken"] == "t-1"
    assert stored["contentType"] == content_type
    assert stored["contentEncoding"] == ("gzip" if compression == "gzip" else None)
    assert (stored["start"], stored["end"]) == (document["start"], document["end"])


def test_the_same_token_is_stored_once_and_still_answers_204(collector):
    collector.create_group("orders")
    client = collector.client()
    body = json.dumps(profile_document())

    answers = [
        client.post_agent_profile(
            profilingGroupName="orders", agentProfile=body, contentType="application/json", profileToken="same"
        )
        for _ in range(3)
    ]

    assert [answer["ResponseMetadata"]["HTTPStatusCode"] for answer in answers] == [204, 204, 204]
    assert len(collector.profiles("orders")) == 1
    assert len(collector.requests("PostAgentProfile")) == 3


def test_a_token_is_per_group(collector):
    client = collector.client()
    body = json.dumps(profile_document())
    for group in ("orders", "billing"):
        collector.create_group(group)
        client.post_agent_profile(
            profilingGroupName=group, agentProfile=body, contentType="application/json", profileToken="same"
        )

    assert len(collector.profiles("orders")) == len(collector.profiles("billing")) == 1


def test_profiles_are_listed_in_arrival_order(collector):
    collector.create_group("orders")
    client = collector.client()
    for start in (3_000, 1_000, 2_000):
        client.post_agent_profile(
            profilingGroupName="orders",
            agentProfile=json.dumps(profile_document(start)),
            contentType="application/json",
        )

    stored = collector.profiles("orders")

    assert [profile["start"] for profile in stored] == [3_000, 1_000, 2_000]
    assert stored[0]["receivedAt"] <= stored[1]["receivedAt"] <= stored[2]["receivedAt"]


def test_a_call_graph_ten_thousand_frames_deep_is_accepted_and_read_back(collector):
    collector.create_group("deep")
    document = deep_document(10_000)
    client = collector.client()

    client.post_agent_profile(
        profilingGroupName="deep", agentProfile=gzip.compress(encode_json(document)), contentType="application/json"
    )
    answer = client.get_profile(profilingGroupName="deep", accept="application/json")

    merged = deepjson.loads(answer["profile"].read().decode())["callgraph"]
    depth, node = 0, merged
    while node.get("children"):
        [node] = node["children"].values()
        depth += 1
    assert depth == 10_000
    assert node["counts"] == {"WALL_TIME": 1}


def test_ion_is_answered_as_json_when_too_deep_for_the_ion_library(collector):
    collector.create_group("deep")
    client = collector.client()
    client.post_agent_profile(
        profilingGroupName="deep", agentProfile=encode_json(deep_document(2_000)), contentType="application/json"
    )

    answer = client.get_profile(profilingGroupName="deep", accept="application/x-amzn-ion")

    assert answer["contentType"] == "application/json"


def test_auto_create_makes_the_group_on_the_first_profile(tmp_path):
    options = CollectorOptions(db_path=str(tmp_path / "db"), auto_create=True, test_hooks=True)
    with CollectorServer(options) as server:
        collector = CollectorHandle(server.url)
        collector.client().post_agent_profile(
            profilingGroupName="fresh", agentProfile=json.dumps(profile_document()), contentType="application/json"
        )

        group = collector.client().describe_profiling_group(profilingGroupName="fresh")["profilingGroup"]
        assert group["computePlatform"] == "Default"
        assert len(collector.profiles("fresh")) == 1
