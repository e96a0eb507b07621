"""pprof's ``profile.proto``, gzipped: what ``go tool pprof`` and Grafana Pyroscope read.

The protobuf wire format is written here directly (a few dozen lines) rather than adding a
protobuf run-time dependency to an agent that runs inside other people's services. One sample type,
``samples``/``count``; one ``Function`` per (name, file) and one ``Location`` per (function, line),
each ``Location`` with a single ``Line`` and no mapping, as py-spy writes them; sample locations
are leaf first, as the format requires.
"""

from __future__ import annotations

import gzip
from typing import Dict, Final, Iterable, List, Optional, Tuple

from codeguru_agent.viewer.model import CallTree

# Field numbers from pprof's proto/profile.proto.
_PROFILE_SAMPLE_TYPE: Final = 1
_PROFILE_SAMPLE: Final = 2
_PROFILE_LOCATION: Final = 4
_PROFILE_FUNCTION: Final = 5
_PROFILE_STRING_TABLE: Final = 6
_PROFILE_TIME_NANOS: Final = 9
_PROFILE_DURATION_NANOS: Final = 10
_PROFILE_PERIOD_TYPE: Final = 11
_PROFILE_PERIOD: Final = 12
_VALUE_TYPE_TYPE: Final = 1
_VALUE_TYPE_UNIT: Final = 2
_SAMPLE_LOCATION_ID: Final = 1
_SAMPLE_VALUE: Final = 2
_LOCATION_ID: Final = 1
_LOCATION_LINE: Final = 4
_LINE_FUNCTION_ID: Final = 1
_LINE_LINE: Final = 2
_FUNCTION_ID: Final = 1
_FUNCTION_NAME: Final = 2
_FUNCTION_SYSTEM_NAME: Final = 3
_FUNCTION_FILENAME: Final = 4
_FUNCTION_START_LINE: Final = 5

_VARINT: Final = 0
_LENGTH_DELIMITED: Final = 2


def render(
    tree: CallTree, start_ms: Optional[int] = None, duration_ms: Optional[int] = None, period_ms: int = 0
) -> bytes:
    """The gzipped ``Profile`` message of ``tree`` (side 0)."""
    strings: Dict[str, int] = {"": 0}  # string_table[0] must be the empty string

    def string(text: str) -> int:
        return strings.setdefault(text, len(strings))

    functions: Dict[Tuple[str, str], int] = {}
    function_messages: List[bytes] = []
    locations: Dict[Tuple[int, int], int] = {}
    location_messages: List[bytes] = []
    location_of_node: List[int] = [0] * len(tree)
    for node in range(1, len(tree)):
        name, file = tree.names[node], tree.files[node] or ""
        function_id = functions.get((name, file))
        if function_id is None:
            function_id = functions[(name, file)] = len(functions) + 1
            function_messages.append(
                _varint_field(_FUNCTION_ID, function_id)
                + _varint_field(_FUNCTION_NAME, string(name))
                + _varint_field(_FUNCTION_SYSTEM_NAME, string(name))
                + _varint_field(_FUNCTION_FILENAME, string(file))
                + _varint_field(_FUNCTION_START_LINE, 0)
            )
        line = tree.line_min[node]
        location_id = locations.get((function_id, line))
        if location_id is None:
            location_id = locations[(function_id, line)] = len(locations) + 1
            line_message = _varint_field(_LINE_FUNCTION_ID, function_id) + _varint_field(_LINE_LINE, line)
            location_messages.append(
                _varint_field(_LOCATION_ID, location_id) + _bytes_field(_LOCATION_LINE, line_message)
            )
        location_of_node[node] = location_id

    samples_type = _varint_field(_VALUE_TYPE_TYPE, string("samples")) + _varint_field(_VALUE_TYPE_UNIT, string("count"))
    period_type = _varint_field(_VALUE_TYPE_TYPE, string("wall")) + _varint_field(
        _VALUE_TYPE_UNIT, string("nanoseconds")
    )
    out = bytearray(_bytes_field(_PROFILE_SAMPLE_TYPE, samples_type))
    for path, count in tree.stacks():
        leaf_first = [location_of_node[node] for node in reversed(path)]
        out += _bytes_field(
            _PROFILE_SAMPLE,
            _bytes_field(_SAMPLE_LOCATION_ID, _packed(leaf_first)) + _bytes_field(_SAMPLE_VALUE, _packed([count])),
        )
    for message in location_messages:
        out += _bytes_field(_PROFILE_LOCATION, message)
    for message in function_messages:
        out += _bytes_field(_PROFILE_FUNCTION, message)
    for text in strings:
        out += _bytes_field(_PROFILE_STRING_TABLE, text.encode("utf-8", "replace"))
    if start_ms is not None:
        out += _varint_field(_PROFILE_TIME_NANOS, start_ms * 1_000_000)
    if duration_ms is not None:
        out += _varint_field(_PROFILE_DURATION_NANOS, duration_ms * 1_000_000)
    out += _bytes_field(_PROFILE_PERIOD_TYPE, period_type)
    out += _varint_field(_PROFILE_PERIOD, period_ms * 1_000_000)
    return gzip.compress(bytes(out), mtime=0)


def _varint(value: int) -> bytes:
    """A base-128 varint; negative int64 values take ten bytes, as in two's complement."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3 | _VARINT) + _varint(value)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def _packed(values: Iterable[int]) -> bytes:
    return b"".join(_varint(value) for value in values)
