"""The sampler on real threads: names, lines, reuse of unchanged stacks, bounds, synthetic frames."""

from __future__ import annotations

import socket
import sys
import threading
import time
import types
import weakref
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Tuple

import pytest

from codeguru_agent.config import AgentConfig
from codeguru_agent.reporting.document import Frame, profile_of
from codeguru_agent.sampling.sampler import Sampler
from support.waiting import wait_until

Stacks = Dict[Tuple[Frame, ...], int]


def names(stack: Tuple[Frame, ...]) -> List[str]:
    return [frame.name for frame in stack]


def sampled(sampler: Sampler, ticks: int = 1) -> Stacks:
    for _ in range(ticks):
        sampler.sample()
    return dict(profile_of(sampler.seal()).stacks)


def thread_stacks(stacks: Stacks, function: str) -> Stacks:
    """Only the stacks that pass through a frame named ``...:function``."""
    return {s: c for s, c in stacks.items() if any(f.name.endswith(":" + function) for f in s)}


def only_thread_config(name: str) -> AgentConfig:
    """A configuration that excludes every thread but the one with this name."""
    return AgentConfig(excluded_threads=frozenset(t.name for t in threading.enumerate() if t.name != name))


def only_thread(name: str) -> Sampler:
    """A sampler that ignores every thread but the one with this name."""
    return Sampler(only_thread_config(name))


@contextmanager
def running(target: Callable[..., object], *args: object, name: str) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        thread.join(10)


class Parker:
    def park(self, depth: int, ready: threading.Event, release: threading.Event) -> None:
        if depth:
            self.park(depth - 1, ready, release)
            return
        ready.set()
        release.wait()


def test_parked_threads_are_counted_once_per_tick_with_class_and_method_names() -> None:
    ready = [threading.Event() for _ in range(3)]
    release = threading.Event()
    threads = [
        threading.Thread(target=Parker().park, args=(5, r, release), name=f"parker-{i}") for i, r in enumerate(ready)
    ]
    for thread in threads:
        thread.start()
    try:
        for event in ready:
            assert event.wait(5)
        others = {t.name for t in threading.enumerate() if not t.name.startswith("parker-")}
        sampler = Sampler(AgentConfig(excluded_threads=frozenset(others)))
        stacks = sampled(sampler, ticks=10)
    finally:
        release.set()
        for thread in threads:
            thread.join(5)
    assert sum(stacks.values()) == 30
    (stack,) = thread_stacks(stacks, "park")
    park_frames = [f for f in stack if f.name == "test_sampler:Parker:park"]
    assert len(park_frames) == 6
    assert all(f.file == __file__ and isinstance(f.line, int) for f in park_frames)
    assert stack[0].name.startswith("threading:Thread:")  # the root comes first


def test_a_tick_that_stands_for_several_intervals_counts_each_thread_that_many_times() -> None:
    """A tick the governor spaced out weighs the configured intervals it spans, parked or walked."""
    ready, release = threading.Event(), threading.Event()
    with running(Parker().park, 3, ready, release, name="weighed"):
        ready.wait(10)
        sampler = only_thread("weighed")
        sampler.sample(1)
        sampler.sample(3)
        sampler.sample(2)  # parked by now: counted without a walk, with its weight too
        aggregate = sampler.seal()
        release.set()
    stacks = thread_stacks(dict(profile_of(aggregate).stacks), "park")
    assert list(stacks.values()) == [6]
    assert (aggregate.num_times_sampled, aggregate.ticks, aggregate.threads_seen) == (6, 3, 6)


class Mover:
    """A thread's work in two places: it waits in ``first`` until :meth:`move_on`, then in ``second``."""

    def __init__(self) -> None:
        self.at_first, self.at_second = threading.Event(), threading.Event()
        self._step, self.done = threading.Event(), threading.Event()

    def work(self) -> None:
        self.first()
        self.second()

    def first(self) -> None:
        self.at_first.set()
        self._step.wait()

    def second(self) -> None:
        self.at_second.set()
        self.done.wait()

    def move_on(self) -> None:
        self._step.set()
        assert self.at_second.wait(5)


def caller_of_leaf(stack: Tuple[Frame, ...]) -> str:
    return names(stack)[-3].rsplit(":", 1)[1]


def test_a_stack_that_changes_between_ticks_is_walked_again() -> None:
    mover = Mover()
    with running(mover.work, name="changer"):
        assert mover.at_first.wait(5)
        sampler = only_thread("changer")
        sampler.sample()
        mover.move_on()
        stacks = sampled(sampler)
        mover.done.set()
    assert sorted(caller_of_leaf(s) for s in stacks) == ["first", "second"]


