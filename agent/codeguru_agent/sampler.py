"""One tick: every thread's stack from ``sys._current_frames()``, counted flat by stack id.

This is the only code that runs while the agent holds the GIL on the host's time, so it is built
for that: frames are keyed on (code object, instruction offset) and resolved once; a thread whose
top frame and offset did not change since the last tick is counted without walking its stack; a
new stack costs one tuple and one dict entry. Names, the call tree and the document are built later,
on the uploader's thread, from the sealed :class:`Aggregate`.

``sys._current_frames()`` also returns the sampler's own frame. Kept in the tick's locals until
the tick returns, it would make that frame own its locals and so sit in a reference cycle with
the other threads' frames; on CPython 3.12 collecting such a cycle while those threads still run
corrupts them (``SystemError: deallocated BytesIO object has exported buffers``, hung
``multiprocessing`` pools, crashes). So the sampler's own entry is dropped the moment it arrives.
"""

from __future__ import annotations

import random
import sys
import threading
import time
import types
from dataclasses import dataclass
from typing import Any, Callable, Dict, Final, FrozenSet, List, Optional, Set, Tuple

from codeguru_agent import frames as names
from codeguru_agent.config import AgentConfig
from codeguru_agent.document import Frame, Profile

StackKey = Tuple[int, ...]
"""Frame ids from the leaf (first) to the root (last)."""

_TUPLE_BYTES: Final = sys.getsizeof(())
_STACK_OVERHEAD_BYTES: Final = _TUPLE_BYTES + 3 * 8 + 120  # tuple header, list slots, dict entry
_POSITION_BYTES: Final = 400  # a Frame, its strings' share, dict entries


class _CodeEntry:
    """What the sampler knows of one code object; positions map offsets to frame ids."""

    __slots__ = ("code", "positions", "name", "file", "resumable", "boto")

    def __init__(self, code: types.CodeType, name: str, file: str) -> None:
        self.code = code
        self.positions: Dict[int, int] = {}
        self.name = name
        self.file = file
        self.resumable = names.is_resumable(code)
        self.boto = names.is_boto_api_call(code)


