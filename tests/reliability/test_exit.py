"""Exit: the last interval is flushed without a stop() call, and the host never hangs at exit,
even with the endpoint black-holed or the interpreter refusing new threads (Python 3.12+).

A host that does not exit within its timeout fails the test: durations are never asserted.
"""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from reliability.helpers import HostRun, agent_env, assert_each_token_once, host_script, process_ids, run_host
from support.collector_client import CollectorHandle

GROUP = "Exit"

WORK_AND_EXIT = """\
import sys
import codeguru_agent

codeguru_agent.start()
print("sum", sum(i * i for i in range(200_000)))
sys.exit(5)
"""

SAMPLED_WORK_AND_EXIT = """\
import sys
import codeguru_agent

profiler = codeguru_agent.start()
assert profiler is not None and profiler.wait_for_sampling(30)  # a profile to lose: the warning's cause
print("sum", sum(i * i for i in range(200_000)))
sys.exit(5)
"""


def test_the_last_profile_is_flushed_at_exit_without_stop(collector: CollectorHandle, tmp_path: Path) -> None:
    collector.create_group(GROUP)
    run = run_host(host_script(tmp_path, WORK_AND_EXIT), agent_env(collector, GROUP, tmp_path))

    run.assert_host_intact(f"sum {sum(i * i for i in range(200_000))}\n", 5)
    entries = assert_each_token_once(collector, GROUP)
    assert process_ids(entries) == [run.pid], "exactly one profile, the final one, from the host"
    assert run.agent_warnings == []


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An endpoint that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: List[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, name="black-hole", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for connection in held:
        connection.close()
    server.close()


def test_a_black_holed_endpoint_never_holds_the_exit(black_hole: str, tmp_path: Path) -> None:
    env = agent_env(None, GROUP, tmp_path, shutdown_timeout_ms=1000)
    env["AWS_ENDPOINT_URL_CODEGURUPROFILER"] = black_hole
    run = run_host(host_script(tmp_path, SAMPLED_WORK_AND_EXIT), env, timeout_s=30)

    run.assert_host_intact(f"sum {sum(i * i for i in range(200_000))}\n", 5)
    assert any("not delivered before the shutdown deadline" in line for line in run.agent_warnings), run.stderr


def test_a_slow_collector_never_holds_the_exit(collector: CollectorHandle, tmp_path: Path) -> None:
    collector.create_group(GROUP)
    collector.fail_next("PostAgentProfile", status=None, delay_ms=8_000)
    env = agent_env(collector, GROUP, tmp_path, shutdown_timeout_ms=1000)
    run = run_host(host_script(tmp_path, SAMPLED_WORK_AND_EXIT), env, timeout_s=30)

    run.assert_host_intact(f"sum {sum(i * i for i in range(200_000))}\n", 5)
    assert any("not delivered before the shutdown deadline" in line for line in run.agent_warnings), run.stderr


STARTED_AT_EXIT = """\
import atexit
import sys
import codeguru_agent

atexit.register(codeguru_agent.start)
print("registered")
sys.exit(6)
"""

STARTED_BY_A_LATE_THREAD = """\
import threading
import codeguru_agent

def late():
    codeguru_agent.start()
    print("late thread started the agent")

print("main thread done")
threading.Thread(target=late, name="late").start()
"""


def assert_started_late(run: HostRun, entries: List[Dict[str, Any]], *, flushed: bool) -> None:
    """What a start at shutdown gives, by interpreter; in every case the host never sees an error.

    3.12 refuses new threads once shutdown has begun: one WARNING, nothing sent. Elsewhere the agent
    starts; started from a thread that outlives main, its exit flush sends one profile; started from
    an atexit handler, it starts after the interpreter has begun running its own exit hooks, so the
    flush never runs (nothing sent, nothing said).
    """
    if sys.version_info[:2] == (3, 12):
        assert entries == []
        assert len(run.agent_warnings) == 1 and "interpreter shutdown" in run.agent_warnings[0], run.agent_warnings
        return
    assert run.agent_warnings == []
    assert process_ids(entries) == ([run.pid] if flushed else [])


def test_starting_from_an_atexit_handler_never_raises_in_the_host(collector: CollectorHandle, tmp_path: Path) -> None:
    collector.create_group(GROUP)
    run = run_host(host_script(tmp_path, STARTED_AT_EXIT), agent_env(collector, GROUP, tmp_path))

    run.assert_host_intact("registered\n", 6)
    assert_started_late(run, assert_each_token_once(collector, GROUP), flushed=False)


def test_starting_from_a_thread_that_outlives_main_never_raises_in_the_host(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    collector.create_group(GROUP)
    run = run_host(host_script(tmp_path, STARTED_BY_A_LATE_THREAD), agent_env(collector, GROUP, tmp_path))

    run.assert_host_intact("main thread done\nlate thread started the agent\n", 0)
    assert_started_late(run, assert_each_token_once(collector, GROUP), flushed=True)
