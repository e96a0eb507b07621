"""The decorator around each invocation: the handler always runs untouched, and a report is sent only
when due and only within the invocation's remaining time."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest

import codeguru_agent
from codeguru_agent import profiler as lifecycle
from codeguru_agent.aws_lambda import decorator
from codeguru_agent.aws_lambda.decorator import FLUSH_SAFETY_MARGIN_MS, _LambdaAgent, with_lambda_profiler
from codeguru_agent.fleet import lambda_
from codeguru_agent.fleet.lambda_ import LambdaProvider
from reliability.in_process import agent_threads, use_agent_env
from support.collector_client import CollectorHandle


class Context:
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:orders-api"

    def __init__(self, request_id: str = "req-1", remaining_ms: int = 3000) -> None:
        self.aws_request_id = request_id
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture(autouse=True)
def disabled_agent(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Inside Lambda, profiler disabled: the wrapper's own logic runs, no agent thread starts."""
    monkeypatch.setenv("AWS_CODEGURU_PROFILER_ENABLED", "false")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-api")
    monkeypatch.setattr(lambda_, "_shared", None)
    decorator._reset_for_tests()
    yield
    decorator._reset_for_tests()
    assert not [thread.name for thread in threading.enumerate() if thread.name.startswith("codeguru-agent")]


def test_a_disabled_agent_leaves_results_and_exceptions_untouched() -> None:
    returned = {"statusCode": 200}
    failure = KeyError("order-17")

    @codeguru_agent.with_lambda_profiler(profiling_group_name="orders")
    def handler(event: Any, context: Any) -> Any:
        if event == "fail":
            raise failure
        return returned

    assert handler("ok", Context()) is returned
    with pytest.raises(KeyError) as raised:
        handler("fail", Context("req-2"))
    assert raised.value is failure
    assert decorator._agent is not None and decorator._agent.profiler is None
    assert handler.__name__ == "handler"


def broken(*args: Any) -> None:
    raise RuntimeError("agent bug")


