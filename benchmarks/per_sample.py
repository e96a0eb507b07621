"""Measurements 1 and 2: the cost of one tick (walk every thread and aggregate) per agent.

A child process starts T threads, builds one agent's ticker, and times ticks with the calling
thread's CPU clock (the tick holds the GIL: its CPU time is the host's lost time; wall time would
add whatever the other threads ran when the interpreter switched away mid-tick). In ``parked`` mode
the threads sit still D frames deep; in ``changing`` mode every thread runs its own CPU loop through
ever-new call chains, and each tick waits until every thread has finished a chain since the last.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Dict, Final, List, Optional, Sequence, Tuple

import harness
from report import Row, ratio_row

PARKED_SHAPES: Final = ((20, 30), (50, 50), (100, 100))
CHANGING_SHAPE: Final = (20, 30)
ARMS: Final = ("official", "ours")


def measure(args: argparse.Namespace) -> Dict[str, Any]:
    """Time ticks of one agent over one workload (runs in the child)."""
    import agents
    import workloads

    if args.mode == "parked":
        threads: Any = workloads.ParkedThreads(args.threads, args.depth)
    else:
        threads = workloads.BusyThreads(args.threads, args.depth)
    ticker = agents.make_ticker(args.agent)
    warm_end = time.perf_counter() + args.warmup_s  # steady state: both agents' caches filled
    while time.perf_counter() < warm_end:
        _wait_for_moves(threads, args.mode)
        ticker.tick()
    cpu_ns: List[int] = []
    wall_ns: List[int] = []
    all_moved = 0
    budget_end = time.perf_counter() + args.budget_s
    while len(cpu_ns) < args.max_ticks and (time.perf_counter() < budget_end or len(cpu_ns) < args.min_ticks):
        all_moved += _wait_for_moves(threads, args.mode)
        wall0, cpu0 = time.perf_counter_ns(), time.thread_time_ns()
        ticker.tick()
        cpu1, wall1 = time.thread_time_ns(), time.perf_counter_ns()
        cpu_ns.append(cpu1 - cpu0)
        wall_ns.append(wall1 - wall0)
    threads.close()
    return {
        "ticks": len(cpu_ns),
        "cpu_us": sum(cpu_ns) / len(cpu_ns) / 1000,
        "cpu_median_us": statistics.median(cpu_ns) / 1000,
        "wall_us": sum(wall_ns) / len(wall_ns) / 1000,
        "all_moved_fraction": all_moved / len(cpu_ns) if args.mode == "changing" else None,
    }


def _wait_for_moves(threads: Any, mode: str, deadline_s: float = 1.0) -> int:
    """In changing mode, wait until every busy thread finished a chain; 1 if all did in time."""
    if mode != "changing":
        return 0
    before = list(threads.progress)
    end = time.perf_counter() + deadline_s
    while time.perf_counter() < end:
        if all(now > then for now, then in zip(threads.progress, before)):
            return 1
        time.sleep(0.0005)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agent", choices=ARMS, required=True)
    parser.add_argument("--mode", choices=("parked", "changing"), default="parked")
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--depth", type=int, default=30)
    parser.add_argument("--warmup-s", type=float, default=0.3)
    parser.add_argument("--budget-s", type=float, default=1.0)
    parser.add_argument("--min-ticks", type=int, default=10)
    parser.add_argument("--max-ticks", type=int, default=2000)
    return parser


def suite(runs: int, budget_s: float) -> Tuple[List[Row], Dict[str, Any]]:
    """Every shape, both agents alternating, ``runs`` subprocesses each; medians of per-tick CPU."""
    rows: List[Row] = []
    raw: Dict[str, Any] = {}
    cases: List[Tuple[str, int, int, float, str]] = [
        ("parked", t, d, 0.05, f"per sample, {t} threads parked at depth {d}") for t, d in PARKED_SHAPES
    ]
    t, d = CHANGING_SHAPE
    cases.append(("changing", t, d, 0.2, f"per sample, {t} busy threads, every stack changes (depth <= {d})"))
    for mode, threads, depth, target, label in cases:
        outcomes: Dict[str, List[harness.Outcome]] = {arm: [] for arm in ARMS}
        for run, arm in harness.alternate(ARMS, runs):
            harness.log(f"  {label}: {arm} run {run + 1}/{runs}")
            outcomes[arm].append(
                harness.run_child(
                    "per_sample.py",
                    [
                        "--agent",
                        arm,
                        "--mode",
                        mode,
                        "--threads",
                        str(threads),
                        "--depth",
                        str(depth),
                        "--budget-s",
                        str(budget_s),
                    ],
                    timeout_s=180,
                )
            )
        figures = {arm: harness.median(harness.collect(outcomes[arm], "cpu_us")) for arm in ARMS}
        errors = {arm: harness.first_error(outcomes[arm]) for arm in ARMS}
        note = _moved_note(outcomes["official"] + outcomes["ours"]) if mode == "changing" else ""
        rows.append(
            ratio_row(label, figures["official"], figures["ours"], unit="us", target=target, errors=errors, note=note)
        )
        raw[f"{mode}-{threads}x{depth}"] = {arm: [o.value or o.error for o in outcomes[arm]] for arm in ARMS}
    return rows, raw


def _moved_note(outcomes: Sequence[harness.Outcome]) -> str:
    fractions = harness.collect(outcomes, "all_moved_fraction")
    low: Optional[float] = min(fractions) if fractions else None
    return "" if low is None else f"ticks where every thread had moved: >= {low:.0%}"


if __name__ == "__main__":
    harness.child_main(measure, _parser())
