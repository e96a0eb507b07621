"""The exports, each read back by a reader that is not ours: collapsed stacks by the format's own
rule, speedscope by its published JSON schema, pprof by protobuf from pprof's ``profile.proto``."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

import pytest

from codeguru_agent.viewer.flamegraph import render
from support.documents import START_MS, deep_document, profile_document

Stacks = Dict[Tuple[str, ...], int]

STACKS: Stacks = {
    ("app.main:serve", "app.orders:handle", "app.orders:price"): 300,
    ("app.main:serve", "app.orders:handle", "app.db:query", "socket:socket:recv_into"): 200,
    ("app.main:serve", "app.orders:handle"): 50,
    ("app.main:serve", "app.orders:render"): 100,
    ("threading:Thread:run", "app.worker:loop", "<Sleep>"): 300,
    ("threading:Thread:run", "app.worker:loop", "app.tree:walk", "app.tree:walk"): 70,
}


def documents(stacks: Mapping[Tuple[str, ...], int] = STACKS, copies: int = 1) -> List[Dict[str, Any]]:
    """``copies`` profile documents of the same stacks, a minute apart (the exports merge them)."""
    return [
        profile_document(
            START_MS + 60_000 * copy,
            stacks={tuple((name, index + 1) for index, name in enumerate(stack)): n for stack, n in stacks.items()},
        )
        for copy in range(copies)
    ]


def times(stacks: Mapping[Tuple[str, ...], int], factor: int) -> Stacks:
    return {stack: count * factor for stack, count in stacks.items()}


# ---- Collapsed stacks ----------------------------------------------------------------------------


def read_collapsed(text: str) -> Stacks:
    """The format's rule, as flamegraph.pl applies it: the count after the last space, frames split on ';'."""
    counts: Stacks = {}
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        counts[tuple(stack.split(";"))] = counts.get(tuple(stack.split(";")), 0) + int(count)
    return counts


def test_collapsed_stacks_read_back_into_the_same_counts() -> None:
    text = render(documents(copies=2), "orders", "collapsed").decode("utf-8")

    assert read_collapsed(text) == times(STACKS, 2)
    assert text.endswith("\n") and all(line.count(" ") >= 1 for line in text.splitlines())


def test_collapsed_frame_names_cannot_break_a_line_or_a_stack() -> None:
    hostile = {("app:a;b", "app:line\nbreak", "app:tail 42"): 3}

    text = render(documents(hostile), "t", "collapsed").decode("utf-8")

    assert text == "app:a,b;app:line break;app:tail 42 3\n"


def test_a_deep_stack_is_one_collapsed_line() -> None:
    text = render([deep_document(3000)], "t", "collapsed").decode("utf-8")

    ((stack, count),) = read_collapsed(text).items()
    assert len(stack) == 3000 and stack[-1] == "deep.module:frame_2999" and count == 1


# ---- speedscope ------------------------------------------------------------------------------------


def test_the_speedscope_file_is_valid_by_the_published_schema_and_holds_every_sample() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parent / "data" / "speedscope-file-format-schema.json").read_text())

    file = json.loads(render(documents(copies=3), "orders", "speedscope"))

    jsonschema.validate(file, schema)
    frames = file["shared"]["frames"]
    (profile,) = file["profiles"]
    stacks: Stacks = {}
    for sample, weight in zip(profile["samples"], profile["weights"]):
        stack = tuple(frames[index]["name"] for index in sample)
        stacks[stack] = stacks.get(stack, 0) + weight
    assert stacks == times(STACKS, 3)
    assert profile["type"] == "sampled" and profile["unit"] == "none" and profile["name"] == "orders"
    assert profile["endValue"] - profile["startValue"] == 3 * sum(STACKS.values())
    price = next(frame for frame in frames if frame["name"] == "app.orders:price")
    assert price == {"name": "app.orders:price", "file": "/srv/app.orders.py", "line": 3}


