"""Checking what clients send: names, tokens, times, and the profile document itself.

Every check raises :class:`Invalid` with a message that names the field and says what is wrong,
because the message is all a client sees of a ValidationException. The document is walked with an
explicit stack: a call graph can be thousands of frames deep.
"""

from __future__ import annotations

import calendar
import datetime
import math
import re
import zlib
from typing import Any, Final, List, Mapping, Optional, Tuple

from codeguru_agent.reporting import encoding

NAME_PATTERN: Final = re.compile(r"[\w-]{1,255}", re.ASCII)
TOKEN_PATTERN: Final = re.compile(r"[\w-]{1,64}", re.ASCII)
_GZIP_MAGIC: Final = b"\x1f\x8b"
_TIMESTAMP: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:?\d{2})?"
)
_EPOCH_SECONDS: Final = re.compile(r"\d{1,12}(?:\.\d{1,9})?")
_DURATION: Final = re.compile(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")
_DURATION_UNITS_MS: Final = (7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1_000)


class Invalid(ValueError):
    """A request the service would answer with ValidationException; str() is the message."""


class TooLarge(Invalid):
    """A body, or what it decompresses to, over the collector's size limit."""


def name(value: Optional[str], field: str = "profilingGroupName") -> str:
    """A profiling group name: 1 to 255 of ``[A-Za-z0-9_-]``."""
    return _matching(value, NAME_PATTERN, field, "1 to 255 letters, digits, '_' or '-'")


def token(value: Optional[str], field: str) -> str:
    """A client token or pagination token: 1 to 64 of ``[A-Za-z0-9_-]``."""
    return _matching(value, TOKEN_PATTERN, field, "1 to 64 letters, digits, '_' or '-'")


def _matching(value: Optional[str], pattern: re.Pattern[str], field: str, rule: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{field} is required and must be a string of {rule}")
    if not pattern.fullmatch(value):
        raise Invalid(f"{field} {_short(value)} is invalid: it must be {rule}")
    return value


def integer(text: Optional[str], field: str, low: int, high: int) -> Optional[int]:
    """An optional integer query parameter within [low, high]."""
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise Invalid(f"{field} must be an integer, got {_short(text)}") from None
    if not low <= value <= high:
        raise Invalid(f"{field} must be between {low} and {high}, got {value}")
    return value


def boolean(text: Optional[str], field: str) -> Optional[bool]:
    """An optional boolean query parameter, spelled ``true`` or ``false`` as botocore sends it."""
    if text is None:
        return None
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise Invalid(f"{field} must be true or false, got {_short(text)}")
    return lowered == "true"


def timestamp_ms(text: Optional[str], field: str) -> Optional[int]:
    """An optional time: ISO 8601 as botocore sends it (UTC when no offset), or epoch seconds."""
    if text is None:
        return None
    if _EPOCH_SECONDS.fullmatch(text):
        return round(float(text) * 1000)
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise Invalid(f"{field} must be an ISO 8601 time such as 2020-06-01T13:15:02.001Z, got {_short(text)}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        moment = datetime.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:
        raise Invalid(f"{field} {_short(text)} is not a valid date and time") from None
    seconds = calendar.timegm(moment.timetuple())
    millis = seconds * 1000 + int(((fraction or "") + "000")[:3])
    if offset and offset.upper() != "Z":
        sign = -1 if offset[0] == "+" else 1
        digits = offset[1:].replace(":", "")
        millis += sign * (int(digits[:2]) * 3_600_000 + int(digits[2:]) * 60_000)
    return millis


def period_ms(text: Optional[str], field: str = "period") -> Optional[int]:
    """An optional ISO 8601 duration such as PT5M or P1DT1H1M1S, in milliseconds."""
    if text is None:
        return None
    match = _DURATION.fullmatch(text.upper())
    if match is None or not any(match.groups()):
        raise Invalid(f"{field} must be an ISO 8601 duration such as PT5M, PT1H or P1D, got {_short(text)}")
    total = sum(float(part) * unit for part, unit in zip(match.groups(), _DURATION_UNITS_MS) if part)
    if total < 1:
        raise Invalid(f"{field} must be longer than zero, got {_short(text)}")
    return int(total)


def decode_profile(body: bytes, content_type: Optional[str], content_encoding: Optional[str], limit_bytes: int) -> Any:
    """Decode a PostAgentProfile body: JSON or Ion (binary or text), plain or gzip.

    Decompression is bounded by the same limit as the body, so a small gzip bomb cannot exhaust
    memory. The shared decoder reads JSON of any depth without recursion.
    """
    declared = (content_encoding or "").strip().lower()
    if declared not in ("", "identity", "gzip"):
        raise Invalid(f"unsupported Content-Encoding {content_encoding!r}: send gzip or no encoding")
    if declared == "gzip" or body[:2] == _GZIP_MAGIC:
        body = _gunzip(body, limit_bytes)
        if body[:2] == _GZIP_MAGIC:
            raise Invalid("body is gzip-compressed twice")
    if not body:
        raise Invalid("body is empty: it must be a profile document")
    try:
        return encoding.decode(body, content_type)
    except encoding.DecodeError as error:
        raise Invalid(str(error)) from None


def _gunzip(body: bytes, limit_bytes: int) -> bytes:
    """Every gzip member of the body, refusing to produce more than ``limit_bytes``."""
    out = bytearray()
    remaining = body
    try:
        while remaining:
            stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            out += stream.decompress(remaining, limit_bytes + 1 - len(out))
            if len(out) > limit_bytes:
                raise TooLarge(f"body decompresses to more than the collector's limit of {limit_bytes} bytes")
            if not stream.eof:
                raise Invalid("body is truncated gzip data")
            remaining = stream.unused_data
    except zlib.error as error:
        raise Invalid(f"body is not valid gzip data: {error}") from None
    return bytes(out)


_METADATA_TYPES: Final = {
    "sampleWeights": "numbers",
    "durationInMs": "integer",
    "fleetInfo": "object",
    "agentInfo": "object",
    "agentOverhead": "numbers",
    "runtimeVersion": "string",
    "cpuTimeInSeconds": "number",
    "metrics": "numbers",
    "numTimesSampled": "integer",
}
_AGENT_INFO_TYPES: Final = {"type": "string", "version": "string"}


def profile_document(document: Any) -> Tuple[int, int]:
    """Check a profile document's keys and types (reference §5); returns its (start, end) in ms.

    Required: ``start`` and ``end`` (epoch ms), ``agentMetadata`` and ``callgraph`` objects. Known
    keys must have their types; unknown keys are kept, as the service may grow new ones.
    """
    if not isinstance(document, dict):
        raise Invalid(f"profile document must be an object, got {_kind(document)}")
    for key in ("start", "end", "agentMetadata", "callgraph"):
        if key not in document:
            raise Invalid(f"profile document is missing the required key {key!r}")
    start, end = document["start"], document["end"]
    _expect(start, "integer", "start")
    _expect(end, "integer", "end")
    if start < 0:
        raise Invalid(f"start must be epoch milliseconds, got {start}")
    if end < start:
        raise Invalid(f"end ({end}) is before start ({start})")
    metadata = document["agentMetadata"]
    _expect(metadata, "object", "agentMetadata")
    _expect_keys(metadata, _METADATA_TYPES, "agentMetadata")
    if "agentInfo" in metadata:
        _expect_keys(metadata["agentInfo"], _AGENT_INFO_TYPES, "agentMetadata.agentInfo")
    if "debugInfo" in document:
        _expect(document["debugInfo"], "object", "debugInfo")
    callgraph(document["callgraph"])
    return start, end


def callgraph(root: Any) -> None:
    """Check every node of a call graph: ``children``, ``counts``, ``file`` and ``line`` types."""
    _expect(root, "object", "callgraph")
    pending: List[Tuple[Any, str, int]] = [(root, "", 0)]
    while pending:
        node, frame, depth = pending.pop()
        where = f"callgraph node {_short(frame)} at depth {depth}" if depth else "callgraph root"
        if not isinstance(node, dict):
            raise Invalid(f"{where} must be an object, got {_kind(node)}")
        counts = node.get("counts")
        if counts is not None:
            _expect(counts, "object", f"{where}: counts")
            for counter, value in counts.items():
                if not _is_integer(value) or value < 0:
                    raise Invalid(f"{where}: counts.{counter} must be a non-negative integer, got {_short(value)}")
        if "file" in node:
            _expect(node["file"], "string", f"{where}: file")
        if "line" in node:
            lines = node["line"]
            if not isinstance(lines, list) or len(lines) not in (1, 2) or not all(map(_is_integer, lines)):
                raise Invalid(f"{where}: line must be [n] or [min, max] of integers, got {_short(lines)}")
        children = node.get("children")
        if children is not None:
            _expect(children, "object", f"{where}: children")
            pending.extend((child, child_name, depth + 1) for child_name, child in children.items())


def _expect_keys(values: Mapping[str, Any], types: Mapping[str, str], where: str) -> None:
    for key, kind in types.items():
        if key in values:
            _expect(values[key], kind, f"{where}.{key}")


def _expect(value: Any, kind: str, where: str) -> None:
    """Raise unless ``value`` is of ``kind``: integer, number, string, object, or numbers (object of numbers)."""
    if kind == "integer":
        ok = _is_integer(value)
    elif kind == "number":
        ok = _is_number(value)
    elif kind == "string":
        ok = isinstance(value, str)
    else:
        ok = isinstance(value, dict)
        if ok and kind == "numbers":
            for key, item in value.items():
                _expect(item, "number", f"{where}.{key}")
    if not ok:
        wanted = "an object of numbers" if kind == "numbers" else ("an " if kind[0] in "aeiou" else "a ") + kind
        raise Invalid(f"{where} must be {wanted}, got {_short(value)}")


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_integer(value) or isinstance(value, float)) and math.isfinite(value)


def _kind(value: Any) -> str:
    for kind, text in ((dict, "an object"), (list, "a list"), (str, "a string")):
        if isinstance(value, kind):
            return text
    return type(value).__name__


def _short(value: Any, limit: int = 80) -> str:
    """A value for an error message, cut so that a huge (or deeply nested) value cannot make a huge message."""
    nested = isinstance(value, (dict, list)) and (
        len(value) > 4
        or any(isinstance(item, (dict, list)) for item in (value.values() if isinstance(value, dict) else value))
    )
    text = _kind(value) if nested else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
