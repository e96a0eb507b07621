"""Run the benchmark suite: ``python run.py [--quick] [--only per-sample,end-to-end,...]``.

Every measurement runs in child processes of this one (which imports no agent), so a crash, hang
or missing package shows up as "n/a (why)" in its row instead of ending the run. The summary
table is printed and, with the machine and the details, written to ``RESULTS.md``; the raw numbers
of every run go to ``out/raw.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Final, List, Tuple

import correctness
import encode_size
import end_to_end
import harness
import memory
import per_sample
import report
import servers
import startup
import workloads


@dataclass(frozen=True)
class Plan:
    """How many runs each measurement gets."""

    per_sample_runs: int
    per_sample_budget_s: float
    end_to_end_runs: int
    startup_runs: int
    encode_runs: int
    memory_runs: int
    memory_rounds: int
    servers_runs: int
    servers_load_s: float


FULL: Final = Plan(
    per_sample_runs=5,
    per_sample_budget_s=1.0,
    end_to_end_runs=7,
    startup_runs=7,
    encode_runs=5,
    memory_runs=3,
    memory_rounds=2500,
    servers_runs=3,
    servers_load_s=8.0,
)
QUICK: Final = Plan(
    per_sample_runs=2,
    per_sample_budget_s=0.4,
    end_to_end_runs=2,
    startup_runs=3,
    encode_runs=2,
    memory_runs=1,
    memory_rounds=800,
    servers_runs=1,
    servers_load_s=3.0,
)
SUITES: Final = ("correctness", "per-sample", "startup", "encode", "memory", "end-to-end", "servers")

Result = Tuple[List[report.Row], List[report.Table], Dict[str, Any]]


def _suites(plan: Plan) -> Dict[str, Callable[[], Result]]:
    def rows_only(result: Tuple[List[report.Row], Dict[str, Any]]) -> Result:
        return result[0], [], result[1]

    return {
        "correctness": lambda: rows_only(correctness.suite()),
        "per-sample": lambda: rows_only(per_sample.suite(plan.per_sample_runs, plan.per_sample_budget_s)),
        "startup": lambda: rows_only(startup.suite(plan.startup_runs)),
        "encode": lambda: encode_size.suite(plan.encode_runs),
        "memory": lambda: rows_only(memory.suite(plan.memory_runs, plan.memory_rounds)),
        "end-to-end": lambda: end_to_end.suite(plan.end_to_end_runs),
        "servers": lambda: servers.suite(plan.servers_runs, plan.servers_load_s),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs, for development")
    parser.add_argument("--only", default=",".join(SUITES), help=f"comma-separated subset of {','.join(SUITES)}")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(unknown)}")
    plan = QUICK if args.quick else FULL
    workloads.ensure_app()
    harness.OUT_DIR.mkdir(exist_ok=True)
    started = time.perf_counter()
    rows: List[report.Row] = []
    tables: List[report.Table] = []
    raw: Dict[str, Any] = {"plan": plan.__dict__}
    runners = _suites(plan)
    for name in SUITES:
        if name not in chosen:
            continue
        harness.log(f"[{time.perf_counter() - started:5.0f} s] {name}")
        try:
            suite_rows, suite_tables, suite_raw = runners[name]()
        except Exception as error:  # one suite's bug must not cost the others' results
            suite_rows, suite_tables, suite_raw = [report.Row(name, "n/a", "n/a", note=repr(error))], [], {}
        rows += suite_rows
        tables += suite_tables
        raw[name] = suite_raw
    elapsed = time.perf_counter() - started
    (harness.OUT_DIR / "raw.json").write_text(json.dumps(raw, indent=1, default=str))
    command = "make bench-quick" if args.quick else "make bench"
    if set(chosen) != set(SUITES):
        command += f" (only {','.join(chosen)})"
    report.write(rows, tables, command, elapsed)
    print()
    report.print_tables(rows, tables)
    print(f"\n{len(rows)} measures in {elapsed:.0f} s; written to {report.RESULTS_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
