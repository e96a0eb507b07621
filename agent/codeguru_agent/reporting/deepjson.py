"""JSON text to Python values at any nesting depth.

``json.loads`` recurses once per container and raises RecursionError on call graphs a few thousand
frames deep, on every supported Python. Documents too deep for the C parser are parsed again here
with an explicit stack (slower, same result) rather than under a raised recursion limit, which is
process-wide and crashes CPython 3.9 and 3.10 tens of thousands of levels down. Shared by
``encoding.decode`` and the collector; writing JSON of any depth is ``encoding.encode_json``'s job.
"""

from __future__ import annotations

import json
import re
from json.decoder import scanstring  # type: ignore[attr-defined]
from json.scanner import NUMBER_RE
from typing import Any, Dict, Final, List, Tuple, Union

_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")
_CONSTANTS: Final = (
    ("null", None),
    ("true", True),
    ("false", False),
    ("NaN", float("nan")),
    ("Infinity", float("inf")),
    ("-Infinity", float("-inf")),
)

Container = Union[Dict[str, Any], List[Any]]


def loads(text: str) -> Any:
    """Like ``json.loads``: the stdlib parser first, the iterative one only when that one recurses too deep."""
    try:
        return json.loads(text)
    except RecursionError:
        return loads_iteratively(text)


def loads_iteratively(text: str) -> Any:
    """Parse JSON with an explicit stack of open containers; raises ``json.JSONDecodeError``."""
    try:
        return _Parser(text).parse()
    except IndexError:
        raise json.JSONDecodeError("Unexpected end of document", text, len(text)) from None


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        # Each open container with the key its next value goes under (None inside a list).
        self.open: List[Tuple[Container, Any]] = []

    def parse(self) -> Any:
        self._skip()
        while True:
            value, complete = self._start_value()
            if not complete:
                continue
            while True:
                if not self.open:
                    self._skip()
                    if self.pos != len(self.text):
                        raise self._error("Extra data")
                    return value
                container, key = self.open[-1]
                if isinstance(container, dict):
                    container[key] = value
                else:
                    container.append(value)
                self._skip()
                char = self.text[self.pos]
                if char == ",":
                    self.pos += 1
                    self._skip()
                    if isinstance(container, dict):
                        self.open[-1] = (container, self._key())
                    break
                if char == ("}" if isinstance(container, dict) else "]"):
                    self.pos += 1
                    self.open.pop()
                    value = container
                    continue
                raise self._error("Expecting ',' delimiter")

    def _start_value(self) -> Tuple[Any, bool]:
        """Read a scalar or an empty container (complete), or open a container (not complete)."""
        text, pos = self.text, self.pos
        char = text[pos]
        if char == "{" or char == "[":
            closing = "}" if char == "{" else "]"
            self.pos += 1
            self._skip()
            empty: Container = {} if char == "{" else []
            if text[self.pos] == closing:
                self.pos += 1
                return empty, True
            self.open.append((empty, self._key() if char == "{" else None))
            return None, False
        if char == '"':
            value, self.pos = scanstring(text, pos + 1)
            return value, True
        match = NUMBER_RE.match(text, pos)
        if match is not None:
            integer, fraction, exponent = match.groups()
            self.pos = match.end()
            if fraction or exponent:
                return float(integer + (fraction or "") + (exponent or "")), True
            return int(integer), True
        for word, constant in _CONSTANTS:
            if text.startswith(word, pos):
                self.pos = pos + len(word)
                return constant, True
        raise self._error("Expecting value")

    def _key(self) -> str:
        """Read ``"key" :`` and leave the position at the value."""
        if self.text[self.pos] != '"':
            raise self._error("Expecting property name enclosed in double quotes")
        key: str
        key, self.pos = scanstring(self.text, self.pos + 1)
        self._skip()
        if self.text[self.pos] != ":":
            raise self._error("Expecting ':' delimiter")
        self.pos += 1
        self._skip()
        return key

    def _skip(self) -> None:
        self.pos = _WHITESPACE.match(self.text, self.pos).end()  # type: ignore[union-attr]

    def _error(self, message: str) -> json.JSONDecodeError:
        return json.JSONDecodeError(message, self.text, self.pos)
