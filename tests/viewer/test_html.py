"""The page's data and assets: self-contained, faithful to the call graph, safe, and fit for big profiles.

What the page does with them in a browser is tested in test_page_in_browser.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any, Dict, Mapping, Tuple

import pytest

from codeguru_agent.viewer.flamegraph import render, write_flamegraph
from codeguru_agent.viewer.html import render_page
from codeguru_agent.viewer.model import STANDARD_LIBRARY, SYNTHETIC, THIRD_PARTY, USER_CODE, CallTree
from support.documents import deep_document
from support.flamegraph_page import embedded_data, frames

PY = "/usr/lib/python3.11"
SITE = "/usr/lib/python3.11/site-packages"


def render_html(callgraph: Mapping[str, Any], title: str, subtitle: str = "") -> str:
    """The page of one call graph."""
    return render_page(CallTree([callgraph]), title, subtitle)


def official_example() -> Dict[str, Any]:
    """The call graph of the official agent's example document (reference section 5.4)."""
    return {
        "children": {
            "app.main:<module>": {
                "file": "/srv/app/app/main.py",
                "line": [42],
                "children": {
                    "app.server:Server:serve_forever": {
                        "file": "/srv/app/app/server.py",
                        "line": [88],
                        "children": {
                            "selectors:EpollSelector:select": {
                                "counts": {"WALL_TIME": 300},
                                "file": f"{PY}/selectors.py",
                                "line": [468],
                            }
                        },
                    }
                },
            },
            "threading:Thread:_bootstrap": {
                "file": f"{PY}/threading.py",
                "line": [995],
                "children": {
                    "app.worker:upload_loop": {
                        "file": "/srv/app/app/worker.py",
                        "line": [17, 21],
                        "children": {
                            "<Sleep>": {"counts": {"WALL_TIME": 120}},
                            "botocore.client:S3:put_object": {
                                "file": f"{SITE}/botocore/client.py",
                                "children": {
                                    "ssl:SSLSocket:recv_into": {
                                        "counts": {"WALL_TIME": 180},
                                        "file": f"{PY}/ssl.py",
                                        "line": [1311],
                                    }
                                },
                            },
                        },
                    }
                },
            },
        }
    }


def test_page_loads_nothing_from_the_network() -> None:
    page = render_html(official_example(), "orders", "1 profile")

    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<[a-z]+\s[^>]*\b(?:src|href)\s*=", page), "no external scripts, styles or fonts"
    assert "@import" not in page and "url(" not in page
    assert page.count("<script") == 2, "the data and the code are both inline"
    assert "function makeTree(" in page and "--mono:" in page, "the script and style files are inlined"


def test_every_frame_is_embedded_with_its_total_and_self_samples() -> None:
    drawn = frames(render_html(official_example(), "orders"))

    expected = {
        (): (600, 0),
        ("app.main:<module>",): (300, 0),
        ("app.main:<module>", "app.server:Server:serve_forever"): (300, 0),
        ("app.main:<module>", "app.server:Server:serve_forever", "selectors:EpollSelector:select"): (300, 300),
        ("threading:Thread:_bootstrap",): (300, 0),
        ("threading:Thread:_bootstrap", "app.worker:upload_loop"): (300, 0),
        ("threading:Thread:_bootstrap", "app.worker:upload_loop", "<Sleep>"): (120, 120),
        ("threading:Thread:_bootstrap", "app.worker:upload_loop", "botocore.client:S3:put_object"): (180, 0),
        (
            "threading:Thread:_bootstrap",
            "app.worker:upload_loop",
            "botocore.client:S3:put_object",
            "ssl:SSLSocket:recv_into",
        ): (180, 180),
    }
    assert {path: (frame["total"], frame["self"]) for path, frame in drawn.items()} == expected
    worker = drawn[("threading:Thread:_bootstrap", "app.worker:upload_loop")]
    assert (worker["file"], worker["lines"]) == ("/srv/app/app/worker.py", (17, 21))


def test_the_widest_callee_is_drawn_first() -> None:
    drawn = frames(render_html(official_example(), "orders"))
    loop = ("threading:Thread:_bootstrap", "app.worker:upload_loop")

    boto = drawn[loop + ("botocore.client:S3:put_object",)]
    sleep = drawn[loop + ("<Sleep>",)]
    assert boto["order"] < sleep["order"], "180 samples before 120, whatever the names' order"


def test_frames_are_coloured_by_where_their_code_lives() -> None:
    drawn = frames(render_html(official_example(), "orders"))
    package = {path[-1]: frame["package"] for path, frame in drawn.items() if path}

    assert package["app.worker:upload_loop"] == ("app", USER_CODE)
    assert package["threading:Thread:_bootstrap"] == ("threading", STANDARD_LIBRARY)
    assert package["botocore.client:S3:put_object"] == ("botocore", THIRD_PARTY)
    assert package["<Sleep>"] == ("<Sleep>", SYNTHETIC)


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("/srv/app/.venv/lib/python3.12/site-packages/flask/app.py", ("flask", THIRD_PARTY)),
        ("/usr/lib/python3/dist-packages/six.py", ("six", THIRD_PARTY)),
        ("/usr/lib/python3.13t/json/decoder.py", ("json", STANDARD_LIBRARY)),
        ("<frozen importlib._bootstrap>", ("importlib", STANDARD_LIBRARY)),
        ("C:\\Python311\\Lib\\asyncio\\events.py", ("asyncio", STANDARD_LIBRARY)),
        ("C:\\app\\venv\\Lib\\site-packages\\requests\\api.py", ("requests", THIRD_PARTY)),
        ("/home/me/project/lib/util.py", ("mylib", USER_CODE)),
    ],
)
def test_packages_are_recognised_from_paths_of_other_machines(file: str, expected: Tuple[str, str]) -> None:
    graph = {"children": {"mylib.util:helper": {"file": file, "counts": {"WALL_TIME": 1}}}}

    assert frames(render_html(graph, "t"))[("mylib.util:helper",)]["package"] == expected


