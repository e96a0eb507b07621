// The profile page: flame graph, hotspots with a sandwich, a CPU-only estimate and a comparison,
// all drawn from the call tree embedded in #fg-data (see codeguru_agent/viewer/html.py).
//
// Every tree here is a set of flat typed arrays in depth-first order, heaviest child first, so a
// frame's subtree is the run of `size[i]` frames that starts at `i`. Nothing recurses over the
// depth of a stack: Python stacks can be thousands of frames deep, deeper than the JS call stack.
(() => {
  "use strict";

  const DATA = JSON.parse(document.getElementById("fg-data").textContent);
  const F = {};
  DATA.fields.forEach((name, index) => { F[name] = index; });
  const STRIDE = DATA.fields.length, RAW = DATA.nodes, COUNT = RAW.length / STRIDE;
  const NAMES = DATA.names, FILES = DATA.files, PACKAGES = DATA.packages;
  const COMPARISON = DATA.kind === "comparison";
  const ROW = 18, MIN_WIDTH = 0.4, TABLE_ROWS = 300, TOP_CHANGES = 10;
  const CATEGORY = {
    user: "your code", stdlib: "standard library", thirdparty: "installed package", synthetic: "synthetic frame",
  };
  const LEGEND = {
    user: "your code", stdlib: "standard library", thirdparty: "installed packages",
    synthetic: "waiting and synthetic frames",
  };

  const raw = (i, name) => RAW[i * STRIDE + F[name]];
  const tip = document.getElementById("tip"), status = document.getElementById("status");

  // ---- Formatting -------------------------------------------------------------------------------

  const formatCount = (n) => Math.round(n).toLocaleString("en-US");
  const samples = (n) => formatCount(n) + (Math.round(n) === 1 ? " sample" : " samples");
  function percent(part, whole) {
    const v = whole > 0 ? 100 * part / whole : 0;
    return (v === 0 || v >= 10 ? v.toFixed(1) : v >= 0.1 ? v.toFixed(2) : v.toPrecision(2)) + "%";
  }
  function points(delta) {
    const v = 100 * delta;
    return (v > 0 ? "+" : v < 0 ? "\u2212" : "\u00b1") + Math.abs(v).toFixed(2) + " points";
  }
  /** The last one or two parts of `module:Class:function`, or the whole name if it has no `:`. */
  function shortName(name) {
    const parts = name.split(":");
    return parts.length > 1 ? parts.slice(Math.max(1, parts.length - 2)).join(":") : name;
  }
  function add(parent, tag, className, text) {
    const element = document.createElement(tag);
    if (className) { element.className = className; }
    if (text !== undefined) { element.textContent = text; }
    parent.appendChild(element);
    return element;
  }

  // ---- Colours ----------------------------------------------------------------------------------

  function hash(text) {
    let h = 2166136261;
    for (let k = 0; k < text.length; k++) { h ^= text.charCodeAt(k); h = Math.imul(h, 16777619); }
    return (h >>> 0) / 4294967295;
  }
  // Per category: hue, saturation and lightness ranges; the package picks the hue, the frame the shade.
  const PALETTE = {
    user: [14, 42, 72, 86, 60, 68], stdlib: [198, 226, 55, 68, 66, 74],
    thirdparty: [92, 150, 36, 48, 56, 65], synthetic: [235, 265, 6, 10, 76, 80],
  };
  const hsl = (h, s, l) => "hsl(" + h.toFixed(1) + "," + s.toFixed(1) + "%," + l.toFixed(1) + "%)";
  function categoryColour(category) {
    const r = PALETTE[category];
    return hsl((r[0] + r[1]) / 2, (r[2] + r[3]) / 2, (r[4] + r[5]) / 2);
  }
  const ROOT_COLOUR = "hsl(220,10%,84%)", MATCH_COLOUR = "hsl(326,78%,62%)", DIMMED = "#e6e8eb";
  const keyColours = new Map();
  /** A frame's colour by its name and package (the same name is the same colour in every view). */
  function keyColour(key) {
    if (key < 0) { return ROOT_COLOUR; }
    let colour = keyColours.get(key);
    if (colour === undefined) {
      const pkg = PACKAGES[packageOf[key]], range = PALETTE[pkg[1]];
      const a = hash(pkg[0]), b = hash(NAMES[key]);
      colour = hsl(range[0] + (range[1] - range[0]) * a, range[2] + (range[3] - range[2]) * b,
        range[4] + (range[5] - range[4]) * (a * 0.4 + b * 0.6));
      keyColours.set(key, colour);
    }
    return colour;
  }

  // ---- The embedded profile ---------------------------------------------------------------------

  const base = {
    parent: new Int32Array(COUNT), key: new Int32Array(COUNT), self: new Float64Array(COUNT),
    baseSelf: new Float64Array(COUNT), waiting: new Int32Array(COUNT),
  };
  const packageOf = new Int32Array(NAMES.length), fileOf = new Int32Array(NAMES.length).fill(-1);
  for (let i = 0; i < COUNT; i++) {
    base.parent[i] = raw(i, "parent");
    base.key[i] = raw(i, "name");
    base.self[i] = raw(i, "self");
    base.waiting[i] = raw(i, "waiting");
    if (COMPARISON) { base.baseSelf[i] = raw(i, "base_self"); }
    if (i > 0) {
      packageOf[base.key[i]] = raw(i, "package");
      if (fileOf[base.key[i]] < 0) { fileOf[base.key[i]] = raw(i, "file"); }
    }
  }
  const ALL = COUNT ? raw(0, "total") : 0;
  const BASE_ALL = COMPARISON && COUNT ? raw(0, "base_total") : 0;

  /**
   * A drawable tree from any list of frames whose parents come before them: `weight` is each
   * frame's own width, `extra` holds other per-frame counts summed the same way (a comparison's two
   * sides), `origin` maps a frame back to the embedded profile (-1 for none). Frames of zero total
   * weight are left out; children are ordered heaviest first.
   */
  function makeTree(parent, key, weight, origin, extra) {
    const n = parent.length, total = Float64Array.from(weight);
    const extraNames = Object.keys(extra || {}), extraTotals = extraNames.map((name) => Float64Array.from(extra[name]));
    for (let i = n - 1; i > 0; i--) {
      total[parent[i]] += total[i];
      for (const sums of extraTotals) { sums[parent[i]] += sums[i]; }
    }
    const kids = new Array(n);
    for (let i = 1; i < n; i++) {
      if (total[i] > 0) { (kids[parent[i]] || (kids[parent[i]] = [])).push(i); }
    }
    const order = [], at = new Int32Array(n).fill(-1), pending = [0];
    while (pending.length) {
      const i = pending.pop();
      at[i] = order.length;
      order.push(i);
      const children = kids[i];
      if (children) {
        children.sort((a, b) => total[b] - total[a] || key[a] - key[b]);
        for (let c = children.length - 1; c >= 0; c--) { pending.push(children[c]); }
      }
    }
    const m = order.length;
    const tree = {
      n: m, parent: new Int32Array(m), key: new Int32Array(m), depth: new Int32Array(m), size: new Int32Array(m),
      self: new Float64Array(m), total: new Float64Array(m), start: new Float64Array(m), origin: new Int32Array(m),
      extra: {}, maxDepth: 0,
    };
    extraNames.forEach((name) => { tree.extra[name] = { self: new Float64Array(m), total: new Float64Array(m) }; });
    const next = new Float64Array(m);
    for (let j = 0; j < m; j++) {
      const i = order[j], p = j === 0 ? -1 : at[parent[i]];
      tree.parent[j] = p;
      tree.key[j] = key[i];
      tree.self[j] = weight[i];
      tree.total[j] = total[i];
      tree.origin[j] = origin ? origin[i] : -1;
      tree.size[j] = 1;
      extraNames.forEach((name, e) => {
        tree.extra[name].self[j] = extra[name][i];
        tree.extra[name].total[j] = extraTotals[e][i];
      });
      if (p >= 0) {
        tree.depth[j] = tree.depth[p] + 1;
        tree.start[j] = next[p];
        next[p] += total[i];
        if (tree.depth[j] > tree.maxDepth) { tree.maxDepth = tree.depth[j]; }
      }
      next[j] = tree.start[j];
    }
    for (let j = m - 1; j > 0; j--) { tree.size[tree.parent[j]] += tree.size[j]; }
    return tree;
  }

  const identity = Int32Array.from({ length: COUNT }, (_, i) => i);
  const nameOf = (tree, i) => (tree.key[i] < 0 ? "all" : NAMES[tree.key[i]]);

  /** Builds a tree by adding frames one at a time under a parent, merging equal names. */
  class TreeBuilder {
    constructor(rootKey) {
      this.parent = [-1]; this.key = [rootKey]; this.weight = [0]; this.index = new Map();
    }
    child(parent, key) {
      const id = parent * 1048576 + key + 1;  // parent and name as one number (names < 2**20)
      let i = this.index.get(id);
      if (i === undefined) {
        i = this.parent.length;
        this.index.set(id, i);
        this.parent.push(parent); this.key.push(key); this.weight.push(0);
      }
      return i;
    }
    build() {
      return makeTree(Int32Array.from(this.parent), Int32Array.from(this.key), Float64Array.from(this.weight), null, null);
    }
  }

  /**
   * Per name, the samples in frames of that name, counting a frame only where no caller above it
   * has the same name, so a recursive function's samples are counted once per stack.
   */
  function outermostTotals(tree, totals) {
    const sums = new Float64Array(NAMES.length), onPath = new Int32Array(NAMES.length), path = [];
    for (let i = 1; i < tree.n; i++) {
      while (path.length && path[path.length - 1] !== tree.parent[i]) { onPath[tree.key[path.pop()]]--; }
      if (onPath[tree.key[i]] === 0) { sums[tree.key[i]] += totals[i]; }
      onPath[tree.key[i]]++;
      path.push(i);
    }
    return sums;
  }

  /** Calls `visit(i)` for every outermost frame named `key` (none of its callers has that name). */
  function forOutermost(tree, key, visit) {
    for (let i = 1; i < tree.n; i++) {
      if (tree.key[i] !== key) { continue; }
      let outer = true;
      for (let a = tree.parent[i]; a > 0; a = tree.parent[a]) { if (tree.key[a] === key) { outer = false; break; } }
      if (outer) { visit(i); }
    }
  }

  // ---- The flame graph widget ---------------------------------------------------------------------

  /**
   * One interactive flame graph (an icicle: callers above callees) of a tree, with zoom,
   * breadcrumbs, search, tooltips and keyboard navigation. Options: `colour(i)`, `extraTip(i, row)`,
   * `toolbar` (search and zoom-out, default true), `small` (height fits the tree), `label`.
   */
  class FlameGraph {
    constructor(host, tree, options) {
      this.tree = tree;
      this.options = Object.assign({ toolbar: true, small: false, colour: null, extraTip: null, amount: samples }, options);
      this.focus = 0; this.hover = -1; this.selected = -1; this.matched = null;
      this.charWidth = 7; this.scheduled = false; this.hatches = null;
      if (this.options.toolbar) {
        const bar = add(host, "div", "toolbar");
        const label = add(bar, "label", "visually-hidden", "Search frames in " + this.options.label);
        this.search = add(bar, "input");
        this.search.type = "search";
        this.search.placeholder = "Search frames (press /)";
        this.search.autocomplete = "off";
        this.search.spellcheck = false;
        this.search.id = host.id + "-search";
        label.htmlFor = this.search.id;
        this.matchInfo = add(bar, "span", "matches");
        this.matchInfo.setAttribute("aria-live", "polite");
        this.reset = add(bar, "button", "", "Zoom out to all");
        this.reset.type = "button";
        this.reset.disabled = true;
        this.reset.addEventListener("click", () => this.zoom(0));
        this.search.addEventListener("input", () => this.runSearch());
        this.crumbs = add(host, "nav", "crumbs");
        this.crumbs.setAttribute("aria-label", "Zoomed frame and its callers");
      }
      this.graph = add(host, "div", "graph" + (this.options.small ? " small" : ""));
      this.canvas = add(this.graph, "canvas");
      this.canvas.tabIndex = 0;
      this.canvas.setAttribute("role", "img");
      this.canvas.setAttribute("aria-label", this.options.label + ": use the arrow keys to move between frames, Enter to zoom");
      this.spacer = add(this.graph, "div");
      this.ctx = this.canvas.getContext("2d");
      this.font = "12px " + getComputedStyle(document.body).getPropertyValue("--mono");
      this.canvas.addEventListener("mousemove", (event) => this.onMove(event));
      this.canvas.addEventListener("mouseleave", () => { this.setHover(-1); hideTip(); });
      this.canvas.addEventListener("click", (event) => {
        const i = this.frameAt(event.clientX, event.clientY);
        if (i >= 0 && i !== this.focus) { this.zoom(i); }
      });
      this.canvas.addEventListener("keydown", (event) => this.onKey(event));
      this.canvas.addEventListener("blur", () => { if (this.selected >= 0) { this.selected = -1; hideTip(); this.redraw(); } });
      this.graph.addEventListener("scroll", () => { hideTip(); this.redraw(); });
    }

    /** Lay out and draw now: call when the graph becomes visible or its size changes. */
    activate() {
      this.zoom(this.focus);
    }

    colourOf(i) {
      return this.options.colour ? this.options.colour(i) : keyColour(this.tree.key[i]);
    }

    labelFor(i, width) {
      const chars = Math.floor((width - 8) / this.charWidth);
      if (chars < 2) { return ""; }
      let name = nameOf(this.tree, i);
      if (this.tree.key[i] < 0) { name = "all (" + this.options.amount(this.tree.total[0]) + ")"; }
      if (name.length <= chars) { return name; }
      const parts = name.split(":");
      for (let k = 1; k < parts.length; k++) {
        const shorter = parts.slice(k).join(":");
        if (shorter.length <= chars) { return shorter; }
      }
      const last = parts[parts.length - 1];
      return chars > 4 ? last.slice(0, chars - 1) + "\u2026" : "";
    }

    subtreeDepth(i) {
      const t = this.tree;
      let deepest = t.depth[i];
      for (let k = i, end = i + t.size[i]; k < end; k++) { if (t.depth[k] > deepest) { deepest = t.depth[k]; } }
      return deepest;
    }

    layoutHeight() {
      const height = (this.subtreeDepth(this.focus) + 1) * ROW + ROW;
      if (this.options.small) {
        this.graph.style.height = Math.min(height, Math.max(120, Math.round(window.innerHeight * 0.4))) + "px";
      }
      this.spacer.style.height = Math.max(0, height - this.graph.clientHeight) + "px";
    }

    hatch(ctx) {
      if (!this.hatches) {
        const tile = document.createElement("canvas");
        tile.width = tile.height = 6;
        const t = tile.getContext("2d");
        t.strokeStyle = "rgba(255,255,255,0.85)"; t.lineWidth = 1.5;
        t.beginPath(); t.moveTo(0, 6); t.lineTo(6, 0); t.stroke();
        this.hatches = ctx.createPattern(tile, "repeat");
      }
      return this.hatches;
    }

    box(i, x, w, y, faded) {
      const ctx = this.ctx, dim = this.matched !== null && !this.matched[i];
      ctx.globalAlpha = faded ? 0.55 : 1;
      ctx.fillStyle = dim ? DIMMED : this.matched !== null ? MATCH_COLOUR : this.colourOf(i);
      ctx.fillRect(x, y, Math.max(w - 1, 0.6), ROW - 1);
      if (!dim && this.options.hatched && this.options.hatched(i)) {
        ctx.fillStyle = this.hatch(ctx);
        ctx.fillRect(x, y, Math.max(w - 1, 0.6), ROW - 1);
      }
      if (w >= 20) {
        const label = this.labelFor(i, w);
        if (label) {
          ctx.fillStyle = dim ? "#9198a1" : "#1b1f24";
          ctx.fillText(label, x + 4, y + ROW / 2);
        }
      }
      ctx.globalAlpha = 1;
      if (i === this.hover || i === this.selected) {
        ctx.strokeStyle = "#1b1f24"; ctx.lineWidth = i === this.selected ? 2.5 : 1.5;
        ctx.strokeRect(x + 1, y + 1, Math.max(w - 3, 0.5), ROW - 3);
      }
    }

    draw() {
      this.scheduled = false;
      const t = this.tree, graph = this.graph, canvas = this.canvas, ctx = this.ctx;
      const width = graph.clientWidth, height = graph.clientHeight, ratio = window.devicePixelRatio || 1;
      if (!width || !height) { return; }
      if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
        canvas.width = Math.round(width * ratio); canvas.height = Math.round(height * ratio);
        canvas.style.width = width + "px"; canvas.style.height = height + "px";
      }
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, width, height);
      ctx.font = this.font; ctx.textBaseline = "middle";
      this.charWidth = ctx.measureText("mmmmmmmmmm").width / 10 || 7;
      const top = graph.scrollTop, firstRow = Math.floor(top / ROW), lastRow = Math.ceil((top + height) / ROW);
      for (let a = t.parent[this.focus]; a >= 0; a = t.parent[a]) {
        if (t.depth[a] >= firstRow && t.depth[a] <= lastRow) { this.box(a, 0, width, t.depth[a] * ROW - top, true); }
      }
      const scale = width / t.total[this.focus], origin = t.start[this.focus], stack = [this.focus];
      while (stack.length) {
        const i = stack.pop(), w = t.total[i] * scale;
        if (w < MIN_WIDTH) { continue; }
        if (t.depth[i] >= firstRow) { this.box(i, (t.start[i] - origin) * scale, w, t.depth[i] * ROW - top, false); }
        if (t.depth[i] < lastRow) {
          for (let c = i + 1, end = i + t.size[i]; c < end; c += t.size[c]) { stack.push(c); }
        }
      }
    }

    redraw() {
      if (!this.scheduled) { this.scheduled = true; window.requestAnimationFrame(() => this.draw()); }
    }

    /** Where frame `i` is drawn, in the canvas's own pixels, or null if it is too narrow to see. */
    boxOf(i) {
      const t = this.tree, width = this.graph.clientWidth;
      const y = t.depth[i] * ROW - this.graph.scrollTop;
      if (!this.isInFocus(i)) { return t.depth[i] < t.depth[this.focus] ? { x: 0, y, w: width } : null; }
      const scale = width / t.total[this.focus], w = t.total[i] * scale;
      return w < MIN_WIDTH ? null : { x: (t.start[i] - t.start[this.focus]) * scale, y, w };
    }

    isInFocus(i) {
      return i >= this.focus && i < this.focus + this.tree.size[this.focus];
    }

    // The frame at a point, found from the layout itself (not from the last drawing), by
    // descending from the zoomed frame one row at a time to the pointer's row.
    frameAt(clientX, clientY) {
      const t = this.tree, rect = this.canvas.getBoundingClientRect(), x = clientX - rect.left;
      const row = Math.floor((clientY - rect.top + this.graph.scrollTop) / ROW);
      let i = this.focus;
      if (x < 0 || x >= rect.width || row < 0) { return -1; }
      if (row < t.depth[this.focus]) {
        while (t.depth[i] > row) { i = t.parent[i]; }
        return i;
      }
      const scale = rect.width / t.total[this.focus], at = t.start[this.focus] + x / scale;
      while (t.depth[i] < row) {
        let found = -1;
        for (let c = i + 1, end = i + t.size[i]; c < end; c += t.size[c]) {
          if (at >= t.start[c] && at < t.start[c] + t.total[c]) { found = c; break; }
        }
        if (found < 0) { return -1; }
        i = found;
      }
      return t.total[i] * scale >= MIN_WIDTH ? i : -1;
    }

    setHover(i) {
      if (i !== this.hover) {
        this.hover = i;
        this.canvas.style.cursor = i >= 0 ? "pointer" : "default";
        this.redraw();
      }
    }

    onMove(event) {
      const i = this.frameAt(event.clientX, event.clientY);
      this.setHover(i);
      if (i >= 0) { this.showTip(i, event.clientX, event.clientY); } else { hideTip(); }
    }

    showTip(i, clientX, clientY) {
      const t = this.tree, origin = t.origin[i];
      tip.textContent = "";
      add(tip, "div", "name", t.key[i] < 0 ? "all samples" : nameOf(t, i));
      if (t.key[i] >= 0) {
        const file = origin >= 0 ? raw(origin, "file") : fileOf[t.key[i]];
        if (file >= 0) {
          const low = origin >= 0 ? raw(origin, "line_min") : 0, high = origin >= 0 ? raw(origin, "line_max") : 0;
          const lines = low ? (high > low ? ", lines " + low + "\u2013" + high : ", line " + low) : "";
          add(tip, "div", "where", FILES[file] + lines);
        }
      }
      const table = add(tip, "table");
      const row = (label, value) => {
        const tr = add(table, "tr");
        add(tr, "td", "", label);
        return add(tr, "td", "", value);
      };
      if (t.key[i] >= 0) {
        const pkg = PACKAGES[packageOf[t.key[i]]], cell = row("Package");
        add(cell, "i", "swatch").style.background = categoryColour(pkg[1]);
        cell.appendChild(document.createTextNode(pkg[0] + " (" + CATEGORY[pkg[1]] + ")"));
      }
      if (this.options.extraTip) {
        this.options.extraTip(i, row);
      } else {
        const whole = this.options.whole || t.total[0];
        row("Total", samples(t.total[i]) + ", " + percent(t.total[i], whole) + " of all");
        if (this.focus !== 0 && i !== this.focus && this.isInFocus(i)) {
          row("", percent(t.total[i], t.total[this.focus]) + " of the zoomed frame");
        }
        row("Self", samples(t.self[i]) + ", " + percent(t.self[i], whole) + " of all");
      }
      add(tip, "div", "hint", i === this.focus ? (i === 0 ? "" : "Esc zooms out") : "Click to zoom");
      tip.style.display = "block";
      const margin = 14, tw = tip.offsetWidth, th = tip.offsetHeight;
      let left = clientX + margin, top = clientY + margin;
      if (left + tw > window.innerWidth - 4) { left = Math.max(4, clientX - margin - tw); }
      if (top + th > window.innerHeight - 4) { top = Math.max(4, clientY - margin - th); }
      tip.style.left = left + "px"; tip.style.top = top + "px";
    }

    zoom(i) {
      const started = performance.now(), t = this.tree;
      this.focus = i;
      this.hover = -1;
      if (this.selected >= 0) { this.selected = i; }
      hideTip();
      if (this.crumbs) { this.drawCrumbs(); }
      if (this.reset) { this.reset.disabled = i === 0; }
      this.layoutHeight();
      this.updateMatches();
      this.draw();
      performance.measure("viewer:zoom", { start: started, end: performance.now() });
      if (t.key[i] >= 0 && this.options.toolbar) {
        status.textContent = "Zoomed to " + nameOf(t, i) + ", " + percent(t.total[i], t.total[0]) + " of all";
      }
    }

    drawCrumbs() {
      const t = this.tree, crumbs = this.crumbs, focus = this.focus, path = [];
      crumbs.textContent = "";
      for (let a = focus; a >= 0; a = t.parent[a]) { path.push(a); }
      path.reverse();
      const shown = path.length > 6 ? [path[0], -1].concat(path.slice(path.length - 4)) : path;
      shown.forEach((node, k) => {
        if (k > 0) { add(crumbs, "span", "sep", "\u203a"); }
        if (node < 0) { add(crumbs, "span", "sep", "\u2026 " + formatCount(path.length - 5) + " more"); return; }
        const name = nameOf(t, node);
        if (node === focus) { add(crumbs, "span", "here", name).title = name; return; }
        const button = add(crumbs, "button", "", node === 0 ? "all" : shortName(name));
        button.type = "button";
        button.title = name;
        button.addEventListener("click", () => this.zoom(node));
      });
      const amount = this.options.amount;
      add(crumbs, "span", "note", focus === 0 ? amount(t.total[0]) + " \u2014 click a frame to zoom in"
        : amount(t.total[focus]) + ", " + percent(t.total[focus], t.total[0]) + " of all");
    }

    runSearch() {
      const started = performance.now(), query = this.search.value.trim().toLowerCase(), t = this.tree;
      if (!query) {
        this.matched = null;
      } else {
        const hits = NAMES.map((name) => name.toLowerCase().indexOf(query) >= 0);
        this.matched = new Uint8Array(t.n);
        for (let k = 1; k < t.n; k++) { this.matched[k] = t.key[k] >= 0 && hits[t.key[k]] ? 1 : 0; }
      }
      this.updateMatches();
      this.draw();
      performance.measure("viewer:search", { start: started, end: performance.now() });
    }

    updateMatches() {
      if (!this.matchInfo) { return; }
      const t = this.tree, matched = this.matched, focus = this.focus;
      this.matchInfo.className = "matches";
      if (matched === null) { this.matchInfo.textContent = ""; return; }
      // A match inside another match is already counted by its caller, so no sample counts twice;
      // a match at or above the zoomed frame covers all of it.
      const covered = new Uint8Array(t.n);
      let inAll = 0, inFocus = 0, frames = 0;
      for (let k = 1; k < t.n; k++) {
        const above = covered[t.parent[k]];
        covered[k] = above || matched[k];
        if (!matched[k]) { continue; }
        frames++;
        if (!above) {
          inAll += t.total[k];
          if (this.isInFocus(k)) { inFocus += t.total[k]; }
        }
      }
      if (covered[focus]) { inFocus = t.total[focus]; }
      if (!frames) { this.matchInfo.textContent = "No matching frames"; return; }
      this.matchInfo.className = "matches hit";
      let text = "Matched " + percent(inAll, t.total[0]) + " of samples (" + formatCount(frames) +
        (frames === 1 ? " frame)" : " frames)");
      if (focus !== 0) { text += ", " + percent(inFocus, t.total[focus]) + " of the zoomed frame"; }
      this.matchInfo.textContent = text;
    }

    /** Escape: clear the search if it has focus and text, else zoom out to everything. */
    escape() {
      hideTip();
      this.hover = -1;
      if (this.search && document.activeElement === this.search && this.search.value) {
        this.search.value = "";
        this.runSearch();
      } else {
        this.zoom(0);
      }
    }

    // Keyboard navigation: a selected frame, moved with the arrows, zoomed to with Enter.
    onKey(event) {
      const t = this.tree;
      let i = this.selected >= 0 ? this.selected : this.focus;
      if (event.key === "Enter" || event.key === " ") {
        if (this.selected >= 0) { this.zoom(this.selected); }
        event.preventDefault();
        return;
      }
      if (event.key === "ArrowUp") {
        if (t.parent[i] >= 0) { i = t.parent[i]; }
      } else if (event.key === "ArrowDown") {
        if (t.size[i] > 1 && this.boxOf(i + 1)) { i += 1; }
      } else if (event.key === "ArrowRight") {
        const next = i + t.size[i], p = t.parent[i];
        if (p >= 0 && next < p + t.size[p] && this.boxOf(next)) { i = next; }
      } else if (event.key === "ArrowLeft") {
        const p = t.parent[i];
        if (p >= 0) {
          let previous = -1;
          for (let c = p + 1; c < i; c += t.size[c]) { previous = c; }
          if (previous >= 0) { i = previous; }
        }
      } else {
        return;
      }
      event.preventDefault();
      this.select(i);
    }

    select(i) {
      this.selected = i;
      const box = this.boxOf(i);
      if (box && (box.y < 0 || box.y + ROW > this.graph.clientHeight)) {
        this.graph.scrollTop = Math.max(0, this.tree.depth[i] * ROW - this.graph.clientHeight / 2);
      }
      this.draw();
      const shown = this.boxOf(i), rect = this.canvas.getBoundingClientRect();
      if (shown) { this.showTip(i, rect.left + shown.x + Math.min(shown.w / 2, 40), rect.top + shown.y + ROW); }
      status.textContent = tip.textContent;
    }

    /** The centre of the first drawn frame named `name`, in page coordinates, scrolled into view. */
    locate(name) {
      const t = this.tree;
      for (let i = 0; i < t.n; i++) {
        if (nameOf(t, i) !== name || !this.boxOf(i)) { continue; }
        const wanted = t.depth[i] * ROW;
        if (wanted < this.graph.scrollTop || wanted + ROW > this.graph.scrollTop + this.graph.clientHeight) {
          this.graph.scrollTop = Math.max(0, wanted - this.graph.clientHeight / 2);
          this.draw();
        }
        const box = this.boxOf(i), rect = this.canvas.getBoundingClientRect();
        return { x: rect.left + box.x + box.w / 2, y: rect.top + box.y + ROW / 2, width: box.w };
      }
      return null;
    }
  }

  let activeGraph = null;
  function hideTip() { tip.style.display = "none"; }

  // ---- Views ------------------------------------------------------------------------------------

  const views = {};
  function emptyNote(host, text) { add(host, "p", "howto", text); }

  views.flame = () => {
    const legend = document.getElementById("category-legend");
    Object.keys(LEGEND).forEach((category) => {
      const item = add(legend, "span");
      add(item, "i", "swatch").style.background = categoryColour(category);
      item.appendChild(document.createTextNode(LEGEND[category]));
    });
    const tree = makeTree(base.parent, base.key, base.self, identity, null);
    const host = document.getElementById("flame-host");
    if (!tree.total[0]) { emptyNote(host, "No samples in this profile."); return null; }
    return new FlameGraph(host, tree, { label: "flame graph" });
  };

  views.cpu = () => {
    const running = base.self.map((own, i) => (base.waiting[i] >= 0 ? 0 : own));
    const hidden = new Float64Array(DATA.waitingRules.length);
    for (let i = 1; i < COUNT; i++) { if (base.waiting[i] >= 0) { hidden[base.waiting[i]] += base.self[i]; } }
    const hiddenAll = hidden.reduce((a, b) => a + b, 0);
    const note = document.getElementById("cpu-note");
    note.textContent = "An estimate of CPU time: this view leaves out the " + percent(hiddenAll, ALL) +
      " of samples in frames known to be waiting (" +
      DATA.waitingRules.map((rule, r) => rule + " " + percent(hidden[r], ALL)).join(", ") +
      "). The profile records wall-clock time; waits these rules do not recognise still count.";
    const tree = makeTree(base.parent, base.key, running, identity, null);
    const host = document.getElementById("cpu-host");
    if (!tree.total[0]) { emptyNote(host, "Every sample was waiting: nothing is left to draw."); return null; }
    return new FlameGraph(host, tree, { label: "CPU-only flame graph", whole: tree.total[0] });
  };

  views.hotspots = () => {
    const tree = makeTree(base.parent, base.key, base.self, identity, null);
    const selfSums = new Float64Array(NAMES.length);
    for (let i = 1; i < tree.n; i++) { selfSums[tree.key[i]] += tree.self[i]; }
    const totalSums = outermostTotals(tree, tree.total);
    const rows = [];
    for (let key = 0; key < NAMES.length; key++) { if (totalSums[key] > 0) { rows.push(key); } }
    const table = document.getElementById("hotspots"), body = table.tBodies[0];
    const filter = document.getElementById("hotspot-search"), countInfo = document.getElementById("hotspot-count");
    let sortBy = "self", descending = true, selectedKey = -1;
    const sandwich = { callers: null, callees: null };

    const value = (key, column) => (column === "self" ? selfSums[key] : column === "total" ? totalSums[key] : NAMES[key]);
    function render() {
      const query = filter.value.trim().toLowerCase();
      const shown = query ? rows.filter((key) => NAMES[key].toLowerCase().indexOf(query) >= 0) : rows.slice();
      shown.sort((a, b) => {
        const va = value(a, sortBy), vb = value(b, sortBy);
        const order = sortBy === "name" ? va.localeCompare(vb) : va - vb;
        return (descending ? -order : order) || a - b;
      });
      table.querySelectorAll("th").forEach((th) => {
        const column = th.querySelector("button").dataset.sort;
        th.setAttribute("aria-sort", column === sortBy ? (descending ? "descending" : "ascending") : "none");
      });
      body.textContent = "";
      shown.slice(0, TABLE_ROWS).forEach((key) => {
        const tr = add(body, "tr");
        tr.tabIndex = 0;
        tr.dataset.key = key;
        tr.setAttribute("aria-selected", key === selectedKey ? "true" : "false");
        add(tr, "td", "", NAMES[key]);
        add(tr, "td", "number", formatCount(selfSums[key]) + " (" + percent(selfSums[key], ALL) + ")");
        add(tr, "td", "number", formatCount(totalSums[key]) + " (" + percent(totalSums[key], ALL) + ")");
      });
      countInfo.textContent = formatCount(shown.length) + (shown.length === 1 ? " function" : " functions") +
        (shown.length > TABLE_ROWS ? ", the first " + TABLE_ROWS + " shown: filter to narrow" : "");
    }

    function choose(key) {
      selectedKey = key;
      body.querySelectorAll("tr").forEach((tr) => {
        tr.setAttribute("aria-selected", Number(tr.dataset.key) === key ? "true" : "false");
      });
      const panel = document.getElementById("sandwich");
      panel.hidden = false;
      document.getElementById("sandwich-title").textContent = NAMES[key];
      const callees = new TreeBuilder(key), callers = new TreeBuilder(key), inside = new Int32Array(tree.n).fill(-1);
      forOutermost(tree, key, (i) => {
        // Callees: the frame's subtree merged under one root; callers: its path upwards, inverted.
        inside[i] = 0;
        callees.weight[0] += tree.self[i];
        for (let c = i + 1, end = i + tree.size[i]; c < end; c++) {
          const at = callees.child(inside[tree.parent[c]], tree.key[c]);
          inside[c] = at;
          callees.weight[at] += tree.self[c];
        }
        let at = 0;
        for (let a = tree.parent[i]; a > 0; a = tree.parent[a]) { at = callers.child(at, tree.key[a]); }
        callers.weight[at] += tree.total[i];
      });
      for (const [side, builder] of [["callers", callers], ["callees", callees]]) {
        const host = document.getElementById("sandwich-" + side);
        host.textContent = "";
        sandwich[side] = new FlameGraph(host, builder.build(), {
          label: side + " of " + NAMES[key], toolbar: false, small: true, whole: ALL,
        });
        sandwich[side].activate();
        host.graph = sandwich[side];
      }
      status.textContent = "Selected " + NAMES[key] + ": self " + percent(selfSums[key], ALL) + ", total " +
        percent(totalSums[key], ALL);
    }

    table.querySelectorAll("th button").forEach((button) => {
      button.addEventListener("click", () => {
        const column = button.dataset.sort;
        descending = column === sortBy ? !descending : column !== "name";
        sortBy = column;
        render();
      });
    });
    body.addEventListener("click", (event) => {
      const tr = event.target.closest("tr");
      if (tr) { choose(Number(tr.dataset.key)); }
    });
    body.addEventListener("keydown", (event) => {
      const tr = event.target.closest("tr");
      if (!tr) { return; }
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); choose(Number(tr.dataset.key)); }
      if (event.key === "ArrowDown" && tr.nextElementSibling) { event.preventDefault(); tr.nextElementSibling.focus(); }
      if (event.key === "ArrowUp" && tr.previousElementSibling) { event.preventDefault(); tr.previousElementSibling.focus(); }
    });
    filter.addEventListener("input", render);
    render();
    return {
      search: filter,
      activate() { if (sandwich.callers) { sandwich.callers.activate(); sandwich.callees.activate(); } },
      escape() { if (document.activeElement === filter && filter.value) { filter.value = ""; render(); } },
    };
  };

  // Comparison: each side as a share of its own total; a frame's change is the difference of its
  // shares, judged against the sampling noise of both sides (two standard errors of a proportion).
  views.compare = () => {
    const share = (count, all) => (all > 0 ? count / all : 0);
    const weight = base.self.map((own, i) => (share(own, ALL) + share(base.baseSelf[i], BASE_ALL)) / 2);
    const tree = makeTree(base.parent, base.key, weight, identity, { after: base.self, before: base.baseSelf });
    const after = tree.extra.after.total, before = tree.extra.before.total;
    const comparable = ALL > 0 && BASE_ALL > 0;
    function change(countBefore, countAfter) {
      const a = share(countBefore, BASE_ALL), b = share(countAfter, ALL);
      const noise = comparable ? 2 * Math.sqrt(a * (1 - a) / BASE_ALL + b * (1 - b) / ALL) : Infinity;
      return { before: a, after: b, delta: b - a, significant: comparable && Math.abs(b - a) > noise };
    }
    const changes = [];
    let largest = 0;
    for (let i = 0; i < tree.n; i++) {
      const c = change(before[i], after[i]);
      changes.push(c);
      if (i > 0 && c.significant) { largest = Math.max(largest, Math.abs(c.delta)); }
    }
    const colour = (i) => {
      const c = changes[i];
      if (!c.significant || i === 0) { return "hsl(0,0%,84%)"; }
      const strength = Math.min(1, Math.abs(c.delta) / largest), light = 86 - 38 * strength;
      return c.delta > 0 ? hsl(0, 78, light) : hsl(214, 80, light);
    };
    const isNew = (i) => before[i] === 0 && after[i] > 0, vanished = (i) => after[i] === 0 && before[i] > 0;
    const describe = (c) => (c.significant ? (c.delta > 0 ? "more" : "less") : "within noise");
    const extraTip = (i, row) => {
      const c = changes[i];
      row("Baseline", samples(before[i]) + ", " + percent(before[i], BASE_ALL) + " of its samples");
      row("Comparison", samples(after[i]) + ", " + percent(after[i], ALL) + " of its samples");
      row("Change", points(c.delta) + " (" + describe(c) + ")" + (isNew(i) ? ", new" : vanished(i) ? ", vanished" : ""));
    };
    document.getElementById("compare-note").textContent =
      "Baseline: " + DATA.sides.baseline + ". Comparison: " + DATA.sides.current + ". Each side is a share of its own samples; a bar\u2019s width is the mean of its two " +
      "shares, so frames of either side show, and its colour the change in share." +
      (comparable ? "" : " One side has no samples, so no change can be judged.");
    const legend = document.getElementById("diff-legend");
    [["hsl(0,78%,55%)", "more of the time", ""], ["hsl(214,80%,55%)", "less of the time", ""],
      ["hsl(0,0%,84%)", "within sampling noise", ""], ["hsl(0,78%,55%)", "new (only in the comparison)", " hatched"],
      ["hsl(214,80%,55%)", "vanished (only in the baseline)", " hatched"]].forEach(([background, text, extra]) => {
      const item = add(legend, "span");
      add(item, "i", "swatch" + extra).style.backgroundColor = background;
      item.appendChild(document.createTextNode(text));
    });
    const host = document.getElementById("compare-host");
    const graph = new FlameGraph(host, tree, {
      label: "comparison flame graph", colour, extraTip, hatched: (i) => isNew(i) || vanished(i),
      amount: (share) => percent(share, 1) + " of the mean share",
    });

    // The functions whose share moved most, each counted once per stack.
    const afterSums = outermostTotals(tree, after), beforeSums = outermostTotals(tree, before);
    const moved = [];
    for (let key = 0; key < NAMES.length; key++) {
      if (!afterSums[key] && !beforeSums[key]) { continue; }
      const c = change(beforeSums[key], afterSums[key]);
      if (c.significant) { moved.push([key, c]); }
    }
    const list = (id, items) => {
      const ol = document.getElementById(id);
      if (!items.length) { add(ol, "li", "muted", "none beyond sampling noise"); }
      items.slice(0, TOP_CHANGES).forEach(([key, c]) => {
        const li = add(ol, "li"), button = add(li, "button", "", NAMES[key]);
        button.type = "button";
        button.title = "Highlight " + NAMES[key] + " in the graph";
        button.addEventListener("click", () => { graph.search.value = NAMES[key]; graph.runSearch(); });
        li.appendChild(document.createTextNode(" " + points(c.delta) + " (" + percent(c.before, 1) + " \u2192 " +
          percent(c.after, 1) + ")"));
        const tag = !beforeSums[key] ? "new" : !afterSums[key] ? "vanished" : "";
        if (tag) {
          li.appendChild(document.createTextNode(" "));
          add(li, "span", "tag", tag);
        }
      });
    };
    list("increases", moved.filter(([, c]) => c.delta > 0).sort((x, y) => y[1].delta - x[1].delta));
    list("decreases", moved.filter(([, c]) => c.delta < 0).sort((x, y) => x[1].delta - y[1].delta));
    return graph;
  };

  // ---- The collector's picker and downloads -----------------------------------------------------

  // The picker's times are UTC, as the collector's are: an input shows "2024-05-01T12:00:00" for
  // 12:00 UTC, and its value goes back with a Z.
  const isoInput = (ms) => new Date(ms).toISOString().slice(0, 19);
  const isoTime = (value) => new Date(value + "Z").toISOString();
  function setUpPicker(collector) {
    const form = document.getElementById("picker"), group = document.getElementById("pick-group");
    const range = document.getElementById("pick-range"), custom = document.getElementById("custom-range");
    const compare = document.getElementById("pick-compare"), compareRange = document.getElementById("compare-range");
    const field = (id) => document.getElementById(id);
    form.hidden = false;
    collector.groups.forEach((name) => { add(group, "option", "", name).value = name; });
    group.value = collector.group;
    range.value = collector.period || "custom";
    field("pick-start").value = isoInput(collector.startMs);
    field("pick-end").value = isoInput(collector.endMs);
    const length = collector.endMs - collector.startMs;
    compare.checked = collector.compareStartMs !== null;
    field("pick-compare-start").value = isoInput(compare.checked ? collector.compareStartMs : collector.startMs - length);
    field("pick-compare-end").value = isoInput(compare.checked ? collector.compareEndMs : collector.startMs);
    const sync = () => { custom.hidden = range.value !== "custom"; compareRange.hidden = !compare.checked; };
    range.addEventListener("change", sync);
    compare.addEventListener("change", sync);
    sync();
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const query = new URLSearchParams();
      if (range.value === "custom") {
        query.set("startTime", isoTime(field("pick-start").value));
        query.set("endTime", isoTime(field("pick-end").value));
      } else {
        query.set("period", range.value);
      }
      if (compare.checked) {
        query.set("compareStartTime", isoTime(field("pick-compare-start").value));
        query.set("compareEndTime", isoTime(field("pick-compare-end").value));
      }
      window.location.href = "/profilingGroups/" + encodeURIComponent(group.value) + "/flamegraph.html?" + query;
    });
  }

  function setUpDownloads(exports) {
    const box = document.getElementById("downloads");
    box.hidden = false;
    exports.forEach((item) => {
      const link = add(box, "a", "", item.label);
      link.href = item.href;
      link.setAttribute("download", "");
    });
  }

  // ---- Switching views and keys -------------------------------------------------------------------

  const tabs = Array.from(document.querySelectorAll(".views [role=tab]"));
  const built = {};
  function show(name) {
    tabs.forEach((tab) => {
      const on = tab.dataset.view === name;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      tab.tabIndex = on ? 0 : -1;
      document.getElementById("view-" + tab.dataset.view).hidden = !on;
    });
    hideTip();
    if (!(name in built)) { built[name] = views[name](); }
    activeGraph = built[name];
    if (activeGraph) { activeGraph.activate(); }
    if (history.replaceState) { history.replaceState(null, "", "#" + name); }
  }

  if (DATA.collector) { setUpPicker(DATA.collector); }
  if (DATA.exports && DATA.exports.length) { setUpDownloads(DATA.exports); }
  const helpButton = document.getElementById("help-button"), help = document.getElementById("help");
  helpButton.addEventListener("click", () => {
    help.hidden = !help.hidden;
    helpButton.setAttribute("aria-expanded", String(!help.hidden));
  });
  if (!ALL && !BASE_ALL) { return; }

  document.getElementById("tab-compare").hidden = !COMPARISON;
  const visibleTabs = tabs.filter((tab) => !tab.hidden);
  tabs.forEach((tab) => tab.addEventListener("click", () => show(tab.dataset.view)));
  document.querySelector(".views").addEventListener("keydown", (event) => {
    const at = visibleTabs.indexOf(event.target);
    if (at < 0 || (event.key !== "ArrowLeft" && event.key !== "ArrowRight")) { return; }
    const next = visibleTabs[(at + (event.key === "ArrowRight" ? 1 : visibleTabs.length - 1)) % visibleTabs.length];
    event.preventDefault();
    show(next.dataset.view);
    next.focus();
  });
  document.addEventListener("keydown", (event) => {
    const typing = event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement;
    const plain = !event.ctrlKey && !event.metaKey && !event.altKey;
    if (event.key === "Escape") {
      hideTip();
      if (activeGraph) { activeGraph.escape(); }
    } else if (event.key === "/" && plain && !typing && activeGraph && activeGraph.search) {
      event.preventDefault();
      activeGraph.search.focus();
    } else if (plain && !typing && /^[1-4]$/.test(event.key) && visibleTabs[Number(event.key) - 1]) {
      show(visibleTabs[Number(event.key) - 1].dataset.view);
      visibleTabs[Number(event.key) - 1].focus();
    }
  });
  window.addEventListener("resize", () => { if (activeGraph) { activeGraph.activate(); } });

  const wanted = location.hash.slice(1);
  show(visibleTabs.some((tab) => tab.dataset.view === wanted) ? wanted : COMPARISON ? "compare" : "flame");
  performance.mark("viewer:first-paint");
  window.profileViewer = {
    /** The view shown and, for graphs, where a frame is drawn: for automation and tests. */
    show,
    locate: (name) => (activeGraph && activeGraph.locate ? activeGraph.locate(name) : null),
    sandwich: (side, name) => {
      const host = document.getElementById("sandwich-" + side);
      return host.graph ? host.graph.locate(name) : null;
    },
  };
})();
