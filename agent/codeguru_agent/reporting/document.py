"""The CodeGuru profile document: the sealed Profile model, the call graph, and its merging.

The agent turns an immutable :class:`Profile` into the document the service expects
(``start``, ``end``, ``agentMetadata``, ``callgraph``, ``debugInfo``); the collector and the flame
graph read documents back and merge call graphs. Everything here is pure and iterative, so a stack
thousands of frames deep can never hit the recursion limit (the official agent drops such profiles).
"""

import sys
import types
from typing import TYPE_CHECKING, Any, Dict, Final, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Tuple

from codeguru_agent.sampling.frames import Frame

if TYPE_CHECKING:  # the collector and the viewer read documents without loading the sampler
    from codeguru_agent.sampling.sampler import Aggregate

AGENT_TYPE: Final = "CodeGuruProfiler-python"
WALL_TIME: Final = "WALL_TIME"

CallGraphNode = Dict[str, Any]
"""One node of a call graph: optional ``counts``, ``file``, ``line`` and ``children``."""

_NOTHING: Final[Mapping[str, Any]] = types.MappingProxyType({})
"""The shared, read-only default of the mapping fields below."""

# The records here are NamedTuples, not dataclasses: ``dataclasses`` (with ``inspect``) costs
# milliseconds to import, and the collector and the command line load this module too.


Stack = Tuple[Frame, ...]
"""Frames from the root (outermost call) to the leaf."""


class Profile(NamedTuple):
    """One reporting interval's samples, sealed and immutable, ready to become a document.

    ``stacks`` maps each distinct stack to how many times a thread was seen in it; the call tree is
    built only when the document is made, off the sampling thread.
    """

    start_ms: int
    end_ms: int
    duration_ms: int
    stacks: Mapping[Stack, int]
    num_times_sampled: int
    threads_seen: int = 0
    cpu_time_s: float = 0.0
    agent_cpu_ms: int = 0
    memory_bytes: int = 0
    generic_metrics: Mapping[str, float] = _NOTHING

    def is_empty(self) -> bool:
        """True when no thread was seen in any sample: nothing worth submitting."""
        return not self.stacks


def profile_of(aggregate: "Aggregate", **extra: Any) -> Profile:
    """The sealed Profile of one interval's aggregate (on the uploader's thread: resolving the
    stacks is the sampling thread's work deferred until now)."""
    return Profile(
        start_ms=aggregate.start_ms,
        end_ms=aggregate.end_ms,
        duration_ms=aggregate.duration_ms,
        stacks=aggregate.resolved_stacks(),
        num_times_sampled=aggregate.num_times_sampled,
        threads_seen=aggregate.threads_seen,
        memory_bytes=aggregate.memory_bytes,
        **extra,
    )


class Provenance(NamedTuple):
    """Who sent a profile: the values of agentMetadata and debugInfo that are not samples."""

    fleet_info: Mapping[str, Any]
    agent_version: str
    agent_start_time: str
    process_id: int
    errors: Mapping[str, int] = _NOTHING
    runtime_version: str = "%d.%d.%d" % sys.version_info[:3]  # what platform.python_version() says


ERROR_COUNTERS: Final = (
    "errorsCount",
    "sdkClientErrors",
    "configureAgentErrors",
    "configureAgentRnfeAutoCreateEnabledErrors",
    "createProfilingGroupErrors",
    "postAgentProfileErrors",
    "postAgentProfileRnfeAutoCreateEnabledErrors",
)
"""The error counters the official agent reports in ``debugInfo.errorsCount``, in its order."""


