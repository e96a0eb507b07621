"""``codeguru-agent flamegraph PROFILE... -o OUT [--format F] [--baseline PROFILE...]``.

Reads each file whatever its format (JSON, Ion binary or Ion text, gzipped or not), checks that it
really is a profile document, and hands the documents to
:func:`codeguru_agent.viewer.flamegraph.write_flamegraph`: one HTML page, collapsed stacks, a
speedscope file or a gzipped pprof profile; with ``--baseline``, a page comparing the two sets.
A bad file stops the command with one line naming the file and the problem, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, Final, List, Mapping, Optional, Sequence, Tuple

from codeguru_agent.reporting.encoding import ION_CONTENT_TYPE, JSON_CONTENT_TYPE, DecodeError, decode
from codeguru_agent.viewer.flamegraph import FORMATS, write_flamegraph

_PROG: Final = "codeguru-agent flamegraph"
_ION_BINARY_VERSION_MARKER: Final = b"\xe0\x01\x00\xea"


class ProfileFileError(Exception):
    """A file that cannot be read as a profile document; the message says why, for a user."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; returns 0, 2 for bad arguments or input files, 1 if the page cannot be written."""
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Merge CodeGuru profile documents (JSON or Ion files) into one self-contained HTML page "
        "(flame graph, hotspots, CPU-only estimate), or export them as collapsed stacks, speedscope or pprof.",
    )
    parser.add_argument(
        "profiles", nargs="+", metavar="PROFILE", help="a profile document file: JSON, Ion binary or Ion text"
    )
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="where to write the output")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=FORMATS[0],
        help="html: the page (default); collapsed: one 'frame;frame count' line per stack; "
        "speedscope: speedscope's JSON file; pprof: gzipped profile.proto",
    )
    parser.add_argument(
        "--baseline",
        nargs="+",
        metavar="PROFILE",
        help="profile files to compare the PROFILEs against: the page then shows what grew and what shrank (html only)",
    )
    parser.add_argument("--title", help="the page's heading (default: names the input files)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # argparse exits on --help and on bad usage; we return codes instead
        return exit_request.code if isinstance(exit_request.code, int) else 2
    if args.baseline and args.format != "html":
        sys.stderr.write(f"{_PROG}: --baseline needs --format html: only the page can show a comparison\n")
        return 2
    try:
        documents = [read_profile(path) for path in args.profiles]
        baseline = [read_profile(path) for path in args.baseline] if args.baseline else None
    except ProfileFileError as error:
        sys.stderr.write(f"{_PROG}: {error.path}: {error}\n")
        return 2
    title = args.title or _default_title(args.profiles, args.baseline)
    try:
        written = write_flamegraph(documents, args.output, title, args.format, baseline)
    except OSError as error:
        sys.stderr.write(f"{_PROG}: cannot write {args.output}: {error.strerror or error}\n")
        return 1
    sys.stdout.write(written + "\n")
    return 0


def read_profile(path: str) -> Dict[str, Any]:
    """The profile document in a file, in whichever format it was written; raises ProfileFileError."""
    try:
        return _read_profile(path)
    except ProfileFileError as error:
        raise ProfileFileError(str(error), path) from None


def _read_profile(path: str) -> Dict[str, Any]:
    try:
        with open(path, "rb") as file:
            body = file.read()
    except OSError as error:
        raise ProfileFileError(f"cannot read: {error.strerror or error}") from None
    if not body.strip():
        raise ProfileFileError("the file is empty")
    document = _decode_any(body)
    if not isinstance(document, Mapping):
        raise ProfileFileError(f"not a profile document: the top level is a {_kind(document)}, not an object")
    if "callgraph" not in document:
        raise ProfileFileError("not a profile document: it has no 'callgraph'")
    problem = _callgraph_problem(document["callgraph"])
    if problem:
        raise ProfileFileError(f"malformed callgraph: {problem}")
    return dict(document)


def _decode_any(body: bytes) -> Any:
    """Ion binary by its version marker, else JSON, else Ion text (gzip is undone by ``decode``)."""
    if body.startswith(_ION_BINARY_VERSION_MARKER):
        try:
            return decode(body, ION_CONTENT_TYPE)
        except DecodeError as error:
            raise ProfileFileError(str(error)) from None
    try:
        return decode(body, JSON_CONTENT_TYPE)
    except DecodeError as json_error:
        try:
            return decode(body, ION_CONTENT_TYPE)
        except DecodeError:
            # Ion text accepts most of JSON too, so a broken JSON file is best explained as JSON.
            raise ProfileFileError(f"neither JSON nor Ion ({json_error})") from None


def _callgraph_problem(callgraph: Any) -> Optional[str]:
    """What is wrong with a call graph's shape, if anything, so that merging it cannot fail halfway."""
    pending: List[Tuple[str, Any]] = [("the root", callgraph)]
    while pending:
        where, node = pending.pop()
        if not isinstance(node, Mapping):
            return f"{where} is a {_kind(node)}, not an object"
        counts = node.get("counts")
        if counts is not None and (
            not isinstance(counts, Mapping) or not all(_is_count(value) for value in counts.values())
        ):
            return f"{where} has counts that are not non-negative numbers"
        lines = node.get("line")
        if lines is not None and (not isinstance(lines, list) or not all(_is_count(line) for line in lines)):
            return f"{where} has a 'line' that is not a list of line numbers"
        file = node.get("file")
        if file is not None and not isinstance(file, str):
            return f"{where} has a 'file' that is not a string"
        children = node.get("children")
        if children is None:
            continue
        if not isinstance(children, Mapping):
            return f"{where} has 'children' that is a {_kind(children)}, not an object"
        pending.extend((f"frame {name!r}", child) for name, child in children.items())
    return None


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _kind(value: Any) -> str:
    """A JSON-ish name for a value's type, for messages about files."""
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return type(value).__name__


def _default_title(paths: Sequence[str], baseline: Optional[Sequence[str]] = None) -> str:
    if baseline:
        return f"{_files(paths)} compared with {_files(baseline)}"
    return "Flame graph of " + _files(paths)


def _files(paths: Sequence[str]) -> str:
    names = [os.path.basename(path) for path in paths]
    if len(names) <= 3:
        return ", ".join(names)
    return f"{names[0]}, {names[1]} and {len(names) - 2} more files"
