"""Measurement 3: a CPU-bound program with 20 parked threads, profiled by each agent in turn.

The child parks the threads, starts one agent (uploading to 127.0.0.1), lets it settle past its
start-up work (the official agent builds its boto3 client on its first tick), then runs the work on
the main thread and reports figures read by the program itself from the kernel's schedstat: the
CPU time of every thread but the main one over the work (the parked threads use none, so this is
the agent's own cost, native sampler threads included), the work's time less the main thread's
wait for a CPU (which other processes on a shared machine cause; waiting for the GIL stays in), and
the main thread's own CPU time, which the suite turns into the time it was stalled waiting for the
GIL (see :func:`_stalls`).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any, Dict, Final, List, Optional, Tuple

import harness
from report import Row, Table, fmt
from starting import DDTRACE_ENV, start_agent

PARKED_THREADS: Final = (20, 30)
BUSY: Final = "-busy"
AGENTS: Final = (
    "none",
    "official",
    "ours",
    "ours-default",
    "ddtrace",
    "pyroscope",
    "floor-wake",
    "floor-frames",
    "none-again",
    "ours" + BUSY,
    "floor-frames" + BUSY,
)
"""``floor-*``: :class:`workloads.FloorSampler`, what any Python sampler pays before it does anything.
``none-again``: no agent again, paired with ``none`` like every arm: the slowdown that is only noise.
``ours-default``: our agent at its default settings (its budget, 1% of a core, in force).
``*-busy``: the same agent, but the 20 threads move to a new random call chain every 2 ms instead of
parking (:class:`workloads.BusyThreads`), so that every stack has changed at every tick."""
BUSY_PAUSE_S: Final = 0.002


def samples_taken(agent: str, handle: Any) -> Optional[int]:
    """Ticks so far in the current profile, read from the CodeGuru agents' internals (None if unknown).

    The official agent waits a fixed delay after each sample, so under GIL contention it takes far
    fewer samples than asked for; its CPU per sample is the fair comparison.
    """
    try:
        if agent == "official":
            return int(handle._profiler_runner_instance.collector.profile.total_sample_count)
        if agent.startswith("ours"):
            return int(handle._runner._sampler.ticks)
        if agent.startswith("floor-"):
            return int(handle.wakeups)
    except (AttributeError, TypeError, ValueError):
        return None
    return None


def measure(args: argparse.Namespace) -> Dict[str, Any]:
    """Park threads, start the agent, settle, then time the work and the other threads' CPU."""
    import workloads

    workloads.app_steps()  # import the generated app before anything is timed
    agent = args.agent[: -len(BUSY)] if args.agent.endswith(BUSY) else args.agent
    if agent == args.agent:
        threads: Any = workloads.ParkedThreads(args.threads, args.depth)
        workload_tids: List[int] = []
    else:
        threads = workloads.BusyThreads(args.threads, args.depth, pause_s=BUSY_PAUSE_S)
        workload_tids = threads.native_ids
    handle = start_agent(agent, args.interval_ms, args.url)
    time.sleep(args.settle_s)
    samples_before = samples_taken(agent, handle)
    cpu_before = workloads.thread_cpu_ns_except_main(others=workload_tids)
    main_cpu_before, main_wait_before = workloads.main_thread_schedstat()
    started = time.perf_counter()
    workloads.cpu_work(args.iterations)
    work_s = time.perf_counter() - started
    main_cpu_after, main_wait_after = workloads.main_thread_schedstat()
    agent_cpu_s = (workloads.thread_cpu_ns_except_main(others=workload_tids) - cpu_before) / 1e9
    samples_after = samples_taken(agent, handle)
    runqueue_s = (main_wait_after - main_wait_before) / 1e9
    running = handle.is_running() if agent == "official" else None
    if agent.startswith("floor-"):
        handle.stop()
    threads.close()
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
    parser.add_argument("--iterations", type=int, default=160_000)  # ~1.6 s: the governor settles in its first second
    return parser