def test_a_parked_thread_is_counted_for_every_tick_it_stayed_when_it_moves_on() -> None:
    """A parked thread's ticks are counted when it leaves (lazily): none is lost, none counted twice,
    with weighted ticks and new limits in between."""
    mover = Mover()
    with running(mover.work, name="mover"):
        assert mover.at_first.wait(5)
        config = only_thread_config("mover")
        sampler = Sampler(config)
        for weight in (1, 1, 2):  # parked from the second tick on
            sampler.sample(weight)
        sampler.set_limits(config)  # as the service's answer does: seen afresh
        for weight in (1, 3, 1, 1):  # parked again from the second tick on, then it moves
            sampler.sample(weight)
        mover.move_on()
        for _ in range(4):
            sampler.sample()
        aggregate = sampler.seal()
        mover.done.set()
    by_caller = {caller_of_leaf(s): c for s, c in profile_of(aggregate).stacks.items()}
    assert by_caller == {"first": 10, "second": 4}
    assert aggregate.num_times_sampled == sum(by_caller.values())


class Payload:
    """A local whose lifetime the tests watch: it lives as long as its function's frame."""


def test_a_frame_sampled_while_it_runs_frees_its_locals_when_it_returns() -> None:
    spinning, stop = threading.Event(), [False]
    payload_ref: List[weakref.ref[Payload]] = []

    def work() -> None:
        payload = Payload()  # closed over by nothing: only this frame keeps it
        payload_ref.append(weakref.ref(payload))
        spinning.set()
        while not stop[0]:  # no call: this frame is the thread's top frame
            pass

    with running(work, name="spinner") as thread:
        assert spinning.wait(5)
        sampler = only_thread("spinner")
        sampler.sample()
        stop[0] = True
        thread.join(5)
    assert payload_ref[0]() is None  # not an interval later, when the next tick would let go
    assert sum(sampler.seal().counts) == 1


def test_a_parked_frame_is_let_go_at_the_first_tick_after_it_returns() -> None:
    gate = threading.Lock()
    gate.acquire()
    parked = threading.Event()
    payload_ref: List[weakref.ref[Payload]] = []

    def wait_at_the_gate() -> None:
        payload = Payload()
        payload_ref.append(weakref.ref(payload))
        parked.set()
        gate.acquire()  # a C call: this frame is the thread's top frame, at one offset

    with running(wait_at_the_gate, name="gatekeeper") as thread:
        assert parked.wait(5)
        sampler = only_thread("gatekeeper")
        for _ in range(3):  # the second tick finds it where the first did: from then on it is held
            sampler.sample()
        gate.release()
        thread.join(5)
    held_until_the_next_tick = payload_ref[0]() is not None
    sampler.sample()
    assert held_until_the_next_tick and payload_ref[0]() is None
    aggregate = sampler.seal()
    assert sum(aggregate.counts) == 3 and len(aggregate.stacks) == 1


def test_a_generator_resumed_by_another_caller_is_not_mistaken_for_the_old_stack() -> None:
    """The generator's frame object and offset are the same on both ticks; its caller is not."""
    gate = threading.Lock()
    gate.acquire()
    blocked = threading.Event()

    def producer() -> Iterator[int]:
        while True:
            blocked.set()
            gate.acquire()  # a C call: the generator itself is the thread's top Python frame
            yield 1

    generator = producer()
    go_on = threading.Event()

    def caller_one() -> None:
        next(generator)

    def caller_two() -> None:
        next(generator)

    def work() -> None:
        caller_one()
        go_on.wait()
        caller_two()

    with running(work, name="gen-thread"):
        assert blocked.wait(5)
        sampler = only_thread("gen-thread")
        sampler.sample()
        blocked.clear()
        gate.release()
        go_on.set()
        assert blocked.wait(5)
        # the thread is now inside caller_two, blocked in the generator at the same instruction
        stacks = sampled(sampler)
        gate.release()
    callers = sorted(n.rsplit(":", 1)[1] for s in stacks for n in names(s) if n.endswith(("caller_one", "caller_two")))
    assert callers == ["caller_one", "caller_two"]


