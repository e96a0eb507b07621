"""AWS Lambda: an identity that follows the invocations.

The function ARN and the request's metadata exist only in the invocation's ``context``, so the
Lambda wrapper reports each invocation's start and end here, and every ConfigureAgent call and
profile reads the latest state. Without a wrapper (a plain ``start()`` inside Lambda) the function
name stands for the ARN. One provider per process: detection and the decorator share it, so both
report the same invocations.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Final, Mapping, Optional

from codeguru_agent.fleet import (
    LAMBDA_EXECUTION_ENV,
    LAMBDA_FUNCTION_NAME_ENV,
    LAMBDA_MEMORY_ENV,
    LAMBDA_TASK_ROOT_ENV,
    FleetIdentity,
)
from codeguru_agent.fleet.default import process_id

logger = logging.getLogger(__name__)

COMPUTE_TYPE: Final = "aws_lambda"
COMPUTE_PLATFORM: Final = "AWSLambda"
LAMBDA_RUNTIME_DIR_ENV: Final = "LAMBDA_RUNTIME_DIR"


@dataclass(frozen=True)
class _Invocation:
    """What one invocation told us; replaced whole, so a reader on another thread sees one invocation."""

    function_arn: Optional[str] = None
    request_id: Optional[str] = None
    context: Any = None
    active: bool = False
    remaining_ms_at_end: Optional[int] = None
    previous_execution_ms: Optional[int] = None
    gap_since_previous_ms: Optional[int] = None


class LambdaProvider:
    """The Lambda function's identity, updated by the wrapper at each invocation's start and end."""

    def __init__(
        self, environ: Optional[Mapping[str, str]] = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        env = os.environ if environ is None else environ
        self._clock = clock
        self.function_name: Optional[str] = env.get(LAMBDA_FUNCTION_NAME_ENV) or None
        memory = env.get(LAMBDA_MEMORY_ENV, "").strip()
        self.memory_limit_mb: Optional[int] = int(memory) if memory.isdigit() else None
        self.execution_env: Optional[str] = env.get(LAMBDA_EXECUTION_ENV) or None
        self._lock = threading.Lock()
        self._invocation = _Invocation()
        self._started_at: Optional[float] = None
        self._ended_at: Optional[float] = None
        self._last_duration_ms: Optional[int] = None

    def invocation_started(self, context: Any) -> None:
        """A new invocation begins: take its ARN and request id, and time the gap since the last one."""
        now = self._clock()
        arn = getattr(context, "invoked_function_arn", None)
        request_id = getattr(context, "aws_request_id", None)
        with self._lock:
            gap_ms = None if self._ended_at is None else _ms(now - self._ended_at)
            self._started_at = now
            self._invocation = _Invocation(
                function_arn=arn if isinstance(arn, str) and arn else self._invocation.function_arn,
                request_id=request_id if isinstance(request_id, str) and request_id else None,
                context=context,
                active=True,
                previous_execution_ms=self._last_duration_ms,
                gap_since_previous_ms=gap_ms,
            )

    def handler_returned(self) -> int:
        """The handler is done: its execution time in ms, reported with the next invocation."""
        with self._lock:
            started = self._started_at
            duration_ms = 0 if started is None else _ms(self._clock() - started)
            self._last_duration_ms = duration_ms
            return duration_ms

    def invocation_ended(self) -> None:
        """The wrapper is about to hand control back to Lambda (which may freeze the process)."""
        with self._lock:
            self._ended_at = self._clock()
            invocation = self._invocation
            remaining = _remaining_ms(invocation.context)
            self._invocation = _Invocation(
                function_arn=invocation.function_arn,
                request_id=invocation.request_id,
                remaining_ms_at_end=remaining,
                previous_execution_ms=invocation.previous_execution_ms,
                gap_since_previous_ms=invocation.gap_since_previous_ms,
            )

    @property
    def function_arn(self) -> Optional[str]:
        return self._invocation.function_arn

    def remaining_ms(self) -> Optional[int]:
        """The current invocation's remaining time, if there is an invocation and it says."""
        invocation = self._invocation
        return _remaining_ms(invocation.context) if invocation.active else None

    def identity(self) -> FleetIdentity:
        invocation = self._invocation
        arn = invocation.function_arn
        agent_id = process_id()
        info: Dict[str, Any] = {"computeType": COMPUTE_TYPE}
        metadata: Dict[str, str] = {"ComputePlatform": COMPUTE_PLATFORM}
        if arn:
            info["functionArn"] = arn
            metadata["LambdaFunctionArn"] = arn
        elif self.function_name:
            info["functionName"] = self.function_name
        metadata["AgentId"] = agent_id
        if self.memory_limit_mb is not None:
            info["memoryLimitInMB"] = self.memory_limit_mb
            metadata["LambdaMemoryLimitInMB"] = str(self.memory_limit_mb)
        if self.execution_env:
            info["executionEnv"] = self.execution_env
            metadata["ExecutionEnvironment"] = self.execution_env
        if invocation.request_id:
            metadata["AwsRequestId"] = invocation.request_id
        remaining = _remaining_ms(invocation.context) if invocation.active else invocation.remaining_ms_at_end
        if remaining is not None:
            metadata["LambdaRemainingTimeInMilliseconds"] = str(remaining)
        if invocation.previous_execution_ms is not None:
            metadata["LambdaPreviousExecutionTimeInMilliseconds"] = str(invocation.previous_execution_ms)
        if invocation.gap_since_previous_ms is not None:
            metadata["LambdaTimeGapBetweenInvokesInMilliseconds"] = str(invocation.gap_since_previous_ms)
        return FleetIdentity(arn or self.function_name or agent_id, info, metadata)


def _ms(seconds: float) -> int:
    return max(0, int(seconds * 1000))


def _remaining_ms(context: Any) -> Optional[int]:
    """``context.get_remaining_time_in_millis()`` as a count of ms, or None if it cannot say."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    try:
        value = remaining()
    except Exception:  # a context from a test harness or an odd runtime must not cost the metadata
        logger.debug("context.get_remaining_time_in_millis() failed", exc_info=True)
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return max(0, int(value))


def in_lambda(environ: Mapping[str, str]) -> bool:
    """True inside a Lambda execution environment (the function name and the task root are set)."""
    return bool(environ.get(LAMBDA_FUNCTION_NAME_ENV)) and bool(environ.get(LAMBDA_TASK_ROOT_ENV))


_shared_lock = threading.Lock()
_shared: Optional[LambdaProvider] = None


def shared_provider() -> LambdaProvider:
    """This process's provider, made from its environment on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = LambdaProvider()
        return _shared


def provider_for(environ: Mapping[str, str]) -> Optional[LambdaProvider]:
    """Detection's answer inside Lambda (the shared provider for this process's own environment), else None."""
    if not in_lambda(environ):
        return None
    return shared_provider() if environ is os.environ else LambdaProvider(environ)
