"""End to end: a program under ``python -m codeguru_agent`` reporting to the collector over HTTP.

The program runs in a subprocess with a one-second reporting interval and a stock boto3 client
pointed at the collector (``AWS_ENDPOINT_URL_CODEGURUPROFILER``); the test reads back what the
collector stored. Programs pace themselves by asking the collector what it has stored, and the test
waits with deadlines: nothing here sleeps to synchronise.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Sequence

import pytest

from support.collector_client import CollectorHandle
from support.programs import (
    CRUNCH,
    PROGRAM_TIMEOUT_S,
    clean_env,
    function_count,
    write_program,
)
from support.waiting import wait_until

GROUP = "CheckoutService"
CONTENT_TYPES = {"json": "application/json", "ion": "application/x-amzn-ion"}

SETTLE = (
    CRUNCH
    + """
def settle_payments():
    crunch(0.05)
"""
)

UNTIL_STORED = (
    SETTLE
    + """
import json, sys, urllib.request

def stored(url, group):
    with urllib.request.urlopen(f"{url}/_test/profiles?profilingGroupName={group}", timeout=10) as answer:
        return len(json.loads(answer.read()))

url, group, wanted = sys.argv[1], sys.argv[2], int(sys.argv[3])
while stored(url, group) < wanted:
    settle_payments()
print("settled")
"""
)
"""Works until the collector holds ``wanted`` of its profiles, then exits (the exit flush sends one more)."""

UNTIL_TOLD = (
    SETTLE
    + """
import os, sys

while not os.path.exists(sys.argv[1]):
    settle_payments()
print("settled")
"""
)
"""Works until the file named by its argument exists."""


def start(
    collector: CollectorHandle,
    tmp_path: Path,
    program: str,
    agent_args: Sequence[str] = (),
    program_args: Sequence[str] = (),
) -> subprocess.Popen:
    path = write_program(tmp_path, program)
    env = clean_env(
        tmp_path, AWS_CODEGURU_PROFILER_REPORTING_INTERVAL_MS=1000, AWS_ENDPOINT_URL_CODEGURUPROFILER=collector.url
    )
    return subprocess.Popen(
        [sys.executable, "-m", "codeguru_agent", "-p", GROUP, *agent_args, str(path), *program_args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> None:
    try:
        stdout, stderr = process.communicate(timeout=PROGRAM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(f"the program did not end\nstdout:\n{stdout}\nstderr:\n{stderr}") from None
    assert process.returncode == 0, stderr
    assert stdout == "settled\n", stderr
    assert "WARNING" not in stderr and "Traceback" not in stderr, stderr


def configure_calls(collector: CollectorHandle, at_least: int) -> List[Dict[str, Any]]:
    """The ConfigureAgent requests the collector received, once there are ``at_least``; else none."""
    calls = collector.requests("ConfigureAgent")
    return calls if len(calls) >= at_least else []


@pytest.mark.parametrize("profile_format", ["json", "ion"])
def test_every_profile_is_the_programs_own_with_its_own_token_and_metadata(
    collector: CollectorHandle, tmp_path: Path, profile_format: str
) -> None:
    collector.create_group(GROUP)

    finish(start(collector, tmp_path, UNTIL_STORED, ["--format", profile_format], [collector.url, GROUP, "2"]))
    entries = collector.wait_for_profiles(GROUP, 3)

    assert {entry["contentType"] for entry in entries} == {CONTENT_TYPES[profile_format]}
    tokens = [entry["profileToken"] for entry in entries]
    assert len(set(tokens)) == len(tokens)
    assert all(uuid.UUID(token).version == 4 for token in tokens)
    documents: List[Dict[str, Any]] = [entry["document"] for entry in entries]
    for document in documents[:-1]:  # the full intervals; the last is the exit flush's
        settling = function_count(document, "settle_payments")
        polling = function_count(document, "stored")
        assert settling > 0 and settling + polling <= document["agentMetadata"]["numTimesSampled"], (
            "the main thread, in one stack per sample, is in the program's own functions"
        )
        assert document["agentMetadata"]["durationInMs"] >= 1000, "a full interval lasts the reporting interval"

    # Each profile starts where the one before it was sealed: one interval after the other, none lost.
    for before, after in zip(documents, documents[1:]):
        assert after["start"] == before["start"] + before["agentMetadata"]["durationInMs"]
        assert before["start"] < before["end"] <= after["start"]
    metadata = [document["agentMetadata"] for document in documents]
    for each in metadata:
        rate = each["numTimesSampled"] / (each["durationInMs"] / 1000.0)
        assert each["sampleWeights"]["WALL_TIME"] == pytest.approx(rate)
        assert each["agentInfo"] == metadata[0]["agentInfo"] and each["fleetInfo"] == metadata[0]["fleetInfo"]


def test_configure_agent_turns_sampling_off_and_on_and_sets_the_interval(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    collector.create_group(GROUP)
    collector.set_agent_configuration(group=GROUP, should_profile=False)
    stop = tmp_path / "stop"

    process = start(collector, tmp_path, UNTIL_TOLD, program_args=[str(stop)])
    try:
        calls = wait_until(lambda: configure_calls(collector, 3), 30, "three ConfigureAgent calls")
        # Samples taken before the first answer arrived are reported, none after it: every profile
        # ends (its last sample) before the second call, a bound clear of when the answer applies.
        assert all(entry["document"]["end"] < calls[1]["receivedAt"] for entry in collector.profiles(GROUP)), (
            "sampled after the service said shouldProfile=false"
        )
        told_on_ms = int(time.time() * 1000)
        collector.set_agent_configuration(group=GROUP, should_profile=True, SamplingIntervalInMilliseconds="40")
        after = wait_until(
            lambda: [
                entry
                for entry in collector.profiles(GROUP)
                if entry["receivedAt"] > told_on_ms and function_count(entry["document"], "settle_payments")
            ],
            30,
            "a profile sampled after the service said shouldProfile=true",
        )
    finally:
        stop.touch()
        finish(process)

    assert after[0]["document"]["debugInfo"]["genericMetrics"]["samplingIntervalInMs_configured"] == 40.0
