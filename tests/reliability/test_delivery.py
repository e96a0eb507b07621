"""Never lose a profile: retries with the original token, an outage, and the backlog's bound.

Each test runs a host program in a subprocess against the collector, injects faults there, and
checks both sides: the host's output and exit code, and exactly which profiles were stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import pytest

from reliability.helpers import (
    Host,
    agent_env,
    assert_consecutive,
    assert_each_token_once,
    attempts,
    error_count,
    host_script,
    stored,
    tokens,
    wait_until,
)
from support.collector_client import CollectorHandle

GROUP = "Delivery"

SERVE = """\
import sys
import codeguru_agent

def serve():
    total = 0
    for line in sys.stdin:
        total += len(line)
    return total

codeguru_agent.start()
print("read", serve())
sys.exit(3)
"""
"""A host that idles on stdin until the test closes it, then prints and exits with its own code."""


def serve(collector: CollectorHandle, tmp_path: Path, **options: Any) -> Host:
    options.setdefault("reporting_interval_ms", 1000)
    return Host(host_script(tmp_path, SERVE), agent_env(collector, GROUP, tmp_path, **options))


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"status": 500, "code": "InternalServerException"}, id="5xx"),
        pytest.param({"status": 429, "code": "ThrottlingException"}, id="429-throttling"),
        pytest.param({"drop": True}, id="connection-dropped"),
    ],
)
def test_a_failed_submission_is_retried_with_its_token_and_stored_once(
    collector: CollectorHandle, tmp_path: Path, fault: Dict[str, Any]
) -> None:
    collector.create_group(GROUP)
    collector.fail_next("PostAgentProfile", count=2, **fault)
    host = serve(collector, tmp_path)
    wait_until(lambda: stored(collector, GROUP), 30, "the first profile after two failed attempts")
    run = host.finish()

    run.assert_host_intact("read 0\n", 3)
    entries = assert_each_token_once(collector, GROUP)
    first = entries[0]["profileToken"]
    assert [(a["token"], a["fault"]) for a in attempts(collector)[:3]] == [(first, True), (first, True), (first, False)]
    assert_consecutive(entries)
    # One attempt of the agent is one request: botocore's own retries are off, the backlog retries.
    assert sum(error_count(entry, "postAgentProfileErrors") for entry in entries) == 2
    assert run.agent_warnings == []


@pytest.mark.slow
def test_an_outage_loses_nothing_and_delivers_oldest_first(collector: CollectorHandle, tmp_path: Path) -> None:
    """A long outage, shortened: one-second profiles, every submission failing for several seconds."""
    collector.create_group(GROUP)
    collector.fail_next("PostAgentProfile", count=10_000, status=503, code="ServiceUnavailableException")
    host = serve(collector, tmp_path)
    wait_until(lambda: len(attempts(collector)) >= 6, 30, "six failed submissions")
    collector.clear_faults()
    wait_until(lambda: len(stored(collector, GROUP)) >= 4, 30, "the backlog to drain")
    run = host.finish()

    run.assert_host_intact("read 0\n", 3)
    entries = assert_each_token_once(collector, GROUP)
    assert_consecutive(entries)
    failed = {a["token"] for a in attempts(collector) if a["fault"]}
    assert failed <= set(tokens(entries)), "a profile that failed during the outage never arrived"
    held = max(entry["document"]["debugInfo"]["genericMetrics"]["backlogProfiles"] for entry in entries)
    assert held >= 2, "the outage was too short to build a backlog"
    assert run.agent_warnings == []


BACKLOG_HOST = """\
import sys
import time
import codeguru_agent

def busy(seconds):
    count, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        count += 1
    return count

profiler = codeguru_agent.start()
for _ in range(5):
    busy(0.1)
    profiler.flush(5.0)
print("five sealed", flush=True)
sys.stdin.readline()
busy(0.1)
profiler.flush(5.0)
print("sixth sealed", flush=True)
sys.stdin.readline()
profiler.flush(5.0)
busy(0.1)
print("done")
"""
"""Seals one profile per flush(), so the backlog fills one profile at a time, deterministically."""


def test_a_full_backlog_drops_the_oldest_counts_and_warns_once(collector: CollectorHandle, tmp_path: Path) -> None:
    collector.create_group(GROUP)
    collector.fail_next("PostAgentProfile", count=10_000, status=500)
    env = agent_env(collector, GROUP, tmp_path, backlog_max_profiles=2, sampling_interval_ms=5, cpu_limit_percent=100)
    host = Host(host_script(tmp_path, BACKLOG_HOST), env)
    assert host.read_line() == "five sealed\n"
    host.send()
    assert host.read_line() == "sixth sealed\n"
    collector.clear_faults()
    host.send()
    run = host.finish(earlier_stdout="five sealed\nsixth sealed\n")

    run.assert_host_intact("five sealed\nsixth sealed\ndone\n", 0)
    entries = assert_each_token_once(collector, GROUP)
    assert len(entries) == 3, "profiles 6 and 7 were held, 8 is the last one, sealed at exit"
    assert_consecutive(entries)
    dropped = {a["token"] for a in attempts(collector) if a["fault"]} - set(tokens(entries))
    assert len(dropped) == 5, "profiles 1 to 5 were each the oldest once, then dropped"
    reported = [error_count(entry, "backlogDroppedProfiles") for entry in entries]
    assert reported[0] >= 1, "the next delivered profile reports the drops"
    assert sum(reported) == 5, f"each drop is reported exactly once, got {reported}"
    assert [line for line in run.agent_warnings if "backlog full" in line] == run.agent_warnings
    assert len(run.agent_warnings) == 1
