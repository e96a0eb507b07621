"""speedscope's JSON file format: one ``sampled`` profile whose samples are the tree's stacks.

Frames are shared by name and file; each stack is a list of frame indexes, root first, weighted by
its sample count (``unit: none``: the weights are samples, not seconds). See speedscope's published
file-format schema.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Final, List, Optional, Tuple

from codeguru_agent.viewer.model import CallTree

SCHEMA_URL: Final = "https://www.speedscope.app/file-format-schema.json"
EXPORTER: Final = "codeguru-agent"


def document(tree: CallTree, name: str) -> Dict[str, Any]:
    """The speedscope file of ``tree`` (side 0) as a JSON-ready dict."""
    frames: List[Dict[str, Any]] = []
    index_of: Dict[Tuple[str, Optional[str]], int] = {}
    frame_of_node: List[int] = [-1] * len(tree)
    for node in range(1, len(tree)):
        key = (tree.names[node], tree.files[node])
        index = index_of.get(key)
        if index is None:
            index = index_of[key] = len(frames)
            frame: Dict[str, Any] = {"name": tree.names[node]}
            if tree.files[node] is not None:
                frame["file"] = tree.files[node]
            if tree.line_min[node]:
                frame["line"] = tree.line_min[node]
            frames.append(frame)
        frame_of_node[node] = index
    samples: List[List[int]] = []
    weights: List[int] = []
    for path, count in tree.stacks():
        samples.append([frame_of_node[node] for node in path])
        weights.append(count)
    return {
        "$schema": SCHEMA_URL,
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": "none",
                "startValue": 0,
                "endValue": sum(weights),
                "samples": samples,
                "weights": weights,
            }
        ],
        "name": name,
        "activeProfileIndex": 0,
        "exporter": EXPORTER,
    }


def render(tree: CallTree, name: str) -> str:
    """The speedscope file of ``tree`` as compact JSON text."""
    return json.dumps(document(tree, name), separators=(",", ":"), ensure_ascii=False)
