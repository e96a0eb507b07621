"""Our tick after the sleep and right after it again: what a cold CPU costs, under the end-to-end figure.

The end-to-end suite (``end_to_end.py``) measures the floor itself in the same run as the agents:
a thread on a sampler's schedule that only wakes (``floor-wake``) or also calls
``sys._current_frames()`` (``floor-frames``). This adds the part between that floor and our agent:
while the end-to-end workload runs (CPU-bound main thread, 20 threads parked at depth 30), a
:class:`workloads.FloorSampler` wakes every 10 ms and runs our sampler's tick twice in a row. The
first tick follows the sleep, with the CPU's caches cold; the second finds them warm. Each figure
is a median over ``--runs`` processes, per wake-up. Run with ``make floor``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List

import workloads

INTERVAL_S = 0.01


def _child() -> None:
    """One measurement in this process; prints ``name value`` lines."""
    from codeguru_agent.config import AgentConfig
    from codeguru_agent.sampling.sampler import Sampler

    workloads.app_steps()
    parked = workloads.ParkedThreads(20, 30)
    sampler = Sampler(AgentConfig())  # samples the busy main thread too, as the agent does
    tick_s: Dict[str, float] = {"cold": 0.0, "warm": 0.0}

    def two_ticks() -> None:
        started = time.perf_counter()
        sampler.sample()
        middle = time.perf_counter()
        sampler.sample()
        tick_s["cold"] += middle - started
        tick_s["warm"] += time.perf_counter() - middle

    floor = workloads.FloorSampler(INTERVAL_S, two_ticks)
    sampler.exclude_thread(floor.ident or 0)
    time.sleep(0.5)
    cpu_before, count_before = workloads.thread_cpu_ns_except_main(), floor.wakeups
    tick_s.update(cold=0.0, warm=0.0)
    workloads.cpu_work()
    cpu_s = (workloads.thread_cpu_ns_except_main() - cpu_before) / 1e9
    count = floor.wakeups - count_before
    floor.stop()
    parked.close()
    print(f"cpu_per_wakeup_us {cpu_s / count * 1e6:.1f}")
    print(f"cold_tick_us {tick_s['cold'] / count * 1e6:.1f}")
    print(f"warm_tick_us {tick_s['warm'] / count * 1e6:.1f}")
    sys.stdout.flush()
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        _child()
    figures: Dict[str, List[float]] = {}
    for run in range(args.runs):
        done = subprocess.run(
            [sys.executable, __file__, "--child"], capture_output=True, text=True, timeout=120, check=True
        )
        for line in done.stdout.splitlines():
            name, value = line.split()
            figures.setdefault(name, []).append(float(value))
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    print(f"| two ticks per wake-up every {INTERVAL_S * 1000:g} ms, busy main thread, medians of {args.runs} | µs |")
    print("|---|---|")
    for name, values in figures.items():
        print(f"| {name} | {statistics.median(values):.0f} |")


if __name__ == "__main__":
    main()
