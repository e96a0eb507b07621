"""The main thread's short CPU bursts, as each sampler sees them (issue 15, truthful samples).

``python bursts.py [--seconds S] [--runs N]``: a main thread busy half of the time, in bursts of
``burn()`` (0.5, 2 and 8 ms of pure Python) each followed by an equal sleep. For each burst length
it prints ``burn()``'s share of the main thread's samples as seen by:

- ours with the main thread's timer (the default), and ours without it (the sampling thread alone,
  ``AWS_CODEGURU_PROFILER_MAIN_THREAD_TIMER=false``), both at 100 samples a second;
- py-spy (``record -r 100 --idle --format raw``: from outside the process, no GIL);
- two bare signal samplers, the design options measured before the choice: ``ITIMER_REAL`` (wall
  clock: what the agent's timer does) and ``ITIMER_PROF`` (process CPU time);
- the truth: the program's own accounting, ``burn()``'s ``time.thread_time()`` over the loop's
  wall-clock time (CPU truth) and ``burn()``'s wall-clock time over the loop's (wall truth).

The target: within 10 points of the truth at every burst length. ``--cost`` measures what one
SIGALRM costs the main thread (the delivery cost the agent charges its budget per timer sample).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
BURSTS_MS = (0.5, 2.0, 8.0)
ARMS = ("ours-timer", "ours-thread", "py-spy", "ITIMER_REAL", "ITIMER_PROF")
"""Ours with the main thread's timer and without it, py-spy, and the two bare signal samplers."""


# --- the program (a child process) ----------------------------------------------------------------


def burn(seconds: float) -> int:
    """Pure-Python work for ``seconds`` of wall-clock time."""
    deadline = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < deadline:
        total += sum(range(50))
    return total


def main_loop(burst_s: float, total_s: float) -> Tuple[float, float, float]:
    """Bursts then equal sleeps for ``total_s``; returns burn()'s CPU time, its wall-clock time and the loop's."""
    burn_cpu = burn_wall = 0.0
    started = time.perf_counter()
    end = started + total_s
    while time.perf_counter() < end:
        wall, cpu = time.perf_counter(), time.thread_time()
        burn(burst_s)
        burn_cpu += time.thread_time() - cpu
        burn_wall += time.perf_counter() - wall
        time.sleep(burst_s)
    return burn_cpu, burn_wall, time.perf_counter() - started


def child(arm: str, burst_ms: float, seconds: float, out: str) -> None:
    """Run the program under ``arm``; print the truth (and a bare signal sampler's counts) as JSON."""
    counts = {"burn": 0, "all": 0}
    if arm in ("ITIMER_REAL", "ITIMER_PROF"):

        def on_signal(signum: int, frame: Any) -> None:
            counts["all"] += 1
            while frame is not None:
                if frame.f_code is burn.__code__:
                    counts["burn"] += 1
                    break
                frame = frame.f_back

        which = signal.ITIMER_REAL if arm == "ITIMER_REAL" else signal.ITIMER_PROF
        signal.signal(signal.SIGALRM if arm == "ITIMER_REAL" else signal.SIGPROF, on_signal)
        signal.setitimer(which, 0.01, 0.01)
    elif arm.startswith("ours"):
        import codeguru_agent

        codeguru_agent.start(
            local_dir=out,
            profiling_group_name="bursts",
            sampling_interval_ms=10,
            reporting_interval_ms=60_000,
            main_thread_timer=arm == "ours-timer",
        ).wait_for_sampling(10)
    burn(0.2)  # warm up
    burn_cpu, burn_wall, wall = main_loop(burst_ms / 1000.0, seconds)
    if arm in ("ITIMER_REAL", "ITIMER_PROF"):
        signal.setitimer(signal.ITIMER_REAL if arm == "ITIMER_REAL" else signal.ITIMER_PROF, 0, 0)
    elif arm.startswith("ours"):
        import codeguru_agent

        codeguru_agent.stop()
    print(json.dumps({"cpu_truth": burn_cpu / wall, "wall_truth": burn_wall / wall, "counts": counts}))


# --- reading each sampler's samples -----------------------------------------------------------------


def our_counts(out: Path) -> Dict[str, int]:
    """Main thread samples (under main_loop) and those in burn(), from our local profiles."""
    counts = {"burn": 0, "all": 0}

    def walk(node: Dict[str, Any], in_loop: bool, in_burn: bool) -> None:
        for name, child_node in (node.get("children") or {}).items():
            loop = in_loop or name.endswith(":main_loop")
            burning = in_burn or name.endswith(":burn")
            count = child_node.get("counts", {}).get("WALL_TIME", 0)
            if loop:
                counts["all"] += count
                counts["burn"] += count if burning else 0
            walk(child_node, loop, burning)

    for path in out.glob("profile-*.json"):
        walk(json.loads(path.read_text())["callgraph"], False, False)
    return counts


def py_spy_counts(raw: Path) -> Dict[str, int]:
    """The same from py-spy's collapsed stacks (``frame (file:line);...;leaf count``, root first)."""
    counts = {"burn": 0, "all": 0}
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if "main_loop (" in stack:
            counts["all"] += int(number)
            counts["burn"] += int(number) if "burn (" in stack else 0
    return counts