class FrameTable:
    """Interns frames to small ids; append-only, so a sealed aggregate can read it from any thread."""

    def __init__(self) -> None:
        self.frames: List[Frame] = []
        self.leaf_children: List[int] = []  # frame id -> id of its synthetic leaf child, or -1
        self._ids: Dict[Frame, int] = {}
        self._codes: Dict[int, _CodeEntry] = {}
        self._modules = names.ModuleNames()
        self._qualnames = names.QualifiedNames()
        self.truncated_id = self.intern(names.TRUNCATED)

    def intern(self, frame: Frame) -> int:
        frame_id = self._ids.get(frame)
        if frame_id is None:
            frame_id = self._ids[frame] = len(self.frames)
            self.frames.append(frame)
            self.leaf_children.append(-1)
        return frame_id

    def code_entry(self, code: types.CodeType) -> _CodeEntry:
        entry = self._codes.get(id(code))
        if entry is None or entry.code is not code:
            module = names.encodable(self._modules.module_of(code.co_filename))
            name = names.frame_name(module, self._qualnames.qualname(code, module))
            entry = self._codes[id(code)] = _CodeEntry(code, name, names.encodable(code.co_filename))
        return entry

    def position(self, entry: _CodeEntry, offset: int, line: Optional[int]) -> int:
        """The id of a (code, offset) position seen for the first time."""
        frame_id = self.intern(Frame(entry.name, entry.file, line))
        entry.positions[offset] = frame_id
        synthetic = names.leaf_synthetic_frame(entry.code, offset)
        if synthetic is not None:
            self.leaf_children[frame_id] = self.intern(synthetic)
        return frame_id

    def __len__(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class Aggregate:
    """A sealed interval of samples: flat counts by stack, plus what the document needs."""

    start_ms: int
    end_ms: int
    duration_ms: int
    stacks: List[StackKey]
    counts: List[int]
    num_times_sampled: int
    threads_seen: int
    folded_stacks: int
    memory_bytes: int
    table: FrameTable

    def to_profile(self, **extra: Any) -> Profile:
        """Resolve frame ids into root-first frame stacks (run this off the sampling thread)."""
        frames = self.table.frames
        stacks: Dict[Tuple[Frame, ...], int] = {}
        for key, count in zip(self.stacks, self.counts):
            if count:
                stack = tuple(frames[frame_id] for frame_id in reversed(key))
                stacks[stack] = stacks.get(stack, 0) + count
        return Profile(
            start_ms=self.start_ms,
            end_ms=self.end_ms,
            duration_ms=self.duration_ms,
            stacks=stacks,
            num_times_sampled=self.num_times_sampled,
            threads_seen=self.threads_seen,
            memory_bytes=self.memory_bytes,
            **extra,
        )


def _wall_ms() -> int:
    return int(time.time() * 1000)


class Sampler:
    """Samples all threads but the agent's own into flat stack counts, within a memory bound."""

    def __init__(self, config: AgentConfig, *, clock_ms: Callable[[], int] = _wall_ms,
                 current_frames: Callable[[], Dict[int, types.FrameType]] = sys._current_frames) -> None:
        self._max_depth = config.max_stack_depth
        self._max_threads = config.max_threads
        self._excluded_names: FrozenSet[str] = config.excluded_threads
        self._memory_limit_bytes = int(config.memory_limit_mb * 2**20)
        self._clock_ms = clock_ms
        self._current_frames = current_frames
        self._agent_threads: Set[int] = set()
        self._excluded: Dict[int, bool] = {}
        self._table = FrameTable()
        self._last: Dict[int, Tuple[types.FrameType, int, int]] = {}
        self._reset(self._clock_ms())

    def _reset(self, now_ms: int) -> None:
        self._stack_ids: Dict[StackKey, int] = {}
        self._stacks: List[StackKey] = []
        self._counts: List[int] = []
        self._last.clear()
        self._start_ms = now_ms
        self._end_ms = now_ms
        self._paused_ms = 0
        self._ticks = 0
        self._threads_seen = 0
        self._folded = 0
        self._stack_bytes = 0

    def exclude_thread(self, ident: Optional[int]) -> None:
        """Never sample this thread (the agent's own threads register here)."""
        if ident is not None:
            self._agent_threads.add(ident)
            self._excluded[ident] = True

    def add_paused_time(self, paused_ms: int) -> None:
        """Time the profile was paused, kept out of its duration."""
        self._paused_ms += max(0, paused_ms)

    def sample(self) -> None:
        """One tick: count every sampled thread's current stack once."""
        frames = self._current_frames()
        frames.pop(threading.get_ident(), None)  # see the module's note on the sampler's own frame
        items = list(frames.items())
        del frames
        if len(items) > self._max_threads + len(self._agent_threads):
            items = [item for item in items if item[0] not in self._agent_threads]
            if len(items) > self._max_threads:
                items = random.sample(items, self._max_threads)
        last = self._last
        excluded = self._excluded
        counts = self._counts
        seen = 0
        for ident, frame in items:
            skip = excluded.get(ident)
            if skip is None:
                skip = self._classify(ident)
            if skip:
                continue
            seen += 1
            lasti = frame.f_lasti
            previous = last.get(ident)
            if previous is not None and previous[0] is frame and previous[1] == lasti:
                counts[previous[2]] += 1
                continue
            stack_id = self._walk(frame)
            counts[stack_id] += 1
            if self._table.code_entry(frame.f_code).resumable:
                last.pop(ident, None)
            else:
                last[ident] = (frame, lasti, stack_id)
        if len(last) > seen:
            live = {ident for ident, _ in items}
            for ident in [ident for ident in last if ident not in live]:
                del last[ident]
        self._ticks += 1
        self._threads_seen += seen
        self._end_ms = self._clock_ms()

    def _classify(self, ident: int) -> bool:
        thread = threading._active.get(ident)  # type: ignore[attr-defined]
        skip = ident in self._agent_threads or (thread is not None and thread.name in self._excluded_names)
        self._excluded[ident] = skip
        return skip

    def _walk(self, frame: Optional[types.FrameType]) -> int:
        table = self._table
        key: List[int] = []
        depth = 0
        max_depth = self._max_depth
        leaf = True
        while frame is not None:
            if depth == max_depth:
                key.append(table.truncated_id)
                break
            code = frame.f_code
            entry = table.code_entry(code)
            lasti = frame.f_lasti
            frame_id = entry.positions.get(lasti)
            if frame_id is None:
                frame_id = table.position(entry, lasti, frame.f_lineno)
            if leaf:
                leaf = False
                synthetic = table.leaf_children[frame_id]
                if synthetic >= 0:
                    key.append(synthetic)
            key.append(frame_id)
            if entry.boto:
                operation = names.boto_operation_frame(frame, code)
                if operation is not None:
                    key.append(table.intern(operation))
            frame = frame.f_back
            depth += 1
        return self._stack_id(tuple(key))

    def _stack_id(self, key: StackKey) -> int:
        stack_id = self._stack_ids.get(key)
        if stack_id is not None:
            return stack_id
        cost = _STACK_OVERHEAD_BYTES + 8 * len(key)
        if self.memory_bytes() + cost > self._memory_limit_bytes and len(key) > 1:
            return self._fold(key)
        return self._add_stack(key, cost)

    def _add_stack(self, key: StackKey, cost: int) -> int:
        stack_id = self._stack_ids[key] = len(self._stacks)
        self._stacks.append(key)
        self._counts.append(0)
        self._stack_bytes += cost
        return stack_id

    def _fold(self, key: StackKey) -> int:
        """Over the memory bound: count the sample on the deepest stack already known above it."""
        self._folded += 1
        for cut in range(1, len(key)):
            stack_id = self._stack_ids.get(key[cut:])
            if stack_id is not None:
                return stack_id
        root = key[-1:]
        return self._add_stack(root, _STACK_OVERHEAD_BYTES + 8)

    def memory_bytes(self) -> int:
        """Estimated bytes held for the current interval and the frame cache."""
        return self._stack_bytes + len(self._table) * _POSITION_BYTES

    def seal(self, now_ms: Optional[int] = None) -> Aggregate:
        """Hand over this interval's samples and start a new interval; O(1) on the sampling thread."""
        now = self._clock_ms() if now_ms is None else now_ms
        end = self._end_ms if self._ticks else now
        aggregate = Aggregate(
            start_ms=self._start_ms,
            end_ms=end,
            duration_ms=max(0, now - self._start_ms - self._paused_ms),
            stacks=self._stacks,
            counts=self._counts,
            num_times_sampled=self._ticks,
            threads_seen=self._threads_seen,
            folded_stacks=self._folded,
            memory_bytes=self.memory_bytes(),
            table=self._table,
        )
        if len(self._table) * _POSITION_BYTES > self._memory_limit_bytes // 2:
            self._table = FrameTable()  # the frame cache outgrew half the bound: start it afresh
        self._excluded = {ident: True for ident in self._agent_threads}
        self._reset(now)
        return aggregate

    @property
    def ticks(self) -> int:
        """Ticks in the current interval."""
        return self._ticks