def test_coroutines_are_named_and_never_reuse_a_stale_stack() -> None:
    import asyncio

    inside = threading.Event()
    release = threading.Event()

    async def handler() -> None:
        inside.set()
        release.wait()  # blocks the loop on purpose: the coroutine is the top Python frame

    def work() -> None:
        asyncio.run(handler())

    with running(work, name="loop-thread"):
        assert inside.wait(5)
        stacks = sampled(only_thread("loop-thread"), ticks=3)
        release.set()
    (stack,) = stacks
    assert any(n.endswith(":handler") for n in names(stack))
    assert stacks[stack] == 3


def test_deep_stacks_keep_the_leaf_end_and_mark_the_cut() -> None:
    ready, release = threading.Event(), threading.Event()

    def recurse(depth: int) -> None:
        if depth:
            recurse(depth - 1)
        else:
            ready.set()
            release.wait()

    with running(recurse, 60, name="deep"):
        assert ready.wait(5)
        others = {t.name for t in threading.enumerate() if t.name != "deep"}
        sampler = Sampler(AgentConfig(max_stack_depth=10, excluded_threads=frozenset(others)))
        (stack,) = sampled(sampler)
        release.set()
    assert len(stack) == 11
    assert stack[0].name == "<Truncated>"
    assert stack[-1].name == "threading:Event:wait" or stack[-1].name.startswith("threading:")
    assert any(n.endswith(":recurse") for n in names(stack))


def test_sleeping_threads_get_the_official_sleep_frame_without_reading_source() -> None:
    stop = threading.Event()

    def nap() -> None:
        while not stop.is_set():
            time.sleep(0.005)

    with running(nap, name="napper"):
        stacks = sampled(only_thread("napper"), ticks=5)
        stop.set()
    leaves = {names(s)[-1] for s in stacks}
    assert "<Sleep>" in leaves
    sleep_stack = next(s for s in stacks if names(s)[-1] == "<Sleep>")
    assert names(sleep_stack)[-2].endswith(":nap")


def test_without_synthetic_leaves_a_leaf_gets_its_sleep_frame_once_they_are_on() -> None:
    """The runner's first sample, taken before it has imported ``dis``: the leaf is plain then, and
    is looked at again (not remembered as childless) once synthetic leaves are on."""
    stop = threading.Event()
    ready = threading.Event()

    def doze() -> None:
        ready.set()
        while not stop.is_set():
            time.sleep(0.2)

    sleep_line = doze.__code__.co_firstlineno + 3
    with running(doze, name="dozer") as thread:
        assert ready.wait(5)
        wait_until(lambda: sys._current_frames()[thread.ident].f_lineno == sleep_line, 5, "the dozer in time.sleep")
        sampler = only_thread("dozer")
        sampler.synthetic_leaves = False
        sampler.sample()
        sampler.synthetic_leaves = True
        sampler.sample()
        stacks = dict(profile_of(sampler.seal()).stacks)
        stop.set()
    by_leaf = {names(stack)[-1]: count for stack, count in stacks.items()}
    assert by_leaf.get("<Sleep>") == 1, by_leaf
    assert sum(count for leaf, count in by_leaf.items() if leaf.endswith(":doze")) == 1, by_leaf


def test_agent_threads_excluded_and_max_threads_bounds_the_walk() -> None:
    """Each tick counts ``max_threads`` samples: the threads it leaves out are not counted for it,
    parked or not."""
    release = threading.Event()
    threads = [threading.Thread(target=release.wait, name=f"idle-{i}", daemon=True) for i in range(12)]
    for thread in threads:
        thread.start()
    try:
        sampler = Sampler(AgentConfig(max_threads=4))
        sampler.exclude_thread(threading.get_ident())
        for _ in range(30):  # each thread is left out of most ticks, and parked in some
            sampler.sample()
        aggregate = sampler.seal()
    finally:
        release.set()
        for thread in threads:
            thread.join(5)
    assert aggregate.threads_seen == sum(aggregate.counts) == 30 * 4
    profile = profile_of(aggregate)
    assert not any("test_agent_threads_excluded" in f.name for s in profile.stacks for f in s)


def test_exec_and_string_code_never_break_a_sample() -> None:
    ready, release = threading.Event(), threading.Event()
    namespace: Dict[str, object] = {"ready": ready, "release": release}
    exec(compile("def dynamic():\n    ready.set()\n    release.wait()\n", "<string>", "exec"), namespace)
    with running(namespace["dynamic"], name="dynamic"):  # type: ignore[arg-type]
        assert ready.wait(5)
        (stack,) = sampled(only_thread("dynamic"))
        release.set()
    assert "<string>:dynamic" in names(stack)