Arm = Tuple[str, int]
ARMS: Final[Tuple[Arm, ...]] = (
    ("none", 10),
    ("official", 10),
    ("ours", 10),
    ("ddtrace", 10),
    ("pyroscope", 10),
    ("floor-wake", 10),
    ("floor-frames", 10),
    ("official", 1000),
    ("ours", 1000),
    ("ours-default", 10),
    ("ours" + BUSY, 10),
    ("floor-frames" + BUSY, 10),
    ("none-again", 10),
)
"""Alternated run by run, reversed every other run: ``none`` and ``none-again`` sit at the two ends,
so the noise measured between them spans the whole of a round's drift."""


def suite(runs: int) -> Tuple[List[Row], List[Table], Dict[str, Any]]:
    """Every agent and both floors at 100/s, the CodeGuru agents also at 1/s; medians of ``runs``."""
    arms = list(ARMS)
    outcomes: Dict[Arm, List[harness.Outcome]] = {arm: [] for arm in arms}
    names = [f"{agent}@{interval}" for agent, interval in arms]
    with harness.codeguru_endpoint() as codeguru, harness.sink() as other:
        for run, name in harness.alternate(names, runs):
            agent, interval_text = name.split("@")
            arm = (agent, int(interval_text))
            url = codeguru.url if agent.startswith(("official", "ours")) else other.url
            env = DDTRACE_ENV | {"DD_TRACE_AGENT_URL": other.url} if agent == "ddtrace" else None
            harness.log(f"  end to end: {name} ms run {run + 1}/{runs}")
            outcomes[arm].append(
                harness.run_child(
                    "end_to_end.py",
                    ["--agent", agent, "--interval-ms", interval_text, "--url", url],
                    timeout_s=90,
                    env=env,
                )
            )
        uploads = other.counts()
        endpoint_kind = codeguru.kind
    baseline_runs = outcomes[("none", 10)]
    work = {arm: harness.median(harness.collect(outcomes[arm], "work_own_s")) for arm in arms}
    wall = {arm: harness.median(harness.collect(outcomes[arm], "work_s")) for arm in arms}
    cpu = {arm: harness.median(harness.collect(outcomes[arm], "agent_cpu_s")) for arm in arms}
    samples = {arm: harness.median(harness.collect(outcomes[arm], "samples")) for arm in arms}
    per_sample = {
        arm: harness.median(
            o.value["agent_cpu_s"] / o.value["samples"] for o in outcomes[arm] if o.ok and o.value.get("samples")
        )
        for arm in arms
    }
    paired = {arm: _paired_slowdowns(outcomes[arm], baseline_runs) for arm in arms}
    slowdown = {arm: harness.median(paired[arm]) for arm in arms}
    noise = paired[("none-again", 10)]
    p_values = {arm: _p_value(paired[arm], noise) for arm in arms}
    stalls = {arm: _stalls(outcomes[arm]) for arm in arms}
    stall = {arm: harness.median(stalls[arm]) for arm in arms}
    no_agent_stalls = stalls[("none", 10)] + stalls[("none-again", 10)]
    stall_p = {arm: _p_value(stalls[arm], no_agent_stalls) for arm in arms}
    errors = {arm: harness.first_error(outcomes[arm]) for arm in arms}
    table = Table(
        title=f"End to end: {PARKED_THREADS[0]} threads parked at depth {PARKED_THREADS[1]}, CPU-bound main "
        f"thread (~{work[('none', 10)] or 0:.2f} s), medians of {runs} runs; CodeGuru agents submit to our "
        f"{endpoint_kind}, the others to a sink; floor-*: a thread that only wakes on a sampler's schedule "
        f"(and reads sys._current_frames()); none-again: no agent, to show the noise",
        headers=(
            "agent",
            "rate",
            "agent CPU during the work",
            "samples taken",
            "agent CPU per sample",
            "work time",
            "slowdown vs no agent",
            "differs from noise? (p)",
            "main thread stalled",
            "wall time (incl. waiting for a CPU)",
            "runs ok",
        ),
    )
    for arm in arms:
        agent, interval = arm
        table.rows.append(
            [
                agent,
                "-" if agent.startswith("none") else "default" if agent == "ours-default" else f"{1000 // interval}/s",
                fmt(cpu[arm], "s", errors[arm]),
                fmt(samples[arm]),
                _us(per_sample[arm]),
                fmt(work[arm], "s", errors[arm]),
                _percent(slowdown[arm]),
                "-" if agent.startswith("none") else _p_text(p_values[arm]),
                _percent(stall[arm]),
                fmt(wall[arm], "s", errors[arm]),
                f"{sum(o.ok for o in outcomes[arm])}/{len(outcomes[arm])}",
            ]
        )
    rows = (
        _cpu_rows(cpu, per_sample, errors)
        + _floor_rows(cpu, per_sample, errors)
        + _slowdown_rows(slowdown, p_values, stall, stall_p, harness.median(no_agent_stalls))
        + [_default_row(slowdown, p_values, stall, stall_p, harness.median(no_agent_stalls), samples, work, cpu)]
    )
    raw = {
        "uploads_to_sink": uploads,
        "runs": {f"{a}@{i}": [o.value or o.error for o in outcomes[(a, i)]] for a, i in arms},
    }
    return rows, [table], raw


