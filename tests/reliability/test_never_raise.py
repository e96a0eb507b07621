"""No exception from the agent ever reaches the host: every public call, from several threads, in
any order, returns; a second start says so; the sampler survives an error in a tick and counts it.

Keyword arguments: an unknown name raises TypeError at the call site (a typo in code is a bug the
developer must see); every other mistake, including a bad value for a known name, is a WARNING.
"""

from __future__ import annotations

import logging
import random
import threading
from pathlib import Path
from typing import Any, Callable, List

import pytest

import codeguru_agent
from codeguru_agent import config as configuration
from codeguru_agent.sampling import sampler
from reliability.helpers import assert_each_token_once, error_count, stored, wait_until
from reliability.in_process import agent_threads, use_agent_env
from support.collector_client import CollectorHandle

GROUP = "NeverRaise"
THREADS = 4
CALLS_PER_THREAD = 30


def agent_warnings(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [
        r.getMessage() for r in caplog.records if r.name.startswith("codeguru_agent") and r.levelno >= logging.WARNING
    ]


def test_public_calls_in_any_order_from_several_threads_never_raise(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector.create_group(GROUP)
    use_agent_env(monkeypatch, collector, GROUP, tmp_path, reporting_interval_ms=1000, shutdown_timeout_ms=1000)
    shared = codeguru_agent.Profiler()
    calls: List[Callable[[], Any]] = [
        codeguru_agent.start,
        codeguru_agent.stop,
        shared.start,
        shared.stop,
        shared.pause,
        shared.resume,
        lambda: shared.flush(0.2),
        shared.is_running,
        lambda: codeguru_agent.Profiler().start(),
    ]
    errors: List[BaseException] = []

    def caller(seed: int) -> None:
        chooser = random.Random(seed)
        for _ in range(CALLS_PER_THREAD):
            try:
                chooser.choice(calls)()
            except BaseException as error:  # anything at all that escapes is the failure
                errors.append(error)

    threads = [threading.Thread(target=caller, args=(seed,), name=f"caller-{seed}") for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a public call never returned"
    assert errors == []
    codeguru_agent.stop()
    shared.stop()
    wait_until(lambda: not agent_threads(), 15, "every agent thread to end")
    assert len([t for t in threading.enumerate() if t.name == "codeguru-agent-sampler"]) == 0
    assert_each_token_once(collector, GROUP)


def test_a_second_start_says_so_and_returns(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    collector.create_group(GROUP)
    use_agent_env(monkeypatch, collector, GROUP, tmp_path)
    first = codeguru_agent.start()
    with caplog.at_level(logging.WARNING, logger="codeguru_agent"):
        again = codeguru_agent.start()
        other = codeguru_agent.Profiler().start()
    assert first is not None and again is first and first.is_running()
    assert other is False
    warnings = agent_warnings(caplog)
    assert len(warnings) == 2 and all("already running" in warning for warning in warnings), warnings
    assert len([t for t in threading.enumerate() if t.name == "codeguru-agent-sampler"]) == 1


def test_only_an_unknown_keyword_raises(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    use_agent_env(monkeypatch, collector, GROUP, tmp_path)
    with pytest.raises(TypeError, match="sampling_interval"):
        codeguru_agent.start(sampling_interval=10)
    with pytest.raises(TypeError, match="sampling_interval"):
        codeguru_agent.Profiler(sampling_interval=10)
    bad_values = [
        {"sampling_interval_ms": "fast"},
        {"excluded_threads": 5},
        {"enabled": "maybe"},
        {"environment_override": 5},
        {"environment_override": {"sampling_interval": "x"}},
        {"reporting_interval_ms": -1},
        {"profile_format": "xml"},
    ]
    for options in bad_values:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="codeguru_agent"):
            profiler = codeguru_agent.Profiler(**options)
        assert len(agent_warnings(caplog)) == 1, (options, agent_warnings(caplog))
        assert profiler.config.sampling_interval_ms == 10.0


def test_the_sampler_survives_an_error_in_a_tick_and_counts_it(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector.create_group(GROUP)
    use_agent_env(monkeypatch, collector, GROUP, tmp_path)
    real_sample = sampler.Sampler.sample
    failures = iter([True, True, True])

    def sample_that_fails_thrice(self: sampler.Sampler, weight: int = 1) -> None:
        if next(failures, False):
            raise RuntimeError("injected failure in one tick")
        real_sample(self, weight)

    monkeypatch.setattr(sampler.Sampler, "sample", sample_that_fails_thrice)
    profiler = codeguru_agent.start()
    assert profiler is not None
    wait_until(lambda: profiler.flush(5.0) and stored(collector, GROUP), 30, "a profile after the failing ticks")
    wait_until(lambda: profiler.flush(5.0) and len(stored(collector, GROUP)) >= 2, 30, "profiling to go on")
    profiler.stop()

    entries = assert_each_token_once(collector, GROUP)
    assert sum(error_count(entry, "samplerErrors") for entry in entries) == 3
    assert all(entry["document"]["agentMetadata"]["numTimesSampled"] > 0 for entry in entries)


def test_any_other_failure_in_construction_is_a_warning_and_a_disabled_profiler(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A TypeError (or any error) from deep in the set-up is not an unknown keyword: the host gets a
    WARNING and a profiler whose every call returns, not an exception."""
    use_agent_env(monkeypatch, collector, GROUP, tmp_path)

    def broken_environment(arguments: Any) -> Any:
        raise TypeError("'NoneType' object is not subscriptable")

    monkeypatch.setattr(configuration, "resolve", broken_environment)
    with caplog.at_level(logging.WARNING, logger="codeguru_agent"):
        profiler = codeguru_agent.Profiler(profiling_group_name=GROUP)
        started = codeguru_agent.start(GROUP)
    assert len(agent_warnings(caplog)) == 2 and all("could not be set up" in w for w in agent_warnings(caplog))
    assert not profiler.start() and not profiler.is_running() and not profiler.config.enabled
    assert profiler.pause() is False and profiler.flush(1.0) is False and profiler.stop()
    assert started is not None and not started.is_running()
    assert agent_threads() == []
