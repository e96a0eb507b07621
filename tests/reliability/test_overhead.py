"""Overhead budget instead of a kill: over its CPU budget the agent samples less often, step by
step, down to once a second, and speeds up again when there is room; the interval in force is in
every profile. Memory: with a tiny bound and endless distinct stacks, the sampler's estimate stays
within the bound, new stacks fold into known ones, and profiling goes on."""

from __future__ import annotations

import gc
import random
import threading
import tracemalloc
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import pytest

import codeguru_agent
from codeguru_agent.config import AgentConfig
from codeguru_agent.reporting.document import profile_of
from codeguru_agent.sampling.governor import SLOWEST_INTERVAL_MS, OverheadGovernor
from codeguru_agent.sampling.runner import Runner
from codeguru_agent.sampling.sampler import Aggregate, Sampler
from reliability.helpers import assert_each_token_once, stored, wait_until
from reliability.in_process import use_agent_env
from support.collector_client import CollectorHandle

GROUP = "Overhead"


def test_over_budget_the_interval_grows_step_by_step_to_one_second() -> None:
    governor = OverheadGovernor(configured_interval_ms=10.0, cpu_limit_percent=1.0)
    intervals = [governor.observe(agent_cpu_s=0.05, window_s=1.0) for _ in range(20)]  # 5 % of a core
    assert intervals == sorted(intervals) and intervals[0] > 10.0
    assert len(set(intervals[:5])) == 5, "one step per window, not one jump"
    assert intervals[-1] == SLOWEST_INTERVAL_MS and max(intervals) <= SLOWEST_INTERVAL_MS


def test_with_room_the_interval_returns_to_the_configured_one() -> None:
    governor = OverheadGovernor(configured_interval_ms=10.0, cpu_limit_percent=1.0)
    for _ in range(20):
        governor.observe(agent_cpu_s=0.05, window_s=1.0)
    intervals = [governor.observe(agent_cpu_s=0.001, window_s=1.0) for _ in range(40)]  # 0.1 % of a core
    assert intervals == sorted(intervals, reverse=True) and len(set(intervals[:5])) == 5
    assert intervals[-1] == 10.0


def test_the_interval_holds_inside_the_budget_and_ignores_empty_windows() -> None:
    governor = OverheadGovernor(configured_interval_ms=10.0, cpu_limit_percent=1.0)
    assert governor.observe(agent_cpu_s=0.008, window_s=1.0) == 10.0
    assert governor.observe(agent_cpu_s=1.0, window_s=0.0) == 10.0


def test_what_the_host_loses_counts_against_the_budget_with_the_agent_s_cpu() -> None:
    governor = OverheadGovernor(configured_interval_ms=10.0, cpu_limit_percent=1.0)
    intervals = [governor.observe(agent_cpu_s=0.001, window_s=1.0, host_s=0.05) for _ in range(3)]
    assert intervals == sorted(intervals) and intervals[0] > 10.0, "the host's 5 % slows sampling down"
    for _ in range(40):
        governor.observe(agent_cpu_s=0.001, window_s=1.0, host_s=0.001)
    assert governor.interval_ms == 10.0
    assert governor.observe(agent_cpu_s=0.006, window_s=1.0, host_s=0.006) > 10.0, "0.6 % + 0.6 % is over 1 %"


def test_the_sampling_thread_sees_what_a_busy_host_thread_loses_to_its_ticks() -> None:
    """A thread running Python holds the GIL until the sampling thread has waited a switch interval
    for it: every tick then costs the host the tick and the hand-overs, which the runner adds up."""
    stop = threading.Event()

    def busy() -> None:
        total = 0
        while not stop.is_set():
            for i in range(1000):
                total += i * i

    spinner = threading.Thread(target=busy, name="busy", daemon=True)
    runner = Runner(AgentConfig(sampling_interval_ms=10.0), lambda aggregate, interval_ms: None)
    sampling = threading.Thread(target=runner.run, name="sampler", daemon=True)
    runner.adopt(sampling)
    spinner.start()
    sampling.start()
    try:
        wait_until(lambda: runner.host_cost_s > 0, 30, "a host cost estimated from the ticks")
    finally:
        stop.set()
        runner.stop(5)
        spinner.join(5)