def _paired_slowdowns(runs: List[harness.Outcome], baseline: List[harness.Outcome]) -> List[float]:
    """Per round, work with the agent / work without it in the same round, less 1.

    Each round runs every arm back to back, so pairing by round cancels slow drifts in the
    machine's load that medians of the two arms alone would not.
    """
    return [
        run.value["work_own_s"] / base.value["work_own_s"] - 1
        for run, base in zip(runs, baseline)
        if run.ok and base.ok
    ]


def _stalls(runs: List[harness.Outcome]) -> List[float]:
    """Per run, the main thread's time off the CPU without waiting for one, over its CPU time.

    That is the time it waited for the GIL (work time less the wait for a CPU, less its own CPU):
    the part of the slowdown an agent causes directly, which the speed of a shared CPU, varying
    by a tenth from one second to the next, blurs far less than it blurs the work time.
    """
    return [
        run.value["work_own_s"] / run.value["main_cpu_s"] - 1 for run in runs if run.ok and run.value.get("main_cpu_s")
    ]


SIGNIFICANCE: Final = 0.05


def _p_value(sample: List[float], noise: List[float], rounds: int = 20_000) -> Optional[float]:
    """How likely a difference of medians this large is between runs that differ only by chance.

    A two-sided permutation test: the paired slowdowns of an arm and those of ``none-again`` (no
    agent at all) are pooled, split at random into two groups of the same sizes ``rounds`` times,
    and the share of splits whose medians differ at least as much as the real ones is the p-value.
    It assumes nothing about the noise's shape, which on a shared machine is far from normal.
    """
    if len(sample) < 3 or len(noise) < 3:
        return None
    observed = abs(statistics.median(sample) - statistics.median(noise))
    pooled = list(sample) + list(noise)
    size = len(sample)
    rng = random.Random(5)  # the same verdict for the same runs
    hits = 0
    for _ in range(rounds):
        rng.shuffle(pooled)
        if abs(statistics.median(pooled[:size]) - statistics.median(pooled[size:])) >= observed - 1e-12:
            hits += 1
    return (hits + 1) / (rounds + 1)


