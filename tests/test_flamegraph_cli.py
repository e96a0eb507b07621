"""``codeguru-agent flamegraph``: any mix of JSON and Ion files in, one page out, clear errors."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest
from amazon.ion import simpleion

from codeguru_agent.cli import main as cli_main
from codeguru_agent.cli.flamegraph import main
from codeguru_agent.reporting.encoding import encode_json
from support.documents import deep_document, profile_document
from support.flamegraph_page import embedded_data, frames


def document(sleep: int, work: int) -> Dict[str, Any]:
    """A profile of a worker thread that sleeps and works."""
    loop = ("app.worker:loop", 10)
    return profile_document(stacks={(loop, ("<Sleep>", 0)): sleep, (loop, ("app.worker:work", 20)): work})


def read_page(path: Path) -> Dict[Any, Dict[str, Any]]:
    return frames(path.read_text(encoding="utf-8"))


def test_json_and_ion_binary_files_merge_into_summed_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    json_file = tmp_path / "first.json"
    json_file.write_text(json.dumps(document(sleep=5, work=7)))
    ion_file = tmp_path / "second.ion"
    ion_file.write_bytes(simpleion.dumps(document(sleep=1, work=30), binary=True))
    out = tmp_path / "flame.html"

    code = cli_main(["flamegraph", str(json_file), str(ion_file), "-o", str(out)])

    assert code == 0
    assert capsys.readouterr().out.splitlines()[-1] == str(out)
    drawn = read_page(out)
    assert drawn[("app.worker:loop", "<Sleep>")]["total"] == 6
    assert drawn[("app.worker:loop", "app.worker:work")]["total"] == 37
    assert drawn[()]["total"] == 43
    assert "Flame graph of first.json, second.ion" in out.read_text(encoding="utf-8")


def test_ion_text_and_gzipped_json_are_read_too(tmp_path: Path) -> None:
    ion_text = tmp_path / "profile.ion"
    ion_text.write_text(simpleion.dumps(document(sleep=2, work=3), binary=False))
    gzipped = tmp_path / "profile.json.gz"
    gzipped.write_bytes(gzip.compress(json.dumps(document(sleep=4, work=0)).encode()))
    out = tmp_path / "flame.html"

    assert main([str(ion_text), str(gzipped), "-o", str(out), "--title", "checkout service"]) == 0

    assert read_page(out)[("app.worker:loop", "<Sleep>")]["total"] == 6
    assert "<h1>checkout service</h1>" in out.read_text(encoding="utf-8")


def test_a_profile_deeper_than_the_recursion_limit_is_read(tmp_path: Path) -> None:
    depth = max(3000, sys.getrecursionlimit() + 500)
    profile = tmp_path / "deep.json"
    profile.write_bytes(encode_json(deep_document(depth)))
    out = tmp_path / "flame.html"

    assert main([str(profile), "-o", str(out)]) == 0

    drawn = read_page(out)
    assert max(len(path) for path in drawn) == depth and drawn[()]["total"] == 1


BAD_FILES = {
    "missing.json": (None, "cannot read: No such file or directory"),
    "empty.json": (b"", "the file is empty"),
    "truncated.json": (json.dumps(document(1, 1)).encode()[:40], "neither JSON nor Ion"),
    "random.bin": (bytes(range(256)), "neither JSON nor Ion"),
    "list.json": (b"[1, 2, 3]", "not a profile document: the top level is a list"),
    "metadata.json": (b'{"start": 1, "end": 2}', "it has no 'callgraph'"),
    "children.json": (b'{"callgraph": {"children": [1]}}', "the root has 'children' that is a list"),
    "counts.json": (
        b'{"callgraph": {"children": {"a:b": {"counts": {"WALL_TIME": "many"}}}}}',
        "frame 'a:b' has counts that are not non-negative numbers",
    ),
    "broken.ion": (b"\xe0\x01\x00\xea\xee\xff\x00", "not valid Ion"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_file_is_named_in_one_line_and_exits_2(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content, problem = BAD_FILES[name]
    good = tmp_path / "good.json"
    good.write_text(json.dumps(document(1, 1)))
    bad = tmp_path / name
    if content is not None:
        bad.write_bytes(content)
    out = tmp_path / "flame.html"

    code = main([str(good), str(bad), "-o", str(out)])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.count("\n") == 1 and str(bad) in captured.err and problem in captured.err
    assert not out.exists(), "no page from half the input"


def test_the_command_line_reports_bad_input_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("these are not the profiles you are looking for {")

    result = subprocess.run(
        [sys.executable, "-m", "codeguru_agent.cli", "flamegraph", str(bad), "-o", str(tmp_path / "x.html")],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"codeguru-agent flamegraph: {bad}: ")


def test_the_output_option_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile.json"]) == 2

    assert "-o/--output" in capsys.readouterr().err


def test_an_unwritable_output_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(document(1, 1)))

    code = main([str(profile), "-o", str(tmp_path / "no-such-directory" / "flame.html")])

    assert code == 1
    assert "cannot write" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("output_format", "looks_like"),
    [
        ("collapsed", lambda data: data == b"app.worker:loop;app.worker:work 7\napp.worker:loop;<Sleep> 5\n"),
        ("speedscope", lambda data: json.loads(data)["profiles"][0]["weights"] == [7, 5]),
        ("pprof", lambda data: gzip.decompress(data).startswith(b"\x0a")),  # field 1, sample_type, comes first
    ],
)
def test_each_export_format_is_written(output_format: str, looks_like: Any, tmp_path: Path) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(document(sleep=5, work=7)))
    out = tmp_path / "out"

    assert main([str(profile), "-o", str(out), "--format", output_format]) == 0

    assert looks_like(out.read_bytes())


def test_baseline_files_make_a_comparison_page(tmp_path: Path) -> None:
    before, after = tmp_path / "monday.json", tmp_path / "tuesday.json"
    before.write_text(json.dumps(document(sleep=9, work=1)))
    after.write_text(json.dumps(document(sleep=2, work=8)))
    out = tmp_path / "diff.html"

    assert main([str(after), "--baseline", str(before), "-o", str(out)]) == 0

    page = out.read_text(encoding="utf-8")
    data = embedded_data(page)
    assert data["kind"] == "comparison"
    rows = [
        dict(zip(data["fields"], data["nodes"][i : i + len(data["fields"])]))
        for i in range(0, len(data["nodes"]), len(data["fields"]))
    ]
    work = next(row for row in rows if row["name"] >= 0 and data["names"][row["name"]] == "app.worker:work")
    assert (work["total"], work["base_total"]) == (8, 1)
    assert "tuesday.json compared with monday.json" in page


def test_a_comparison_is_only_written_as_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(document(1, 1)))

    code = main([str(profile), "--baseline", str(profile), "--format", "pprof", "-o", str(tmp_path / "x")])

    assert code == 2 and "--baseline needs --format html" in capsys.readouterr().err


def test_a_bad_baseline_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(document(1, 1)))

    code = main([str(good), "--baseline", str(tmp_path / "missing.json"), "-o", str(tmp_path / "x.html")])

    assert code == 2 and f"{tmp_path / 'missing.json'}: cannot read" in capsys.readouterr().err
