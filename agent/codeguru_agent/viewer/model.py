"""The call-tree model every viewer output is rendered from: flat tables, built without recursion.

A profile's call graph (nested ``children`` dicts) becomes parallel lists indexed by frame, in
depth-first order with the heaviest child first, so that a frame's subtree is the run of frames
that follows it. One tree can hold several *sides* (a comparison's baseline and current profiles)
over the union of their frames. The HTML page, collapsed stacks, speedscope and pprof renderers all
read this model, so they agree frame for frame; nothing here recurses, so stacks thousands of
frames deep are fine.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timezone
from typing import Any, Dict, Final, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from codeguru_agent.reporting.document import CallGraphNode, merge_callgraph, self_count

USER_CODE: Final = "user"
STANDARD_LIBRARY: Final = "stdlib"
THIRD_PARTY: Final = "thirdparty"
SYNTHETIC: Final = "synthetic"
"""Frame categories, coloured apart so a user can tell their code from what it runs on."""

_THIRD_PARTY_PATH: Final = re.compile(r"/(?:site|dist)-packages/([^/]+)")
_STDLIB_PATH: Final = re.compile(r"/lib/(?:python|pypy)\d+(?:\.\d+)?t?/([^/]+)|^[A-Za-z]:/(?:[^/]+/)*Lib/([^/]+)")
_STDLIB_MODULES: Final = frozenset(getattr(sys, "stdlib_module_names", ()))
_OWN_PACKAGE: Final = __name__.split(".", 1)[0]


class CallTree:
    """Frames of one or more call graphs merged by path, as parallel lists indexed by frame.

    Frame 0 is the root (name ``""``, parent -1). ``self_counts[side][i]`` and ``totals[side][i]``
    are frame ``i``'s own samples and its subtree's samples on each side; frames with no samples on
    any side are left out (they would be zero pixels wide). Children follow their parent, heaviest
    (on side 0) first, ties by name, so the layout is stable across renders.
    """

    __slots__ = ("files", "line_max", "line_min", "names", "parents", "self_counts", "totals")

    def __init__(self, callgraphs: Sequence[Mapping[str, Any]]) -> None:
        sides = len(callgraphs)
        # First pass: the union of all sides' frames, keyed by (parent index, name), parents first.
        names: List[str] = [""]
        parents: List[int] = [-1]
        files: List[Optional[str]] = [None]
        lows: List[int] = [0]
        highs: List[int] = [0]
        own: List[List[int]] = [[0] for _ in range(sides)]
        index_of: Dict[Tuple[int, str], int] = {}
        for side, callgraph in enumerate(callgraphs):
            own[side][0] += self_count(callgraph)
            pending: List[Tuple[int, Mapping[str, Any]]] = [(0, callgraph)]
            while pending:
                parent, node = pending.pop()
                for name, child in (node.get("children") or {}).items():
                    index = index_of.get((parent, name))
                    if index is None:
                        index = index_of[(parent, name)] = len(names)
                        names.append(name)
                        parents.append(parent)
                        files.append(None)
                        lows.append(0)
                        highs.append(0)
                        for counts in own:
                            counts.append(0)
                    file = child.get("file")
                    if files[index] is None and isinstance(file, str):
                        files[index] = file
                    lines = [int(line) for line in (child.get("line") or ()) if _is_number(line)]
                    if lines:
                        lows[index] = min(lines) if not lows[index] else min(lows[index], *lines)
                        highs[index] = max(highs[index], *lines)
                    own[side][index] += self_count(child)
                    pending.append((index, child))
        totals = [list(counts) for counts in own]
        for index in range(len(names) - 1, 0, -1):  # children always come after their parent
            for side in range(sides):
                totals[side][parents[index]] += totals[side][index]

        # Second pass: depth-first, heaviest child first, dropping frames empty on every side.
        children: List[List[int]] = [[] for _ in names]
        for index in range(1, len(names)):
            if any(totals[side][index] for side in range(sides)):
                children[parents[index]].append(index)
        self.names: List[str] = []
        self.parents: List[int] = []
        self.files: List[Optional[str]] = []
        self.line_min: List[int] = []
        self.line_max: List[int] = []
        self.self_counts: List[List[int]] = [[] for _ in range(sides)]
        self.totals: List[List[int]] = [[] for _ in range(sides)]
        order: List[Tuple[int, int]] = [(0, -1)]
        while order:
            index, parent = order.pop()
            position = len(self.names)
            self.names.append(names[index])
            self.parents.append(parent)
            self.files.append(files[index])
            self.line_min.append(lows[index])
            self.line_max.append(highs[index])
            for side in range(sides):
                self.self_counts[side].append(own[side][index])
                self.totals[side].append(totals[side][index])
            kids = sorted(children[index], key=lambda kid: (-totals[0][kid], names[kid]))
            order.extend((kid, position) for kid in reversed(kids))

    def __len__(self) -> int:
        return len(self.names)

    @property
    def total(self) -> int:
        """All samples of side 0."""
        return self.totals[0][0]

    def path(self, index: int) -> List[int]:
        """Frame indexes from the root's first child down to ``index`` (the root itself left out)."""
        path: List[int] = []
        while index > 0:
            path.append(index)
            index = self.parents[index]
        path.reverse()
        return path

    def stacks(self, side: int = 0) -> Iterator[Tuple[List[int], int]]:
        """Every stack with samples on ``side``: its frames root first, and its sample count.

        A frame's own samples are the samples whose stack ended there; samples counted on the root
        itself have no frames and are skipped.
        """
        path: List[int] = []
        for index in range(1, len(self.names)):
            depth_of_parent = len(path)
            # Walk back up to this frame's parent: the previous frame's path shares the prefix.
            while depth_of_parent and path[depth_of_parent - 1] != self.parents[index]:
                depth_of_parent -= 1
            del path[depth_of_parent:]
            path.append(index)
            count = self.self_counts[side][index]
            if count:
                yield list(path), count