def _cpu_rows(
    cpu: Dict[Arm, Optional[float]], per_sample: Dict[Arm, Optional[float]], errors: Dict[Arm, Optional[str]]
) -> List[Row]:
    """The agent's own CPU against the official agent's and ddtrace's, and the floor's against it."""
    official, ours, ddtrace = cpu[("official", 10)], cpu[("ours", 10)], cpu[("ddtrace", 10)]
    floor = cpu[("floor-frames", 10)]
    ratio = ours / official if official and ours is not None else None
    floor_ratio = floor / official if official and floor is not None else None
    below_ddtrace = None if ours is None or ddtrace is None else ours < ddtrace
    met = None if ratio is None else ratio <= 0.1 and below_ddtrace is not False
    theirs_each, ours_each = per_sample[("official", 10)], per_sample[("ours", 10)]
    return [
        Row(
            measure="end to end, agent CPU while the work runs, 100/s",
            official=fmt(official, "s", errors[("official", 10)]),
            ours=fmt(ours, "s", errors[("ours", 10)]),
            ratio="n/a" if ratio is None else f"{ratio:.3f}",
            target="<= 1/10 and < ddtrace",
            met=met,
            note=f"ddtrace {fmt(ddtrace, 's', errors[('ddtrace', 10)])}, "
            f"pyroscope {fmt(cpu[('pyroscope', 10)], 's', errors[('pyroscope', 10)])}; per sample taken: official "
            f"{_us(theirs_each)}, ours {_us(ours_each)} (the official agent's fixed delay "
            f"takes fewer samples than asked for)",
        ),
        Row(
            measure="end to end, the floor: a thread that only wakes 100/s and calls sys._current_frames(), 100/s",
            official=fmt(official, "s", errors[("official", 10)]),
            ours=fmt(floor, "s", errors[("floor-frames", 10)]),
            ratio="n/a" if floor_ratio is None else f"{floor_ratio:.3f}",
            target="(for reference)",
            verdict="n/a" if floor_ratio is None else f"floor {'above' if floor_ratio > 0.1 else 'at or below'} 1/10",
            note=f"per wake-up: {_us(per_sample[('floor-frames', 10)])}; waking and taking the GIL alone "
            f"{fmt(cpu[('floor-wake', 10)], 's', errors[('floor-wake', 10)])}, "
            f"{_us(per_sample[('floor-wake', 10)])} per wake-up: what any sampler written in Python pays "
            "before it walks a stack",
        ),
    ]


FLOOR_TARGETS: Final = {"": 1.25, BUSY: 1.5}
"""Our agent's CPU at 100/s over the floor stand-in's (``floor-frames``) in the same workload: 20
threads parked, or 20 threads whose stacks all change between two ticks."""


def _floor_rows(
    cpu: Dict[Arm, Optional[float]], per_sample: Dict[Arm, Optional[float]], errors: Dict[Arm, Optional[str]]
) -> List[Row]:
    """Our agent's CPU against the floor's, measured side by side in the same run."""
    rows = []
    for suffix, target in FLOOR_TARGETS.items():
        ours_arm, floor_arm = ("ours" + suffix, 10), ("floor-frames" + suffix, 10)
        ours, floor = cpu[ours_arm], cpu[floor_arm]
        ratio = ours / floor if floor and ours is not None else None
        threads = "20 threads parked at depth 30" if not suffix else "20 threads on a new call chain every 2 ms"
        rows.append(
            Row(
                measure=f"end to end, agent CPU at 100/s over the floor's, {threads}",
                official=f"floor {fmt(floor, 's', errors[floor_arm])}",
                ours=fmt(ours, "s", errors[ours_arm]),
                ratio="n/a" if ratio is None else f"{ratio:.2f}",
                target=f"<= {target:g} x the floor",
                met=None if ratio is None else ratio <= target,
                note=f"per wake-up: ours {_us(per_sample[ours_arm])}, the floor {_us(per_sample[floor_arm])} "
                "(a thread that only wakes 100 times a second and calls sys._current_frames(), nothing else)",
            )
        )
    return rows


def _default_row(
    slowdown: Dict[Arm, Optional[float]],
    p_values: Dict[Arm, Optional[float]],
    stall: Dict[Arm, Optional[float]],
    stall_p: Dict[Arm, Optional[float]],
    no_agent_stall: Optional[float],
    samples: Dict[Arm, Optional[float]],
    work: Dict[Arm, Optional[float]],
    cpu: Dict[Arm, Optional[float]],
) -> Row:
    """Our agent at its default settings: the host's stall within a point of no agent, and a work
    time that cannot be told apart from no agent's."""
    arm = ("ours-default", 10)
    my_stall, work_p = stall[arm], p_values[arm]
    verdict: Optional[bool] = None
    if my_stall is not None and no_agent_stall is not None and work_p is not None:
        verdict = my_stall - no_agent_stall <= 0.01 and work_p >= SIGNIFICANCE
    rate = samples[arm] / work[arm] if samples[arm] is not None and work[arm] else None
    return Row(
        measure="end to end, slowdown of the work, our agent at default settings",
        official="",
        ours=f"{_percent(slowdown[arm])} (stalled {_percent(my_stall)})",
        target="stalled within 1 point of no agent, work as no agent (p >= 0.05)",
        met=verdict,
        note=f"no agent stalled {_percent(no_agent_stall)}; work time {_p_phrase(work_p)} that runs without an "
        f"agent differ this much, stall {_p_phrase(stall_p[arm])}; the governor's budget (1% of a core, "
        f"the larger of the agent's CPU and what the host loses) held it at {fmt(rate)} samples/s "
        f"(agent CPU {fmt(cpu[arm], 's')})",
    )


