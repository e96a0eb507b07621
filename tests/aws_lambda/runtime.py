"""A simulated Lambda runtime: load ``_HANDLER`` from the task root and call it once per event.

It reads one JSON event per line on stdin (``exit`` or end of input ends it), calls the handler
with a context shaped like the real one, and writes one JSON line per invocation on stdout: the
request id, the monotonic start and end of the call as the runtime saw it, and the result or error,
with whether it is the very object the handler produced. Between invocations it blocks in
``wait_for_next_invocation``, where a test may freeze it with SIGSTOP as Lambda freezes a function.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
import uuid
from typing import Any, Callable, Dict, Optional

TIMEOUT_MS = 30_000


class LambdaContext:
    """The attributes and method of the context object the Python runtime passes to handlers."""

    def __init__(self, request_id: str, timeout_ms: int) -> None:
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = os.environ["SIMULATED_FUNCTION_ARN"]
        self.memory_limit_in_mb = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
        self.aws_request_id = request_id
        self.log_group_name = "/aws/lambda/" + self.function_name
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self.identity = None
        self.client_context = None
        self._deadline_ms = int(time.time() * 1000) + timeout_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def load_handler(name: str) -> Callable[[Any, Any], Any]:
    module_name, function_name = name.rsplit(".", 1)
    module = importlib.import_module(module_name.replace("/", "."))
    handler: Callable[[Any, Any], Any] = getattr(module, function_name)
    return handler


def wait_for_next_invocation() -> Optional[Dict[str, Any]]:
    line = sys.stdin.readline()
    if not line or line.strip() == "exit":
        return None
    event: Dict[str, Any] = json.loads(line)
    return event


def invoke(handler: Callable[[Any, Any], Any], event: Dict[str, Any]) -> Dict[str, Any]:
    context = LambdaContext(str(uuid.uuid4()), TIMEOUT_MS)
    outcome: Dict[str, Any] = {"requestId": context.aws_request_id}
    outcome["start"] = time.monotonic()
    try:
        result = handler(event, context)
    except Exception as error:
        outcome["end"] = time.monotonic()
        outcome["error"] = {
            "type": type(error).__name__,
            "message": str(error),
            "identical": error is user_module().last_error,
        }
    else:
        outcome["end"] = time.monotonic()
        outcome["result"] = result
        outcome["identical"] = result is user_module().last_result
    outcome["handlerEnv"] = os.environ.get("_HANDLER")
    return outcome


def user_module() -> Any:
    return sys.modules["workload"]


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    sys.path.insert(0, os.environ["LAMBDA_TASK_ROOT"])
    handler = load_handler(os.environ["_HANDLER"])
    while True:
        event = wait_for_next_invocation()
        if event is None:
            return
        print(json.dumps(invoke(handler, event)), flush=True)


if __name__ == "__main__":
    main()
