"""Answers that must not be retried: a refused profile is dropped with a reason, a missing group
pauses sampling until the group exists, and the agent then resumes by itself."""

from __future__ import annotations

import time
from pathlib import Path

from reliability.helpers import (
    Host,
    agent_env,
    assert_each_token_once,
    attempts,
    host_script,
    stored,
    tokens,
    wait_until,
)
from reliability.test_delivery import SERVE
from support.collector_client import CollectorHandle

GROUP = "Refusals"
REFUSALS = (
    (400, "ValidationException"),
    (403, "AccessDeniedException"),
    (402, "ServiceQuotaExceededException"),
)


def serve(collector: CollectorHandle, tmp_path: Path) -> Host:
    return Host(host_script(tmp_path, SERVE), agent_env(collector, GROUP, tmp_path, reporting_interval_ms=1000))


def test_a_refused_profile_is_dropped_with_a_warning_and_the_next_is_delivered(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    collector.create_group(GROUP)
    for status, code in REFUSALS:
        collector.fail_next("PostAgentProfile", status=status, code=code, message=f"refused with {status}")
    host = serve(collector, tmp_path)
    wait_until(lambda: stored(collector, GROUP), 30, "a profile after three refused ones")
    run = host.finish()

    run.assert_host_intact("read 0\n", 3)
    entries = assert_each_token_once(collector, GROUP)
    refused = attempts(collector)[: len(REFUSALS)]
    assert all(attempt["fault"] for attempt in refused)
    refused_tokens = [attempt["token"] for attempt in refused]
    assert len(set(refused_tokens)) == len(REFUSALS), "a refused profile was tried again"
    assert not set(refused_tokens) & set(tokens(entries)), "a refused profile was stored"
    assert len(run.agent_warnings) == len(REFUSALS), run.agent_warnings
    for warning, token, (_, code) in zip(run.agent_warnings, refused_tokens, REFUSALS):
        assert token in warning and code in warning and "dropped" in warning, warning


def test_a_missing_group_pauses_sampling_until_it_exists(collector: CollectorHandle, tmp_path: Path) -> None:
    host = serve(collector, tmp_path)
    wait_until(lambda: len(collector.requests("ConfigureAgent")) >= 2, 30, "ConfigureAgent asked twice")
    created_ms = time.time() * 1000
    collector.create_group(GROUP)
    wait_until(lambda: stored(collector, GROUP), 30, "a profile once the group exists")
    run = host.finish()

    run.assert_host_intact("read 0\n", 3)
    entries = assert_each_token_once(collector, GROUP)
    assert all(request["receivedAt"] >= created_ms for request in collector.requests("PostAgentProfile")), (
        "nothing is submitted while the group does not exist"
    )
    # Samples taken before the first answer (404) may be held and delivered; none after it, until
    # the group exists. By the second ConfigureAgent request the agent had read the first answer.
    # A profile may begin in the pause (it is sealed on the reporting interval while idle), but the
    # pause is kept out of its duration: what it sampled lies in its last durationInMs.
    paused_ms = collector.requests("ConfigureAgent")[1]["receivedAt"]
    spans = [
        (entry["document"]["end"] - entry["document"]["agentMetadata"]["durationInMs"], entry["document"]["end"])
        for entry in entries
    ]
    slack_ms = 20  # whole milliseconds on each side of the pause's accounting
    assert all(end <= paused_ms or sampled_from >= created_ms - slack_ms for sampled_from, end in spans), (
        paused_ms,
        created_ms,
        spans,
    )
    assert any(sampled_from >= created_ms - slack_ms for sampled_from, _ in spans), "sampling resumed"
    assert [request["status"] for request in collector.requests("ConfigureAgent")][:2] == [404, 404]
    assert len(run.agent_warnings) == 1 and "not found" in run.agent_warnings[0], run.agent_warnings


def test_a_profile_answered_not_found_is_held_and_delivered_once_the_group_is_back(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    collector.create_group(GROUP)
    collector.fail_next("PostAgentProfile", status=404, code="ResourceNotFoundException")
    host = serve(collector, tmp_path)
    wait_until(lambda: stored(collector, GROUP), 30, "the held profile")
    run = host.finish()

    run.assert_host_intact("read 0\n", 3)
    entries = assert_each_token_once(collector, GROUP)
    held = attempts(collector)[0]
    assert held["fault"] and held["token"] == entries[0]["profileToken"], "the held profile keeps its token"
    assert len(run.agent_warnings) == 1 and "not found" in run.agent_warnings[0], run.agent_warnings
