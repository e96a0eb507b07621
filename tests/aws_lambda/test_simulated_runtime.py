"""Lambda end to end: a simulated runtime invokes the function, freezes it between invocations, and
the agent inside reports to the collector with Lambda's identity and metadata."""

from __future__ import annotations

import re
import sys
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from support.collector_client import CollectorHandle
from support.simulated_lambda import (
    EXECUTION_ENV,
    FUNCTION_ARN,
    FUNCTION_NAME,
    MEMORY_MB,
    SimulatedLambda,
    lambda_environment,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="freezes with SIGSTOP, reads /proc")

DEFAULT_GROUP = "aws-lambda-" + FUNCTION_NAME
FREEZE_S = 1.0
SAMPLING_INTERVAL_MS = 10.0
EXPECTED_FLEET_INFO = {
    "computeType": "aws_lambda",
    "functionArn": FUNCTION_ARN,
    "memoryLimitInMB": MEMORY_MB,
    "executionEnv": EXECUTION_ENV,
}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def frames(node: Dict[str, Any]) -> Iterator[Tuple[str, int]]:
    """(frame name, self count) for every node of a call graph."""
    for name, child in node.get("children", {}).items():
        yield name, child.get("counts", {}).get("WALL_TIME", 0)
        yield from frames(child)


def sampled_frames(profiles: List[Dict[str, Any]]) -> List[str]:
    return [name for profile in profiles for name, _ in frames(profile["document"]["callgraph"])]


def test_decorated_function_reports_each_invocation_and_creates_its_group(
    collector: CollectorHandle, start_lambda: Any
) -> None:
    # The first ConfigureAgent fails: nothing is sent before the service's first answer, so the
    # agent asks again, finds no group (none was configured) and creates it.
    collector.fail_next("ConfigureAgent", status=500, code="InternalServerException")
    function: SimulatedLambda = start_lambda(lambda_environment(collector.url, _HANDLER="app.handler"))

    first = function.invoke(n=1, work_ms=1100, await_configure=True)
    failed = function.invoke(n=2, work_ms=300, **{"raise": "order 2 failed"})
    function.freeze(FREEZE_S)
    third = function.invoke(n=3, work_ms=1100, await_configure=True)
    function.freeze(FREEZE_S)
    fourth = function.invoke(n=4, work_ms=1100)
    assert function.close() == 0, function.stderr()

    # The handler's results and exceptions reach the runtime untouched.
    assert first["result"] == {"echo": 1, "requestId": first["requestId"]} and first["identical"]
    assert failed["error"] == {"type": "HandlerFailure", "message": "order 2 failed", "identical": True}
    assert third["result"]["echo"] == 3 and fourth["result"]["echo"] == 4

    # No group was configured: aws-lambda-<function> was created for Lambda, and every profile went
    # out after the service's first answer, into the new group.
    group = collector.client().describe_profiling_group(profilingGroupName=DEFAULT_GROUP)["profilingGroup"]
    assert group["computePlatform"] == "AWSLambda"
    created = collector.requests("CreateProfilingGroup")
    assert [(entry["status"], entry["body"]) for entry in created] == [
        (201, {"profilingGroupName": DEFAULT_GROUP, "computePlatform": "AWSLambda"})
    ]
    configures = collector.requests("ConfigureAgent")
    assert [entry["status"] for entry in configures[:2]] == [500, 404]
    first_answer_ms = min(entry["receivedAt"] for entry in configures if entry["status"] == 200)
    posts = collector.requests("PostAgentProfile")
    assert posts and all(entry["status"] == 204 for entry in posts)
    assert all(entry["receivedAt"] >= first_answer_ms for entry in posts), "a profile went out before the answer"
    profiles = collector.profiles(DEFAULT_GROUP)

    # Every profile says which function sent it.
    assert len(profiles) >= 3
    assert all(profile["document"]["agentMetadata"]["fleetInfo"] == EXPECTED_FLEET_INFO for profile in profiles)
    assert any(name.endswith(":lambda_hot_loop") for name in sampled_frames(profiles))

    # Sampling stops between invocations: the runtime's wait for the next event, where the process
    # is frozen, is never sampled, and no frozen time counts in a profile's duration. The wrapper
    # resumes and pauses inside each invocation as the runtime timed it, and times the pause itself,
    # so the profiles' durations add up to no more than the invocations' time and no less than the
    # handlers' work after the first invocation (in which the sampling thread starts up), give or
    # take whole-millisecond rounding.
    assert not any(name.endswith(":wait_for_next_invocation") for name in sampled_frames(profiles))
    active_ms = sum((outcome["end"] - outcome["start"]) * 1000 for outcome in function.invocations)
    work_after_start_up_ms = 300 + 1100 + 1100
    durations_ms = [profile["document"]["agentMetadata"]["durationInMs"] for profile in profiles]
    rounding_ms = 2 * (len(profiles) + len(function.invocations))
    assert function.frozen_s >= 2 * FREEZE_S
    assert work_after_start_up_ms - rounding_ms <= sum(durations_ms) <= active_ms + rounding_ms, (
        durations_ms,
        active_ms,
    )
    for profile, duration_ms in zip(profiles, durations_ms):
        # never more ticks than the rate allows (jitter: ±20 %), nor counts for more time than sampled
        ticks = profile["document"]["debugInfo"]["genericMetrics"]["ticks"]
        samples = profile["document"]["agentMetadata"]["numTimesSampled"]
        assert ticks <= samples <= duration_ms / (SAMPLING_INTERVAL_MS * 0.8) + 2, (ticks, samples, duration_ms)


