"""Measurement 4: what the host pays to import each agent, and then to start it.

Each figure comes from a fresh interpreter that has imported nothing but what Python itself loads
at start-up: the child's own code runs before any other import of this suite, so modules the
agents need (``logging``, ``typing``, ...) are not already there to make them look cheap. The
import is timed around ``import codeguru_agent`` / ``import codeguru_profiler_agent``; the start
around the call that starts profiling (for the official agent: constructing its Profiler and
calling start(), for ours: ``codeguru_agent.start(...)``, whatever it imports lazily included),
right after the import.
"""

from __future__ import annotations  # annotations stay strings: importing typing here would pre-load it

import sys
import time

PACKAGE = {"official": "codeguru_profiler_agent", "ours": "codeguru_agent"}
ARMS = ("official", "ours")
CHILD_FLAG = "--child"


def _child(agent: str, what: str, url: str) -> None:
    """Time the import (and the start), then report; nothing else is imported before the timing."""
    started = time.perf_counter()
    __import__(PACKAGE[agent])
    value = {"ms": (time.perf_counter() - started) * 1000}
    if what == "start":
        from starting import start_agent  # typing only, which either agent has imported by now

        started = time.perf_counter()
        start_agent(agent, 10, url)
        value = {"ms": (time.perf_counter() - started) * 1000}
    import json
    import os

    sys.stdout.write("RESULT " + json.dumps(value) + "\n")  # harness.RESULT_PREFIX
    sys.stdout.flush()
    os._exit(0)  # skip the agents' exit hooks, which are no part of the measurement


def suite(runs: int) -> tuple[list, dict]:
    """Import and start times, both agents alternating, medians of ``runs`` fresh processes each."""
    import harness
    from report import Row, fmt

    rows: list[Row] = []
    raw: dict[str, dict[str, list]] = {}
    with harness.codeguru_endpoint() as endpoint:
        for what, target_ms in (("import", 30.0), ("start", 5.0)):
            outcomes: dict[str, list[harness.Outcome]] = {arm: [] for arm in ARMS}
            for run, arm in harness.alternate(ARMS, runs):
                harness.log(f"  {what}: {arm} run {run + 1}/{runs}")
                outcomes[arm].append(
                    harness.run_child("startup.py", [CHILD_FLAG, arm, what, endpoint.url], timeout_s=60)
                )
            figures = {arm: harness.median(harness.collect(outcomes[arm], "ms")) for arm in ARMS}
            errors = {arm: harness.first_error(outcomes[arm]) for arm in ARMS}
            official, ours = figures["official"], figures["ours"]
            rows.append(
                Row(
                    measure="import time (fresh process)" if what == "import" else "start() on the host's thread",
                    official=fmt(official, "ms", errors["official"]),
                    ours=fmt(ours, "ms", errors["ours"]),
                    ratio="n/a" if not official or ours is None else f"{ours / official:.3f}",
                    target=f"< {target_ms:g} ms",
                    met=None if ours is None else ours < target_ms,
                )
            )
            raw[what] = {arm: [o.value or o.error for o in outcomes[arm]] for arm in ARMS}
    return rows, raw


if __name__ == "__main__" and sys.argv[1:2] == [CHILD_FLAG]:
    _child(*sys.argv[2:5])
