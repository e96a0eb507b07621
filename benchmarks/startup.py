"""Measurement 4: what the host pays to import each agent, and then to start it.

Each figure comes from a fresh interpreter, so nothing is already imported: the import is timed
around ``import codeguru_agent`` / ``import codeguru_profiler_agent``; the start is timed around the
call that starts profiling (for the official agent: constructing its Profiler and calling start(),
for ours: ``codeguru_agent.start(...)``, whatever it imports lazily included), after the import.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Dict, Final, List, Tuple

import harness
from report import Row, fmt

ARMS: Final = ("official", "ours")
PACKAGE: Final = {"official": "codeguru_profiler_agent", "ours": "codeguru_agent"}


def measure(args: argparse.Namespace) -> Dict[str, Any]:
    import importlib

    started = time.perf_counter()
    importlib.import_module(PACKAGE[args.agent])
    import_ms = (time.perf_counter() - started) * 1000
    if args.what == "import":
        return {"ms": import_ms}
    from end_to_end import start_agent

    started = time.perf_counter()
    start_agent(args.agent, 10, args.url)
    return {"ms": (time.perf_counter() - started) * 1000}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agent", choices=ARMS, required=True)
    parser.add_argument("--what", choices=("import", "start"), required=True)
    parser.add_argument("--url", default="")
    return parser


def suite(runs: int) -> Tuple[List[Row], Dict[str, Any]]:
    """Import and start times, both agents alternating, medians of ``runs`` fresh processes each."""
    rows: List[Row] = []
    raw: Dict[str, Any] = {}
    with harness.codeguru_endpoint() as endpoint:
        for what, target_ms in (("import", 30.0), ("start", 5.0)):
            outcomes: Dict[str, List[harness.Outcome]] = {arm: [] for arm in ARMS}
            for run, arm in harness.alternate(ARMS, runs):
                harness.log(f"  {what}: {arm} run {run + 1}/{runs}")
                outcomes[arm].append(harness.run_child("startup.py", [
                    "--agent", arm, "--what", what, "--url", endpoint.url], timeout_s=60))
            figures = {arm: harness.median(harness.collect(outcomes[arm], "ms")) for arm in ARMS}
            errors = {arm: harness.first_error(outcomes[arm]) for arm in ARMS}
            official, ours = figures["official"], figures["ours"]
            rows.append(Row(
                measure="import time (fresh process)" if what == "import" else "start() on the host's thread",
                official=fmt(official, "ms", errors["official"]), ours=fmt(ours, "ms", errors["ours"]),
                ratio="n/a" if not official or ours is None else f"{ours / official:.3f}",
                target=f"< {target_ms:g} ms", met=None if ours is None else ours < target_ms))
            raw[what] = {arm: [o.value or o.error for o in outcomes[arm]] for arm in ARMS}
    return rows, raw


if __name__ == "__main__":
    harness.child_main(measure, _parser())
