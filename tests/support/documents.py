"""Small, valid profile documents for tests, built with the agent's own document model."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from codeguru_agent.reporting.document import AGENT_TYPE, Frame, build_callgraph

START_MS = 1_699_999_200_000
"""A fixed profile start, 2023-11-14T22:00:00Z, aligned to the hour."""

Stacks = Mapping[Tuple[Tuple[str, int], ...], int]
"""Root-first stacks of (frame name, line) with their sample counts."""


def profile_document(
    start_ms: int = START_MS,
    end_ms: Optional[int] = None,
    stacks: Optional[Stacks] = None,
    **agent_metadata: Any,
) -> Dict[str, Any]:
    """A document with every key of the official agent's payload; ``stacks`` defaults to one stack."""
    stacks = stacks if stacks is not None else {(("app.main:<module>", 1), ("app.work:run", 3)): 5}
    callgraph = build_callgraph(
        (tuple(Frame(name, f"/srv/{name.split(':')[0]}.py", line) for name, line in stack), count)
        for stack, count in stacks.items()
    )
    metadata: Dict[str, Any] = {
        "sampleWeights": {"WALL_TIME": 1.0},
        "durationInMs": 60_000,
        "fleetInfo": {"id": "host-1", "type": "UNKNOWN"},
        "agentInfo": {"type": AGENT_TYPE, "version": "0.1.0"},
        "agentOverhead": {"memoryInMB": 0},
        "runtimeVersion": "3.11.7",
        "cpuTimeInSeconds": 0.5,
        "metrics": {"numThreads": 2.0},
        "numTimesSampled": sum(stacks.values()),
    }
    metadata.update(agent_metadata)
    return {
        "start": start_ms,
        "end": start_ms + 60_000 if end_ms is None else end_ms,
        "agentMetadata": metadata,
        "callgraph": callgraph,
        "debugInfo": {"processId": 1, "errorsCount": {"errorsCount": 0}},
    }


def deep_document(depth: int, start_ms: int = START_MS) -> Dict[str, Any]:
    """A document whose single stack is ``depth`` frames deep, with one sample at the leaf."""
    stack: Sequence[Tuple[str, int]] = tuple((f"deep.module:frame_{index}", index + 1) for index in range(depth))
    return profile_document(start_ms, stacks={tuple(stack): 1})
