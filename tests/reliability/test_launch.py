"""The launch: start() decides and returns; the agent's own thread imports and builds the rest.

The agent's imports are held back here by holding ``forksafe.import_gate()`` on the test's thread,
which the agent's threads must pass before they import the runner and the uploader: so each test
knows for certain that the launch has not finished, without timing anything.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from codeguru_agent import launch
from codeguru_agent import profiler as lifecycle
from codeguru_agent.host import forksafe
from codeguru_agent.reporting import uploader
from codeguru_agent.sampling import runner
from reliability.helpers import (
    agent_env,
    assert_each_token_once,
    host_script,
    process_ids,
    run_host,
    stored,
    wait_until,
)
from reliability.in_process import agent_threads, use_agent_env
from support.collector_client import CollectorHandle

GROUP = "Launch"


def test_the_agents_threads_are_named_as_the_runner_and_uploader_name_them() -> None:
    from codeguru_agent.reporting import uploader

    assert launch.SAMPLER_THREAD_NAME == runner.THREAD_NAME
    assert launch.UPLOADER_THREAD_NAME == uploader.THREAD_NAME


def test_start_returns_while_the_agents_imports_are_held_and_profiling_follows(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector.create_group(GROUP)
    use_agent_env(monkeypatch, collector, GROUP, tmp_path)
    with forksafe.import_gate():
        profiler = lifecycle.start()
        assert profiler is not None and profiler.is_running()
        # Both threads exist from the start (Python 3.12 refuses new ones once shutdown begins).
        assert sorted(thread.name for thread in agent_threads()) == [
            launch.SAMPLER_THREAD_NAME,
            launch.UPLOADER_THREAD_NAME,
        ]
        assert profiler.pause() and profiler.resume(), "pause and resume work before the launch ends"
    wait_until(lambda: profiler.flush(5.0) and stored(collector, GROUP), 30, "a profile once the launch ends")
    assert profiler.stop()
    assert set(process_ids(assert_each_token_once(collector, GROUP))) == {os.getpid()}


def test_a_pause_asked_for_during_the_launch_holds_once_sampling_begins(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_agent_env(monkeypatch, collector, GROUP, tmp_path)
    with forksafe.import_gate():
        profiler = lifecycle.start()
        assert profiler is not None and profiler.pause()
    built = wait_until(lambda: profiler._runner, 30, "the runner to be built")
    assert built.paused
    assert profiler.resume() and not built.paused
    assert profiler.stop()


def test_a_stop_that_outlasts_the_launch_leaves_no_agent_behind(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector.create_group(GROUP)
    use_agent_env(monkeypatch, collector, GROUP, tmp_path, shutdown_timeout_ms=100)
    with forksafe.import_gate():
        profiler = lifecycle.start()
        assert profiler is not None
        assert profiler.stop(), "stop() gives up on the launch at its deadline and returns"
        assert not profiler.is_running() and lifecycle.active() is None
    # Released now: the launcher builds, sees it was given up, and starts nothing.
    wait_until(lambda: not agent_threads(), 30, "the given-up launch to end")
    assert not any(thread.name == runner.THREAD_NAME for thread in threading.enumerate())
    assert stored(collector, GROUP) == []


def test_a_start_after_a_given_up_launch_runs_one_agent(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector.create_group(GROUP)
    use_agent_env(monkeypatch, collector, GROUP, tmp_path, shutdown_timeout_ms=100)
    with forksafe.import_gate():
        profiler = lifecycle.start()
        assert profiler is not None and profiler.stop()
        assert profiler.start()
    wait_until(lambda: profiler.flush(5.0) and stored(collector, GROUP), 30, "a profile from the second start")
    assert sorted(thread.name for thread in agent_threads()) == [runner.THREAD_NAME, uploader.THREAD_NAME]
    assert profiler.stop()


def test_wait_for_sampling_returns_once_the_first_sample_is_taken(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector.create_group(GROUP)
    use_agent_env(monkeypatch, collector, GROUP, tmp_path)
    with forksafe.import_gate():
        profiler = lifecycle.start()
        assert profiler is not None
        assert not profiler.wait_for_sampling(0.2), "no sample can be taken while the sampler cannot load"
    assert profiler.wait_for_sampling(30)
    assert profiler.flush(10.0)
    assert profiler.stop()
    documents = [entry["document"] for entry in assert_each_token_once(collector, GROUP)]
    assert sum(document["agentMetadata"]["numTimesSampled"] for document in documents) > 0


def test_wait_for_sampling_on_a_stopped_profiler_says_no_at_once() -> None:
    profiler = lifecycle.Profiler(profiling_group_name=GROUP, region_name="us-east-1")
    assert not profiler.wait_for_sampling(30)


STOPPED_AT_ONCE = """\
import codeguru_agent

profiler = codeguru_agent.start()
print("stopped", profiler.stop())
"""

FORKED_AT_ONCE = """\
import os
import time
import codeguru_agent

codeguru_agent.start()
pid = os.fork()
end = time.monotonic() + 0.2
while time.monotonic() < end:
    pass
if pid == 0:
    os._exit(0 if codeguru_agent.stop() else 1)
_, status = os.waitpid(pid, 0)
print("child exit code", os.waitstatus_to_exitcode(status))
"""


def test_stop_right_after_start_waits_for_the_launch_and_delivers(collector: CollectorHandle, tmp_path: Path) -> None:
    collector.create_group(GROUP)
    run = run_host(host_script(tmp_path, STOPPED_AT_ONCE), agent_env(collector, GROUP, tmp_path))

    run.assert_host_intact("stopped True\n", 0)
    assert process_ids(assert_each_token_once(collector, GROUP)) == [run.pid]
    assert run.agent_warnings == []


def test_a_fork_right_after_start_profiles_parent_and_child(collector: CollectorHandle, tmp_path: Path) -> None:
    collector.create_group(GROUP)
    run = run_host(host_script(tmp_path, FORKED_AT_ONCE), agent_env(collector, GROUP, tmp_path))

    run.assert_host_intact("child exit code 0\n", 0)
    pids = set(process_ids(assert_each_token_once(collector, GROUP)))
    assert run.pid in pids and len(pids) == 2, "the child launched an agent of its own"
