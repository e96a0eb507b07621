"""The floor under the end-to-end figure: what any sampler that takes the GIL pays here per sample.

While the main thread runs the end-to-end workload (CPU-bound, 20 threads parked at depth 30), a
thread wakes every 10 ms, as a sampler at 100 samples per second does, and:

- ``wake``: takes the GIL and does nothing else: the cost of the wake-up and of taking the GIL
  from the busy main thread;
- ``frames``: also calls ``sys._current_frames()``, which every sampler in Python must;
- ``tick``: runs our sampler's tick once, then again at once: the first tick follows the sleep,
  with the CPU's caches cold, the second finds them warm.

Each figure is the thread's own CPU (``/proc/self/task/*/schedstat``) per wake-up, the median over
``--runs`` processes. Run with ``make floor``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Dict, List

import workloads

MODES = ("wake", "frames", "tick")
INTERVAL_S = 0.01


def _child(mode: str) -> None:
    """One measurement in this process; prints ``name value`` lines."""
    from codeguru_agent.config import AgentConfig
    from codeguru_agent.sampler import Sampler

    workloads.app_steps()
    parked = workloads.ParkedThreads(20, 30)
    sampler = Sampler(AgentConfig())  # samples the busy main thread too, as the agent does
    stop = threading.Event()
    wakeups = [0]
    tick_s: Dict[str, float] = {"cold": 0.0, "warm": 0.0}

    def loop() -> None:
        sampler.exclude_thread(threading.get_ident())
        while not stop.is_set():
            time.sleep(INTERVAL_S)
            if mode == "frames":
                frames = sys._current_frames()
                del frames
            elif mode == "tick":
                started = time.perf_counter()
                sampler.sample()
                middle = time.perf_counter()
                sampler.sample()
                tick_s["cold"] += middle - started
                tick_s["warm"] += time.perf_counter() - middle
            wakeups[0] += 1

    thread = threading.Thread(target=loop, name="floor")
    thread.start()
    time.sleep(0.5)
    cpu_before, count_before = workloads.thread_cpu_ns_except_main(), wakeups[0]
    tick_s.update(cold=0.0, warm=0.0)
    workloads.cpu_work()
    cpu_s = (workloads.thread_cpu_ns_except_main() - cpu_before) / 1e9
    count = wakeups[0] - count_before
    stop.set()
    thread.join()
    parked.close()
    print(f"cpu_per_wakeup_us {cpu_s / count * 1e6:.1f}")
    if mode == "tick":
        print(f"cold_tick_us {tick_s['cold'] / count * 1e6:.1f}")
        print(f"warm_tick_us {tick_s['warm'] / count * 1e6:.1f}")
    sys.stdout.flush()
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", choices=MODES)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
    figures: Dict[str, List[float]] = {}
    for run in range(args.runs):
        for mode in MODES:
            done = subprocess.run([sys.executable, __file__, "--child", mode], capture_output=True, text=True,
                                  timeout=120, check=True)
            for line in done.stdout.splitlines():
                name, value = line.split()
                figures.setdefault(f"{mode}: {name}", []).append(float(value))
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    print(f"| per wake-up every {INTERVAL_S * 1000:g} ms, busy main thread, medians of {args.runs} | µs |")
    print("|---|---|")
    for name, values in figures.items():
        print(f"| {name} | {statistics.median(values):.0f} |")


if __name__ == "__main__":
    main()
