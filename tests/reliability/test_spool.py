"""Durability: with a spool directory, a host killed with SIGKILL during an outage loses nothing;
the next process with the same spool delivers its profiles under their original tokens."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import List

from reliability.helpers import (
    Host,
    agent_env,
    assert_each_token_once,
    attempts,
    host_script,
    process_ids,
    run_host,
    stored,
    tokens,
    wait_until,
)
from reliability.test_delivery import SERVE
from reliability.test_exit import WORK_AND_EXIT
from support.collector_client import CollectorHandle

GROUP = "Spool"


def spooled_tokens(spool: Path) -> List[str]:
    """Tokens of the profiles waiting in the spool (files ``GROUP__START__TOKEN.json``)."""
    return sorted(path.stem.split("__")[-1] for path in spool.glob(f"{GROUP}__*.json"))


def test_a_killed_host_s_profiles_are_delivered_by_the_next_process(collector: CollectorHandle, tmp_path: Path) -> None:
    collector.create_group(GROUP)
    collector.fail_next("PostAgentProfile", count=10_000, status=503, code="ServiceUnavailableException")
    spool = tmp_path / "spool"
    env = agent_env(collector, GROUP, tmp_path, reporting_interval_ms=1000, spool_dir=spool)
    first = Host(host_script(tmp_path, SERVE), env)
    wait_until(lambda: len(spooled_tokens(spool)) >= 2, 30, "two profiles in the spool")
    first.process.send_signal(signal.SIGKILL)
    first.kill()
    assert first.process.returncode == -signal.SIGKILL
    left_behind = spooled_tokens(spool)
    assert {a["token"] for a in attempts(collector)} <= set(left_behind), "every attempted profile was spooled first"

    collector.clear_faults()
    second = run_host(host_script(tmp_path, WORK_AND_EXIT, name="second.py"), env)

    second.assert_host_intact(f"sum {sum(i * i for i in range(200_000))}\n", 5)
    entries = assert_each_token_once(collector, GROUP)
    from_first = [entry for entry, pid in zip(entries, process_ids(entries)) if pid == first.pid]
    assert sorted(tokens(from_first)) == left_behind, "the first process's profiles arrived under their own tokens"
    assert second.pid in process_ids(entries)
    assert spooled_tokens(spool) == [], "delivered profiles leave the spool"
    assert len(stored(collector, GROUP)) == len(left_behind) + 1
