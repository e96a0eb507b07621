"""What tasks and greenlets add to a tick, and what greenlet tracking adds to a switch.

``python units.py``: prints a Markdown table. Task rows: a loop thread holds N tasks, each parked
three coroutines deep on a sleep; the figure is the sampling thread's CPU time for the task part
of one tick (``Sampler._sample_units``), median over many ticks, with the chains reused from the
last tick (cached: the steady state, nothing moved) and walked afresh (uncached: every task moved).
Greenlet rows: N greenlets parked on an event; and the CPU time of one greenlet switch without and
with the switch tracking the agent installs.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from typing import Any, Callable, List, Tuple

from codeguru_agent.config import AgentConfig
from codeguru_agent.sampling.sampler import Sampler

TICKS = 200
SWITCHES = 200_000


def median_us(run: Callable[[], None], before: Callable[[], None] = lambda: None, ticks: int = TICKS) -> float:
    samples: List[int] = []
    for _ in range(ticks):
        before()
        start = time.thread_time_ns()
        run()
        samples.append(time.thread_time_ns() - start)
    return statistics.median(samples) / 1000


async def level3() -> None:
    await asyncio.sleep(3600)


async def level2() -> None:
    await level3()


async def level1() -> None:
    await level2()


def other_threads() -> List[Tuple[int, Any]]:
    """This tick's (ident, frame) pairs, the benchmark's own thread left out (as the sampler does)."""
    frames = sys._current_frames()
    frames.pop(threading.get_ident())
    return list(frames.items())


def unit_cost_us(sampler: Sampler, forget: Callable[[], None] = lambda: None) -> float:
    """The median CPU time of the task and greenlet part of one tick, after a first tick."""
    items = other_threads()
    sampler._sample_units(items)
    return median_us(lambda: sampler._sample_units(items), before=forget)


def task_row(count: int, bound: int) -> Tuple[str, str, str]:
    """A loop thread parks ``count`` tasks three coroutines deep; the tick's cost, cached and not."""
    ready, release = threading.Event(), threading.Event()

    async def main() -> None:
        tasks = [asyncio.ensure_future(level1()) for _ in range(count)]
        await asyncio.sleep(0.05)
        ready.set()
        while not release.is_set():
            await asyncio.sleep(0.01)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    ready.wait()
    try:
        sampler = Sampler(AgentConfig(max_tasks=bound))
        cached = unit_cost_us(sampler)
        tasks = sampler._tasks
        assert tasks is not None
        uncached = unit_cost_us(sampler, forget=tasks._chains.clear)
    finally:
        release.set()
        thread.join()
    label = f"{count} tasks" + (f" (default bound {bound}: a weighted subset)" if bound < count else "")
    return (label, f"{cached:.0f}", f"{uncached:.0f}")


def task_rows() -> List[Tuple[str, str, str]]:
    return [task_row(10, 20), task_row(100, 110), task_row(1000, 1010), task_row(1000, 300)]


def switch_ns(greenlet: Any) -> float:
    """CPU time of one switch between two greenlets bouncing back and forth."""

    def bounce() -> None:
        while True:
            main.switch()

    main = greenlet.getcurrent()
    other = greenlet.greenlet(bounce)
    start = time.thread_time_ns()
    for _ in range(SWITCHES // 2):
        other.switch()
    return (time.thread_time_ns() - start) / SWITCHES


def parked_greenlets_row(greenlet: Any, count: int) -> Tuple[str, str, str]:
    parked = []
    for _ in range(count):
        unit = greenlet.greenlet(lambda: greenlet.getcurrent().parent.switch())
        unit.switch()  # started, parked in its first frame, recorded by the tracking
        parked.append(unit)
    cost = unit_cost_us(Sampler(AgentConfig(max_tasks=count + 10)))
    return (f"{len(parked)} parked greenlets (no cache)", f"{cost:.0f}", "")


def greenlet_rows() -> List[Tuple[str, str, str]]:
    try:
        import greenlet
    except ImportError:
        return [("greenlets", "greenlet not installed", "")]
    from codeguru_agent.sampling import greenlets

    untracked = statistics.median(switch_ns(greenlet) for _ in range(5))
    greenlets.track_current_thread()
    tracked = statistics.median(switch_ns(greenlet) for _ in range(5))
    rows = [("one greenlet switch, ns: untracked, tracked", f"{untracked:.0f}", f"{tracked:.0f}")]
    return rows + [parked_greenlets_row(greenlet, count) for count in (10, 100, 1000)]


def main() -> int:
    print("| tasks and greenlets in a tick | cached, µs | uncached, µs |")
    print("|---|---:|---:|")
    for row in task_rows() + greenlet_rows():
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