def test_a_profile_whose_rate_the_budget_slowed_down_still_weighs_a_thread_by_its_time() -> None:
    """The governor slows the ticks down within one profile (a budget it cannot keep): each tick
    then stands for the configured intervals it spans, so a thread there the whole time is counted
    for the whole time (unweighted, under half of it), and the ticks really taken say the rate."""
    release = threading.Event()

    def parked_for_the_whole_profile() -> None:
        release.wait()

    sealed: List[Aggregate] = []
    config = AgentConfig(sampling_interval_ms=10.0, cpu_limit_percent=0.001, reporting_interval_ms=60_000)
    runner = Runner(config, lambda aggregate, interval_ms: sealed.append(aggregate))
    parked = threading.Thread(target=parked_for_the_whole_profile, name="parked", daemon=True)
    sampling = threading.Thread(target=runner.run, name="sampler", daemon=True)
    runner.adopt(sampling)
    parked.start()
    sampling.start()
    try:
        wait_until(lambda: runner.effective_interval_ms >= 100.0, 30, "the governor slowing the ticks down")
        assert runner.seal_now(10)
    finally:
        release.set()
        runner.stop(5)
        parked.join(5)
    aggregate = sealed[0]
    stacks = profile_of(aggregate).stacks
    count = sum(c for stack, c in stacks.items() if any(f.name.endswith("parked_for_the_whole_profile") for f in stack))
    assert aggregate.ticks < aggregate.num_times_sampled / 2, "most of the profile was sampled slower than configured"
    assert 0.7 * aggregate.duration_ms <= count * 10.0 <= 1.1 * aggregate.duration_ms + 100.0, (
        f"{count} samples of 10 ms for a thread there all of {aggregate.duration_ms} ms ({aggregate.ticks} ticks)"
    )


def test_the_first_tick_after_a_pause_does_not_count_the_pause() -> None:
    """A Lambda is paused between invocations: the first tick after the resume stands for the time
    since the resume, however slow the governor's interval, never for a whole slowed interval."""
    sealed: List[Aggregate] = []
    config = AgentConfig(sampling_interval_ms=10.0, cpu_limit_percent=0.001, reporting_interval_ms=60_000)
    runner = Runner(config, lambda aggregate, interval_ms: sealed.append(aggregate))
    sampling = threading.Thread(target=runner.run, name="sampler", daemon=True)
    runner.adopt(sampling)
    sampling.start()
    try:
        wait_until(lambda: runner.effective_interval_ms >= 200.0, 30, "the governor slowing the ticks down")
        runner.set_paused(True)
        assert runner.seal_now(10)
        threading.Event().wait(0.4)  # longer than the paused loop's own wait: it has looked at the clock since
        runner.set_paused(False)
        wait_until(lambda: runner._sampler.ticks >= 1, 30, "a tick after the resume")
        assert runner.seal_now(10)
        resumed = sealed[-1]
    finally:
        runner.stop(5)
    assert resumed.ticks >= 1
    assert resumed.num_times_sampled <= 2 * resumed.duration_ms / 10.0 + resumed.ticks, (
        f"{resumed.num_times_sampled} intervals of 10 ms counted in {resumed.duration_ms} ms ({resumed.ticks} ticks)"
    )