def run_arm(arm: str, burst_ms: float, seconds: float) -> Dict[str, Any]:
    """One run of the program under one arm: burn()'s share of the main thread's samples and the truth."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        command = [sys.executable, str(Path(__file__)), "--child", arm, str(burst_ms), str(seconds), str(out)]
        raw = out / "py-spy.txt"
        if arm == "py-spy":
            py_spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which("py-spy")
            if py_spy is None:
                return {"error": "py-spy is not installed (make venv installs it)"}
            command = [py_spy, "record", "-r", "100", "--idle", "--format", "raw", "-o", str(raw), "--", *command]
        env = dict(os.environ, AWS_CODEGURU_PROFILER_LOG_LEVEL="WARNING")
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, env=env)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            return {"error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
        result = json.loads(lines[-1])
        if arm.startswith("ours"):
            result["counts"] = our_counts(out)
        elif arm == "py-spy":
            if not raw.exists():
                return {"error": "py-spy wrote nothing: " + done.stderr.strip()[-200:]}
            result["counts"] = py_spy_counts(raw)
    counts = result["counts"]
    result["share"] = counts["burn"] / counts["all"] if counts["all"] else None
    return result


def delivery_cost_us(interval_s: float = 0.0002) -> Tuple[float, int]:
    """What one SIGALRM costs the main thread, in µs: its CPU time over the same work with the agent's
    handler fired every ``interval_s`` and without it, per signal (medians of five), 40 frames deep."""
    from collections import deque

    from codeguru_agent.sampling.timer import MainThreadTimer

    timer = MainThreadTimer()  # not installed: its handler is called through a handler of ours
    timer.live = True
    agents_handler = timer._make_handler(deque(maxlen=16))
    fired = [0]

    def on_alarm(signum: int, frame: Any) -> None:
        fired[0] += 1
        agents_handler(signum, frame)

    def work(rounds: int = 2_000_000) -> float:
        started = time.thread_time()
        total = 0
        for number in range(rounds):
            total += number
        return time.thread_time() - started

    def deep(depth: int) -> Tuple[float, int]:
        return deep(depth - 1) if depth else measure()

    def measure() -> Tuple[float, int]:
        work()
        without = statistics.median(work() for _ in range(5))
        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, interval_s, interval_s)
        runs = []
        for _ in range(5):
            before = fired[0]
            spent = work()
            runs.append((spent, fired[0] - before))
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        per_signal = [(spent - without) / fired_n for spent, fired_n in runs if fired_n]
        return max(0.0, statistics.median(per_signal)) * 1e6, sum(n for _, n in runs)

    return deep(40)


# --- the table --------------------------------------------------------------------------------------


def percent(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each run")
    parser.add_argument("--runs", type=int, default=2, help="runs per arm and burst length (medians)")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset of: " + ", ".join(ARMS))
    parser.add_argument("--cost", action="store_true", help="only measure one SIGALRM's cost to the main thread")
    parser.add_argument("--child", nargs=4, metavar=("ARM", "BURST_MS", "SECONDS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        arm, burst_ms, seconds, out = args.child
        child(arm, float(burst_ms), float(seconds), out)
        return 0
    if args.cost:
        cost, signals = delivery_cost_us()
        print(f"one SIGALRM with the agent's handler: {cost:.1f} µs of the main thread ({signals} signals)")
        return 0
    arms = [arm.strip() for arm in args.arms.split(",") if arm.strip()]
    rows: List[List[str]] = []
    raw: Dict[str, Any] = {}
    verdicts: Dict[str, List[bool]] = {"CPU": [], "wall": []}
    for burst_ms in BURSTS_MS:
        results: Dict[str, List[Dict[str, Any]]] = {arm: [] for arm in arms}
        for run in range(args.runs):
            for arm in arms if run % 2 == 0 else list(reversed(arms)):
                print(f"burst {burst_ms} ms, {arm}, run {run + 1}", file=sys.stderr, flush=True)
                results[arm].append(run_arm(arm, burst_ms, args.seconds))
        raw[str(burst_ms)] = results
        truths = [r["cpu_truth"] for rs in results.values() for r in rs if "cpu_truth" in r]
        walls = [r["wall_truth"] for rs in results.values() for r in rs if "wall_truth" in r]
        cpu_truth = statistics.median(truths) if truths else None
        wall_truth = statistics.median(walls) if walls else None
        row = [f"{burst_ms:g} ms", percent(cpu_truth), percent(wall_truth)]
        for arm in arms:
            shares = [r["share"] for r in results[arm] if r.get("share") is not None]
            share = statistics.median(shares) if shares else None
            samples = sum(r["counts"]["all"] for r in results[arm] if "counts" in r)
            errors = [r["error"] for r in results[arm] if "error" in r]
            row.append(percent(share) + (f" ({samples})" if share is not None else f" ({errors[:1]})"))
            if arm == "ours-timer" and share is not None and cpu_truth is not None and wall_truth is not None:
                verdicts["CPU"].append(abs(share - cpu_truth) <= 0.10)
                verdicts["wall"].append(abs(share - wall_truth) <= 0.10)
        rows.append(row)
    header = ["burst", "truth (CPU)", "truth (wall)", *(f"{arm}" for arm in arms)]
    print("\nburn()'s share of the main thread's samples (samples counted in brackets)\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for truth, met in verdicts.items():
        if met:
            verdict = "met" if all(met) else "NOT met"
            print(f"\ntarget, ours with the timer within 10 points of the {truth} truth at every burst: {verdict}")
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "bursts.json").write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