def test_configure_agent_carries_each_invocations_metadata(collector: CollectorHandle, start_lambda: Any) -> None:
    collector.create_group("orders")
    function: SimulatedLambda = start_lambda(
        lambda_environment(collector.url, _HANDLER="app.handler", AWS_CODEGURU_PROFILER_GROUP_NAME="orders")
    )
    function.invoke(n=1, work_ms=200, await_configure=True)
    function.freeze(FREEZE_S)
    function.invoke(n=2, work_ms=200, await_configure=True)
    assert function.close() == 0, function.stderr()

    calls = collector.requests("ConfigureAgent")
    index_of = {outcome["requestId"]: index for index, outcome in enumerate(function.invocations)}
    seen = set()
    agent_ids = set()
    for call in calls:
        assert call["body"]["fleetInstanceId"] == FUNCTION_ARN
        metadata = call["body"]["metadata"]
        assert {
            key: metadata[key]
            for key in ("ComputePlatform", "LambdaFunctionArn", "LambdaMemoryLimitInMB", "ExecutionEnvironment")
        } == {
            "ComputePlatform": "AWSLambda",
            "LambdaFunctionArn": FUNCTION_ARN,
            "LambdaMemoryLimitInMB": str(MEMORY_MB),
            "ExecutionEnvironment": EXECUTION_ENV,
        }
        assert UUID.match(metadata["AgentId"])
        agent_ids.add(metadata["AgentId"])
        remaining = metadata["LambdaRemainingTimeInMilliseconds"]
        assert remaining.isdigit() and int(remaining) <= 30_000
        index = index_of[metadata["AwsRequestId"]]
        seen.add(index)
        if index == 0:
            assert "LambdaPreviousExecutionTimeInMilliseconds" not in metadata
            assert "LambdaTimeGapBetweenInvokesInMilliseconds" not in metadata
            continue
        previous, this = function.invocations[index - 1], function.invocations[index]
        # The wrapper's own times lie inside the runtime's: a shorter execution, a longer gap.
        assert (
            int(metadata["LambdaPreviousExecutionTimeInMilliseconds"]) <= (previous["end"] - previous["start"]) * 1000
        )
        gap_ms = int(metadata["LambdaTimeGapBetweenInvokesInMilliseconds"])
        assert gap_ms >= int((this["start"] - previous["end"]) * 1000) >= FREEZE_S * 1000
    assert seen == {0, 1}
    assert len(agent_ids) == 1


def test_layer_handler_profiles_an_unchanged_function_in_an_existing_group(
    collector: CollectorHandle, start_lambda: Any
) -> None:
    collector.create_group("orders")
    # The agent is told the group is missing, tries to create it and is told it exists: it carries on.
    collector.fail_next("ConfigureAgent", status=404, code="ResourceNotFoundException")
    env = lambda_environment(collector.url, _HANDLER="pkg/plain.handler", AWS_CODEGURU_PROFILER_GROUP_NAME="orders")
    function: SimulatedLambda = start_lambda(env, exec_wrapper=True)
    outcome = function.invoke(n=1, work_ms=1100)
    assert function.close() == 0, function.stderr()

    assert outcome["result"] == {"echo": 1, "requestId": outcome["requestId"]} and outcome["identical"]
    assert outcome["handlerEnv"] == "pkg/plain.handler"
    created = collector.requests("CreateProfilingGroup")  # the test's own, then the agent's
    assert [(entry["status"], entry["body"].get("computePlatform")) for entry in created] == [
        (201, None),
        (409, "AWSLambda"),
    ]
    profiles = collector.profiles("orders")
    assert profiles
    assert all(profile["document"]["agentMetadata"]["fleetInfo"] == EXPECTED_FLEET_INFO for profile in profiles)
    assert any(name.endswith(":lambda_hot_loop") for name in sampled_frames(profiles))
    assert collector.profiles(DEFAULT_GROUP) == []


def test_without_credentials_the_function_runs_unprofiled(collector: CollectorHandle, start_lambda: Any) -> None:
    env = lambda_environment(collector.url, _HANDLER="app.handler")
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    function: SimulatedLambda = start_lambda(env)
    outcomes = [function.invoke(n=n, work_ms=50) for n in (1, 2)]
    assert function.close() == 0, function.stderr()

    assert [outcome["result"]["echo"] for outcome in outcomes] == [1, 2]
    assert "no AWS credentials" in function.stderr()
    assert collector.requests("ConfigureAgent") == [] and collector.requests("PostAgentProfile") == []
