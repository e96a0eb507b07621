"""``with_lambda_profiler``: profile a Lambda handler, one invocation at a time.

Lambda freezes the process between invocations, so the agent samples only while a handler runs:
each invocation resumes the profiler, and its end pauses it, so frozen time is neither sampled nor
counted in a profile's duration. A profile is sent at the end of an invocation once the reporting
interval has passed, within the invocation's remaining time, because a frozen process sends nothing.
The handler's result and exceptions pass through untouched; if the agent fails, the handler still
runs, unprofiled.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from typing import Any, Callable, Dict, Final, Optional, TypeVar

from codeguru_agent import config as configuration
from codeguru_agent.fleet import LAMBDA_FUNCTION_NAME_ENV
from codeguru_agent.fleet.lambda_ import LambdaProvider, shared_provider

logger = logging.getLogger(__name__)

Handler = TypeVar("Handler", bound=Callable[..., Any])

DEFAULT_GROUP_PREFIX: Final = "aws-lambda-"
FLUSH_SAFETY_MARGIN_MS: Final = 500
"""Remaining time a flush always leaves the invocation, so the agent never makes it time out."""

_GROUP_ENVS: Final = (configuration.ENV_PREFIX + "GROUP_NAME", configuration.GROUP_ARN_ENV)
_KNOWN_OPTIONS: Final = frozenset(option.field for option in configuration.OPTIONS)
_AUTO_CREATE_ENV: Final = configuration.environment_variables()["auto_create_group"]


class _LambdaAgent:
    """The process's profiler and the state the wrapper keeps across invocations."""

    def __init__(self, profiler: Any, provider: LambdaProvider) -> None:
        self.profiler = profiler
        self.provider = provider
        self.last_report = time.monotonic()

    def begin(self, context: Any) -> None:
        self.provider.invocation_started(context)
        if self.profiler is None or self.profiler.start():
            return
        from codeguru_agent.profiler import active

        running = active()
        if running is not None and running.is_running():
            # Another profiler already runs here (codeguru_agent.start() at import, say): use it,
            # so it too stops sampling while the process is frozen.
            self.profiler = running
            running.resume()
        else:
            logger.info("CodeGuru profiler could not start; this function runs unprofiled")
            self.profiler = None

    def end(self) -> None:
        self.provider.handler_returned()
        try:
            profiler = self.profiler
            if profiler is None:
                return
            if not profiler.is_running():  # disabled itself (no credentials, say): stay out of the way
                self.profiler = None
                return
            try:
                self._report_if_due(profiler)
            finally:
                profiler.pause()  # whatever happened, no sampling while Lambda freezes the process
        finally:
            self.provider.invocation_ended()

    def _report_if_due(self, profiler: Any) -> None:
        now = time.monotonic()
        if now - self.last_report < profiler.config.reporting_interval_ms / 1000.0:
            return
        remaining_ms = self.provider.remaining_ms()
        timeout_ms = float(profiler.config.shutdown_timeout_ms)
        if remaining_ms is not None:
            timeout_ms = min(timeout_ms, remaining_ms - FLUSH_SAFETY_MARGIN_MS)
        if timeout_ms <= 0:
            return  # no time left in this invocation; the next one reports
        self.last_report = now
        if not profiler.flush(timeout_ms / 1000.0):
            logger.debug("profile not delivered within %.0f ms; kept for the next invocation", timeout_ms)


_lock = threading.Lock()
_agent: Optional[_LambdaAgent] = None


def with_lambda_profiler(
    profiling_group_name: Any = None,
    region_name: Optional[str] = None,
    environment_override: Optional[Dict[str, Any]] = None,
    **options: Any,
) -> Any:
    """Decorate a Lambda handler ``handler(event, context)`` to profile its invocations.

    The profiling group is ``profiling_group_name``, else the one in the environment
    (``AWS_CODEGURU_PROFILER_GROUP_NAME`` or ``_GROUP_ARN``), else ``aws-lambda-<function name>``,
    created on first use. Other keyword arguments are the options of :class:`codeguru_agent.Profiler`.
    Also works bare, as ``@with_lambda_profiler``.
    """
    if callable(profiling_group_name):
        return with_lambda_profiler()(profiling_group_name)
    unknown = sorted(set(options) - _KNOWN_OPTIONS)
    if unknown:
        raise TypeError(f"unknown codeguru_agent option {unknown[0]!r}")

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def profiled(event: Any, context: Any) -> Any:
            agent = _begin(context, profiling_group_name, region_name, environment_override, options)
            try:
                return handler(event, context)
            finally:
                if agent is not None:
                    _end(agent)

        return profiled  # type: ignore[return-value]

    return decorate


def _begin(
    context: Any,
    group: Optional[str],
    region: Optional[str],
    overrides: Optional[Dict[str, Any]],
    options: Dict[str, Any],
) -> Optional[_LambdaAgent]:
    try:
        agent = _get_agent(group, region, overrides, options)
        agent.begin(context)
        return agent
    except Exception:  # the handler must run whatever the agent does
        logger.warning("CodeGuru profiler failed before the invocation; continuing unprofiled", exc_info=True)
        return None


def _end(agent: _LambdaAgent) -> None:
    try:
        agent.end()
    except Exception:  # the handler's result or exception must reach Lambda untouched
        logger.warning("CodeGuru profiler failed after the invocation", exc_info=True)


def _get_agent(
    group: Optional[str], region: Optional[str], overrides: Optional[Dict[str, Any]], options: Dict[str, Any]
) -> _LambdaAgent:
    """The process's agent, built on the first invocation (one per process, like the profiler)."""
    global _agent
    with _lock:
        if _agent is None:
            provider = shared_provider()
            try:
                profiler = _build_profiler(group, region, overrides, options, provider)
            except Exception:  # a profiler that cannot be built leaves the handler unprofiled, quietly
                logger.warning("CodeGuru profiler could not be built; this function runs unprofiled", exc_info=True)
                profiler = None
            _agent = _LambdaAgent(profiler, provider)
        return _agent


def _build_profiler(
    group: Optional[str],
    region: Optional[str],
    overrides: Optional[Dict[str, Any]],
    options: Dict[str, Any],
    provider: LambdaProvider,
) -> Any:
    from codeguru_agent.profiler import Profiler

    if group is None and not any(os.environ.get(name) for name in _GROUP_ENVS):
        function_name = os.environ.get(LAMBDA_FUNCTION_NAME_ENV)
        if function_name:
            group = DEFAULT_GROUP_PREFIX + function_name
    arguments = dict(options)
    if _AUTO_CREATE_ENV not in os.environ:  # on Lambda the default is to create; the variable can say no
        arguments.setdefault("auto_create_group", True)
    return Profiler(group, region, fleet=provider, environment_override=overrides, **arguments)


def _reset_for_tests() -> None:
    """Stop and forget the process's agent, so the next invocation builds a new one."""
    global _agent
    with _lock:
        agent, _agent = _agent, None
    if agent is not None and agent.profiler is not None:
        agent.profiler.stop()
