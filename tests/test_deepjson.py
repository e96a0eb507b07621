"""The iterative JSON parser reads what json.loads reads, fails where it fails, and at any depth."""

from __future__ import annotations

import json

import pytest

from codeguru_agent.reporting.deepjson import loads, loads_iteratively

SAMPLES = [
    '{"start": 1, "end": 2.5e3, "callgraph": {"children": {"a:b": {"counts": {"WALL_TIME": 3}, "line": [1, 9]}}}}',
    ' [ true , false , null , -0 , 1.5 , "t\\u00e9xt\\n" , { } , [ ] ] ',
    '"just a string"',
    "12345678901234567890",
    '{"dup": 1, "dup": 2}',
    "[NaN, Infinity, -Infinity]",
]
BROKEN = ["", "{", '{"a" 1}', '{"a": 1,}', "[1 2]", "[1,]", "tru", '"open', "{1: 2}", "[1]x", "01"]


@pytest.mark.parametrize("text", SAMPLES)
def test_reads_what_json_loads_reads(text):
    assert json.dumps(loads_iteratively(text)) == json.dumps(json.loads(text))


@pytest.mark.parametrize("text", BROKEN)
def test_fails_where_json_loads_fails(text):
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(json.JSONDecodeError):
        loads_iteratively(text)


def test_any_depth():
    depth = 30_000
    value = loads('{"children": ' * depth + '{"leaf": [1]}' + "}" * depth)

    for _ in range(depth):
        value = value["children"]
    assert value == {"leaf": [1]}
