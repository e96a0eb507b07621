"""Profile documents to a viewer output: the HTML page, collapsed stacks, speedscope or pprof.

The one entry point local mode, the command line and the collector share: documents are merged
into one :class:`~codeguru_agent.viewer.model.CallTree` (two, for a comparison) and handed to the
renderer of the format. Rendering is pure; :func:`write_flamegraph` is the one function that
touches the disk, and it writes atomically. Nothing here recurses, imports boto3 or starts a
thread: the collector and the agent both import it.
"""

from __future__ import annotations

import os
from typing import Any, Final, Iterable, List, Mapping, Optional, Sequence

from codeguru_agent.files import write_atomically
from codeguru_agent.viewer import collapsed, html, pprof, speedscope
from codeguru_agent.viewer.model import CallTree, describe_documents, merge_documents

FORMATS: Final = ("html", "collapsed", "speedscope", "pprof")
"""The output formats, the first the default."""
SUFFIXES: Final = {"html": ".html", "collapsed": ".collapsed.txt", "speedscope": ".speedscope.json", "pprof": ".pb.gz"}
"""The file name ending each format is written with by default."""


class UnsupportedComparison(ValueError):
    """A comparison was asked for in a format that has no way to show one."""


def render(
    documents: Sequence[Mapping[str, Any]],
    title: str,
    output_format: str = "html",
    baseline: Optional[Sequence[Mapping[str, Any]]] = None,
) -> bytes:
    """``documents`` merged and rendered as ``output_format``; with ``baseline`` (HTML only), the
    page compares the two sets."""
    if baseline is not None:
        if output_format != "html":
            raise UnsupportedComparison(f"a comparison can only be written as html, not {output_format}")
        tree = CallTree([merge_documents(documents), merge_documents(baseline)])
        sides = (describe_documents(documents, tree.totals[0][0]), describe_documents(baseline, tree.totals[1][0]))
        subtitle = f"{sides[0]}, compared with the baseline {sides[1]}"
        return html.render_page(tree, title, subtitle, sides=sides).encode("utf-8")
    tree = CallTree([merge_documents(documents)])
    if output_format == "html":
        return html.render_page(tree, title, describe_documents(documents, tree.total)).encode("utf-8")
    if output_format == "collapsed":
        return collapsed.render(tree).encode("utf-8")
    if output_format == "speedscope":
        return speedscope.render(tree, title).encode("utf-8")
    if output_format == "pprof":
        starts = [document["start"] for document in documents if _is_number(document.get("start"))]
        ends = [document["end"] for document in documents if _is_number(document.get("end"))]
        start_ms = int(min(starts)) if starts else None
        duration_ms = int(max(ends)) - start_ms if ends and start_ms is not None else None
        return pprof.render(tree, start_ms, duration_ms)
    raise ValueError(f"unknown output format {output_format!r}: use one of {', '.join(FORMATS)}")


def write_flamegraph(
    documents: Iterable[Mapping[str, Any]],
    out_path: str,
    title: str,
    output_format: str = "html",
    baseline: Optional[Iterable[Mapping[str, Any]]] = None,
) -> str:
    """Write ``documents`` (merged) as ``output_format`` to ``out_path``; returns its absolute path.

    The file is written beside its destination and renamed into place, so a browser or a second
    process never sees half a page.
    """
    listed: List[Mapping[str, Any]] = list(documents)
    content = render(listed, title, output_format, None if baseline is None else list(baseline))
    path = os.path.abspath(out_path)
    write_atomically(path, content)
    return path


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
