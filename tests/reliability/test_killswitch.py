"""Kill switch: while the file exists, no sample and no submission; removed, profiling resumes.
AWS_CODEGURU_PROFILER_ENABLED=false: every entry point is a no-op and no thread starts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import codeguru_agent
from reliability.helpers import assert_each_token_once, frame_names, stored, wait_until
from reliability.in_process import Phases, agent_threads, use_agent_env
from support.collector_client import CollectorHandle

GROUP = "KillSwitch"
OBSERVE_S = 1.5
"""How long the test watches the killed agent: longer than a reporting interval and a check period."""


def stored_with(collector: CollectorHandle, function: str) -> list:
    return [
        entry
        for entry in stored(collector, GROUP)
        if any(name.endswith(":" + function) for name in frame_names(entry["document"]))
    ]


def test_the_kill_switch_stops_sampling_and_submission_until_removed(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector.create_group(GROUP)
    kill_file = tmp_path / "killProfiler"
    use_agent_env(monkeypatch, collector, GROUP, tmp_path, reporting_interval_ms=1000, killswitch_file=kill_file)
    phases = Phases("before_the_kill", "while_killed", "after_the_kill")
    profiler = codeguru_agent.start()
    assert profiler is not None
    wait_until(lambda: stored_with(collector, "before_the_kill"), 30, "a profile before the kill switch")

    kill_file.touch()
    wait_until(lambda: profiler._runner.killed, 5, "the agent to notice the kill switch")
    profiler.flush(10.0)  # a barrier: a request already under way when the switch was noticed is over
    noticed_ms = time.time() * 1000
    phases.next()
    deadline = time.monotonic() + OBSERVE_S
    while time.monotonic() < deadline:  # an observation window, not a wait for something to happen
        assert profiler.is_running()
        time.sleep(0.05)
    # Still killed: this flush seals the interval and runs the uploader's loop once more, now that a
    # ConfigureAgent and a submission are due; it would send them if the switch were ignored.
    profiler.flush(10.0)
    phases.next()
    removed_ms = time.time() * 1000
    kill_file.unlink()
    wait_until(lambda: stored_with(collector, "after_the_kill"), 30, "a profile after the kill switch is removed")
    profiler.stop()
    phases.finish()

    assert_each_token_once(collector, GROUP)
    assert not stored_with(collector, "while_killed"), "a sample was taken while the kill switch was on"
    during = [r for r in collector.requests("PostAgentProfile") if noticed_ms <= r["receivedAt"] <= removed_ms]
    assert during == [], "a profile was submitted while the kill switch was on"
    assert [r for r in collector.requests("ConfigureAgent") if noticed_ms <= r["receivedAt"] <= removed_ms] == []


def test_disabled_every_entry_point_is_a_no_op(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector.create_group(GROUP)
    use_agent_env(monkeypatch, collector, GROUP, tmp_path, enabled="false", reporting_interval_ms=1000)
    before = set(threading.enumerate())

    started = codeguru_agent.start()
    profiler = codeguru_agent.Profiler()
    results = [profiler.start(), profiler.pause(), profiler.resume(), profiler.flush(1.0), profiler.is_running()]
    with codeguru_agent.Profiler() as in_block:
        results.append(in_block.is_running())
    results += [profiler.stop(), codeguru_agent.stop()]

    assert started is not None and not started.is_running()
    assert results == [False, False, False, False, False, False, True, True]
    assert set(threading.enumerate()) == before and agent_threads() == []
    assert collector.requests("ConfigureAgent") == [] and stored(collector, GROUP) == []
