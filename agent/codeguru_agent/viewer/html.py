"""The profile page: one self-contained HTML file with the call tree embedded and its assets inlined.

The page's HTML, CSS and JavaScript are files in ``assets/`` (read with ``importlib.resources``, so
an installed wheel has them); the renderer fills in the title and the data and inlines the style and
script, so a written page opens from a file with no network. The page lays itself out on a canvas
and offers the flame graph, hotspots with callers and callees, the CPU-only estimate and, for a
comparison, the differential flame graph (see ``assets/page.js``).
"""

from __future__ import annotations

import functools
import html
import json
import re
from importlib import resources
from typing import Any, Dict, Final, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote

from codeguru_agent.viewer.model import CallTree, package_of
from codeguru_agent.viewer.waiting import WAITING_RULES, waiting_rules

NODE_FIELDS: Final = ("name", "file", "line_min", "line_max", "self", "total", "parent", "package", "waiting")
"""The embedded ``nodes`` array is flat, ``len(fields)`` integers per frame, in this order.

Frames are in the model's depth-first order (heaviest child first); the root is frame 0 with name
-1 and parent -1; a missing file is -1 and a missing line is 0; ``waiting`` is the index of the
waiting rule that covers the frame's own samples, or -1. Names, files and packages are indexes
into their own deduplicated tables. A comparison adds ``base_self`` and ``base_total``, the
baseline side's counts (``self`` and ``total`` are then the compared side's).
"""
COMPARISON_FIELDS: Final = ("base_self", "base_total")
_PLACEHOLDER: Final = re.compile(r"__(TITLE|SUBTITLE|BODY_CLASS|STYLE|SCRIPT|DATA)__")


def render_page(
    tree: CallTree,
    title: str,
    subtitle: str = "",
    *,
    sides: Optional[Tuple[str, str]] = None,
    collector: Optional[Mapping[str, Any]] = None,
    exports: Sequence[Tuple[str, str]] = (),
) -> str:
    """The page of ``tree``; a two-sided tree (compared side first) with ``sides`` labels
    (compared, baseline) is a comparison. ``collector`` holds the picker's state when the
    collector serves the page; ``exports`` are (label, link) pairs offered as downloads."""
    data = page_data(tree)
    if len(tree.totals) > 1:
        compared, baseline = sides or ("the comparison", "the baseline")
        data["kind"] = "comparison"
        data["sides"] = {"current": compared, "baseline": baseline}
    if collector is not None:
        data["collector"] = dict(collector)
    data["exports"] = [{"label": label, "href": href} for label, href in exports]
    empty = not any(totals[0] for totals in tree.totals)
    assets = _assets()
    values = {
        "TITLE": html.escape(title),
        "SUBTITLE": html.escape(subtitle),
        "BODY_CLASS": "empty" if empty else "",
        "STYLE": assets["page.css"],
        "SCRIPT": assets["page.js"],
        "DATA": _script_json(data),
    }
    # One pass, so text from the data or the assets is never taken for a placeholder.
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], assets["page.html"])


def page_data(tree: CallTree) -> Dict[str, Any]:
    """The compact tables the page draws from (see :data:`NODE_FIELDS`)."""
    comparison = len(tree.totals) > 1
    names: Dict[str, int] = {}
    files: Dict[str, int] = {}
    packages: Dict[Tuple[str, str], int] = {}
    waiting = waiting_rules(tree)
    flat: List[int] = []
    for index in range(len(tree)):
        file = tree.files[index]
        if index == 0:
            name_id = package_id = -1
        else:
            name_id = names.setdefault(tree.names[index], len(names))
            package_id = packages.setdefault(package_of(tree.names[index], file), len(packages))
        flat.extend(
            (
                name_id,
                files.setdefault(file, len(files)) if file is not None and index else -1,
                tree.line_min[index],
                tree.line_max[index],
                tree.self_counts[0][index],
                tree.totals[0][index],
                tree.parents[index],
                package_id,
                waiting[index],
            )
        )
        if comparison:
            flat.extend((tree.self_counts[1][index], tree.totals[1][index]))
    return {
        "kind": "profile",
        "total": tree.total,
        "fields": list(NODE_FIELDS + (COMPARISON_FIELDS if comparison else ())),
        "names": list(names),
        "files": list(files),
        "packages": [list(package) for package in packages],
        "waitingRules": [rule.name for rule in WAITING_RULES],
        "nodes": flat,
    }


def render_index(groups: Sequence[Tuple[str, Optional[str]]], title: str = "Profiling groups") -> str:
    """The collector's front page: each group with the time of its latest profile, linked to its page."""
    assets = _assets()
    rows = "".join(
        f'<tr><td><a href="/profilingGroups/{html.escape(quote(name, safe=""))}/flamegraph.html?period=PT1H">'
        f"{html.escape(name)}</a></td><td>{html.escape(latest or 'no profiles yet')}</td></tr>"
        for name, latest in groups
    )
    table = (
        f'<table class="hotspots groups"><thead><tr><th scope="col">Group</th><th scope="col">Latest profile (UTC)'
        f"</th></tr></thead><tbody>{rows}</tbody></table>"
        if groups
        else '<p class="howto">No profiling groups yet: point an agent at this collector to create one.</p>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{assets['page.css']}\n</style>\n</head>\n<body>\n"
        f'<header><h1>{html.escape(title)}</h1><p class="subtitle">Open a group to see its profiles: the last hour '
        f"at first, then any range and a comparison.</p></header>\n"
        f'<main class="view"><div class="table-wrap">{table}</div></main>\n</body>\n</html>\n'
    )


@functools.lru_cache(maxsize=1)
def _assets() -> Dict[str, str]:
    """The page's HTML, CSS and JavaScript from the package's ``assets`` folder."""
    folder = resources.files("codeguru_agent.viewer").joinpath("assets")
    return {name: folder.joinpath(name).read_text(encoding="utf-8") for name in ("page.html", "page.css", "page.js")}


def _script_json(data: Mapping[str, Any]) -> str:
    """JSON that is safe inside a ``<script>`` element whatever the frame names contain.

    Escaping ``<``, ``>`` and ``&`` keeps ``</script>`` and ``<!--`` out of the element; ASCII-only
    output keeps lone surrogates and line separators from breaking the page's encoding.
    """
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
