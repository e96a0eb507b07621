"""Measurement 3: a CPU-bound program with 20 parked threads, profiled by each agent in turn.

The child parks the threads, starts one agent (uploading to 127.0.0.1), lets it settle past its
start-up work (the official agent builds its boto3 client on its first tick), then runs the work on
the main thread and reports two figures read by the program itself from the kernel's schedstat: the
CPU time of every thread but the main one over the work (the parked threads use none, so this is
the agent's own cost, native sampler threads included), and the work's time less the main thread's
wait for a CPU (which other processes on a shared machine cause; waiting for the GIL stays in).
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Dict, Final, List, Optional, Tuple

import harness
from report import Row, Table, fmt
from starting import DDTRACE_ENV, start_agent

PARKED_THREADS: Final = (20, 30)
AGENTS: Final = ("none", "official", "ours", "ddtrace", "pyroscope")


def samples_taken(agent: str, handle: Any) -> Optional[int]:
    """Ticks so far in the current profile, read from the CodeGuru agents' internals (None if unknown).

    The official agent waits a fixed delay after each sample, so under GIL contention it takes far
    fewer samples than asked for; its CPU per sample is the fair comparison.
    """
    try:
        if agent == "official":
            return int(handle._profiler_runner_instance.collector.profile.total_sample_count)
        if agent == "ours":
            return int(handle._runner._sampler.ticks)
    except (AttributeError, TypeError, ValueError):
        return None
    return None


def measure(args: argparse.Namespace) -> Dict[str, Any]:
    """Park threads, start the agent, settle, then time the work and the other threads' CPU."""
    import workloads

    workloads.app_steps()  # import the generated app before anything is timed
    parked = workloads.ParkedThreads(args.threads, args.depth)
    handle = start_agent(args.agent, args.interval_ms, args.url)
    time.sleep(args.settle_s)
    samples_before = samples_taken(args.agent, handle)
    cpu_before = workloads.thread_cpu_ns_except_main()
    main_cpu_before, main_wait_before = workloads.main_thread_schedstat()
    started = time.perf_counter()
    workloads.cpu_work(args.iterations)
    work_s = time.perf_counter() - started
    main_cpu_after, main_wait_after = workloads.main_thread_schedstat()
    agent_cpu_s = (workloads.thread_cpu_ns_except_main() - cpu_before) / 1e9
    samples_after = samples_taken(args.agent, handle)
    runqueue_s = (main_wait_after - main_wait_before) / 1e9
    running = handle.is_running() if args.agent == "official" else None
    parked.close()
    return {
        "work_s": work_s,
        "work_own_s": work_s - runqueue_s,  # without the time other processes held our CPU
        "main_cpu_s": (main_cpu_after - main_cpu_before) / 1e9,
        "main_runqueue_s": runqueue_s,
        "agent_cpu_s": agent_cpu_s,
        "samples": None if samples_before is None or samples_after is None else samples_after - samples_before,
        "official_running": running,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agent", choices=AGENTS, required=True)
    parser.add_argument("--interval-ms", type=int, default=10)
    parser.add_argument("--url", default="")
    parser.add_argument("--threads", type=int, default=PARKED_THREADS[0])
    parser.add_argument("--depth", type=int, default=PARKED_THREADS[1])
    parser.add_argument("--settle-s", type=float, default=1.5)
    parser.add_argument("--iterations", type=int, default=120_000)
    return parser


Arm = Tuple[str, int]


def suite(runs: int) -> Tuple[List[Row], List[Table], Dict[str, Any]]:
    """Every agent at 100/s, the CodeGuru agents also at 1/s, alternating; medians of ``runs``."""
    arms: List[Arm] = [("none", 10), ("official", 10), ("ours", 10), ("ddtrace", 10), ("pyroscope", 10),
                       ("official", 1000), ("ours", 1000)]
    outcomes: Dict[Arm, List[harness.Outcome]] = {arm: [] for arm in arms}
    names = [f"{agent}@{interval}" for agent, interval in arms]
    with harness.codeguru_endpoint() as codeguru, harness.sink() as other:
        for run, name in harness.alternate(names, runs):
            agent, interval_text = name.split("@")
            arm = (agent, int(interval_text))
            url = codeguru.url if agent in ("official", "ours") else other.url
            env = DDTRACE_ENV | {"DD_TRACE_AGENT_URL": other.url} if agent == "ddtrace" else None
            harness.log(f"  end to end: {name} ms run {run + 1}/{runs}")
            outcomes[arm].append(harness.run_child("end_to_end.py", [
                "--agent", agent, "--interval-ms", interval_text, "--url", url], timeout_s=90, env=env))
        uploads = other.counts()
        endpoint_kind = codeguru.kind
    baseline_runs = outcomes[("none", 10)]
    work = {arm: harness.median(harness.collect(outcomes[arm], "work_own_s")) for arm in arms}
    wall = {arm: harness.median(harness.collect(outcomes[arm], "work_s")) for arm in arms}
    cpu = {arm: harness.median(harness.collect(outcomes[arm], "agent_cpu_s")) for arm in arms}
    samples = {arm: harness.median(harness.collect(outcomes[arm], "samples")) for arm in arms}
    per_sample = {arm: harness.median(o.value["agent_cpu_s"] / o.value["samples"] for o in outcomes[arm]
                                      if o.ok and o.value.get("samples")) for arm in arms}
    slowdown = {arm: _paired_slowdown(outcomes[arm], baseline_runs) for arm in arms}
    errors = {arm: harness.first_error(outcomes[arm]) for arm in arms}
    noise = _spread(harness.collect(baseline_runs, "work_own_s"))
    table = Table(
        title=f"End to end: {PARKED_THREADS[0]} threads parked at depth {PARKED_THREADS[1]}, CPU-bound main "
              f"thread (~{work[('none', 10)] or 0:.2f} s), medians of {runs} runs; CodeGuru agents submit to our "
              f"{endpoint_kind}, the others to a sink; no-agent run-to-run spread {_percent(noise, sign=False)}",
        headers=("agent", "rate", "agent CPU during the work", "samples taken", "agent CPU per sample",
                 "work time", "slowdown vs no agent", "wall time (incl. waiting for a CPU)", "runs ok"),
    )
    for arm in arms:
        agent, interval = arm
        table.rows.append([
            agent, "-" if agent == "none" else f"{1000 // interval}/s", fmt(cpu[arm], "s", errors[arm]),
            fmt(samples[arm]), _us(per_sample[arm]),
            fmt(work[arm], "s", errors[arm]), _percent(slowdown[arm]), fmt(wall[arm], "s", errors[arm]),
            f"{sum(o.ok for o in outcomes[arm])}/{len(outcomes[arm])}"])
    rows = _rows(cpu, per_sample, errors, slowdown, noise)
    raw = {"uploads_to_sink": uploads, "runs": {f"{a}@{i}": [o.value or o.error for o in outcomes[(a, i)]]
                                                for a, i in arms}}
    return rows, [table], raw


def _paired_slowdown(runs: List[harness.Outcome], baseline: List[harness.Outcome]) -> Optional[float]:
    """Median over runs of (work with the agent / work without it in the same round) - 1.

    Each round runs every arm back to back, so pairing by round cancels slow drifts in the
    machine's load that medians of the two arms alone would not.
    """
    ratios = [run.value["work_own_s"] / base.value["work_own_s"] - 1
              for run, base in zip(runs, baseline) if run.ok and base.ok]
    return harness.median(ratios)


def _spread(values: List[float]) -> Optional[float]:
    """Median absolute deviation over the median: how much one run differs from the next."""
    middle = harness.median(values)
    deviation = harness.median(abs(v - middle) for v in values) if middle else None
    return None if not middle or deviation is None or len(values) < 2 else deviation / middle


def _rows(cpu: Dict[Arm, Optional[float]], per_sample: Dict[Arm, Optional[float]],
          errors: Dict[Arm, Optional[str]], slowdown: Dict[Arm, Optional[float]], noise: Optional[float]) -> List[Row]:
    """The summary rows: agent CPU against the official agent and ddtrace, slowdown against 1%."""
    official, ours, ddtrace = cpu[("official", 10)], cpu[("ours", 10)], cpu[("ddtrace", 10)]
    ratio = ours / official if official and ours is not None else None
    below_ddtrace = None if ours is None or ddtrace is None else ours < ddtrace
    met = None if ratio is None else ratio <= 0.1 and below_ddtrace is not False
    theirs_each, ours_each = per_sample[("official", 10)], per_sample[("ours", 10)]
    rows = [Row(
        measure="end to end, agent CPU while the work runs, 100/s",
        official=fmt(official, "s", errors[("official", 10)]), ours=fmt(ours, "s", errors[("ours", 10)]),
        ratio="n/a" if ratio is None else f"{ratio:.3f}", target="<= 1/10 and < ddtrace", met=met,
        note=f"ddtrace {fmt(ddtrace, 's', errors[('ddtrace', 10)])}, "
             f"pyroscope {fmt(cpu[('pyroscope', 10)], 's', errors[('pyroscope', 10)])}; per sample taken: official "
             f"{_us(theirs_each)}, ours {_us(ours_each)} (the official agent's fixed delay "
             f"takes fewer samples than asked for)")]
    band = noise or 0.0
    for interval, target in ((10, 0.01), (1000, 0.01)):
        theirs, mine = slowdown[("official", interval)], slowdown[("ours", interval)]
        verdict = None if mine is None or target < mine <= target + band else mine <= target
        rows.append(Row(
            measure=f"end to end, slowdown of the work, {1000 // interval}/s",
            official=_percent(theirs), ours=_percent(mine), ratio="",
            target=f"<= {target:.0%}" if interval == 10 else f"<= {target:.0%} (as no agent)", met=verdict,
            note="" if interval != 10 else (
                "paired with the no-agent run of the same round, medians; work time less the main thread's wait "
                f"for a CPU (schedstat); run-to-run spread without an agent {_percent(noise, sign=False)}: "
                "'?' = above the target but within that spread")))
    return rows


def _us(seconds: Optional[float]) -> str:
    return fmt(None if seconds is None else seconds * 1e6, "us")


def _percent(value: Optional[float], sign: bool = True) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.1%}" if sign else f"+-{value:.1%}"


if __name__ == "__main__":
    harness.child_main(measure, _parser())