def test_a_schema_violation_would_be_caught() -> None:
    """The schema check can fail: a sampled profile without weights is refused."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parent / "data" / "speedscope-file-format-schema.json").read_text())
    file = json.loads(render(documents(), "orders", "speedscope"))
    del file["profiles"][0]["weights"]

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(file, schema)


# ---- pprof -----------------------------------------------------------------------------------------

PROFILE_PROTO: Dict[str, List[Tuple[str, int, str, bool]]] = {
    # pprof's proto/profile.proto (package perftools.profiles), field by field: name, number, type, repeated.
    "Profile": [
        ("sample_type", 1, ".perftools.profiles.ValueType", True),
        ("sample", 2, ".perftools.profiles.Sample", True),
        ("mapping", 3, ".perftools.profiles.Mapping", True),
        ("location", 4, ".perftools.profiles.Location", True),
        ("function", 5, ".perftools.profiles.Function", True),
        ("string_table", 6, "string", True),
        ("drop_frames", 7, "int64", False),
        ("keep_frames", 8, "int64", False),
        ("time_nanos", 9, "int64", False),
        ("duration_nanos", 10, "int64", False),
        ("period_type", 11, ".perftools.profiles.ValueType", False),
        ("period", 12, "int64", False),
        ("comment", 13, "int64", True),
        ("default_sample_type", 14, "int64", False),
        ("doc_url", 15, "int64", False),
    ],
    "ValueType": [("type", 1, "int64", False), ("unit", 2, "int64", False)],
    "Sample": [
        ("location_id", 1, "uint64", True),
        ("value", 2, "int64", True),
        ("label", 3, ".perftools.profiles.Label", True),
    ],
    "Label": [("key", 1, "int64", False), ("str", 2, "int64", False), ("num", 3, "int64", False)],
    "Mapping": [
        ("id", 1, "uint64", False),
        ("memory_start", 2, "uint64", False),
        ("memory_limit", 3, "uint64", False),
        ("file_offset", 4, "uint64", False),
        ("filename", 5, "int64", False),
        ("build_id", 6, "int64", False),
        ("has_functions", 7, "bool", False),
    ],
    "Location": [
        ("id", 1, "uint64", False),
        ("mapping_id", 2, "uint64", False),
        ("address", 3, "uint64", False),
        ("line", 4, ".perftools.profiles.Line", True),
        ("is_folded", 5, "bool", False),
    ],
    "Line": [("function_id", 1, "uint64", False), ("line", 2, "int64", False), ("column", 3, "int64", False)],
    "Function": [
        ("id", 1, "uint64", False),
        ("name", 2, "int64", False),
        ("system_name", 3, "int64", False),
        ("filename", 4, "int64", False),
        ("start_line", 5, "int64", False),
    ],
}


def pprof_profile_class() -> Any:
    """The ``Profile`` message class, built by protobuf from the proto's descriptor."""
    descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
    from google.protobuf import descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    scalar = {
        "int64": field.TYPE_INT64,
        "uint64": field.TYPE_UINT64,
        "string": field.TYPE_STRING,
        "bool": field.TYPE_BOOL,
    }
    proto = descriptor_pb2.FileDescriptorProto(name="profile.proto", package="perftools.profiles", syntax="proto3")
    for message_name, fields in PROFILE_PROTO.items():
        message = proto.message_type.add(name=message_name)
        for name, number, kind, repeated in fields:
            added = message.field.add(
                name=name,
                number=number,
                label=field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL,
                type=scalar.get(kind, field.TYPE_MESSAGE),
            )
            if kind not in scalar:
                added.type_name = kind
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("perftools.profiles.Profile"))


def read_pprof(data: bytes) -> Any:
    profile = pprof_profile_class()()
    profile.ParseFromString(gzip.decompress(data))
    return profile


def test_pprof_decodes_with_protobuf_into_the_same_stacks() -> None:
    profile = read_pprof(render(documents(copies=2), "orders", "pprof"))

    strings = list(profile.string_table)
    assert strings[0] == ""
    assert [(strings[t.type], strings[t.unit]) for t in profile.sample_type] == [("samples", "count")]
    functions = {function.id: function for function in profile.function}
    locations = {location.id: location for location in profile.location}
    stacks: Stacks = {}
    for sample in profile.sample:
        leaf_first = [functions[locations[id].line[0].function_id] for id in sample.location_id]
        stack = tuple(strings[function.name] for function in reversed(leaf_first))
        stacks[stack] = stacks.get(stack, 0) + sample.value[0]
    assert stacks == times(STACKS, 2)
    price = next(function for function in profile.function if strings[function.name] == "app.orders:price")
    assert strings[price.filename] == "/srv/app.orders.py"
    (price_location,) = [location for location in profile.location if location.line[0].function_id == price.id]
    assert price_location.line[0].line == 3 and price_location.id != 0 and price_location.mapping_id == 0
    assert profile.time_nanos == START_MS * 1_000_000
    assert profile.duration_nanos == 120_000 * 1_000_000, "two profiles of a minute, a minute apart"


def test_pprof_shares_functions_and_locations_between_stacks() -> None:
    profile = read_pprof(render(documents(), "orders", "pprof"))

    names = [profile.string_table[function.name] for function in profile.function]
    assert len(names) == len(set(names)), "one Function per name and file"
    assert sorted(names) == sorted({name for stack in STACKS for name in stack})
    assert len(profile.sample) == len(STACKS)


def test_a_deep_stack_survives_pprof() -> None:
    profile = read_pprof(render([deep_document(3000)], "t", "pprof"))

    (sample,) = profile.sample
    assert len(sample.location_id) == 3000 and list(sample.value) == [1]
