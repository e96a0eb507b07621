"""asyncio tasks sampled as units of work, in-process on a real loop thread, on every Python 3.9+.

Each test runs a loop on its own thread, waits until its tasks are parked where the test wants them
(events, not sleeps), samples a few ticks and reads the sealed stacks.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import weakref
from contextlib import contextmanager
from typing import Any, Callable, Coroutine, Dict, Iterator, List, Tuple

import pytest

from codeguru_agent.config import AgentConfig
from codeguru_agent.reporting.document import Frame, profile_of
from codeguru_agent.sampling import tasks as task_sampling
from codeguru_agent.sampling.sampler import Aggregate, Sampler

Stacks = Dict[Tuple[Frame, ...], int]
WAIT_S = 10.0


def short(name: str) -> str:
    """``module:Class:function`` -> ``function``; synthetic frames as they are."""
    return name if name.startswith("<") else name.rsplit(":", 1)[-1]


def unit_paths(stacks: Stacks) -> Dict[Tuple[str, ...], int]:
    """Every stack that holds a task frame, from ``_run_once`` (or the root) down, short names."""
    paths: Dict[Tuple[str, ...], int] = {}
    for stack, count in stacks.items():
        names = [short(frame.name) for frame in stack]
        if not any(name.startswith("<task ") for name in names):
            continue
        start = names.index("_run_once") if "_run_once" in names else 0
        path = tuple(names[start:])
        paths[path] = paths.get(path, 0) + count
    return paths


@contextmanager
def loop_thread(main: Callable[[threading.Event, threading.Event], Coroutine[Any, Any, Any]]) -> Iterator[None]:
    """Run ``main(ready, release)`` on a loop in its own thread until the test is done with it."""
    ready, release = threading.Event(), threading.Event()
    errors: List[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(main(ready, release))
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)
            ready.set()

    thread = threading.Thread(target=run, name="loop", daemon=True)
    thread.start()
    assert ready.wait(WAIT_S), "the loop never got ready"
    try:
        yield
    finally:
        release.set()
        thread.join(WAIT_S)
    assert not errors, errors


async def until(release: threading.Event) -> None:
    """Park the calling task on a future until the test releases it."""
    while not release.is_set():
        await asyncio.sleep(0.005)


def sample(ticks: int = 5, **options: Any) -> Aggregate:
    sampler = Sampler(AgentConfig(**options))
    sampler.synthetic_leaves = True
    for _ in range(ticks):
        sampler.sample()
    return sampler.seal()


async def backend(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "answer"


async def fetch_user() -> str:
    return await backend(100)


async def fetch_orders() -> str:
    return await backend(100)


async def fetch_prices() -> str:
    return await backend(100)


async def handler() -> None:
    await fetch_user()


def test_each_suspended_task_is_a_sample_under_the_loop_base_a_task_frame_and_its_await_chain() -> None:
    async def main(ready: threading.Event, release: threading.Event) -> None:
        named = asyncio.ensure_future(handler())
        named.set_name("checkout")
        default = asyncio.ensure_future(handler())
        await asyncio.sleep(0.01)
        ready.set()
        await until(release)
        named.cancel()
        default.cancel()

    with loop_thread(main):
        aggregate = sample(ticks=4)
    paths = unit_paths(profile_of(aggregate).stacks)
    chain = ("handler", "fetch_user", "backend", "sleep", "<await sleep>")
    by_task = {path[1]: count for path, count in paths.items() if path[2:] == chain and path[0] == "_run_once"}
    assert by_task.get("<task checkout>") == 4, paths  # the program's own name is kept
    assert by_task.get("<task handler>") == 4, paths  # a default name: the coroutine's qualified name
    assert aggregate.task_samples >= 8 and aggregate.unit_errors == 0


def test_a_gather_of_three_coroutines_shows_three_children_under_the_parents_frames() -> None:
    async def handle_request() -> None:
        await asyncio.gather(fetch_user(), fetch_orders(), fetch_prices())

    async def main(ready: threading.Event, release: threading.Event) -> None:
        request = asyncio.ensure_future(handle_request())
        request.set_name("request")
        await asyncio.sleep(0.01)
        ready.set()
        await until(release)
        request.cancel()

    with loop_thread(main):
        paths = unit_paths(profile_of(sample(ticks=3)).stacks)
    under_parent = {
        path[3:5]: count
        for path, count in paths.items()
        if path[:3] == ("_run_once", "<task request>", "handle_request")
    }
    assert under_parent == {
        ("<task fetch_user>", "fetch_user"): 3,
        ("<task fetch_orders>", "fetch_orders"): 3,
        ("<task fetch_prices>", "fetch_prices"): 3,
    }, paths
    assert not any(path[1] == "<task request>" and path[-1] == "<await gather>" for path in paths), (
        "the parent is no leaf"
    )


def test_an_awaited_task_appears_below_the_task_awaiting_it() -> None:
    async def parent() -> None:
        await asyncio.ensure_future(fetch_orders())  # named after its qualified name, <locals> left out

    async def main(ready: threading.Event, release: threading.Event) -> None:
        task = asyncio.ensure_future(parent())
        await asyncio.sleep(0.01)
        ready.set()
        await until(release)
        task.cancel()

    with loop_thread(main):
        paths = unit_paths(profile_of(sample(ticks=2)).stacks)
    assert (
        paths.get(
            (
                "_run_once",
                "<task test_an_awaited_task_appears_below_the_task_awaiting_it.parent>",
                "parent",
                "<task fetch_orders>",
                "fetch_orders",
                "backend",
                "sleep",
                "<await sleep>",
            )
        )
        == 2
    ), paths


@pytest.mark.skipif(sys.version_info < (3, 11), reason="TaskGroup is new in Python 3.11")
def test_task_group_children_appear_below_the_task_that_opened_the_group() -> None:
    async def handle_batch() -> None:
        async with asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
            group.create_task(fetch_user())
            group.create_task(fetch_prices())

    async def main(ready: threading.Event, release: threading.Event) -> None:
        batch = asyncio.ensure_future(handle_batch())
        batch.set_name("batch")
        await asyncio.sleep(0.01)
        ready.set()
        await until(release)
        batch.cancel()

    with loop_thread(main):
        paths = unit_paths(profile_of(sample(ticks=2)).stacks)
    under_group = {
        path[4]: count
        for path, count in paths.items()
        if path[:4] == ("_run_once", "<task batch>", "handle_batch", "__aexit__")
    }
    assert under_group == {"<task fetch_user>": 2, "<task fetch_prices>": 2}, paths


def test_a_running_task_is_seen_once_in_the_threads_real_stack_marked_by_its_task_frame() -> None:
    inside = threading.Event()

    async def crunch(release: threading.Event) -> None:
        inside.set()
        release.wait()  # blocks the loop in this coroutine, as CPU work would, but lets the GIL go

    async def main(ready: threading.Event, release: threading.Event) -> None:
        idle = asyncio.ensure_future(fetch_user())
        await asyncio.sleep(0.01)
        ready.set()
        task = asyncio.ensure_future(crunch(release))
        task.set_name("cruncher")
        await task
        idle.cancel()

    with loop_thread(main):
        assert inside.wait(WAIT_S)
        aggregate = sample(ticks=3)
    paths = unit_paths(profile_of(aggregate).stacks)
    running = [path for path in paths if "<task cruncher>" in path]
    assert len(running) == 1, paths
    path = running[0]
    assert path[path.index("<task cruncher>") + 1] == "crunch" and "_run" in path[: path.index("<task cruncher>")]
    assert paths[path] == 3  # the loop thread's own three samples, not counted again as a task
    # the idle task is still a task sample, under the loop's base up to _run_once, and so is main,
    # which awaits the running task: below it, as its parent
    assert paths.get(("_run_once", "<task fetch_user>", "fetch_user", "backend", "sleep", "<await sleep>")) == 3, paths
    assert aggregate.task_samples == 3, "fetch_user only: main awaits the running task"


def test_an_async_generator_in_the_chain_is_followed_through_its_asend_object() -> None:
    async def rows() -> Any:
        yield 1
        await backend(100)
        yield 2

    async def consume() -> None:
        async for _ in rows():
            pass

    async def main(ready: threading.Event, release: threading.Event) -> None:
        task = asyncio.ensure_future(consume())
        task.set_name("consumer")
        await asyncio.sleep(0.01)
        ready.set()
        await until(release)
        task.cancel()

    with loop_thread(main):
        paths = unit_paths(profile_of(sample(ticks=1)).stacks)
    assert ("_run_once", "<task consumer>", "consume", "rows", "backend", "sleep", "<await sleep>") in paths, paths


def test_more_tasks_than_the_bound_are_sampled_as_a_weighted_subset() -> None:
    async def main(ready: threading.Event, release: threading.Event) -> None:
        waiting = [asyncio.ensure_future(fetch_user()) for _ in range(50)]
        await asyncio.sleep(0.01)
        ready.set()
        await until(release)
        for task in waiting:
            task.cancel()

    with loop_thread(main):
        aggregate = sample(ticks=3, max_tasks=7)
    paths = unit_paths(profile_of(aggregate).stacks)
    assert aggregate.task_samples == 3 * 51, "7 walked a tick, weighted to stand for all 51 (main's task too)"
    assert sum(paths.values()) == 3 * 51
    assert sum(count for path, count in paths.items() if "<task fetch_user>" in path) >= 3 * 40


def test_a_task_still_awaiting_the_same_future_is_not_walked_again() -> None:
    async def main(ready: threading.Event, release: threading.Event) -> None:
        waiting = [asyncio.ensure_future(fetch_user()) for _ in range(20)]
        await asyncio.sleep(0.01)
        ready.set()
        await until(release)
        for task in waiting:
            task.cancel()

    sampler = Sampler(AgentConfig())
    with loop_thread(main):
        for _ in range(4):
            sampler.sample()
        walker = sampler._tasks
        assert walker is not None
        assert walker.reused >= 3 * 20, (walker.walked, walker.reused)
        assert walker.walked < 2 * 20 + 10  # main's task and the first sight of each are walked


def test_task_sampling_can_be_turned_off() -> None:
    async def main(ready: threading.Event, release: threading.Event) -> None:
        task = asyncio.ensure_future(fetch_user())
        await asyncio.sleep(0.01)
        ready.set()
        await until(release)
        task.cancel()

    with loop_thread(main):
        aggregate = sample(ticks=2, asyncio_tasks=False)
    assert unit_paths(profile_of(aggregate).stacks) == {} and aggregate.task_samples == 0


@pytest.mark.skipif(sys.version_info < (3, 13), reason="loops are read from run_forever's frame from 3.13 on")
def test_without_an_exported_registry_tasks_come_from_all_tasks_of_each_running_loop() -> None:
    """The path Python 3.14 takes (its registry is no longer a module attribute)."""

    class NoRegistry:
        all_tasks = staticmethod(asyncio.all_tasks)

    async def main(ready: threading.Event, release: threading.Event) -> None:
        task = asyncio.ensure_future(fetch_prices())
        await asyncio.sleep(0.01)
        ready.set()
        await until(release)
        task.cancel()

    with loop_thread(main):
        threads = sys._current_frames()
        threads.pop(threading.get_ident())
        found = task_sampling._snapshot(NoRegistry(), threads)
        names = sorted(task.get_coro().__qualname__ for task in found)
        del found, threads
    assert names == [
        "fetch_prices",
        "test_without_an_exported_registry_tasks_come_from_all_tasks_of_each_running_loop.<locals>.main",
    ]


def test_uvloop_tasks_are_sampled_once_a_tick_has_seen_the_loop_run_one() -> None:
    """uvloop's loop has no ``_thread_id``: its thread is the one whose stack runs one of its tasks."""
    uvloop = pytest.importorskip("uvloop")
    inside, release = threading.Event(), threading.Event()

    async def block() -> None:
        inside.set()
        release.wait()  # the loop runs this task while the sampler looks

    async def main() -> None:
        idle = asyncio.ensure_future(fetch_orders())
        await asyncio.sleep(0.01)
        await asyncio.ensure_future(block())
        idle.cancel()

    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        assert inside.wait(WAIT_S)
        aggregate = sample(ticks=2)
    finally:
        release.set()
        thread.join(WAIT_S)
        loop.close()
    paths = unit_paths(profile_of(aggregate).stacks)
    waiting = ("<task fetch_orders>", "fetch_orders", "backend", "sleep", "<await sleep>")
    assert sum(count for path, count in paths.items() if path[-5:] == waiting) == 2, paths


def test_finished_tasks_are_freed_and_their_chains_forgotten() -> None:
    references: List[weakref.ref] = []

    async def main(ready: threading.Event, release: threading.Event) -> None:
        tasks = [asyncio.ensure_future(fetch_user()) for _ in range(10)]
        references.extend(weakref.ref(task) for task in tasks)
        await asyncio.sleep(0.01)
        ready.set()
        await until(release)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        del tasks

    sampler = Sampler(AgentConfig())
    with loop_thread(main):
        for _ in range(3):
            sampler.sample()
    gc.collect()
    assert [reference() for reference in references] == [None] * 10
    sampler.sample()
    assert sampler._tasks is not None and sampler._tasks._chains == {}
