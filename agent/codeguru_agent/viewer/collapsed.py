"""Collapsed ("folded") stacks: one ``root;caller;leaf COUNT`` line per stack.

The format flamegraph.pl, speedscope and Grafana Pyroscope's ingest read. It has no escaping, so
a frame name loses what would break a line: ``;`` (the frame separator) becomes ``,`` and line
breaks become spaces. The count is always the last space-separated field, so a name may still
contain spaces and digits.
"""

from __future__ import annotations

import re
from typing import Final

from codeguru_agent.viewer.model import CallTree

_UNSAFE: Final = re.compile(r"[\r\n\u2028\u2029]")


def frame_label(name: str) -> str:
    """A frame name as one field of a collapsed stack."""
    return _UNSAFE.sub(" ", name).replace(";", ",")


def render(tree: CallTree) -> str:
    """Every stack of ``tree`` (side 0) with its sample count, in the tree's depth-first order."""
    labels = [frame_label(name) for name in tree.names]
    return "".join(f"{';'.join(labels[index] for index in path)} {count}\n" for path, count in tree.stacks())
