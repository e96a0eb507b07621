"""A signal sent to the process reaches the host's own threads, never the agent's.

Python runs signal handlers on the main thread only once that thread is back in the interpreter;
a SIGTERM the kernel hands to an agent thread would leave a main thread asleep in ``time.sleep``
unwoken, and a program that handles SIGTERM would not stop when told to. Before the agent's threads
blocked those signals, a program asleep in its main thread under ``python -m codeguru_agent`` slept
on after a SIGTERM about once in 40 runs. Which thread the kernel picks cannot be steered from a
test, so the test reads what decides it: each thread's blocked-signal mask, as the kernel keeps it.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Set

import pytest

from codeguru_agent import launch
from codeguru_agent import profiler as lifecycle
from reliability.helpers import wait_until
from reliability.in_process import agent_threads, use_agent_env
from support.collector_client import CollectorHandle

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/task")

GROUP = "Signals"


def blocked_signals(thread: threading.Thread) -> Set[int]:
    """The signals a thread blocks, from the kernel's own record of it."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")), 16)
    return {number for number in range(1, 65) if mask & (1 << (number - 1))}


def test_the_agents_threads_block_the_hosts_signals_but_not_their_own_faults(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector.create_group(GROUP)
    use_agent_env(monkeypatch, collector, GROUP, tmp_path)
    profiler = lifecycle.start()
    assert profiler is not None
    try:
        wait_until(lambda: profiler.flush(5.0), 30, "the agent to be up")
        threads = agent_threads()
        assert sorted(thread.name for thread in threads) == [
            launch.SAMPLER_THREAD_NAME,
            launch.UPLOADER_THREAD_NAME,
        ]
        for thread in threads:
            blocked = blocked_signals(thread)
            assert {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD} <= blocked, thread
            assert not {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGABRT} & blocked, thread
        assert signal.SIGTERM not in blocked_signals(threading.main_thread()), "the host's thread is untouched"
    finally:
        assert profiler.stop()
