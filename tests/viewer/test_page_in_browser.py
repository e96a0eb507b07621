"""The profile page in a real headless chromium: what a person sees, clicks, types and reads.

Runs on Python 3.11 only (see conftest.py): the page is the same whatever the interpreter. Frames
are found on the canvas with ``window.profileViewer.locate``, which answers from the same layout
the page draws; everything asserted is read from the screen (text, canvas pixels, visibility).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

import pytest

from codeguru_agent.viewer.flamegraph import render
from support.documents import START_MS, deep_document, profile_document
from support.flamegraph_page import embedded_data
from viewer.conftest import Tab

pytestmark = pytest.mark.browser

MAIN = ("app.main:serve", 10)
WORKER = ("threading:Thread:run", 20)


def stacks_document(stacks: Mapping[Tuple[str, ...], int], start_ms: int = START_MS) -> Dict[str, Any]:
    """A profile document of root-first stacks of frame names."""
    return profile_document(
        start_ms,
        stacks={tuple((name, index + 1) for index, name in enumerate(stack)): n for stack, n in stacks.items()},
    )


def page_of(*stacks: Mapping[Tuple[str, ...], int], baseline: Any = None) -> str:
    documents = [stacks_document(one) for one in stacks]
    return render(documents, "orders", "html", baseline).decode("utf-8")


SERVICE = {
    ("app.main:serve", "app.orders:handle", "app.orders:price"): 300,
    ("app.main:serve", "app.orders:handle", "app.db:query", "socket:socket:recv_into"): 200,
    ("app.main:serve", "app.orders:render"): 100,
    ("threading:Thread:run", "app.worker:loop", "<Sleep>"): 300,
    ("threading:Thread:run", "app.worker:loop", "app.worker:compress"): 100,
}
"""1,000 samples: the main thread serves orders (600), a worker sleeps (300) and compresses (100)."""


# ---- Flame graph: zoom, breadcrumbs, tooltip, search, keys -------------------------------------


def test_clicking_a_frame_zooms_to_it_and_the_breadcrumbs_lead_back(tab: Tab, tmp_path: Path) -> None:
    tab.open_html(page_of(SERVICE), tmp_path)
    before = tab.locate("app.orders:price")
    assert before is not None

    tab.click_frame("app.orders:handle")

    assert tab.text(".crumbs").split("\n") == [
        "all",
        "›",
        "serve",
        "›",
        "app.orders:handle",
        "500 samples, 50.0% of all",
    ]
    zoomed = tab.locate("app.orders:price")
    assert zoomed is not None and zoomed["width"] > before["width"] * 1.9, "price fills 3/5 of the width, not 3/10"
    assert tab.locate("app.worker:loop") is None, "frames outside the zoomed one are not drawn"

    tab.page.click(".crumbs button:has-text('all')")

    assert tab.locate("app.worker:loop") is not None
    assert tab.text(".crumbs").split("\n")[0] == "all"


def test_a_breadcrumb_of_a_name_without_a_colon_shows_the_name(tab: Tab, tmp_path: Path) -> None:
    """A <Truncated> frame (no ':' in its name) used to give an empty breadcrumb."""
    tab.open_html(page_of({("app.main:serve", "<Truncated>", "app.deep:leaf"): 10}), tmp_path)

    tab.click_frame("app.deep:leaf")

    labels = [text.strip() for text in tab.page.locator(".crumbs button").all_inner_texts()]
    assert labels == ["all", "serve", "<Truncated>"]


def test_the_tooltip_shows_the_frame_its_file_and_its_samples(tab: Tab, tmp_path: Path) -> None:
    tab.open_html(page_of(SERVICE), tmp_path)

    tab.hover_frame("app.orders:price")

    assert tab.visible("#tip")
    tip = tab.text("#tip")
    assert "app.orders:price" in tip and "/srv/app.orders.py, line 3" in tip
    assert "300 samples, 30.0% of all" in tip and "Click to zoom" in tip


def test_escape_zooms_out_and_leaves_no_tooltip_or_outline(tab: Tab, tmp_path: Path) -> None:
    """The tooltip and the hover outline used to stay on screen after Esc."""
    tab.open_html(page_of(SERVICE), tmp_path)
    canvas = "() => [...document.querySelectorAll('canvas')].find((c) => c.offsetParent !== null).toDataURL()"
    untouched = tab.page.evaluate(canvas)
    tab.click_frame("app.orders:handle")
    tab.hover_frame("app.orders:price")
    assert tab.visible("#tip")

    tab.page.keyboard.press("Escape")

    assert not tab.visible("#tip")
    assert tab.text(".crumbs").split("\n")[0] == "all"
    tab.page.evaluate("() => new Promise((done) => requestAnimationFrame(() => done()))")
    assert tab.page.evaluate(canvas) == untouched, "the whole graph again, with no frame outlined"


def test_zooming_from_a_breadcrumb_hides_the_tooltip(tab: Tab, tmp_path: Path) -> None:
    tab.open_html(page_of(SERVICE), tmp_path)
    tab.click_frame("app.db:query")
    tab.hover_frame("socket:socket:recv_into")
    assert tab.visible("#tip")

    tab.page.focus(".crumbs button:has-text('handle')")
    tab.page.keyboard.press("Enter")

    assert "app.orders:handle" in tab.text(".crumbs .here")
    assert not tab.visible("#tip")


def test_search_highlights_matches_and_says_their_share(tab: Tab, tmp_path: Path) -> None:
    tab.open_html(page_of(SERVICE), tmp_path)

    tab.page.keyboard.press("/")
    tab.page.keyboard.type("ORDERS")

    assert tab.text("#flame-host .matches") == "Matched 60.0% of samples (3 frames)"
    box = tab.locate("app.worker:compress")
    assert box is not None
    red, green, blue = tab.colour_at(box["x"], box["y"])
    assert abs(red - green) < 12 and abs(green - blue) < 12, "frames that do not match are greyed out"

    tab.click_frame("app.orders:handle")
    assert tab.text("#flame-host .matches") == "Matched 60.0% of samples (3 frames), 100.0% of the zoomed frame"


def test_a_match_above_the_zoomed_frame_covers_all_of_it(tab: Tab, tmp_path: Path) -> None:
    """A match on a caller of the zoomed frame used to read 0 % of the zoomed frame."""
    tab.open_html(page_of(SERVICE), tmp_path)
    tab.click_frame("app.db:query")

    tab.page.fill("#flame-host input[type=search]", "app.main:serve")

    assert tab.text("#flame-host .matches") == "Matched 60.0% of samples (1 frame), 100.0% of the zoomed frame"


def test_slash_focuses_the_search_only_without_modifier_keys(tab: Tab, tmp_path: Path) -> None:
    """Ctrl+/ and Alt+/ belong to the browser and the system; only a plain / starts a search."""
    tab.open_html(page_of(SERVICE), tmp_path)
    focused = "() => document.activeElement && document.activeElement.type === 'search'"

    for chord in ("Control+/", "Alt+/", "Meta+/"):
        tab.page.keyboard.press(chord)
        assert not tab.page.evaluate(focused), chord
    tab.page.keyboard.press("/")
    assert tab.page.evaluate(focused)


def test_the_frames_can_be_walked_and_zoomed_with_the_keyboard(tab: Tab, tmp_path: Path) -> None:
    tab.open_html(page_of(SERVICE), tmp_path)

    tab.page.focus("#flame-host canvas")
    for key in ("ArrowDown", "ArrowDown", "ArrowDown", "ArrowRight"):
        tab.page.keyboard.press(key)

    assert tab.text("#tip").startswith("app.db:query"), "down to serve, handle, price, then right to its neighbour"
    assert "app.db:query" in tab.text("#status")
    tab.page.keyboard.press("Enter")
    assert "app.db:query" in tab.text(".crumbs .here")


def test_a_written_page_works_at_phone_width(tab: Tab, tmp_path: Path) -> None:
    tab.page.set_viewport_size({"width": 375, "height": 700})
    tab.open_html(page_of(SERVICE), tmp_path)

    overflow = tab.page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")

    assert overflow <= 0, "nothing sticks out sideways"
    assert tab.locate("app.main:serve") is not None
    tab.page.click("#tab-hotspots")
    assert tab.visible("#hotspots")


# ---- Hotspots and the sandwich ----------------------------------------------------------------


def table_rows(tab: Tab) -> List[List[str]]:
    rows = tab.page.locator("#hotspots tbody tr")
    return [[cell.strip() for cell in rows.nth(k).locator("td").all_inner_texts()] for k in range(rows.count())]


def test_hotspots_list_functions_by_self_and_total_time(tab: Tab, tmp_path: Path) -> None:
    recursive = dict(SERVICE)
    recursive[("app.main:serve", "app.tree:walk", "app.tree:walk", "app.tree:walk")] = 400
    tab.open_html(page_of(recursive), tmp_path)

    tab.page.click("#tab-hotspots")

    rows = table_rows(tab)
    assert rows[0] == ["app.tree:walk", "400 (28.6%)", "400 (28.6%)"], "a recursive function counts once per stack"
    assert [row[0] for row in rows[1:4]] == ["app.orders:price", "<Sleep>", "socket:socket:recv_into"]
    tab.page.click("#hotspots th button:has-text('Total')")
    assert table_rows(tab)[0] == ["app.main:serve", "0 (0.0%)", "1,000 (71.4%)"]
    tab.page.click("#hotspots th button:has-text('Total')")
    assert table_rows(tab)[0][2].startswith("100 "), "a second click sorts the other way"

    tab.page.fill("#hotspot-search", "WORKER")

    assert [row[0] for row in table_rows(tab)] == ["app.worker:compress", "app.worker:loop"]
    assert tab.text("#hotspot-count") == "2 functions"


def test_selecting_a_function_shows_its_callers_and_callees(tab: Tab, tmp_path: Path) -> None:
    shared = dict(SERVICE)
    shared[("threading:Thread:run", "app.worker:loop", "app.db:query", "app.db:connect")] = 50
    tab.open_html(page_of(shared), tmp_path)
    tab.page.click("#tab-hotspots")

    tab.page.click("#hotspots tbody tr:has-text('app.db:query')")

    assert tab.visible("#sandwich") and tab.text("#sandwich-title") == "app.db:query"
    located = "([side, name]) => window.profileViewer.sandwich(side, name)"
    for caller in ("app.orders:handle", "app.main:serve", "app.worker:loop", "threading:Thread:run"):
        assert tab.page.evaluate(located, ["callers", caller]) is not None, caller
    for callee in ("socket:socket:recv_into", "app.db:connect"):
        assert tab.page.evaluate(located, ["callees", callee]) is not None, callee
    assert tab.page.evaluate(located, ["callees", "app.orders:price"]) is None
    handle = tab.page.evaluate(located, ["callers", "app.orders:handle"])
    worker = tab.page.evaluate(located, ["callers", "app.worker:loop"])
    assert handle["width"] == pytest.approx(worker["width"] * 4, rel=0.02), "200 samples from handle, 50 from loop"


def test_views_and_hotspot_rows_are_reached_from_the_keyboard(tab: Tab, tmp_path: Path) -> None:
    tab.open_html(page_of(SERVICE), tmp_path)

    tab.page.keyboard.press("2")
    assert tab.visible("#hotspots") and not tab.visible("#flame-host")
    tab.page.keyboard.press("ArrowRight")
    assert tab.visible("#cpu-note"), "arrows move along the tabs"
    tab.page.keyboard.press("ArrowLeft")
    tab.page.focus("#hotspots tbody tr")
    tab.page.keyboard.press("ArrowDown")
    tab.page.keyboard.press("Enter")

    assert tab.text("#sandwich-title") == table_rows(tab)[1][0]
    assert tab.page.get_attribute("#hotspots tbody tr >> nth=1", "aria-selected") == "true"


# ---- CPU only --------------------------------------------------------------------------------------


def test_the_cpu_view_hides_waiting_frames_and_says_it_is_an_estimate(tab: Tab, tmp_path: Path) -> None:
    tab.open_html(page_of(SERVICE), tmp_path)

    tab.page.click("#tab-cpu")

    note = tab.text("#cpu-note")
    assert note.startswith("An estimate of CPU time: this view leaves out the 50.0% of samples")
    assert "sleeping 30.0%" in note and "socket reads 20.0%" in note
    assert tab.locate("<Sleep>") is None and tab.locate("socket:socket:recv_into") is None
    assert tab.locate("app.db:query") is None, "a frame whose samples all wait has nothing left"
    tab.hover_frame("app.orders:price")
    assert "300 samples, 60.0% of all" in tab.text("#tip"), "a share of the running samples"
    assert "500 samples" in tab.text("#view-cpu .crumbs")


# ---- Comparison -----------------------------------------------------------------------------------

BASELINE = {
    ("app.main:serve", "app.grow:step"): 2000,
    ("app.main:serve", "app.shrink:step"): 4000,
    ("app.main:serve", "app.steady:step"): 3000,
    ("app.main:serve", "app.gone:step"): 1000,
}
CURRENT = {
    ("app.main:serve", "app.grow:step"): 5000,
    ("app.main:serve", "app.shrink:step"): 1000,
    ("app.main:serve", "app.steady:step"): 3000,
    ("app.main:serve", "app.new:step"): 1000,
}
"""Two profiles of 10,000 samples: grow 20 % -> 50 %, shrink 40 % -> 10 %, steady 30 % both, gone, new."""


def hue(colour: List[int]) -> str:
    red, _, blue = colour
    if red - blue > 40:
        return "red"
    if blue - red > 40:
        return "blue"
    return "grey" if max(colour) - min(colour) < 12 else "other"


def test_the_comparison_colours_what_grew_red_and_what_shrank_blue(tab: Tab, tmp_path: Path) -> None:
    tab.open_html(page_of(CURRENT, baseline=[stacks_document(BASELINE, START_MS - 3_600_000)]), tmp_path)

    assert tab.page.get_attribute("#tab-compare", "aria-selected") == "true", "a comparison opens on the comparison"
    colours = {}
    for frame in ("app.grow:step", "app.shrink:step", "app.steady:step", "app.new:step", "app.gone:step"):
        box = tab.locate(frame)
        assert box is not None, frame
        colours[frame] = hue(tab.colour_at(box["x"] + box["width"] / 4, box["y"]))

    assert colours == {
        "app.grow:step": "red",
        "app.shrink:step": "blue",
        "app.steady:step": "grey",
        "app.new:step": "red",
        "app.gone:step": "blue",
    }
    legend = tab.text("#diff-legend")
    assert "more of the time" in legend and "less of the time" in legend and "within sampling noise" in legend
    increases, decreases = tab.text("#increases"), tab.text("#decreases")
    assert increases.splitlines()[0] == "app.grow:step +30.00 points (20.0% → 50.0%)"
    assert "app.new:step +10.00 points (0.0% → 10.0%) new" in increases
    assert decreases.splitlines()[0] == "app.shrink:step −30.00 points (40.0% → 10.0%)"
    assert "app.gone:step −10.00 points (10.0% → 0.0%) vanished" in decreases
    assert "app.steady:step" not in increases + decreases
    tab.hover_frame("app.gone:step")
    assert "Change−10.00 points (less), vanished" in tab.text("#tip").replace("\t", "")


def test_a_small_difference_in_a_small_profile_is_noise(tab: Tab, tmp_path: Path) -> None:
    before = {("app.main:serve", "app.a:step"): 10, ("app.main:serve", "app.b:step"): 10}
    after = {("app.main:serve", "app.a:step"): 12, ("app.main:serve", "app.b:step"): 8}
    tab.open_html(page_of(after, baseline=[stacks_document(before)]), tmp_path)

    box = tab.locate("app.a:step")

    assert box is not None and hue(tab.colour_at(box["x"] + box["width"] / 4, box["y"])) == "grey"
    assert tab.text("#increases") == "none beyond sampling noise"


# ---- Edge cases and big profiles --------------------------------------------------------------------


def test_an_empty_profile_says_so(tab: Tab, tmp_path: Path) -> None:
    tab.open_html(render([profile_document(stacks={})], "idle", "html").decode(), tmp_path)

    assert tab.visible("#empty-note") and "No samples" in tab.text("#empty-note")
    assert not tab.visible("#tab-flame") and not tab.visible("canvas")


FIGURES = """() => ({
    firstPaintMs: performance.getEntriesByName("viewer:first-paint")[0].startTime,
    zoomMs: performance.getEntriesByName("viewer:zoom").map((entry) => entry.duration),
    searchMs: performance.getEntriesByName("viewer:search").map((entry) => entry.duration),
})"""
"""What the page measured with the Performance API: its first drawing (from navigation start, JSON
parsing included), each zoom (the first is the first drawing's layout) and each search."""


def test_a_stack_two_thousand_frames_deep_opens_and_zooms(tab: Tab, tmp_path: Path, record_property: Any) -> None:
    tab.open_html(render([deep_document(2000)], "deep", "html").decode(), tmp_path)

    tab.click_frame("deep.module:frame_1999")
    tab.page.fill("#flame-host input[type=search]", "frame_19")
    figures = tab.page.evaluate(FIGURES)
    record_property("viewer_figures", json.dumps(figures))
    print("viewer figures, 2,000 deep:", json.dumps(figures))

    crumbs = tab.text(".crumbs")
    assert "1,996 more" in crumbs and "frame_1999" in crumbs
    tab.page.click("#tab-hotspots")
    assert tab.text("#hotspot-count").startswith("2,000 functions")
    tab.page.click("#hotspots tbody tr:has-text('frame_1999')")
    assert tab.page.evaluate("() => window.profileViewer.sandwich('callers', 'deep.module:frame_0')") is not None


def big_document(frames: int) -> Dict[str, Any]:
    """About ``frames`` frames: 50 threads' entry points, each over 20 modules of up to 50 functions."""
    stacks: Dict[Tuple[str, ...], int] = {}
    per_entry = frames // 1000
    for entry in range(50):
        for module in range(20):
            for function in range(per_entry):
                stack = (f"app.entry{entry}:run", f"app.m{module}:dispatch", f"app.m{module}:f{function}")
                stacks[stack] = 1 + (entry * 7 + module * 3 + function) % 17
    return stacks_document(stacks)


def test_fifty_thousand_frames_open_and_zoom_quickly(tab: Tab, tmp_path: Path, record_property: Any) -> None:
    """Measures, does not assert: the time to the first drawing (from navigation start, JSON parsing
    included), to a zoom and to a search, as the page records them with the Performance API."""
    document = big_document(50_000)
    page = render([document], "big", "html").decode()
    data = embedded_data(page)
    frames_embedded = len(data["nodes"]) // len(data["fields"])
    opened = time.perf_counter()
    tab.open_html(page, tmp_path)

    tab.click_frame("app.entry0:run")
    tab.page.keyboard.press("Escape")
    tab.page.fill("#flame-host input[type=search]", "f7")

    figures = tab.page.evaluate(FIGURES)
    figures["frames"] = frames_embedded
    figures["pageBytes"] = len(page.encode())
    figures["openToZoomS"] = round(time.perf_counter() - opened, 3)
    record_property("viewer_figures", json.dumps(figures))
    print("viewer figures, 50,000 frames:", json.dumps(figures))
    assert tab.text("#flame-host .matches").startswith("Matched ")
    assert len(figures["zoomMs"]) >= 3, "the first drawing, the zoom and the zoom out"


# ---- The collector's pages ----------------------------------------------------------------------


def test_the_collector_pages_pick_a_group_a_range_and_a_comparison(tab: Tab, collector: Any) -> None:
    collector.create_group("orders")
    collector.create_group("billing")
    for start_ms, stacks in ((START_MS, BASELINE), (START_MS + 3_600_000, CURRENT)):
        collector.client().post_agent_profile(
            profilingGroupName="orders",
            agentProfile=json.dumps(stacks_document(stacks, start_ms)),
            contentType="application/json",
        )
    tab.page.goto(collector.url + "/")
    assert "billing" in tab.text("table") and "2023-11-14T23:00:00.000Z" in tab.text("table")

    tab.page.click("text=orders")

    assert tab.page.input_value("#pick-range") == "PT1H"
    assert tab.locate("app.grow:step") is not None and tab.locate("app.gone:step") is None, "the last hour only"
    assert [link.strip() for link in tab.page.locator("#downloads a").all_inner_texts()] == [
        "collapsed stacks",
        "speedscope",
        "pprof",
    ]
    tab.page.check("#pick-compare")
    assert tab.visible("#pick-compare-start")
    assert tab.page.input_value("#pick-compare-end") == "2023-11-14T22:01", "the hour before, to start with"
    tab.page.fill("#pick-compare-start", "2023-11-14T22:00")
    tab.page.fill("#pick-compare-end", "2023-11-14T23:00")
    with tab.page.expect_navigation():
        tab.page.click("#picker button[type=submit]")

    assert "compareStartTime=2023-11-14T22%3A00%3A00.000Z&compareEndTime=2023-11-14T23%3A00%3A00.000Z" in tab.page.url
    assert tab.page.get_attribute("#tab-compare", "aria-selected") == "true"
    box = tab.locate("app.shrink:step")
    assert box is not None and hue(tab.colour_at(box["x"] + box["width"] / 4, box["y"])) == "blue"

    tab.page.select_option("#pick-group", "billing")
    tab.page.select_option("#pick-range", "P1D")
    tab.page.uncheck("#pick-compare")
    with tab.page.expect_navigation():
        tab.page.click("#picker button[type=submit]")
    assert tab.page.url.endswith("/profilingGroups/billing/flamegraph.html?period=P1D")
    assert tab.visible("#empty-note") and tab.visible("#picker"), "an empty range keeps its picker"
