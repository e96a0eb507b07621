"""The rules of the CPU-only estimate: which frames are waiting, by name, and what they cover."""

from __future__ import annotations

from typing import Optional

import pytest

from codeguru_agent.viewer.model import CallTree
from codeguru_agent.viewer.waiting import WAITING_RULES, rule_for, waiting_rules

RULE_NAMES = [rule.name for rule in WAITING_RULES]


@pytest.mark.parametrize(
    ("frame", "rule"),
    [
        ("<Sleep>", "sleeping"),
        ("time:sleep", "sleeping"),
        ("asyncio.tasks:sleep", "sleeping"),
        ("<queue.get>", "queue waits"),
        ("queue:Queue:get", "queue waits"),
        ("asyncio.queues:Queue:get", "queue waits"),
        ("threading:Condition:wait", "lock and condition waits"),
        ("threading:Event:wait", "lock and condition waits"),
        ("threading:Thread:join", "lock and condition waits"),
        ("asyncio.locks:Lock:acquire", "lock and condition waits"),
        ("concurrent.futures._base:Future:result", "lock and condition waits"),
        ("selectors:EpollSelector:select", "select, poll and epoll"),
        ("selectors:DefaultSelector:select", "select, poll and epoll"),
        ("select:select", "select, poll and epoll"),
        ("socket:socket:recv_into", "socket reads"),
        ("socket:SocketIO:readinto", "socket reads"),
        ("ssl:SSLSocket:read", "socket reads"),
        ("socket:socket:accept", "socket reads"),
        ("<await asyncio.sleep>", "awaiting tasks"),
        ("concurrent.futures.thread:_worker", "idle thread-pool workers"),
        ("app.orders:price", None),
        ("app.queue:Queue:get_price", None),
        ("threading:Thread:run", None),
        ("socket:socket:sendall", None),
        ("app.sleep:sleepy_function", None),
    ],
)
def test_frames_known_to_wait_are_named_by_their_rule(frame: str, rule: Optional[str]) -> None:
    found = rule_for(frame)

    assert (RULE_NAMES[found] if found is not None else None) == rule


def test_the_rules_have_distinct_names_the_page_can_list() -> None:
    assert len(set(RULE_NAMES)) == len(RULE_NAMES) >= 7


def test_a_waiting_frame_covers_what_it_calls_but_an_idle_worker_covers_only_itself() -> None:
    """The outermost wait names the samples below it: a condition wait inside Queue.get is a queue wait."""
    callgraph = {
        "children": {
            "selectors:EpollSelector:select": {"children": {"app.cb:on_read": {"counts": {"WALL_TIME": 1}}}},
            "queue:Queue:get": {"children": {"threading:Condition:wait": {"counts": {"WALL_TIME": 3}}}},
            "concurrent.futures.thread:_worker": {
                "counts": {"WALL_TIME": 5},
                "children": {"app.jobs:run": {"counts": {"WALL_TIME": 2}}},
            },
        }
    }
    tree = CallTree([callgraph])

    rules = waiting_rules(tree)

    by_name = {tree.names[i]: (RULE_NAMES[rules[i]] if rules[i] >= 0 else None) for i in range(1, len(tree))}
    assert by_name == {
        "concurrent.futures.thread:_worker": "idle thread-pool workers",
        "app.jobs:run": None,
        "selectors:EpollSelector:select": "select, poll and epoll",
        "app.cb:on_read": "select, poll and epoll",
        "queue:Queue:get": "queue waits",
        "threading:Condition:wait": "queue waits",
    }