def test_the_handler_runs_when_the_agent_fails_before_the_invocation(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(LambdaProvider, "invocation_started", broken)
    calls: List[Any] = []

    @with_lambda_profiler
    def handler(event: Any, context: Any) -> str:
        calls.append(event)
        return "done"

    with caplog.at_level(logging.WARNING, logger="codeguru_agent"):
        assert handler(1, Context()) == "done"
        assert handler(2, None) == "done"
    assert calls == [1, 2]
    assert [record.getMessage() for record in caplog.records] == [
        "CodeGuru profiler failed before the invocation; continuing unprofiled"
    ] * 2


def test_the_result_and_exception_pass_when_the_end_of_invocation_hook_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(LambdaProvider, "handler_returned", broken)
    returned = {"statusCode": 200}
    failure = KeyError("order-17")

    @with_lambda_profiler
    def handler(event: Any, context: Any) -> Any:
        if event == "fail":
            raise failure
        return returned

    with caplog.at_level(logging.WARNING, logger="codeguru_agent"):
        assert handler("ok", Context()) is returned
        with pytest.raises(KeyError) as raised:
            handler("fail", Context("req-2"))
    assert raised.value is failure
    assert [record.getMessage() for record in caplog.records] == ["CodeGuru profiler failed after the invocation"] * 2


def test_several_decorated_handlers_share_one_agent(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector.create_group("orders")
    use_agent_env(monkeypatch, collector, "orders", tmp_path)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-api")

    @with_lambda_profiler
    def orders(event: Any, context: Any) -> str:
        return "orders"

    @with_lambda_profiler(sampling_interval_ms=20)
    def refunds(event: Any, context: Any) -> str:
        return "refunds"

    assert orders(1, Context()) == "orders"
    agent = decorator._agent
    assert agent is not None and agent.profiler is not None and agent.profiler.is_running()
    before = agent_threads()
    assert refunds(2, Context("req-2")) == "refunds" and orders(3, Context("req-3")) == "orders"

    assert decorator._agent is agent and lifecycle.active() is agent.profiler
    assert agent_threads() == before, "a second decorated handler started threads of its own"


def test_a_real_profilers_flush_is_held_to_the_invocations_remaining_time(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector.create_group("orders")
    use_agent_env(monkeypatch, collector, "orders", tmp_path)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-api")

    @with_lambda_profiler(reporting_interval_ms=60_000, shutdown_timeout_ms=5_000)
    def handler(event: Any, context: Any) -> Any:
        running = lifecycle.active()
        assert running is not None and running.wait_for_sampling(10.0), "something to report"
        return event

    handler(1, Context(remaining_ms=900_000))
    agent = decorator._agent
    assert agent is not None and agent.profiler is not None
    real_flush = agent.profiler.flush
    flushes: List[Tuple[float, bool]] = []

    def recording_flush(timeout_s: float) -> bool:
        delivered = real_flush(timeout_s)
        flushes.append((timeout_s, delivered))
        return delivered

    monkeypatch.setattr(agent.profiler, "flush", recording_flush)
    # The collector answers 2.5 s late: within shutdown_timeout_ms, beyond this invocation's time.
    collector.fail_next("PostAgentProfile", status=None, delay_ms=2_500)
    agent.last_report -= 61  # the reporting interval has passed
    handler(2, Context("req-2", remaining_ms=2_000))

    assert flushes == [((2_000 - FLUSH_SAFETY_MARGIN_MS) / 1000, False)], "the flush outlived the invocation"
    decorator._reset_for_tests()
    stored = collector.wait_for_profiles("orders", 1)
    assert len({entry["profileToken"] for entry in stored}) == len(stored), "the late profile was kept, once"


def test_unknown_options_fail_where_the_decorator_is_written() -> None:
    with pytest.raises(TypeError, match="sampling_interval_millis"):
        with_lambda_profiler(sampling_interval_millis=5)


@dataclass(frozen=True)
class Config:
    reporting_interval_ms: int = 60_000
    shutdown_timeout_ms: int = 5_000


class FakeProfiler:
    """Records what the wrapper asks of the profiler, in order."""

    def __init__(self) -> None:
        self.config = Config()
        self.calls: List[Tuple[str, Any]] = []
        self.running = True

    def start(self) -> bool:
        self.calls.append(("start", None))
        return True

    def flush(self, timeout_s: float) -> bool:
        self.calls.append(("flush", timeout_s))
        return True

    def pause(self) -> bool:
        self.calls.append(("pause", None))
        return True

    def resume(self) -> bool:
        self.calls.append(("resume", None))
        return True

    def is_running(self) -> bool:
        return self.running


def run_invocation(agent: _LambdaAgent, context: Context) -> None:
    agent.begin(context)
    agent.end()


@pytest.mark.parametrize(
    ("remaining_ms", "flush_timeout_s"),
    [
        (900_000, 5.0),  # long invocation: the usual flush deadline
        (2_000, (2_000 - FLUSH_SAFETY_MARGIN_MS) / 1000),  # short on time: keep the margin
        (FLUSH_SAFETY_MARGIN_MS, None),  # no time to spare: the next invocation reports
    ],
)
def test_a_due_report_is_sent_within_the_remaining_time(remaining_ms: int, flush_timeout_s: Any) -> None:
    profiler = FakeProfiler()
    agent = _LambdaAgent(profiler, LambdaProvider({}))
    agent.last_report = time.monotonic() - 61

    run_invocation(agent, Context(remaining_ms=remaining_ms))

    flushes = [("flush", flush_timeout_s)] if flush_timeout_s is not None else []
    assert profiler.calls == [("start", None), *flushes, ("pause", None)]


def test_no_report_before_the_interval_has_passed() -> None:
    profiler = FakeProfiler()
    agent = _LambdaAgent(profiler, LambdaProvider({}))

    run_invocation(agent, Context())
    agent.last_report -= 61
    run_invocation(agent, Context("req-2"))
    run_invocation(agent, Context("req-3"))

    assert [name for name, _ in profiler.calls] == ["start", "pause", "start", "flush", "pause", "start", "pause"]


def test_a_profiler_that_disabled_itself_is_left_alone() -> None:
    profiler = FakeProfiler()
    agent = _LambdaAgent(profiler, LambdaProvider({}))
    run_invocation(agent, Context())
    profiler.running = False  # e.g. no credentials, found on the uploader's thread

    run_invocation(agent, Context("req-2"))
    run_invocation(agent, Context("req-3"))

    assert [name for name, _ in profiler.calls] == ["start", "pause", "start"]
    assert agent.profiler is None


def test_a_profiler_already_running_here_is_paused_between_invocations(monkeypatch: pytest.MonkeyPatch) -> None:
    refused = FakeProfiler()
    refused.start = lambda: False  # type: ignore[method-assign]  # one agent per process
    running = FakeProfiler()
    monkeypatch.setattr(lifecycle, "active", lambda: running)
    agent = _LambdaAgent(refused, LambdaProvider({}))

    run_invocation(agent, Context())
    run_invocation(agent, Context("req-2"))

    assert agent.profiler is running
    assert running.calls == [("resume", None), ("pause", None), ("start", None), ("pause", None)]


def test_the_default_group_is_named_after_the_function_and_created_for_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_CODEGURU_PROFILER_GROUP_NAME", raising=False)
    monkeypatch.delenv("AWS_CODEGURU_PROFILER_GROUP_ARN", raising=False)
    provider = LambdaProvider({})

    default = decorator._build_profiler(None, None, None, {}, provider)
    named = decorator._build_profiler("orders", None, None, {"auto_create_group": False}, provider)
    monkeypatch.setenv("AWS_CODEGURU_PROFILER_GROUP_NAME", "from-env")
    from_env = decorator._build_profiler(None, None, None, {}, provider)

    assert (default.config.profiling_group_name, default.config.auto_create_group) == ("aws-lambda-orders-api", True)
    assert (named.config.profiling_group_name, named.config.auto_create_group) == ("orders", False)
    assert from_env.config.profiling_group_name == "from-env"
    monkeypatch.setenv("AWS_CODEGURU_PROFILER_AUTO_CREATE_GROUP", "false")
    assert decorator._build_profiler(None, None, None, {}, provider).config.auto_create_group is False
