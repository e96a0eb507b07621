"""What the test functions do in an invocation: real work, then return or raise as the event says.

``last_result`` and ``last_error`` keep what the handler produced, so the simulated runtime can check
that the very same object reached it through the agent.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request
from typing import Any, Optional

last_result: Any = None
last_error: Optional[BaseException] = None


class HandlerFailure(Exception):
    """The function's own error, which must reach the runtime untouched."""


def run(event: Any, context: Any) -> Any:
    global last_result, last_error
    deadline = time.monotonic() + event.get("work_ms", 0) / 1000.0
    while time.monotonic() < deadline:
        lambda_hot_loop(min(deadline, time.monotonic() + 0.05))
    if event.get("await_configure"):
        await_configure_agent(context.aws_request_id)
    if event.get("raise"):
        last_error = HandlerFailure(event["raise"])
        raise last_error
    last_result = {"echo": event.get("n"), "requestId": context.aws_request_id}
    return last_result


def lambda_hot_loop(until: float) -> int:
    """CPU work the profiles must show."""
    total = 0
    while time.monotonic() < until:
        total += sum(i * i for i in range(500))
    return total


def await_configure_agent(request_id: str, timeout_s: float = 20.0) -> None:
    """Work until the collector has seen a ConfigureAgent call made during this invocation."""
    url = (
        os.environ["AWS_ENDPOINT_URL_CODEGURUPROFILER"]
        + "/_test/requests?"
        + urllib.parse.urlencode({"operation": "ConfigureAgent"})
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=5) as response:
            requests = json.loads(response.read())
        if any(entry.get("body", {}).get("metadata", {}).get("AwsRequestId") == request_id for entry in requests):
            return
        lambda_hot_loop(time.monotonic() + 0.05)
    raise AssertionError(f"no ConfigureAgent call during invocation {request_id}")