def build_document(profile: Profile, provenance: Provenance) -> dict[str, Any]:
    """The profile document, with exactly the keys and meanings of the official agent's payload."""
    seconds = profile.duration_ms / 1000.0
    samples_per_second = profile.num_times_sampled / seconds if seconds > 0 else 1.0
    threads = profile.threads_seen / profile.num_times_sampled if profile.num_times_sampled else 0.0
    overhead: dict[str, int] = {"memoryInMB": int(profile.memory_bytes / 2**20)}
    if profile.agent_cpu_ms > 0:
        overhead["timeInMs"] = profile.agent_cpu_ms
    errors = {name: int(provenance.errors.get(name, 0)) for name in ERROR_COUNTERS}
    errors.update({k: int(v) for k, v in provenance.errors.items() if k not in errors})
    return {
        "start": profile.start_ms,
        "end": max(profile.end_ms, profile.start_ms),
        "agentMetadata": {
            "sampleWeights": {WALL_TIME: samples_per_second},
            "durationInMs": profile.duration_ms,
            "fleetInfo": dict(provenance.fleet_info),
            "agentInfo": {"type": AGENT_TYPE, "version": provenance.agent_version},
            "agentOverhead": overhead,
            "runtimeVersion": provenance.runtime_version,
            "cpuTimeInSeconds": profile.cpu_time_s,
            "metrics": {"numThreads": threads},
            "numTimesSampled": profile.num_times_sampled,
        },
        "callgraph": build_callgraph(profile.stacks.items()),
        "debugInfo": {
            "agentStartTime": provenance.agent_start_time,
            "processId": provenance.process_id,
            "errorsCount": errors,
            "genericMetrics": dict(profile.generic_metrics),
        },
    }


def build_callgraph(stacks: Iterable[Tuple[Stack, int]]) -> CallGraphNode:
    """A call tree from root-first stacks: self counts on the leaves, line ranges on every node."""
    root: CallGraphNode = {}
    for stack, count in stacks:
        node = root
        for frame in stack:
            children: Optional[Dict[str, CallGraphNode]] = node.get("children")
            if children is None:
                children = node["children"] = {}
            child: Optional[CallGraphNode] = children.get(frame.name)
            if child is None:
                child = children[frame.name] = {}
                if frame.file is not None:
                    child["file"] = frame.file
            if frame.line is not None:
                _widen_lines(child, frame.line, frame.line)
            node = child
        if count and node is not root:
            counts = node.setdefault("counts", {})
            counts[WALL_TIME] = counts.get(WALL_TIME, 0) + count
    return root


def _widen_lines(node: CallGraphNode, low: int, high: int) -> None:
    """Widen a node's ``line`` to cover [low, high], kept as ``[n]`` or ``[min, max]``."""
    lines = node.get("line")
    if lines:
        low, high = min(low, lines[0]), max(high, lines[-1])
    node["line"] = [low] if low == high else [low, high]


def merge_callgraph(into: CallGraphNode, other: Mapping[str, Any]) -> CallGraphNode:
    """Add ``other``'s counts into ``into`` node by node, merging line ranges; returns ``into``."""
    pending: List[Tuple[CallGraphNode, Mapping[str, Any]]] = [(into, other)]
    while pending:
        target, source = pending.pop()
        for counter, value in (source.get("counts") or {}).items():
            counts = target.setdefault("counts", {})
            counts[counter] = counts.get(counter, 0) + value
        if "file" in source and "file" not in target:
            target["file"] = source["file"]
        lines = source.get("line")
        if lines:
            _widen_lines(target, min(lines), max(lines))
        for name, child in (source.get("children") or {}).items():
            children = target.setdefault("children", {})
            pending.append((children.setdefault(name, {}), child))
    return into


def walk_callgraph(root: Mapping[str, Any]) -> Iterator[Tuple[Tuple[str, ...], Mapping[str, Any]]]:
    """Every node below the root with its path of frame names, depth first, without recursion."""
    pending: List[Tuple[Tuple[str, ...], Mapping[str, Any]]] = [((), root)]
    while pending:
        path, node = pending.pop()
        if path:
            yield path, node
        for name, child in reversed(list((node.get("children") or {}).items())):
            pending.append((path + (name,), child))


def self_count(node: Mapping[str, Any], counter: str = WALL_TIME) -> int:
    """A node's own samples (not its children's)."""
    return int((node.get("counts") or {}).get(counter, 0))


def total_count(root: Mapping[str, Any], counter: str = WALL_TIME) -> int:
    """All samples in a call graph."""
    return self_count(root, counter) + sum(self_count(node, counter) for _, node in walk_callgraph(root))
