"""Which frames are known to be waiting rather than running: the rules of the CPU-only estimate.

The agent samples wall-clock time, so a thread blocked in ``select`` counts the same as one
computing. The page's "CPU only" view leaves out the samples these rules recognise as waiting. It
is an estimate: a wait the rules do not know still counts, and C code that spins is not a wait.
Rules match frame keys (``module:Class:function``) as the sampler writes them.
"""

from __future__ import annotations

import re
from typing import Final, List, NamedTuple, Optional, Pattern, Sequence

from codeguru_agent.viewer.model import CallTree


class WaitingRule(NamedTuple):
    """Frames whose samples are waiting: every sample at or below the frame (``subtree``), or only
    the frame's own samples (``self_only``: the frame waits in C code but calls real work)."""

    name: str
    pattern: Pattern[str]
    self_only: bool = False


WAITING_RULES: Final[Sequence[WaitingRule]] = (
    WaitingRule("sleeping", re.compile(r"<Sleep>$|time:sleep$|asyncio\.tasks:sleep$")),
    WaitingRule(
        "queue waits",
        re.compile(r"<queue\.get>$|(?:queue|asyncio\.queues|multiprocessing\.queues):(?:\w*Queue):get$"),
    ),
    WaitingRule(
        "lock and condition waits",
        re.compile(
            r"(?:threading|asyncio\.locks|multiprocessing\.synchronize):\w+:(?:wait|wait_for|acquire)$"
            r"|threading:Thread:(?:join|_wait_for_tstate_lock)$"
            r"|concurrent\.futures\._base:(?:Future:result|wait|as_completed)$"
        ),
    ),
    WaitingRule(
        "select, poll and epoll",
        re.compile(r"selectors:\w+:select$|select:(?:\w+:)?(?:select|poll|epoll)$"),
    ),
    WaitingRule(
        "socket reads",
        re.compile(r"(?:socket|ssl):\w+:(?:recv\w*|read\w*|accept)$"),
    ),
    WaitingRule("awaiting tasks", re.compile(r"<await\b.*>$"), self_only=True),
    WaitingRule(
        "idle thread-pool workers",
        re.compile(r"concurrent\.futures\.thread:_worker$|multiprocessing\.pool:worker$"),
        self_only=True,
    ),
)
"""The rules in the order the page lists them; the first rule that matches a frame names its wait."""


def rule_for(frame_name: str) -> Optional[int]:
    """The index in :data:`WAITING_RULES` of the first rule matching ``frame_name``, if any."""
    for index, rule in enumerate(WAITING_RULES):
        if rule.pattern.search(frame_name):
            return index
    return None


def waiting_rules(tree: CallTree) -> List[int]:
    """Per frame of ``tree``, the rule that makes its own samples waiting, or -1 if they are running.

    A frame inside a ``subtree`` rule's frame waits by that rule, the outermost one naming the
    wait (the condition wait inside ``Queue.get`` is a queue wait), so the page can say which rule
    hid what. One pass in depth-first order: parents come before their children.
    """
    own: List[int] = [-1] * len(tree)
    inherited: List[int] = [-1] * len(tree)
    for index in range(1, len(tree)):
        rule = rule_for(tree.names[index])
        above = inherited[tree.parents[index]]
        if above >= 0 or rule is None:
            own[index] = inherited[index] = above
        else:
            own[index] = rule
            inherited[index] = -1 if WAITING_RULES[rule].self_only else rule
    return own
