"""What the task and greenlet samplers share: the sampler's side of a unit of work, and the bound.

A unit of work (an asyncio task, a gevent greenlet) is sampled like a thread of its own: one stack
per unit per tick, counted through the sampler's own table and counts, on the sampling thread.
"""

import types
from typing import Final, Iterator, List, Optional, Protocol, Sequence, Tuple, TypeVar

from codeguru_agent.host import forksafe
from codeguru_agent.sampling.frames import Frame, encodable

T = TypeVar("T")
NAME_CHARS: Final = 80
"""The longest unit name kept in a frame: a program that names tasks after requests gets short keys."""


class UnitCounter(Protocol):
    """The sampler's side: frame ids and stack counts in its current interval."""

    @property
    def max_depth(self) -> int: ...

    @property
    def table(self) -> object:
        """The frame table the ids belong to: a new one (after a seal) makes every cached id stale."""

    @property
    def truncated_id(self) -> int: ...

    def synthetic_id(self, frame: Frame) -> int:
        """The id of a synthetic frame, or -1 if the memory bound has no room for it."""

    def frame_ids(self, frames: Sequence[types.FrameType]) -> Optional[List[int]]:
        """The position ids of these frames, in the same order; None if the bound has no room."""

    def stack_below(self, frame: types.FrameType) -> Optional[Tuple[int, ...]]:
        """``frame`` and its callers as a stack key, leaf first; None if the bound has no room."""

    def mark_thread(self, ident: int, top: types.FrameType, start: types.FrameType, frame_id: int) -> None:
        """Insert ``frame_id`` into this tick's sample of thread ``ident`` where ``start`` begins:
        the running task's outermost frame."""

    def count_unit(self, key: Sequence[int], weight: int) -> None:
        """Count ``weight`` samples on this stack key (leaf first)."""


def unit_frame(kind: str, name: str) -> Frame:
    """``<task name>``, ``<greenlet name>``: short, and free of the ``:`` the call-graph key splits on."""
    if len(name) > NAME_CHARS:
        name = name[: NAME_CHARS - 3] + "..."
    return Frame(f"<{kind} {encodable(name).replace(':', '.')}>")


def weighted_subset(units: List[T], bound: int) -> Iterator[Tuple[T, int]]:
    """Each unit with weight 1, or above ``bound`` a random subset of ``bound`` units whose weights
    add up to ``len(units)``, as each stands for the ones not walked."""
    total = len(units)
    if total <= bound:
        for unit in units:
            yield unit, 1
        return
    with forksafe.agent_import():  # only when a program runs more units than the bound, not before the first sample
        import random

    chosen = random.sample(units, bound)
    for index, unit in enumerate(chosen):
        yield unit, (index + 1) * total // bound - index * total // bound
