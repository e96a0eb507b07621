"""The tables: one row per measure (official, ours, ratio, target, met?), printed and written to RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Final, List, Mapping, Optional, Sequence

RESULTS_PATH: Final = Path(__file__).resolve().parent / "RESULTS.md"
HEADERS: Final = ("measure", "official", "ours", "ratio", "target", "met?")
PACKAGES: Final = ("codeguru-agent", "codeguru-profiler-agent", "ddtrace", "pyroscope-io", "boto3", "amazon.ion")


@dataclass
class Row:
    """One measure, both agents' figures as text, and whether ours met its target."""

    measure: str
    official: str
    ours: str
    ratio: str = ""
    target: str = ""
    met: Optional[bool] = None
    note: str = ""
    verdict: str = ""
    """Said in the met? column instead of yes/NO/? (a reference row has no target of its own)."""


@dataclass
class Table:
    """Any other table (the end-to-end comparison with every agent, details)."""

    title: str
    headers: Sequence[str]
    rows: List[List[str]] = field(default_factory=list)


def fmt(value: Optional[float], unit: str = "", error: Optional[str] = None) -> str:
    """A figure with three significant digits and its unit, or why it is missing."""
    if value is None:
        return f"n/a ({error})" if error else "n/a"
    if unit == "us" and abs(value) >= 1000:
        value, unit = value / 1000, "ms"
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def ratio_row(
    measure: str,
    official: Optional[float],
    ours: Optional[float],
    unit: str,
    target: float,
    errors: Optional[Mapping[str, Optional[str]]] = None,
    note: str = "",
) -> Row:
    """A row whose target is a ceiling on ours / official."""
    errors = errors or {}
    ratio = ours / official if official and ours is not None else None
    return Row(
        measure=measure,
        official=fmt(official, unit, errors.get("official")),
        ours=fmt(ours, unit, errors.get("ours")),
        ratio=_ratio_text(ratio),
        target=f"<= {_fraction_text(target)}",
        met=None if ratio is None else ratio <= target,
        note=note,
    )


def _ratio_text(ratio: Optional[float]) -> str:
    if ratio is None:
        return "n/a"
    return f"{ratio:.3f} (1/{1 / ratio:.0f})" if 0 < ratio < 0.5 else f"{ratio:.3f}"


def _fraction_text(target: float) -> str:
    return (
        f"1/{round(1 / target)}" if 0 < target < 0.5 and abs(1 / target - round(1 / target)) < 1e-9 else f"{target:g}"
    )


def met_text(met: Optional[bool]) -> str:
    return {True: "yes", False: "NO", None: "?"}[met]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (also readable as plain text)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def main_table(rows: Sequence[Row]) -> str:
    body = [[r.measure, r.official, r.ours, r.ratio, r.target, r.verdict or met_text(r.met)] for r in rows]
    text = markdown_table(HEADERS, body)
    notes = [f"- {r.measure}: {r.note}" for r in rows if r.note]
    return text + ("\n\nNotes:\n" + "\n".join(notes) if notes else "")


def machine() -> Dict[str, str]:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as handle:
            kib = int(next(line for line in handle if line.startswith("MemTotal")).split()[1])
            memory = f"{kib / 2**20:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return {
        "cpu": cpu,
        "cores": str(len(os.sched_getaffinity(0))),
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load average at the end (1, 5, 15 min)": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        **{f"package {name}": _version(name) for name in PACKAGES},
    }


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, cwd=RESULTS_PATH.parent
        )
        return done.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def render(rows: Sequence[Row], tables: Sequence[Table], command: str, elapsed_s: float) -> str:
    """The whole RESULTS.md."""
    facts = machine()
    facts["commit"] = _commit()
    facts["command"] = command
    facts["suite time"] = f"{elapsed_s:.0f} s"
    parts = [
        "# Benchmark results: codeguru-agent vs the official agent",
        "",
        "Written by `make bench` (`benchmarks/run.py`); every ratio is ours / official, measured in the "
        "same run with the two alternating, each figure the median of the runs shown. "
        "How each figure is measured: `benchmarks/README.md`.",
        "",
        "## Summary",
        "",
        main_table(rows),
    ]
    for table in tables:
        parts += ["", f"## {table.title}", "", markdown_table(table.headers, table.rows)]
    parts += ["", "## Machine", "", markdown_table(("what", "value"), [[k, v] for k, v in facts.items()]), ""]
    return "\n".join(parts)


def write(rows: Sequence[Row], tables: Sequence[Table], command: str, elapsed_s: float) -> str:
    text = render(rows, tables, command, elapsed_s)
    RESULTS_PATH.write_text(text)
    return text


def print_tables(rows: Sequence[Row], tables: Sequence[Table]) -> None:
    print(main_table(rows))
    for table in tables:
        print(f"\n{table.title}\n" + markdown_table(table.headers, table.rows))
    sys.stdout.flush()
