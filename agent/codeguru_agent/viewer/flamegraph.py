"""Call graphs as one self-contained HTML flame graph (an icicle: callers above their callees).

The page carries its data as compact JSON and lays itself out in JavaScript on a canvas, so it opens
from a file with no network and stays responsive for tens of thousands of frames and stacks
thousands deep. Rendering is pure; :func:`write_flamegraph` is the one function that touches the
disk, so that local mode and the command line write the page the same way (atomically). Nothing
here recurses, imports boto3 or starts a thread: the collector and the agent both import it.
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
from datetime import datetime, timezone
from typing import Any, Dict, Final, Iterable, List, Mapping, Optional, Sequence, Tuple

from codeguru_agent.reporting.document import CallGraphNode, merge_callgraph, self_count, total_count

USER_CODE: Final = "user"
STANDARD_LIBRARY: Final = "stdlib"
THIRD_PARTY: Final = "thirdparty"
SYNTHETIC: Final = "synthetic"
"""Frame categories, coloured apart so a user can tell their code from what it runs on."""

NODE_FIELDS: Final = ("name", "file", "line_min", "line_max", "self", "total", "parent", "package")
"""The embedded ``nodes`` array is flat, ``len(NODE_FIELDS)`` integers per frame, in this order.

Frames are in depth-first order with the heaviest child first, so a frame's subtree is the run of
frames that follows it; the root is frame 0 with name -1 and parent -1; a missing file is -1 and a
missing line is 0. Names, files and packages are indexes into their own deduplicated tables.
"""

_THIRD_PARTY_PATH: Final = re.compile(r"/(?:site|dist)-packages/([^/]+)")
_STDLIB_PATH: Final = re.compile(r"/lib/(?:python|pypy)\d+(?:\.\d+)?t?/([^/]+)|^[A-Za-z]:/(?:[^/]+/)*Lib/([^/]+)")
_STDLIB_MODULES: Final = frozenset(getattr(sys, "stdlib_module_names", ()))
_OWN_PACKAGE: Final = __name__.split(".", 1)[0]


def render_html(callgraph: Mapping[str, Any], title: str, subtitle: str = "") -> str:
    """The flame graph page of one call graph (the anonymous root node of a profile document)."""
    data = _flatten(callgraph)
    values = {
        "TITLE": html.escape(title),
        "SUBTITLE": html.escape(subtitle),
        "BODY_CLASS": "" if data["total"] else "empty",
        "DATA": _script_json(data),
    }
    return re.sub(r"__(TITLE|SUBTITLE|BODY_CLASS|DATA)__", lambda match: values[match.group(1)], _PAGE)


def merge_documents(documents: Iterable[Mapping[str, Any]]) -> CallGraphNode:
    """One call graph holding the samples of every document, frame by frame."""
    merged: CallGraphNode = {}
    for document in documents:
        merge_callgraph(merged, document.get("callgraph") or {})
    return merged


def render_documents(documents: Sequence[Mapping[str, Any]], title: str) -> str:
    """The flame graph page of several profile documents merged, subtitled with what they cover."""
    callgraph = merge_documents(documents)
    return render_html(callgraph, title, describe_documents(documents, total_count(callgraph)))


def write_flamegraph(documents: Iterable[Mapping[str, Any]], out_path: str, title: str) -> str:
    """Write the merged flame graph of ``documents`` to ``out_path`` and return its absolute path.

    The page is written beside its destination and renamed into place, so a browser or a second
    process never sees half a page.
    """
    page = render_documents(list(documents), title)
    path = os.path.abspath(out_path)
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(page)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _utc(epoch_ms: Optional[float]) -> Optional[datetime]:
    if epoch_ms is None:
        return None
    try:
        return datetime.fromtimestamp(epoch_ms / 1000.0, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):  # a corrupt timestamp only costs the time range
        return None


def _flatten(callgraph: Mapping[str, Any]) -> Dict[str, Any]:
    """The call graph as the page's compact tables (see :data:`NODE_FIELDS`), built iteratively.

    Frames with no samples anywhere below them are left out: they would be zero pixels wide.
    """
    # First pass: every node in depth-first order, so a parent always comes before its children.
    nodes: List[Mapping[str, Any]] = []
    keys: List[str] = []
    parents: List[int] = []
    pending: List[Tuple[str, Mapping[str, Any], int]] = [("", callgraph, -1)]
    while pending:
        key, node, parent = pending.pop()
        index = len(nodes)
        nodes.append(node)
        keys.append(key)
        parents.append(parent)
        pending.extend((name, child, index) for name, child in (node.get("children") or {}).items())
    totals = [self_count(node) for node in nodes]
    for index in range(len(nodes) - 1, 0, -1):
        totals[parents[index]] += totals[index]

    # Second pass: heaviest child first, so the eye lands on the widest frames at the left.
    children: List[List[int]] = [[] for _ in nodes]
    for index in range(1, len(nodes)):
        if totals[index] > 0:
            children[parents[index]].append(index)
    names: Dict[str, int] = {}
    files: Dict[str, int] = {}
    packages: Dict[Tuple[str, str], int] = {}
    flat: List[int] = []
    order = [(0, -1)]
    while order:
        index, parent = order.pop()
        node = nodes[index]
        position = len(flat) // len(NODE_FIELDS)
        file = node.get("file")
        lines = [line for line in (node.get("line") or ()) if _is_number(line)]
        if index == 0:
            name_id = package_id = -1
        else:
            name_id = names.setdefault(keys[index], len(names))
            package = _package(keys[index], file if isinstance(file, str) else None)
            package_id = packages.setdefault(package, len(packages))
        flat.extend(
            (
                name_id,
                files.setdefault(file, len(files)) if isinstance(file, str) and index else -1,
                int(min(lines)) if lines else 0,
                int(max(lines)) if lines else 0,
                self_count(node),
                totals[index],
                parent,
                package_id,
            )
        )
        kids = sorted(children[index], key=lambda kid: (-totals[kid], keys[kid]))
        order.extend((kid, position) for kid in reversed(kids))
    return {
        "total": totals[0],
        "fields": list(NODE_FIELDS),
        "names": list(names),
        "files": list(files),
        "packages": [list(package) for package in packages],
        "nodes": flat,
    }


def _package(key: str, file: Optional[str]) -> Tuple[str, str]:
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


def _script_json(data: Mapping[str, Any]) -> str:
    """JSON that is safe inside a ``<script>`` element whatever the frame names contain.

    Escaping ``<``, ``>`` and ``&`` keeps ``</script>`` and ``<!--`` out of the element; ASCII-only
    output keeps lone surrogates and line separators from breaking the page's encoding.
    """
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_PAGE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
:root {
  --text: #1f2328; --muted: #59636e; --line: #d1d9e0; --panel: #f6f8fa; --accent: #0969da;
  --sans: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace;
}
* { box-sizing: border-box; }
html, body { height: 100%; margin: 0; }
body { display: flex; flex-direction: column; font: 14px/1.45 var(--sans); color: var(--text); background: #fff; }
header { padding: 14px 20px 10px; border-bottom: 1px solid var(--line); }
h1 { margin: 0; font-size: 20px; font-weight: 600; overflow-wrap: anywhere; }
.subtitle { margin-top: 2px; color: var(--muted); overflow-wrap: anywhere; }
.howto { margin-top: 8px; color: var(--muted); font-size: 13px; }
.legend { display: inline-flex; flex-wrap: wrap; gap: 4px 14px; margin-left: 6px; }
.legend span { white-space: nowrap; }
.swatch { display: inline-block; width: 11px; height: 11px; margin-right: 5px; border-radius: 2px; vertical-align: -1px; }
.toolbar { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 12px; padding: 8px 20px;
  background: var(--panel); border-bottom: 1px solid var(--line); }
.toolbar input { width: 280px; padding: 5px 9px; border: 1px solid var(--line); border-radius: 6px; font: 13px var(--sans); }
.toolbar input:focus { outline: 2px solid var(--accent); outline-offset: -1px; }
.matches { flex: 1 1 auto; color: var(--muted); font-size: 13px; }
.matches.hit { color: #a4126b; font-weight: 600; }
.crumbs { display: flex; align-items: baseline; min-width: 0; padding: 6px 20px; border-bottom: 1px solid var(--line);
  font: 12.5px var(--mono); white-space: nowrap; }
.crumbs > * { flex: 0 1 auto; min-width: 1.5em; overflow: hidden; text-overflow: ellipsis; }
.crumbs button { padding: 0; border: 0; background: none; color: var(--accent); font: inherit; cursor: pointer; }
.crumbs button:hover { text-decoration: underline; }
.crumbs .here { flex-shrink: 0; max-width: 70%; font-weight: 600; }
.crumbs .sep { flex-shrink: 0; min-width: 0; margin: 0 7px; color: var(--muted); }
.crumbs .note { flex-shrink: 0; margin-left: 10px; color: var(--muted); font-family: var(--sans); }
.toolbar > button { padding: 4px 12px; border: 1px solid var(--line); border-radius: 6px; background: #fff;
  font: 13px var(--sans); cursor: pointer; }
.toolbar > button:hover { background: #eef1f4; }
.toolbar > button:disabled { color: #aab1b8; cursor: default; background: #fff; }
#graph { position: relative; flex: 1 1 auto; min-height: 240px; overflow: auto; }
#graph canvas { position: sticky; top: 0; display: block; }
#tip { position: fixed; z-index: 10; display: none; max-width: min(640px, 90vw); padding: 8px 11px; pointer-events: none;
  background: #fff; border: 1px solid var(--line); border-radius: 6px; box-shadow: 0 6px 18px rgba(31, 35, 40, .16);
  font-size: 12px; }
#tip .name { font: 600 12.5px var(--mono); overflow-wrap: anywhere; }
#tip .where { margin-top: 2px; color: var(--muted); font-family: var(--mono); overflow-wrap: anywhere; }
#tip table { margin-top: 6px; border-collapse: collapse; }
#tip td { padding: 1px 10px 1px 0; white-space: nowrap; }
#tip td:first-child { color: var(--muted); }
#tip .hint { margin-top: 6px; color: var(--muted); }
#tip .swatch { width: 9px; height: 9px; }
.empty-note { display: none; margin: 48px auto; color: var(--muted); font-size: 16px; text-align: center; }
body.empty .empty-note { display: block; }
body.empty .toolbar, body.empty .crumbs, body.empty #graph, body.empty .howto { display: none; }
</style>
</head>
<body class="__BODY_CLASS__">
<header>
  <h1>__TITLE__</h1>
  <div class="subtitle">__SUBTITLE__</div>
  <div class="howto">How to read this: each bar is a function, and the bars under it are the functions it called.
    A bar&rsquo;s width is its share of all samples, itself plus its callees, so wide bars are where the time goes.
    Hover for details, click to zoom in, Esc to zoom out, press / to search.
    <span class="legend">
      <span><i class="swatch" data-category="user"></i>your code</span>
      <span><i class="swatch" data-category="stdlib"></i>standard library</span>
      <span><i class="swatch" data-category="thirdparty"></i>installed packages</span>
      <span><i class="swatch" data-category="synthetic"></i>waiting and synthetic frames</span>
    </span>
  </div>
</header>
<div class="empty-note">No samples: this profile is empty, so there is nothing to draw.</div>
<div class="toolbar">
  <input type="search" id="search" placeholder="Search frames (press /)" autocomplete="off" spellcheck="false">
  <span class="matches" id="matches"></span>
  <button type="button" id="reset" disabled>Zoom out to all</button>
</div>
<nav class="crumbs" id="crumbs" aria-label="Zoomed frame and its callers"></nav>
<div id="graph"><canvas id="canvas"></canvas><div id="spacer"></div></div>
<div id="tip"></div>
<script type="application/json" id="fg-data">__DATA__</script>
<script>
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("fg-data").textContent);
  if (!DATA.total) { return; }
  var ROW = 18, MIN_WIDTH = 0.4;
  var F = {}, STRIDE = DATA.fields.length;
  DATA.fields.forEach(function (field, i) { F[field] = i; });
  var raw = DATA.nodes, count = raw.length / STRIDE, ALL = DATA.total;
  var names = DATA.names, files = DATA.files, packages = DATA.packages;
  var CATEGORY = {
    user: "your code", stdlib: "standard library", thirdparty: "installed package", synthetic: "synthetic frame"
  };

  var parent = new Int32Array(count), depth = new Int32Array(count), size = new Int32Array(count);
  var total = new Float64Array(count), start = new Float64Array(count), next = new Float64Array(count);
  for (var i = 0; i < count; i++) {
    var p = raw[i * STRIDE + F.parent];
    parent[i] = p; total[i] = raw[i * STRIDE + F.total]; size[i] = 1;
    if (p >= 0) { depth[i] = depth[p] + 1; start[i] = next[p]; next[p] += total[i]; }
    next[i] = start[i];
  }
  for (i = count - 1; i > 0; i--) { size[parent[i]] += size[i]; }

  function field(i, name) { return raw[i * STRIDE + F[name]]; }
  function nameOf(i) { return i === 0 ? "all" : names[field(i, "name")]; }

  function hash(text) {
    var h = 2166136261;
    for (var k = 0; k < text.length; k++) { h ^= text.charCodeAt(k); h = Math.imul(h, 16777619); }
    return (h >>> 0) / 4294967295;
  }
  // Per category: hue, saturation and lightness ranges; the package picks the hue, the frame the shade.
  var PALETTE = {
    user: [14, 42, 72, 86, 60, 68], stdlib: [198, 226, 55, 68, 66, 74],
    thirdparty: [92, 150, 36, 48, 56, 65], synthetic: [235, 265, 6, 10, 76, 80]
  };
  function hsl(h, s, l) { return "hsl(" + h.toFixed(1) + "," + s.toFixed(1) + "%," + l.toFixed(1) + "%)"; }
  function categoryColour(category) {
    var r = PALETTE[category];
    return hsl((r[0] + r[1]) / 2, (r[2] + r[3]) / 2, (r[4] + r[5]) / 2);
  }
  Array.prototype.forEach.call(document.querySelectorAll(".swatch[data-category]"), function (swatch) {
    swatch.style.background = categoryColour(swatch.getAttribute("data-category"));
  });
  var colours = [];
  function colour(i) {
    if (colours[i]) { return colours[i]; }
    if (i === 0) { return (colours[i] = "hsl(220,10%,84%)"); }
    var pkg = packages[field(i, "package")], range = PALETTE[pkg[1]];
    var a = hash(pkg[0]), b = hash(nameOf(i));
    var h = range[0] + (range[1] - range[0]) * a, s = range[2] + (range[3] - range[2]) * b;
    var l = range[4] + (range[5] - range[4]) * (a * 0.4 + b * 0.6);
    return (colours[i] = hsl(h, s, l));
  }

  function formatCount(n) { return n.toLocaleString("en-US"); }
  function percent(part, whole) {
    var v = whole > 0 ? 100 * part / whole : 0;
    return (v === 0 || v >= 10 ? v.toFixed(1) : v >= 0.1 ? v.toFixed(2) : v.toPrecision(2)) + "%";
  }
  function samples(n) { return formatCount(n) + (n === 1 ? " sample" : " samples"); }

  var graph = document.getElementById("graph"), canvas = document.getElementById("canvas");
  var spacer = document.getElementById("spacer"), tip = document.getElementById("tip");
  var crumbs = document.getElementById("crumbs"), reset = document.getElementById("reset");
  var search = document.getElementById("search"), matchInfo = document.getElementById("matches");
  var ctx = canvas.getContext("2d");
  var FONT = "12px " + getComputedStyle(document.body).getPropertyValue("--mono");
  var focus = 0, hover = -1, matched = null, charWidth = 7, scheduled = false;

  function labelFor(i, width) {
    var chars = Math.floor((width - 8) / charWidth);
    if (chars < 2) { return ""; }
    var name = nameOf(i);
    if (i === 0) { name = "all (" + samples(ALL) + ")"; }
    if (name.length <= chars) { return name; }
    var parts = name.split(":");
    for (var k = 1; k < parts.length; k++) {
      var shorter = parts.slice(k).join(":");
      if (shorter.length <= chars) { return shorter; }
    }
    var last = parts[parts.length - 1];
    return chars > 4 ? last.slice(0, chars - 1) + "\\u2026" : "";
  }

  function subtreeDepth(i) {
    var deepest = depth[i];
    for (var k = i, end = i + size[i]; k < end; k++) { if (depth[k] > deepest) { deepest = depth[k]; } }
    return deepest;
  }

  function layoutHeight() {
    var height = (subtreeDepth(focus) + 1) * ROW + ROW;
    spacer.style.height = Math.max(0, height - graph.clientHeight) + "px";
  }

  function box(i, x, w, y, faded) {
    var dim = matched !== null && !matched[i];
    ctx.globalAlpha = faded ? 0.55 : 1;
    ctx.fillStyle = dim ? "#e6e8eb" : matched !== null ? "hsl(326,78%,62%)" : colour(i);
    ctx.fillRect(x, y, Math.max(w - 1, 0.6), ROW - 1);
    if (w >= 20) {
      var label = labelFor(i, w);
      if (label) {
        ctx.fillStyle = dim ? "#9198a1" : "#1b1f24";
        ctx.fillText(label, x + 4, y + ROW / 2);
      }
    }
    ctx.globalAlpha = 1;
    if (i === hover) {
      ctx.strokeStyle = "#1b1f24"; ctx.lineWidth = 1.5;
      ctx.strokeRect(x + 0.75, y + 0.75, Math.max(w - 2.5, 0.5), ROW - 2.5);
    }
  }

  function draw() {
    scheduled = false;
    var width = graph.clientWidth, height = graph.clientHeight, ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio); canvas.height = Math.round(height * ratio);
      canvas.style.width = width + "px"; canvas.style.height = height + "px";
    }
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = FONT; ctx.textBaseline = "middle";
    charWidth = ctx.measureText("mmmmmmmmmm").width / 10 || 7;
    var top = graph.scrollTop, firstRow = Math.floor(top / ROW), lastRow = Math.ceil((top + height) / ROW);
    for (var a = parent[focus]; a >= 0; a = parent[a]) {
      if (depth[a] >= firstRow && depth[a] <= lastRow) { box(a, 0, width, depth[a] * ROW - top, true); }
    }
    var scale = width / total[focus], origin = start[focus], stack = [focus];
    while (stack.length) {
      var i = stack.pop(), w = total[i] * scale;
      if (w < MIN_WIDTH) { continue; }
      if (depth[i] >= firstRow) { box(i, (start[i] - origin) * scale, w, depth[i] * ROW - top, false); }
      if (depth[i] < lastRow) {
        for (var c = i + 1, end = i + size[i]; c < end; c += size[c]) { stack.push(c); }
      }
    }
  }

  function redraw() {
    if (!scheduled) { scheduled = true; window.requestAnimationFrame(draw); }
  }

  // The frame under the pointer, found from the layout itself (not from the last drawing), by
  // descending from the zoomed frame one row at a time to the pointer's row.
  function frameAt(event) {
    var rect = canvas.getBoundingClientRect(), x = event.clientX - rect.left;
    var row = Math.floor((event.clientY - rect.top + graph.scrollTop) / ROW), i = focus;
    if (x < 0 || x >= rect.width || row < 0) { return -1; }
    if (row < depth[focus]) {
      while (depth[i] > row) { i = parent[i]; }
      return i;
    }
    var scale = rect.width / total[focus], at = start[focus] + x / scale;
    while (depth[i] < row) {
      var found = -1;
      for (var c = i + 1, end = i + size[i]; c < end; c += size[c]) {
        if (at >= start[c] && at < start[c] + total[c]) { found = c; break; }
      }
      if (found < 0) { return -1; }
      i = found;
    }
    return total[i] * scale >= MIN_WIDTH ? i : -1;
  }

  function add(parentElement, tag, className, text) {
    var element = document.createElement(tag);
    if (className) { element.className = className; }
    if (text !== undefined) { element.textContent = text; }
    parentElement.appendChild(element);
    return element;
  }

  function showTip(i, event) {
    tip.textContent = "";
    add(tip, "div", "name", i === 0 ? "all samples" : nameOf(i));
    var file = field(i, "file"), low = field(i, "line_min"), high = field(i, "line_max");
    if (file >= 0) {
      var lines = low ? (high > low ? ", lines " + low + "\\u2013" + high : ", line " + low) : "";
      add(tip, "div", "where", files[file] + lines);
    }
    var table = add(tip, "table");
    function row(label, value) {
      var tr = add(table, "tr");
      add(tr, "td", "", label); add(tr, "td", "", value);
    }
    if (i !== 0) {
      var pkg = packages[field(i, "package")], tr = add(table, "tr"), cell;
      add(tr, "td", "", "Package");
      cell = add(tr, "td");
      add(cell, "i", "swatch").style.background = categoryColour(pkg[1]);
      cell.appendChild(document.createTextNode(pkg[0] + " (" + CATEGORY[pkg[1]] + ")"));
    }
    row("Total", samples(total[i]) + ", " + percent(total[i], ALL) + " of all");
    if (focus !== 0 && i !== focus && depth[i] > depth[focus]) {
      row("", percent(total[i], total[focus]) + " of the zoomed frame");
    }
    var own = field(i, "self");
    row("Self", samples(own) + ", " + percent(own, ALL) + " of all");
    add(tip, "div", "hint", i === focus ? (i === 0 ? "" : "Esc zooms out") : "Click to zoom");
    tip.style.display = "block";
    var margin = 14, tw = tip.offsetWidth, th = tip.offsetHeight;
    var left = event.clientX + margin, topPx = event.clientY + margin;
    if (left + tw > window.innerWidth - 4) { left = Math.max(4, event.clientX - margin - tw); }
    if (topPx + th > window.innerHeight - 4) { topPx = Math.max(4, event.clientY - margin - th); }
    tip.style.left = left + "px"; tip.style.top = topPx + "px";
  }

  function zoom(i) {
    focus = i;
    reset.disabled = focus === 0;
    crumbs.textContent = "";
    var path = [];
    for (var a = focus; a >= 0; a = parent[a]) { path.push(a); }
    path.reverse();
    var shown = path.length > 6 ? [path[0], -1].concat(path.slice(path.length - 4)) : path;
    shown.forEach(function (node, k) {
      if (k > 0) { add(crumbs, "span", "sep", "\\u203a"); }
      if (node < 0) { add(crumbs, "span", "sep", "\\u2026 " + formatCount(path.length - 5) + " more"); return; }
      if (node === focus) { add(crumbs, "span", "here", node === 0 ? "all" : nameOf(node)).title = nameOf(node); return; }
      var parts = nameOf(node).split(":");
      var button = add(crumbs, "button", "", node === 0 ? "all" : parts.slice(Math.max(1, parts.length - 2)).join(":"));
      button.type = "button"; button.title = nameOf(node);
      button.addEventListener("click", function () { zoom(node); });
    });
    add(crumbs, "span", "note", focus === 0 ? samples(ALL) + " \\u2014 click a frame to zoom in"
      : samples(total[focus]) + ", " + percent(total[focus], ALL) + " of all");
    layoutHeight();
    updateMatches();
    draw();
  }

  function runSearch() {
    var query = search.value.trim().toLowerCase();
    if (!query) { matched = null; updateMatches(); redraw(); return; }
    var lower = names.map(function (name) { return name.toLowerCase(); });
    matched = new Uint8Array(count);
    for (var k = 1; k < count; k++) { matched[k] = lower[field(k, "name")].indexOf(query) >= 0 ? 1 : 0; }
    updateMatches();
    redraw();
  }

  function updateMatches() {
    matchInfo.className = "matches";
    if (matched === null) { matchInfo.textContent = ""; return; }
    // A match inside another match is already counted by its ancestor, so no sample counts twice.
    var covered = new Uint8Array(count), inAll = 0, inFocus = 0, frames = 0;
    var focusEnd = focus + size[focus];
    for (var k = 1; k < count; k++) {
      var above = covered[parent[k]];
      covered[k] = above || matched[k];
      if (!matched[k]) { continue; }
      frames++;
      if (!above) {
        inAll += total[k];
        if (k >= focus && k < focusEnd) { inFocus += total[k]; }
      }
    }
    if (!frames) { matchInfo.textContent = "No matching frames"; return; }
    matchInfo.className = "matches hit";
    var text = "Matched " + percent(inAll, ALL) + " of samples (" + formatCount(frames) +
      (frames === 1 ? " frame)" : " frames)");
    if (focus !== 0) { text += ", " + percent(inFocus, total[focus]) + " of the zoomed frame"; }
    matchInfo.textContent = text;
  }

  canvas.addEventListener("mousemove", function (event) {
    var i = frameAt(event);
    if (i !== hover) { hover = i; canvas.style.cursor = i >= 0 ? "pointer" : "default"; redraw(); }
    if (i >= 0) { showTip(i, event); } else { tip.style.display = "none"; }
  });
  canvas.addEventListener("mouseleave", function () { hover = -1; tip.style.display = "none"; redraw(); });
  canvas.addEventListener("click", function (event) {
    var i = frameAt(event);
    if (i >= 0 && i !== focus) { zoom(i); tip.style.display = "none"; }
  });
  reset.addEventListener("click", function () { zoom(0); });
  search.addEventListener("input", runSearch);
  document.addEventListener("keydown", function (event) {
    if (event.key === "/" && document.activeElement !== search) { event.preventDefault(); search.focus(); }
    else if (event.key === "Escape") {
      if (document.activeElement === search && search.value) { search.value = ""; runSearch(); }
      else if (focus !== 0) { zoom(0); }
    }
  });
  graph.addEventListener("scroll", function () { tip.style.display = "none"; redraw(); });
  window.addEventListener("resize", function () { layoutHeight(); redraw(); });
  zoom(0);
})();
</script>
</body>
</html>
"""