def _slowdown_rows(
    slowdown: Dict[Arm, Optional[float]],
    p_values: Dict[Arm, Optional[float]],
    stall: Dict[Arm, Optional[float]],
    stall_p: Dict[Arm, Optional[float]],
    no_agent_stall: Optional[float],
) -> List[Row]:
    """The slowdown at 100/s against 1%, and at 1/s against no agent at all.

    The work time is noisy; the stall much less so. At 100/s the verdict is NO once the stall
    alone, less what runs without an agent show, is over 1%, since the slowdown cannot be smaller
    than it; yes if the slowdown is within 1%; '?' otherwise. At 1/s it is yes when neither the
    slowdown nor the stall can be told apart from runs without an agent.
    """
    rows = []
    for interval in (10, 1000):
        ours_arm, official_arm = ("ours", interval), ("official", interval)
        mine, my_stall = slowdown[ours_arm], stall[ours_arm]
        verdict: Optional[bool] = None
        if interval == 10:
            if my_stall is not None and no_agent_stall is not None and my_stall - no_agent_stall > 0.01:
                verdict = False
            elif mine is not None and mine <= 0.01:
                verdict = True
        else:
            work_p, stall_p_value = p_values[ours_arm], stall_p[ours_arm]
            if work_p is not None and stall_p_value is not None:
                verdict = work_p >= SIGNIFICANCE and stall_p_value >= SIGNIFICANCE
        note = (
            f"slowdown paired with the no-agent run of the same round (work time less the main thread's wait "
            f"for a CPU), {_p_phrase(p_values[ours_arm])} that runs without an agent differ this much "
            f"(no agent against no agent: {_percent(slowdown[('none-again', 10)])}); stalled: the main thread's "
            f"time waiting for the GIL over its CPU time, {_p_phrase(stall_p[ours_arm])} against runs without "
            f"an agent ({_percent(no_agent_stall)})"
        )
        if interval == 10:
            note += (
                f"; floors: a thread that only wakes stalls it {_percent(stall[('floor-wake', 10)])}, "
                f"one that also reads the frames {_percent(stall[('floor-frames', 10)])}: every sample "
                "wakes the sampler and then the main thread again, and a Python sampler cannot avoid either"
            )
        rows.append(
            Row(
                measure=f"end to end, slowdown of the work, {1000 // interval}/s",
                official=f"{_percent(slowdown[official_arm])} (stalled {_percent(stall[official_arm])})",
                ours=f"{_percent(mine)} (stalled {_percent(my_stall)})",
                ratio="",
                target="<= 1%" if interval == 10 else "as no agent (p >= 0.05)",
                met=verdict,
                note=note,
            )
        )
    return rows


def _p_text(p_value: Optional[float]) -> str:
    if p_value is None:
        return "n/a"
    return "<0.01" if p_value < 0.005 else f"{p_value:.2f}"


def _p_phrase(p_value: Optional[float]) -> str:
    return "p < 0.01" if p_value is not None and p_value < 0.005 else f"p = {_p_text(p_value)}"


def _us(seconds: Optional[float]) -> str:
    return fmt(None if seconds is None else seconds * 1e6, "us")


def _percent(value: Optional[float], sign: bool = True) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.1%}" if sign else f"+-{value:.1%}"


if __name__ == "__main__":
    harness.child_main(measure, _parser())
