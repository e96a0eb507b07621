"""Each agent's own sampling-and-aggregation path, driven one tick at a time.

One tick walks every thread but the caller's and adds the stacks to the agent's aggregate, exactly
as the agent's background thread would, with nothing else of the agent running. Imports happen in
the constructors, so a process only ever loads the agent it measures.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, Dict, Final, Protocol, Tuple

OFFICIAL: Final = "official"
OURS: Final = "ours"
MEMORY_LIMIT_MB: Final = 10.0
"""Both agents' default memory bound: the official agent's 10 MiB, our ``memory_limit_mb``."""


class Ticker(Protocol):
    """What the benchmarks need from an agent: a tick, its own memory estimate, its hottest frame."""

    def tick(self) -> None: ...

    def memory_bytes(self) -> int: ...

    def top_self_frames(self, count: int = 3) -> list[Tuple[str, str, int]]: ...


class _DiscardingReporter:
    """Stands in for the official SdkReporter: accepts every profile and sends nothing."""

    def setup(self) -> None:
        return None

    def refresh_configuration(self) -> None:
        return None

    def report(self, profile: Any) -> bool:
        return True


class OfficialTicker:
    """``codeguru_profiler_agent`` 1.2.6: ``Sampler.sample`` then ``LocalAggregator.add`` (``Profile.add``)."""

    def __init__(self, max_stack_depth: int = 1000, memory_limit_mb: float = MEMORY_LIMIT_MB) -> None:
        from datetime import timedelta

        from codeguru_profiler_agent.agent_metadata.agent_debug_info import ErrorsMetadata
        from codeguru_profiler_agent.local_aggregator import LocalAggregator
        from codeguru_profiler_agent.metrics.timer import Timer
        from codeguru_profiler_agent.reporter.agent_configuration import AgentConfiguration
        from codeguru_profiler_agent.sampler import Sampler

        AgentConfiguration.set(
            AgentConfiguration(
                should_profile=True,
                sampling_interval=timedelta(milliseconds=10),
                reporting_interval=timedelta(minutes=5),
                minimum_time_reporting=timedelta(seconds=30),
                max_stack_depth=max_stack_depth,
                cpu_limit_percentage=100,
            )
        )
        environment: Dict[str, Any] = {
            "profiling_group_name": "bench",
            "host_weight": 1.0,
            "timer": Timer(),
            "errors_metadata": ErrorsMetadata(),
            "memory_limit_bytes": int(memory_limit_mb * 2**20),
            "excluded_threads": {threading.current_thread().name},  # the agent never samples itself
            "max_threads": 100,
        }
        self._sampler = Sampler(environment=environment)
        self._aggregator = LocalAggregator(reporter=_DiscardingReporter(), environment=environment)
        time.sleep(0.002)  # Profile.add raises if a sample lands in the profile's first millisecond

    def tick(self) -> None:
        self._aggregator.add(self._sampler.sample())

    def memory_bytes(self) -> int:
        return int(self._aggregator.profile.get_memory_usage_bytes())

    def top_self_frames(self, count: int = 3) -> list[Tuple[str, str, int]]:
        """The functions with the most self samples: (function, file, samples)."""
        totals: Counter[Tuple[str, str]] = Counter()
        pending = [self._aggregator.profile.callgraph]
        while pending:
            node = pending.pop()
            pending.extend(node.children)
            if node.runnable_count and not str(node.frame_name).startswith("<"):
                totals[(str(node.frame_name), str(node.file_path))] += node.runnable_count
        return [(name, path, n) for (name, path), n in totals.most_common(count)]


class OursTicker:
    """``codeguru_agent``: ``Sampler(AgentConfig()).sample()`` is one tick, walking and aggregating."""

    def __init__(self, max_stack_depth: int = 1000, memory_limit_mb: float = MEMORY_LIMIT_MB) -> None:
        from codeguru_agent.config import AgentConfig
        from codeguru_agent.sampling.sampler import Sampler

        self._sampler = Sampler(AgentConfig(max_stack_depth=max_stack_depth, memory_limit_mb=memory_limit_mb))
        exclude = getattr(self._sampler, "exclude_thread", None)
        if exclude is not None:
            exclude(threading.get_ident())  # the agent never samples itself
        self.tick = self._sampler.sample  # type: ignore[method-assign]  # no wrapper on the timed path

    def tick(self) -> None:
        self._sampler.sample()

    def memory_bytes(self) -> int:
        return int(self._sampler.memory_bytes())

    def top_self_frames(self, count: int = 3) -> list[Tuple[str, str, int]]:
        """The functions with the most self samples: (function, file, samples)."""
        from codeguru_agent.reporting.document import profile_of

        profile = profile_of(self._sampler.seal())
        totals: Counter[Tuple[str, str]] = Counter()
        for stack, samples in profile.stacks.items():
            real = [frame for frame in stack if not frame.name.startswith("<")]
            if real:
                leaf = real[-1]
                totals[(leaf.name.rsplit(":", 1)[-1], str(leaf.file))] += samples
        return [(name, path, n) for (name, path), n in totals.most_common(count)]


def make_ticker(agent: str, **options: Any) -> Ticker:
    """The ticker for ``official`` or ``ours``."""
    if agent == OFFICIAL:
        return OfficialTicker(**options)
    if agent == OURS:
        return OursTicker(**options)
    raise ValueError(f"unknown agent {agent!r}")