def test_botocore_calls_get_an_operation_frame_above_api_call() -> None:
    import boto3

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    url = "http://127.0.0.1:%d" % server.getsockname()[1]
    client = boto3.client(
        "codeguruprofiler",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=__import__("botocore.config").config.Config(
            read_timeout=5, connect_timeout=2, retries={"max_attempts": 1}
        ),
    )

    def call() -> None:
        try:
            client.configure_agent(profilingGroupName="G")
        except Exception:
            pass

    with running(call, name="boto-caller"):
        connection, _ = server.accept()  # the request is in flight and will not be answered
        stacks = sampled(only_thread("boto-caller"))
        connection.close()
        server.close()
    (stack,) = stacks
    frame_names = names(stack)
    operation = frame_names.index("botocore.client:CodeGuruProfiler:configure_agent")
    assert frame_names[operation + 1].endswith(":_api_call")


def test_the_memory_bound_folds_new_stacks_into_known_ancestors_and_counts_them() -> None:
    release = threading.Event()
    ready = threading.Barrier(9)

    def make(depth: int) -> Callable[[], None]:
        source = "def f%d():\n    ready.wait()\n    release.wait()\n" % depth
        namespace: Dict[str, object] = {"ready": ready, "release": release}
        exec(compile(source, f"/generated/mod{depth}.py", "exec"), namespace)
        return namespace["f%d" % depth]  # type: ignore[return-value]

    threads = [threading.Thread(target=make(i), name=f"gen-{i}", daemon=True) for i in range(8)]
    for thread in threads:
        thread.start()
    ready.wait(5)
    try:
        others = {t.name for t in threading.enumerate() if not t.name.startswith("gen-")}
        sampler = Sampler(AgentConfig(memory_limit_mb=0.004, excluded_threads=frozenset(others)))
        for _ in range(3):
            sampler.sample()
        aggregate = sampler.seal()
    finally:
        release.set()
        for thread in threads:
            thread.join(5)
    assert aggregate.folded_stacks > 0
    assert sum(aggregate.counts) == 24  # no sample lost, only folded
    assert len(aggregate.stacks) < 8


def test_a_stack_over_the_bound_is_counted_on_its_deepest_known_ancestor() -> None:
    sampler = Sampler(AgentConfig())
    recursion = tuple(range(100, 3100))  # frame ids, leaf first: a recursion 3,000 frames deep
    sampler._add_stack(recursion[2000:], 0)  # an ancestor 1,000 frames deep
    deepest = sampler._add_stack(recursion[5:], 0)
    # same leaf and length as the ancestor at cut 3, but another stack: must not be taken for it
    sampler._add_stack((recursion[3],) + tuple(range(90_000, 90_000 + len(recursion) - 4)), 0)
    assert sampler._fold(recursion, folded=False) == deepest
    unknown = sampler._fold((1, 2, 3), folded=False)
    assert sampler._stacks[unknown] == (sampler._table.truncated_id,)
    assert sampler.seal().folded_stacks == 2


@pytest.mark.skipif(sys.version_info < (3, 11), reason="co_qualname is new in 3.11")
def test_nested_classes_keep_their_qualified_owner() -> None:
    ready, release = threading.Event(), threading.Event()

    class Outer:
        class Inner:
            def method(self) -> None:
                ready.set()
                release.wait()

    with running(Outer.Inner().method, name="nested"):
        assert ready.wait(5)
        (stack,) = sampled(only_thread("nested"))
        release.set()
    assert any(n.endswith("Outer.Inner:method") for n in names(stack))


def test_a_tick_leaves_no_cyclic_garbage_behind() -> None:
    """The sampler's own frame must never end up in a cycle with other threads' frames.

    Such cycles, collected while those threads still run, corrupt them on CPython 3.12 (seen as
    ``SystemError: deallocated BytesIO object has exported buffers`` and hung multiprocessing pools).
    """
    import gc

    ready, release = threading.Event(), threading.Event()
    with running(Parker().park, 4, ready, release, name="parked-for-gc"):
        assert ready.wait(5)
        sampler = Sampler(AgentConfig())
        sampler.exclude_thread(threading.get_ident())  # as the agent excludes its own thread
        sampler.sample()  # the first tick resolves names and may build caches
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds unreachable stays in gc.garbage
        try:
            for _ in range(20):
                sampler.sample()
            gc.collect()
            garbage_frames = [
                item.f_code.co_name
                for item in gc.garbage
                if isinstance(item, types.FrameType) and item.f_code.co_name in ("sample", "park")
            ]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        release.set()
    # Only the frames involved: other threads of the test process may leave garbage of their own.
    assert garbage_frames == []
