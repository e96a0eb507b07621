"""Reading a flame graph page back the way its JavaScript does, for the flame graph tests."""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Tuple

_DATA = re.compile(r'<script type="application/json" id="fg-data">(.*?)</script>', re.DOTALL)

Path = Tuple[str, ...]


def embedded_data(page: str) -> Dict[str, Any]:
    """The JSON the page draws from."""
    match = _DATA.search(page)
    assert match, "the page has no embedded data"
    data: Dict[str, Any] = json.loads(match.group(1))
    return data


def frames(page: str) -> Dict[Path, Dict[str, Any]]:
    """Every frame the page would draw, by its path of names from the root (the root is ``()``)."""
    data = embedded_data(page)
    fields = data["fields"]
    width = len(fields)
    nodes = data["nodes"]
    paths: List[Path] = []
    result: Dict[Path, Dict[str, Any]] = {}
    for start in range(0, len(nodes), width):
        row = dict(zip(fields, nodes[start : start + width]))
        path = () if row["parent"] < 0 else paths[row["parent"]] + (data["names"][row["name"]],)
        paths.append(path)
        result[path] = {
            "total": row["total"],
            "self": row["self"],
            "file": data["files"][row["file"]] if row["file"] >= 0 else None,
            "lines": (row["line_min"], row["line_max"]),
            "package": tuple(data["packages"][row["package"]]) if row["package"] >= 0 else None,
            "order": len(paths) - 1,
        }
    return result
