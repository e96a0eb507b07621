"""The profile document and its JSON/Ion encodings: the keys the service reads, at any depth."""

from __future__ import annotations

import gzip
import json
import sys

import pytest

from codeguru_agent.reporting import encoding
from codeguru_agent.reporting.document import (
    AGENT_TYPE,
    ERROR_COUNTERS,
    Frame,
    Profile,
    Provenance,
    build_callgraph,
    build_document,
    merge_callgraph,
    total_count,
)

MAIN = Frame("app.main:<module>", "/srv/app/app/main.py", 10)


def provenance(**errors: int) -> Provenance:
    return Provenance(
        fleet_info={"id": "host-1", "type": "UNKNOWN", "vCPUs": 2},
        agent_version="1.0",
        agent_start_time="2026-01-01T00:00:00.000Z",
        process_id=42,
        errors=errors,
    )


def profile(stacks: dict, ticks: int = 10, duration_ms: int = 2000) -> Profile:
    return Profile(
        start_ms=1_000,
        end_ms=1_000 + duration_ms,
        duration_ms=duration_ms,
        stacks=stacks,
        num_times_sampled=ticks,
        threads_seen=2 * ticks,
        cpu_time_s=0.5,
        agent_cpu_ms=7,
    )


def test_the_document_has_the_official_keys_and_meanings() -> None:
    stacks = {(MAIN, Frame("app.worker:Worker:run", "/srv/app/app/worker.py", 20)): 15, (MAIN, Frame("<Sleep>")): 5}
    document = build_document(profile(stacks), provenance(postAgentProfileErrors=2))
    assert list(document) == ["start", "end", "agentMetadata", "callgraph", "debugInfo"]
    metadata = document["agentMetadata"]
    assert metadata["sampleWeights"] == {"WALL_TIME": 5.0}  # 10 ticks in 2 s
    assert metadata["durationInMs"] == 2000
    assert metadata["agentInfo"] == {"type": AGENT_TYPE, "version": "1.0"}
    assert metadata["agentOverhead"] == {"memoryInMB": 0, "timeInMs": 7}
    assert metadata["metrics"] == {"numThreads": 2.0}
    assert metadata["numTimesSampled"] == 10
    assert metadata["fleetInfo"]["id"] == "host-1"
    errors = document["debugInfo"]["errorsCount"]
    assert list(errors)[: len(ERROR_COUNTERS)] == list(ERROR_COUNTERS)
    assert errors["postAgentProfileErrors"] == 2
    assert document["debugInfo"]["processId"] == 42


def test_the_call_graph_has_self_counts_and_line_ranges() -> None:
    worker = Frame("app.worker:work", "/srv/app/app/worker.py", 20)
    stacks = {(MAIN, worker): 3, (Frame(MAIN.name, MAIN.file, 12), Frame(worker.name, worker.file, 25)): 4}
    graph = build_callgraph(stacks.items())
    main = graph["children"]["app.main:<module>"]
    assert main["line"] == [10, 12] and "counts" not in main
    assert main["children"]["app.worker:work"] == {
        "file": "/srv/app/app/worker.py",
        "line": [20, 25],
        "counts": {"WALL_TIME": 7},
    }
    assert total_count(graph) == 7


def test_merging_call_graphs_adds_counts_and_widens_lines() -> None:
    one = build_callgraph({(MAIN, Frame("m:f", "/m.py", 3)): 2}.items())
    two = build_callgraph(
        {(Frame(MAIN.name, MAIN.file, 14), Frame("m:f", "/m.py", 9)): 5, (MAIN, Frame("m:g", "/m.py", 30)): 1}.items()
    )
    merged = merge_callgraph(one, two)
    main = merged["children"]["app.main:<module>"]
    assert main["line"] == [10, 14]
    assert main["children"]["m:f"]["counts"] == {"WALL_TIME": 7}
    assert main["children"]["m:f"]["line"] == [3, 9]
    assert total_count(merged) == 8


def deep_stack(depth: int) -> tuple:
    return tuple(Frame(f"deep:f{i}", "/deep.py", i + 1) for i in range(depth))


@pytest.mark.parametrize("profile_format", ["json", "ion"])
def test_documents_round_trip_through_both_formats(profile_format: str) -> None:
    document = build_document(profile({(MAIN, Frame("m:ünïcode", "/m.py", 1)): 3}), provenance())
    encoded = encoding.encode(document, profile_format)
    assert encoded.content_type == encoding.content_type_for(profile_format)
    assert encoding.decode(encoded.body, encoded.content_type) == document


def test_ion_is_smaller_than_json_for_a_realistic_profile() -> None:
    stacks = {
        (MAIN, Frame(f"pkg.mod{i % 40}:Class{i % 7}:method{i}", f"/srv/app/pkg/mod{i % 40}.py", i)): i
        for i in range(1, 400)
    }
    document = build_document(profile(stacks), provenance())
    ion = encoding.encode(document, "ion").body
    assert len(ion) < len(encoding.encode_json(document))


@pytest.mark.parametrize("depth", [600, 3000])
def test_stacks_deeper_than_the_recursion_limit_still_encode(depth: int) -> None:
    document = build_document(profile({deep_stack(depth): 1}), provenance())
    as_json = encoding.encode(document, "json")
    decoded = encoding.decode(as_json.body, as_json.content_type)
    assert encoding.encode_json(decoded) == as_json.body  # (== on dicts this deep would recurse)
    as_ion = encoding.encode(document, "ion")  # too deep for the Ion reader: sent as JSON, not lost
    assert as_ion.content_type == encoding.JSON_CONTENT_TYPE
    assert as_ion.body == as_json.body, "the fallback is the same JSON document, whole"


DEEP_JSON_LEVELS = 100_000
"""Far past any recursion limit: the depth at which recursive parsers crash CPython 3.9 and 3.10."""


def test_json_nested_a_hundred_thousand_levels_decodes_without_touching_the_recursion_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = ('{"children":' * DEEP_JSON_LEVELS + '{"leaf":[1,2.5,"x",null]}' + "}" * DEEP_JSON_LEVELS).encode()

    def refuse(limit: int) -> None:
        raise AssertionError("decoding changed the process-wide recursion limit")

    monkeypatch.setattr(sys, "setrecursionlimit", refuse)  # shared by every thread of the host
    node = encoding.decode(body, "application/json")

    for _ in range(DEEP_JSON_LEVELS):
        node = node["children"]
    assert node == {"leaf": [1, 2.5, "x", None]}


@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEEP_JSON_LEVELS,
        b'{"a":' * DEEP_JSON_LEVELS + b"1" + b"]" * DEEP_JSON_LEVELS,
    ],
)
def test_broken_json_nested_a_hundred_thousand_levels_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(encoding.DecodeError, match="not valid JSON"):
        encoding.decode(body, "application/json")


def test_decode_reads_gzip_and_ion_text_and_names_the_problem_otherwise() -> None:
    document = {"start": 1, "callgraph": {}}
    assert encoding.decode(gzip.compress(json.dumps(document).encode()), "application/json") == document
    assert encoding.decode(b"{start: 1, callgraph: {}}", "application/x-amzn-ion") == document
    with pytest.raises(encoding.DecodeError, match="not valid JSON"):
        encoding.decode(b"{nope", "application/json")
    with pytest.raises(encoding.DecodeError, match="unsupported content type"):
        encoding.decode(b"{}", "text/plain")
    with pytest.raises(encoding.DecodeError, match="Ion binary"):
        encoding.decode(encoding.encode_ion(document), "application/json")
