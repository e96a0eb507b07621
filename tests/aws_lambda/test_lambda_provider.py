"""The Lambda identity: what each invocation adds to ConfigureAgent's metadata and the profile's fleetInfo."""

from __future__ import annotations

from typing import Any, Dict, Optional

import pytest

from codeguru_agent.fleet import detect
from codeguru_agent.fleet.default import process_id
from codeguru_agent.fleet.lambda_ import LambdaProvider, provider_for, shared_provider

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:checkout"
ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "checkout",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
    "LAMBDA_TASK_ROOT": "/var/task",
    "LAMBDA_RUNTIME_DIR": "/var/runtime",
}


class Context:
    """A Lambda context whose remaining time the test sets."""

    def __init__(self, request_id: str, remaining_ms: Any = 3000, arn: Optional[str] = ARN) -> None:
        self.invoked_function_arn = arn
        self.aws_request_id = request_id
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> Any:
        if isinstance(self.remaining_ms, Exception):
            raise self.remaining_ms
        return self.remaining_ms


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def provider(clock: FakeClock) -> LambdaProvider:
    return LambdaProvider(ENV, clock=clock)


def invoke(provider: LambdaProvider, clock: FakeClock, context: Context, run_s: float, after_s: float = 0.0) -> None:
    """One invocation: ``run_s`` in the handler, ``after_s`` more in the wrapper before it returns."""
    provider.invocation_started(context)
    clock.now += run_s
    provider.handler_returned()
    clock.now += after_s
    provider.invocation_ended()


def test_before_any_invocation_the_function_name_stands_for_the_arn(provider: LambdaProvider) -> None:
    identity = provider.identity()

    assert identity.fleet_instance_id == "checkout"
    assert identity.fleet_info == {
        "computeType": "aws_lambda",
        "functionName": "checkout",
        "memoryLimitInMB": 256,
        "executionEnv": "AWS_Lambda_python3.11",
    }
    assert identity.configure_agent_metadata == {
        "ComputePlatform": "AWSLambda",
        "AgentId": process_id(),
        "LambdaMemoryLimitInMB": "256",
        "ExecutionEnvironment": "AWS_Lambda_python3.11",
    }


def test_an_invocation_brings_the_arn_request_id_and_live_remaining_time(provider: LambdaProvider) -> None:
    context = Context("req-1", remaining_ms=2999)
    provider.invocation_started(context)

    identity = provider.identity()
    assert identity.fleet_instance_id == ARN
    assert identity.fleet_info == {
        "computeType": "aws_lambda",
        "functionArn": ARN,
        "memoryLimitInMB": 256,
        "executionEnv": "AWS_Lambda_python3.11",
    }
    assert identity.configure_agent_metadata == {
        "ComputePlatform": "AWSLambda",
        "LambdaFunctionArn": ARN,
        "AgentId": process_id(),
        "LambdaMemoryLimitInMB": "256",
        "ExecutionEnvironment": "AWS_Lambda_python3.11",
        "AwsRequestId": "req-1",
        "LambdaRemainingTimeInMilliseconds": "2999",
    }
    context.remaining_ms = 1200.7
    assert provider.identity().configure_agent_metadata["LambdaRemainingTimeInMilliseconds"] == "1200"


def test_the_next_invocation_reports_the_previous_execution_time_and_the_gap(
    provider: LambdaProvider, clock: FakeClock
) -> None:
    invoke(provider, clock, Context("req-1", remaining_ms=900), run_s=0.250, after_s=0.040)
    between = provider.identity().configure_agent_metadata
    clock.now += 61.5  # frozen
    provider.invocation_started(Context("req-2"))

    metadata = provider.identity().configure_agent_metadata
    assert metadata["AwsRequestId"] == "req-2"
    assert metadata["LambdaPreviousExecutionTimeInMilliseconds"] == "250"
    assert metadata["LambdaTimeGapBetweenInvokesInMilliseconds"] == "61500"
    # Between invocations the last one's values stand, its remaining time as it was when it ended.
    assert between["AwsRequestId"] == "req-1"
    assert between["LambdaRemainingTimeInMilliseconds"] == "900"
    assert "LambdaPreviousExecutionTimeInMilliseconds" not in between


def test_missing_or_odd_values_are_left_out(clock: FakeClock) -> None:
    provider = LambdaProvider(
        {"AWS_LAMBDA_FUNCTION_NAME": "checkout", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "lots"}, clock=clock
    )
    provider.invocation_started(Context("req-1", remaining_ms=RuntimeError("no deadline"), arn=None))
    identity = provider.identity()
    assert identity.fleet_info == {"computeType": "aws_lambda", "functionName": "checkout"}
    assert identity.configure_agent_metadata == {
        "ComputePlatform": "AWSLambda",
        "AgentId": process_id(),
        "AwsRequestId": "req-1",
    }

    provider.invocation_started(None)
    assert provider.identity().configure_agent_metadata == {"ComputePlatform": "AWSLambda", "AgentId": process_id()}
    assert provider.remaining_ms() is None


def test_the_arn_is_kept_when_a_later_context_lacks_it(provider: LambdaProvider, clock: FakeClock) -> None:
    invoke(provider, clock, Context("req-1"), run_s=0.1)
    provider.invocation_started(Context("req-2", arn=None))

    assert provider.identity().fleet_instance_id == ARN


def test_the_environment_is_read_when_the_provider_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
    provider = LambdaProvider()
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "4096")

    assert provider.memory_limit_mb == 128


def test_detection_inside_lambda_gives_this_processs_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    from codeguru_agent.fleet import lambda_

    monkeypatch.setattr(lambda_, "_shared", None)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)

    provider = detect()
    assert provider is shared_provider()
    assert provider.identity().fleet_info["computeType"] == "aws_lambda"
    assert isinstance(provider_for(dict(ENV)), LambdaProvider)
    assert provider_for(dict(ENV)) is not provider  # another environment is another function


@pytest.mark.parametrize("missing", ["AWS_LAMBDA_FUNCTION_NAME", "LAMBDA_TASK_ROOT"])
def test_outside_lambda_there_is_no_lambda_provider(missing: str) -> None:
    env: Dict[str, str] = {name: value for name, value in ENV.items() if name != missing}
    assert provider_for(env) is None
