"""Profile documents to bytes and back: JSON and Ion, the two formats PostAgentProfile accepts.

Pure functions with no I/O and no threads, shared by the agent (encode) and the collector (decode).
Ion is imported only when Ion is asked for, so a JSON-only agent never pays for it.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from typing import Any, Final, Mapping

from codeguru_agent.reporting import deepjson

JSON_CONTENT_TYPE: Final = "application/json"
ION_CONTENT_TYPE: Final = "application/x-amzn-ion"
FORMATS: Final = ("json", "ion")
_ION_BINARY_VERSION_MARKER: Final = b"\xe0\x01\x00\xea"
_GZIP_MAGIC: Final = b"\x1f\x8b"
ION_MAX_NESTING: Final = 960
"""Deepest container nesting the Ion library reads back (measured: it fails near 990)."""


class DecodeError(ValueError):
    """The bytes are not a readable document in the declared format."""


EXTENSIONS: Final = {JSON_CONTENT_TYPE: "json", ION_CONTENT_TYPE: "ion"}
"""The file name extension of each encoding, for the spool and the local directory."""


def extension_for(content_type: str) -> str:
    """``json`` or ``ion``: the extension a profile of ``content_type`` is written with."""
    return EXTENSIONS.get(content_type, "json")


def content_type_of(extension: str) -> str:
    """The content type of a profile file written with ``extension`` (JSON unless it says Ion)."""
    return ION_CONTENT_TYPE if extension == EXTENSIONS[ION_CONTENT_TYPE] else JSON_CONTENT_TYPE


def content_type_for(profile_format: str) -> str:
    """The Content-Type header that goes with an encoding format name ("json" or "ion")."""
    return ION_CONTENT_TYPE if profile_format == "ion" else JSON_CONTENT_TYPE


@dataclass(frozen=True)
class Encoded:
    """An encoded document and the Content-Type to send it with."""

    body: bytes
    content_type: str


def encode(document: dict[str, Any], profile_format: str) -> Encoded:
    """Encode a document as JSON or Ion binary.

    The Ion library refuses to read back documents nested deeper than about a thousand containers
    (a call graph about 490 frames deep); such a rare profile is sent as JSON rather than lost.
    """
    if profile_format == "ion" and _nesting_depth(document) <= ION_MAX_NESTING:
        return Encoded(encode_ion(document), ION_CONTENT_TYPE)
    return Encoded(encode_json(document), JSON_CONTENT_TYPE)


def encode_json(document: Any) -> bytes:
    """Compact UTF-8 JSON, the format proven against the live service; any depth."""
    try:
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    except RecursionError:
        text = _dumps_iteratively(document)
    return text.encode("utf-8")


def encode_ion(document: dict[str, Any]) -> bytes:
    """Ion binary: the same document, smaller, since repeated text is written once as a symbol.

    Field names, frame names among them, are symbols anyway. Each call-graph node's ``file`` is
    written as a symbol value too: a path repeated on every node of its module then appears once in
    the local symbol table and costs a symbol id per node, which more than halves a typical
    profile. Ion's JSON mapping reads a symbol as its text, so the document means the same.
    """
    from amazon.ion import simpleion

    return simpleion.dumps(_with_file_symbols(document), binary=True)


def _with_file_symbols(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of the document whose call-graph ``file`` strings are Ion symbols; the input is unchanged."""
    from amazon.ion.core import IonType
    from amazon.ion.simple_types import IonPySymbol

    symbols: dict[str, Any] = {}
    copy = dict(document)
    callgraph = document.get("callgraph")
    if not isinstance(callgraph, dict):
        return copy
    root = copy["callgraph"] = dict(callgraph)
    pending = [root]
    while pending:
        node = pending.pop()
        file = node.get("file")
        if isinstance(file, str):
            symbol = symbols.get(file)
            if symbol is None:
                symbol = symbols[file] = IonPySymbol.from_value(IonType.SYMBOL, file)
            node["file"] = symbol
        children = node.get("children")
        if isinstance(children, dict):
            copied = node["children"] = {
                name: dict(child) if isinstance(child, dict) else child for name, child in children.items()
            }
            pending.extend(child for child in copied.values() if isinstance(child, dict))
    return copy


