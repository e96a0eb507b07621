"""The layer handler and its exec wrapper: finding the real handler as Lambda does, or saying why not."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Iterator

import pytest

from codeguru_agent.aws_lambda import decorator, lambda_handler
from codeguru_agent.aws_lambda.lambda_handler import HandlerNotFoundError, call_handler
from codeguru_agent.fleet import lambda_
from support.simulated_lambda import EXEC_WRAPPER, TASK_ROOT

THIS_HANDLER = "codeguru_agent.aws_lambda.lambda_handler.call_handler"


class Context:
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:orders-api"
    aws_request_id = "6f8e0c1e-0d59-4a4e-9a43-8f3c2f1a9b10"

    def get_remaining_time_in_millis(self) -> int:
        return 3000


@pytest.fixture(autouse=True)
def layer_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Lambda's variables with the profiler disabled (no threads), and a fresh handler and agent."""
    monkeypatch.setenv("AWS_CODEGURU_PROFILER_ENABLED", "false")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-api")
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(TASK_ROOT))
    monkeypatch.setenv("_HANDLER", THIS_HANDLER)
    monkeypatch.delenv("HANDLER_ENV_NAME_FOR_CODEGURU", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(lambda_handler, "_profiled", None)
    monkeypatch.setattr(lambda_, "_shared", None)
    modules = set(sys.modules)
    decorator._reset_for_tests()
    yield
    decorator._reset_for_tests()
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def test_calls_the_handler_named_in_the_variable_from_the_task_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANDLER_ENV_NAME_FOR_CODEGURU", "pkg/plain.handler")

    result = call_handler({"n": 7}, Context())

    assert result == {"echo": 7, "requestId": Context.aws_request_id}
    assert result is sys.modules["workload"].last_result
    assert sys.modules["pkg.plain"].__file__ == str(TASK_ROOT / "pkg" / "plain.py")
    assert os.environ["_HANDLER"] == "pkg/plain.handler"  # as the function would see it without the layer


def test_the_handlers_exception_passes_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANDLER_ENV_NAME_FOR_CODEGURU", "pkg.plain.handler")

    with pytest.raises(Exception, match="payment declined") as raised:
        call_handler({"n": 1, "raise": "payment declined"}, Context())
    assert raised.value is sys.modules["workload"].last_error


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (None, "HANDLER_ENV_NAME_FOR_CODEGURU is not set"),
        ("  ", "HANDLER_ENV_NAME_FOR_CODEGURU is not set"),
        ("handler", "bad handler 'handler' in HANDLER_ENV_NAME_FOR_CODEGURU: expected module.function"),
        (
            "no_such_module.handler",
            "unable to import module 'no_such_module' for handler 'no_such_module.handler': ModuleNotFoundError",
        ),
        ("pkg/plain.no_such_function", "handler 'no_such_function' missing on module 'pkg.plain'"),
        ("workload.last_error", "handler 'workload.last_error' is a NoneType, not a function"),
        ("workload.json", "handler 'workload.json' is a module, not a function"),
        (THIS_HANDLER, "names the CodeGuru handler itself"),
    ],
)
def test_a_missing_or_bad_handler_fails_the_invocation_clearly(
    monkeypatch: pytest.MonkeyPatch, name: Any, message: str
) -> None:
    if name is not None:
        monkeypatch.setenv("HANDLER_ENV_NAME_FOR_CODEGURU", name)

    with pytest.raises(HandlerNotFoundError) as raised:
        call_handler({}, Context())
    assert message in str(raised.value)


def test_a_handler_that_appears_later_is_found_on_the_next_call(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(tmp_path))
    monkeypatch.setenv("HANDLER_ENV_NAME_FOR_CODEGURU", "late_module.handler")
    with pytest.raises(HandlerNotFoundError, match="unable to import module 'late_module'"):
        call_handler({}, Context())

    (tmp_path / "late_module.py").write_text("def handler(event, context):\n    return ['late', event]\n")
    assert call_handler(1, Context()) == ["late", 1]


def test_the_exec_wrapper_hands_the_runtime_our_handler_and_keeps_the_real_one() -> None:
    assert os.access(EXEC_WRAPPER, os.X_OK)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "_HANDLER": "app.handler"}

    shown = subprocess.run(
        [
            str(EXEC_WRAPPER),
            sys.executable,
            "-c",
            "import os; print(os.environ['_HANDLER'], os.environ['HANDLER_ENV_NAME_FOR_CODEGURU'])",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()

    assert shown == [THIS_HANDLER, "app.handler"]
