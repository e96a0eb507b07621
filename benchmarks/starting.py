"""How each agent is started, the way its documentation says, submitting to a local endpoint.

Kept apart, with every import inside the function, so that the start-up measurement can time a
start in an interpreter that has imported nothing but the agent (see ``startup.py``).
"""

from typing import Any, Final

DDTRACE_ENV: Final = {
    "DD_PROFILING_ENABLED": "true",
    "DD_PROFILING_STACK_ENABLED": "true",
    "DD_PROFILING_LOCK_ENABLED": "false",
    "DD_PROFILING_MEMORY_ENABLED": "false",
    "DD_PROFILING_HEAP_ENABLED": "false",
    "DD_PROFILING_HEAP_SAMPLE_SIZE": "0",
    "DD_PROFILING_EXCEPTION_ENABLED": "false",
    "DD_PROFILING_PYTORCH_ENABLED": "false",
    "_DD_PROFILING_STACK_ADAPTIVE_SAMPLING_ENABLED": "false",  # a fixed rate, as for the others
    "_DD_PROFILING_STACK_MAX_THREADS": "0",  # every thread, not a reservoir of 25
    "DD_TRACE_ENABLED": "false",
    "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
    "DD_REMOTE_CONFIGURATION_ENABLED": "false",
    "DD_SERVICE": "bench",
}
"""Only ddtrace's stack collector, at a fixed rate, over all threads (v4.x setting names)."""


def start_agent(agent: str, interval_ms: int, url: str) -> Any:
    """Start one agent the way its documentation says, submitting to ``url``; returns its handle."""
    if agent in ("none", "none-again"):
        return None
    if agent in ("floor-wake", "floor-frames"):
        import sys

        from workloads import FloorSampler

        return FloorSampler(interval_ms / 1000, sys._current_frames if agent == "floor-frames" else None)
    if agent == "official":
        from datetime import timedelta

        from codeguru_profiler_agent import Profiler

        profiler = Profiler(
            profiling_group_name="bench",
            region_name="us-east-1",
            environment_override={
                "cpu_limit_percentage": 100,  # else it stops itself once sampling passes 10% of the interval
                "sampling_interval": timedelta(milliseconds=interval_ms),
                "endpoint_url": url,
            },
        )
        if not profiler.start():
            raise RuntimeError("the official agent refused to start")
        return profiler
    if agent == "ours-default":
        import codeguru_agent

        return codeguru_agent.start(profiling_group_name="bench", endpoint_url=url, region_name="us-east-1")
    if agent == "ours":
        import codeguru_agent

        return codeguru_agent.start(
            profiling_group_name="bench",
            sampling_interval_ms=interval_ms,
            endpoint_url=url,
            region_name="us-east-1",
            cpu_limit_percent=100,
        )
    if agent == "ddtrace":
        import ddtrace.profiling.auto  # noqa: F401  # starts the profiler configured by DDTRACE_ENV
        from ddtrace.internal.datadog.profiling import stack

        stack.set_interval(interval_ms / 1000)
        return stack
    if agent == "pyroscope":
        import pyroscope

        pyroscope.configure(application_name="bench", server_address=url, sample_rate=round(1000 / interval_ms))
        return pyroscope
    raise ValueError(f"unknown agent {agent!r}")