def _nesting_depth(document: Any) -> int:
    """How many containers deep the document goes, without recursion."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in value.values() if isinstance(child, (dict, list)))
        elif isinstance(value, list):
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in value if isinstance(child, (dict, list)))
    return deepest


def _dumps_iteratively(document: Any) -> str:
    """json.dumps for documents too deep for the C encoder's recursion."""
    parts: list[str] = []
    pending: list[Any] = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, _Literal):
            parts.append(item.text)
        elif isinstance(item, dict):
            parts.append("{")
            tail: list[Any] = []
            for index, (key, value) in enumerate(item.items()):
                prefix = "," if index else ""
                tail.append(_Literal(prefix + json.dumps(str(key), ensure_ascii=False) + ":"))
                tail.append(value)
            tail.append(_Literal("}"))
            pending.extend(reversed(tail))
        elif isinstance(item, (list, tuple)):
            parts.append("[")
            tail = []
            for index, value in enumerate(item):
                if index:
                    tail.append(_Literal(","))
                tail.append(value)
            tail.append(_Literal("]"))
            pending.extend(reversed(tail))
        else:
            parts.append(json.dumps(item, ensure_ascii=False))
    return "".join(parts)


@dataclass(frozen=True)
class _Literal:
    text: str


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header value, lower case, parameters dropped."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def decode(body: bytes, content_type: str | None) -> Any:
    """Decode a JSON or Ion (binary or text) body into plain Python values.

    Gzip bodies are recognised by their magic bytes whatever the headers say, because clients
    differ in whether they declare the compression.
    """
    if body[:2] == _GZIP_MAGIC:
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError) as error:
            raise DecodeError(f"body looks gzip-compressed but cannot be decompressed: {error}") from None
    kind = media_type(content_type)
    if kind == ION_CONTENT_TYPE:
        return _decode_ion(body)
    if kind == JSON_CONTENT_TYPE:
        if body.startswith(_ION_BINARY_VERSION_MARKER):
            raise DecodeError("body is Ion binary but the content type says application/json")
        try:
            return deepjson.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DecodeError(f"body is not valid JSON: {error}") from None
    raise DecodeError(f"unsupported content type {content_type!r}: use {JSON_CONTENT_TYPE} or {ION_CONTENT_TYPE}")


def _decode_ion(body: bytes) -> Any:
    from amazon.ion import simpleion

    try:
        value = simpleion.loads(body if body.startswith(_ION_BINARY_VERSION_MARKER) else body.decode("utf-8"))
    except Exception as error:  # amazon.ion raises many unrelated types for bad input
        raise DecodeError(f"body is not valid Ion: {error}") from None
    return _plain(value)


def _plain(value: Any) -> Any:
    """Ion's value wrappers to the built-in types json would have produced (iteratively)."""
    from amazon.ion.core import IonType

    def convert(item: Any) -> Any:
        ion_type = getattr(item, "ion_type", None)
        if ion_type is None:
            return item
        if getattr(item, "is_null", False) or ion_type is IonType.NULL:
            return None
        if ion_type is IonType.BOOL:
            return bool(item)
        if ion_type is IonType.INT:
            return int(item)
        if ion_type in (IonType.FLOAT, IonType.DECIMAL):
            return float(item)
        if ion_type is IonType.SYMBOL:
            return str(item.text)  # a symbol value is a SymbolToken, whose str() is its repr
        if ion_type is IonType.STRING:
            return str(item)
        if ion_type in (IonType.BLOB, IonType.CLOB):
            return bytes(item)
        return item

    root_holder: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(value, root_holder, 0)]
    while stack:
        item, parent, key = stack.pop()
        if isinstance(item, Mapping):
            copy: Any = {}
            parent[key] = copy
            for child_key, child in item.items():
                copy[str(child_key)] = None
                stack.append((child, copy, str(child_key)))
        elif isinstance(item, list):
            copy = [None] * len(item)
            parent[key] = copy
            for index, child in enumerate(item):
                stack.append((child, copy, index))
        else:
            parent[key] = convert(item)
    return root_holder[0]