def test_every_profile_carries_the_interval_in_force(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A budget no sampler can keep: the agent slows down, keeps profiling, and says so."""
    collector.create_group(GROUP)
    use_agent_env(
        monkeypatch,
        collector,
        GROUP,
        tmp_path,
        reporting_interval_ms=1000,
        sampling_interval_ms=1,
        cpu_limit_percent=0.01,
    )

    def slowed_down() -> bool:
        metrics = [e["document"]["debugInfo"]["genericMetrics"] for e in stored(collector, GROUP)]
        return any(m["samplingIntervalInMs_effective"] > m["samplingIntervalInMs_configured"] for m in metrics)

    profiler = codeguru_agent.start()
    assert profiler is not None
    wait_until(slowed_down, 30, "a profile sampled at a slower interval than configured")
    profiler.stop()

    entries = assert_each_token_once(collector, GROUP)
    for entry in entries:
        metrics = entry["document"]["debugInfo"]["genericMetrics"]
        assert metrics["samplingIntervalInMs_configured"] == 1.0
        assert 1.0 <= metrics["samplingIntervalInMs_effective"] <= SLOWEST_INTERVAL_MS
        assert entry["document"]["agentMetadata"]["numTimesSampled"] >= metrics["ticks"] > 0


# --- memory ---------------------------------------------------------------------------------------

DEPTH = 10
FUNCTIONS = 12


def make_functions(moved: threading.Event) -> List[Callable[..., None]]:
    """Functions that call one another in random order, so each walk down is a new stack; each
    walk sets ``moved`` when it reaches its leaf."""
    namespace: Dict[str, object] = {"random": random, "MOVED": moved}
    source = "".join(
        f"def f{index}(depth, release):\n"
        f"    if depth == 0:\n"
        f"        MOVED.set()\n"
        f"        release.wait(0.001)\n"
        f"        return\n"
        f"    FUNCTIONS[random.randrange({FUNCTIONS})](depth - 1, release)\n"
        for index in range(FUNCTIONS)
    )
    exec(compile(source, "stacks.py", "exec"), namespace)
    functions = [namespace[f"f{index}"] for index in range(FUNCTIONS)]
    namespace["FUNCTIONS"] = functions
    return functions  # type: ignore[return-value]


@pytest.fixture
def distinct_stacks() -> Iterator[threading.Event]:
    """Four threads forever entering new stacks (12 functions, 10 deep: 12**10 possible stacks);
    the event is set each time one of them reaches a new leaf."""
    moved = threading.Event()
    functions = make_functions(moved)
    release = threading.Event()

    def run() -> None:
        while not release.is_set():
            functions[0](DEPTH, release)

    threads = [threading.Thread(target=run, name=f"stacks-{index}", daemon=True) for index in range(4)]
    for thread in threads:
        thread.start()
    yield moved
    release.set()
    for thread in threads:
        thread.join(10)


def test_the_sampler_s_memory_stays_within_its_bound(distinct_stacks: threading.Event) -> None:
    config = AgentConfig(memory_limit_mb=0.1)
    bound = int(config.memory_limit_mb * 2**20)
    sampler = Sampler(config)

    def interval_that_folds() -> bool:
        for _ in range(300):
            distinct_stacks.clear()
            assert distinct_stacks.wait(5), "a thread entered a new stack since the last tick"
            sampler.sample()
            assert sampler.memory_bytes() <= bound
        aggregate = sampler.seal()
        assert aggregate.num_times_sampled == 300 and profile_of(aggregate).stacks
        return aggregate.folded_stacks > 0

    wait_until(interval_that_folds, 30, "an interval that reached the bound")
    interval_that_folds()  # and sampling goes on


def test_profiling_goes_on_with_a_tiny_memory_bound(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, distinct_stacks: threading.Event
) -> None:
    collector.create_group(GROUP)
    use_agent_env(
        monkeypatch,
        collector,
        GROUP,
        tmp_path,
        reporting_interval_ms=1000,
        memory_limit_mb=0.1,
        sampling_interval_ms=2,
        cpu_limit_percent=100,
    )

    def folded() -> bool:
        return any(e["document"]["debugInfo"]["genericMetrics"]["foldedStacks"] > 0 for e in stored(collector, GROUP))

    profiler = codeguru_agent.start()
    assert profiler is not None
    wait_until(folded, 30, "a profile with folded stacks")
    count = len(stored(collector, GROUP))
    wait_until(lambda: len(stored(collector, GROUP)) > count, 30, "the next profile")
    profiler.stop()

    entries = assert_each_token_once(collector, GROUP)
    assert all(entry["document"]["agentMetadata"]["numTimesSampled"] > 0 for entry in entries)
    assert all(entry["document"]["agentMetadata"]["agentOverhead"]["memoryInMB"] == 0 for entry in entries)
    # sampling 500 times a second costs the agent's threads some CPU, and each profile says how much
    # (all but perhaps the last, flushed by stop() a few milliseconds into its interval)
    timed = [entry["document"]["agentMetadata"]["agentOverhead"].get("timeInMs", 0) > 0 for entry in entries]
    assert sum(timed) >= len(timed) - 1 and len(timed) >= 2


def test_generated_code_stays_within_the_bound() -> None:
    """Code generated at run time: every code object is new, so the frame table is what grows.

    The estimate holds the bound on every tick and the interval goes on, folding; and what the
    sampler really holds (tracemalloc: what dropping it frees, the code it kept alive included)
    is within its estimate. Only memory allocated by the agent's code and by this file (the
    generated code) is counted: other threads of the test process allocate and free their own.
    """
    config = AgentConfig(memory_limit_mb=0.1)
    bound = int(config.memory_limit_mb * 2**20)
    release, moved = threading.Event(), threading.Event()

    def generate() -> None:
        index = 0
        while not release.is_set():
            namespace: Dict[str, object] = {}
            exec(compile("def generated(event):\n    event.wait(0.001)\n", f"generated_{index}.py", "exec"), namespace)
            moved.set()
            namespace["generated"](release)  # type: ignore[operator]
            index += 1

    threads = [threading.Thread(target=generate, name=f"generate-{index}", daemon=True) for index in range(4)]
    tracemalloc.start()
    try:
        sampler = Sampler(config)
        for thread in threads:
            thread.start()
        try:
            for _ in range(500):
                moved.clear()
                assert moved.wait(5), "new code ran since the last tick"
                sampler.sample()
                assert sampler.memory_bytes() <= bound
        finally:
            release.set()
            for thread in threads:
                thread.join(10)
        aggregate = sampler.seal()
        estimate = aggregate.memory_bytes
        assert aggregate.folded_stacks > 0 and sum(aggregate.counts) == aggregate.threads_seen
        ours = [
            tracemalloc.Filter(True, str(Path(codeguru_agent.__file__).parent / "*")),
            tracemalloc.Filter(True, __file__),
        ]
        gc.collect()
        held = tracemalloc.take_snapshot().filter_traces(ours)
        del sampler, aggregate
        gc.collect()
        freed = tracemalloc.take_snapshot().filter_traces(ours).compare_to(held, "filename")
        kept = -sum(statistic.size_diff for statistic in freed)
    finally:
        tracemalloc.stop()
    assert estimate <= bound
    assert kept <= estimate, f"the sampler held {kept} bytes, its estimate says {estimate}"