def merge_documents(documents: Iterable[Mapping[str, Any]]) -> CallGraphNode:
    """One call graph holding the samples of every document, frame by frame."""
    merged: CallGraphNode = {}
    for document in documents:
        merge_callgraph(merged, document.get("callgraph") or {})
    return merged


def describe_documents(documents: Sequence[Mapping[str, Any]], samples: int) -> str:
    """A subtitle such as ``3 profiles · 2024-05-01 10:00:00 – 10:15:00 UTC · 5,400 samples``."""
    parts = [f"{len(documents):,} profile" + ("" if len(documents) == 1 else "s")]
    starts: List[float] = [document["start"] for document in documents if _is_number(document.get("start"))]
    ends: List[float] = [document["end"] for document in documents if _is_number(document.get("end"))]
    first = _utc(min(starts)) if starts else None
    last = _utc(max(ends)) if ends else None
    if first is not None and last is not None:
        end_format = "%H:%M:%S" if first.date() == last.date() else "%Y-%m-%d %H:%M:%S"
        parts.append(f"{first:%Y-%m-%d %H:%M:%S} – {last.strftime(end_format)} UTC")
    parts.append(f"{samples:,} sample" + ("" if samples == 1 else "s"))
    return " · ".join(parts)


def package_of(key: str, file: Optional[str]) -> Tuple[str, str]:
    """Which package a frame belongs to, and whether that is the user's code, the standard
    library, a third-party distribution or a synthetic frame such as ``<Sleep>``.

    The file path decides where there is one, since the module part of a frame key depends on the
    profiled process's ``sys.path``; the profile may come from another machine, so the paths are
    matched by shape rather than against this interpreter's directories.
    """
    if key.startswith("<") and not file:
        return key, SYNTHETIC
    module = key.split(":", 1)[0]
    top_module = module.split(".", 1)[0]
    path = (file or "").replace("\\", "/")
    third_party = _THIRD_PARTY_PATH.search(path)
    if third_party:
        return _module_name(third_party.group(1)), THIRD_PARTY
    if path.startswith("<frozen "):
        return path[len("<frozen ") :].rstrip(">").split(".", 1)[0], STANDARD_LIBRARY
    stdlib = _STDLIB_PATH.search(path)
    if stdlib:
        return _module_name(stdlib.group(1) or stdlib.group(2)), STANDARD_LIBRARY
    if not path and top_module in _STDLIB_MODULES:
        return top_module, STANDARD_LIBRARY
    if top_module == _OWN_PACKAGE:
        # The profiler's own frames (``python -m codeguru_agent`` runs the program) are never the
        # user's code, even from an editable install outside site-packages.
        return top_module, THIRD_PARTY
    return top_module or key, USER_CODE


def _module_name(path_part: str) -> str:
    """``json`` from ``json``, ``six`` from ``six.py``, ``_cffi_backend`` from its shared object."""
    return path_part.split(".", 1)[0]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _utc(epoch_ms: Optional[float]) -> Optional[datetime]:
    if epoch_ms is None:
        return None
    try:
        return datetime.fromtimestamp(epoch_ms / 1000.0, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):  # a corrupt timestamp only costs the time range
        return None