def test_the_profilers_own_frames_are_not_the_users_code_even_from_a_checkout() -> None:
    frame = {"file": "/home/me/src/agent/codeguru_agent/cli/run.py", "counts": {"WALL_TIME": 1}}

    drawn = frames(render_html({"children": {"codeguru_agent.cli.run:main": frame}}, "t"))

    assert drawn[("codeguru_agent.cli.run:main",)]["package"] == ("codeguru_agent", THIRD_PARTY)


def test_a_stack_deeper_than_the_recursion_limit_is_drawn_whole() -> None:
    depth = max(3000, sys.getrecursionlimit() + 500)

    page = render_html(deep_document(depth)["callgraph"], "deep")

    data = embedded_data(page)
    assert len(data["nodes"]) == (depth + 1) * len(data["fields"])
    drawn = frames(page)
    deepest = max(drawn, key=len)
    assert len(deepest) == depth and deepest[-1] == f"deep.module:frame_{depth - 1}"
    assert drawn[deepest]["self"] == 1 and drawn[deepest[:1]]["total"] == 1 and data["total"] == 1


def test_twenty_thousand_frames_are_all_embedded() -> None:
    graph: Dict[str, Any] = {"children": {}}
    expected_total = 0
    for module in range(200):
        callees = {}
        for function in range(100):
            callees[f"app.m{module}:f{function}"] = {"counts": {"WALL_TIME": function + 1}}
            expected_total += function + 1
        graph["children"][f"app.m{module}:main"] = {"children": callees}

    page = render_html(graph, "wide")

    data = embedded_data(page)
    assert len(data["nodes"]) // len(data["fields"]) == 1 + 200 + 200 * 100
    assert data["total"] == expected_total
    assert frames(page)[("app.m7:main", "app.m7:f99")]["total"] == 100


HOSTILE_NAMES = [
    "</script><script>alert(1)</script>",
    "<!--<script>",
    "quote\" and 'apostrophe' & <b>ampersand</b>",
    "naïve:Ünïcødé:函数_🔥",
    "line\u2028separator\u2029and\nnewline",
]


def test_hostile_frame_names_stay_data() -> None:
    graph = {"children": {name: {"counts": {"WALL_TIME": 1}, "file": name} for name in HOSTILE_NAMES}}

    page = render_html(graph, "</script><h1>title & 'quotes'", "<img onerror=alert(2)>")

    assert page.count("</script>") == 2, "no frame name closes a script element"
    assert "<script>alert(1)" not in page and "<img onerror" not in page and "<!--" not in page
    assert "<title>&lt;/script&gt;&lt;h1&gt;title &amp; &#x27;quotes&#x27;</title>" in page
    drawn = frames(page)
    assert {path[0] for path in drawn if path} == set(HOSTILE_NAMES)
    assert {drawn[(name,)]["file"] for name in HOSTILE_NAMES} == set(HOSTILE_NAMES)


def test_names_that_are_not_valid_unicode_can_still_be_written(tmp_path: Any) -> None:
    undecodable = b"/srv/app/caf\xe9.py".decode("utf-8", "surrogateescape")
    document = {"callgraph": {"children": {f"app:{undecodable}": {"file": undecodable, "counts": {"WALL_TIME": 2}}}}}

    path = write_flamegraph([document], str(tmp_path / "out.html"), "t")

    with open(path, encoding="utf-8") as file:
        assert frames(file.read())[(f"app:{undecodable}",)]["total"] == 2


def test_an_empty_call_graph_says_there_are_no_samples() -> None:
    page = render_html({}, "idle service", "1 profile")

    assert '<body class="empty">' in page
    assert "No samples" in page and "idle service" in page
    assert embedded_data(page)["total"] == 0


def test_documents_are_merged_and_described() -> None:
    first = {"start": 1700000000000, "end": 1700000299512, "callgraph": official_example()}
    second = {"start": 1700000300000, "end": 1700000599000, "callgraph": official_example()}

    page = render([first, second], "orders").decode("utf-8")

    assert "2 profiles · 2023-11-14 22:13:20 – 22:23:19 UTC · 1,200 samples" in page
    assert frames(page)[("threading:Thread:_bootstrap", "app.worker:upload_loop", "<Sleep>")]["total"] == 240


def test_write_flamegraph_returns_the_absolute_path_and_leaves_no_temporary_file(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    path = write_flamegraph(iter([{"callgraph": official_example()}]), "flame.html", "orders")

    assert path == str(tmp_path / "flame.html")
    assert os.listdir(tmp_path) == ["flame.html"]
    with open(path, encoding="utf-8") as file:
        assert frames(file.read())[()]["total"] == 600


def test_importing_the_renderer_loads_no_agent_runtime() -> None:
    code = (
        "import sys, threading, codeguru_agent.viewer.flamegraph\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'amazon')\n"
        "          or m.startswith(('codeguru_agent.collector', 'codeguru_agent.profiler', 'codeguru_agent.sampling.runner',\n"
        "                           'codeguru_agent.reporting.uploader', 'codeguru_agent.sampling.sampler'))]\n"
        "print(loaded, threading.active_count())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[] 1"
