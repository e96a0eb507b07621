"""Ion: each call-graph node's file path is a symbol, written once however many nodes share it, and
the document read back (by our decoder or by amazon.ion with symbols as text) is the JSON one."""

from __future__ import annotations

import copy
import json
from typing import Any, Iterator

import pytest
from amazon.ion import simpleion
from amazon.ion.core import IonType

from codeguru_agent.reporting import encoding
from codeguru_agent.reporting.document import Frame, Profile, Provenance, build_document, walk_callgraph

FILES = [f"/srv/app/.venv/lib/python3.11/site-packages/pkg/module{i}.py" for i in range(5)]


def realistic_document() -> dict:
    stacks = {}
    for leaf in range(200):
        stack = tuple(
            Frame(f"pkg.module{depth % 5}:Class:f{depth}_{leaf % (depth + 1)}", FILES[depth % 5], depth + 1)
            for depth in range(12)
        )
        stacks[stack] = leaf + 1
    profile = Profile(
        start_ms=1_000,
        end_ms=61_000,
        duration_ms=60_000,
        stacks=stacks,
        num_times_sampled=600,
        threads_seen=1200,
        cpu_time_s=1.5,
        agent_cpu_ms=12,
    )
    provenance = Provenance(
        fleet_info={"id": "host-1", "type": "UNKNOWN", "vCPUs": 2},
        agent_version="1.0",
        agent_start_time="2026-01-01T00:00:00.000Z",
        process_id=42,
    )
    return build_document(profile, provenance)


def as_plain(value: Any) -> Any:
    """amazon.ion's values as json.loads would give them, a symbol as its text."""
    if getattr(value, "ion_type", None) is IonType.SYMBOL:
        return value.text
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(key): as_plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_plain(item) for item in value]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    raise TypeError(f"unexpected Ion value {value!r}")


@pytest.fixture(params=[True, False], ids=["c-extension", "pure-python"])
def ion_implementation(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.param and not simpleion.c_ext:
        pytest.skip("the amazon.ion C extension is not available here")
    saved = simpleion.c_ext
    simpleion.c_ext = request.param
    yield
    simpleion.c_ext = saved


@pytest.mark.usefixtures("ion_implementation")
def test_ion_reads_back_as_the_json_document() -> None:
    document = realistic_document()
    as_json = json.loads(encoding.encode_json(document))
    encoded = encoding.encode(document, "ion")
    assert encoded.content_type == encoding.ION_CONTENT_TYPE
    assert encoding.decode(encoded.body, encoded.content_type) == as_json
    assert as_plain(simpleion.loads(encoded.body)) == as_json


@pytest.mark.usefixtures("ion_implementation")
def test_each_file_path_is_one_symbol_written_once() -> None:
    document = realistic_document()
    nodes_per_file = {
        file: sum(1 for _, node in walk_callgraph(document["callgraph"]) if node.get("file") == file) for file in FILES
    }
    assert min(nodes_per_file.values()) > 1
    body = encoding.encode_ion(document)
    assert all(body.count(file.encode()) == 1 for file in FILES)
    read = simpleion.loads(body)
    files = [node["file"] for _, node in walk_callgraph(read["callgraph"]) if "file" in node]
    assert files and all(file.ion_type is IonType.SYMBOL for file in files)


def test_encoding_leaves_the_document_as_it_was() -> None:
    document = realistic_document()
    before = copy.deepcopy(document)
    encoding.encode_ion(document)
    assert document == before
    assert all(type(node.get("file", "")) is str for _, node in walk_callgraph(document["callgraph"]))


def test_file_symbols_make_ion_far_smaller_than_json() -> None:
    document = realistic_document()
    assert len(encoding.encode_ion(document)) * 2.5 < len(encoding.encode_json(document))
