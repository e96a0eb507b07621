"""The sampler's side of the main thread's timer: how the samples its handler records are counted.

The handler is called here directly, on the main thread (pytest's), with the frame it is given
when a signal comes; the sampler's tick runs on a thread of its own, as the agent's does. No
signal is sent: SIGALRM belongs to pytest-timeout in this process.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Dict, Generator, Tuple

from codeguru_agent.config import AgentConfig
from codeguru_agent.sampling.sampler import Sampler
from codeguru_agent.sampling.timer import MainThreadTimer
from support.waiting import wait_until


def timer_for_test() -> MainThreadTimer:
    """A live timer that is not installed: its handler is called by the test."""
    timer = MainThreadTimer()
    timer.live = True
    timer.interval_s = 0.01  # as if armed
    timer.ours = lambda: True  # type: ignore[method-assign]
    timer._timer_is_ours = lambda: True  # type: ignore[method-assign]  # the kernel's timer is pytest's here
    timer._program_timer_set = lambda: False  # type: ignore[method-assign]
    return timer


def tick(sampler: Sampler) -> None:
    """One tick on a thread of its own (the sampler leaves its own thread out, as the agent's does)."""
    worker = threading.Thread(target=sampler.sample)
    worker.start()
    worker.join()


def stacks(sampler: Sampler) -> Dict[Tuple[str, ...], int]:
    """This interval's counts by stack of frame names, root first."""
    counts: Dict[Tuple[str, ...], int] = {}
    for stack, count in sampler.seal().resolved_stacks().items():
        names = tuple(frame.name for frame in stack)
        counts[names] = counts.get(names, 0) + count
    return counts


def main_thread_counts(counts: Dict[Tuple[str, ...], int], function: str) -> int:
    return sum(count for stack, count in counts.items() if any(name.endswith(function) for name in stack))


def record(timer: MainThreadTimer) -> None:
    """What the handler does when SIGALRM interrupts this function."""
    timer.handler(14, sys._getframe())


def suspended_coroutine_sample(timer: MainThreadTimer) -> Generator[None, None, None]:
    record(timer)
    yield


def drive_coroutine(timer: MainThreadTimer) -> Generator[None, None, None]:
    steps = suspended_coroutine_sample(timer)
    next(steps)  # recorded inside, then suspended: its frame has no caller any more
    return steps


def test_a_suspended_coroutines_callers_are_counted_as_captured() -> None:
    timer = timer_for_test()
    sampler = Sampler(AgentConfig())
    sampler.timer = timer
    steps = drive_coroutine(timer)
    tick(sampler)
    counts = stacks(sampler)
    captured = [stack for stack in counts if stack[-1].endswith(":record")]
    assert len(captured) == 1, counts
    assert [name.rsplit(":", 1)[-1] for name in captured[0][-4:]] == [
        "test_a_suspended_coroutines_callers_are_counted_as_captured",
        "drive_coroutine",
        "suspended_coroutine_sample",
        "record",
    ]
    steps.close()


def burn_sample(timer: MainThreadTimer, samples: int) -> None:
    for _ in range(samples):
        record(timer)


def test_the_main_thread_keeps_one_sample_per_tick() -> None:
    timer = timer_for_test()
    sampler = Sampler(AgentConfig())
    sampler.timer = timer
    burn_sample(timer, 1)
    tick(sampler)  # one recorded: counted
    tick(sampler)  # none: owed to the next tick, the main thread is not counted from its frames
    burn_sample(timer, 3)
    tick(sampler)  # three recorded, two owed: the newest two count
    aggregate = sampler.seal()
    frames = aggregate.table.frames
    main = sum(
        count
        for key, count in zip(aggregate.stacks, aggregate.counts)
        if any(frames[frame_id].name.endswith(":burn_sample") for frame_id in key)
    )
    assert (main, aggregate.num_times_sampled) == (3, 3)
    assert aggregate.timer_samples == 3 and aggregate.timer_dropped == 1 and aggregate.timer_fallbacks == 0


def test_once_the_table_knows_its_positions_the_handler_keeps_frame_ids_not_frames() -> None:
    """The handler reads the stack on the main thread, where it is cheapest to read: a position the
    table knows becomes its id there, and the sample holds no frame (nor any of its locals)."""
    timer = timer_for_test()
    sampler = Sampler(AgentConfig())
    sampler.timer = timer
    kinds = []
    for _ in range(3):
        burn_sample(timer, 1)  # the same place each time
        kinds.append(type(timer.samples[0]).__name__)
        tick(sampler)
    assert kinds == ["list", "tuple", "tuple"], "frames until a tick resolved them, then their ids"
    counts = stacks(sampler)
    sampled = [stack for stack in counts if stack[-1].endswith(":record")]
    assert len(sampled) == 1 and counts[sampled[0]] == 3, counts
    assert sampled[0][-3:][0].endswith(
        ":test_once_the_table_knows_its_positions_the_handler_keeps_frame_ids_not_frames"
    )


def test_a_sample_read_under_the_last_depth_bound_is_not_counted_under_a_new_one() -> None:
    """The service's answer may lower the depth bound between a signal and the tick that drains it:
    that sample, read as frame ids under the old bound, is not counted as a stack the new one forbids."""
    timer = timer_for_test()
    sampler = Sampler(AgentConfig())
    sampler.timer = timer
    for round_ in range(3):
        burn_sample(timer, 1)  # the same place each time: read as frame ids from the second on
        if round_ == 2:
            sampler.seal()
            sampler.set_limits(AgentConfig(max_stack_depth=8))
        tick(sampler)
    stacks = sampler.seal().resolved_stacks()
    assert stacks and max(len(stack) for stack in stacks) <= 8 + 2, "MaxStackDepth 8 (+ <Truncated> and a leaf)"


def test_after_two_ticks_without_a_timer_sample_the_sampling_threads_view_counts() -> None:
    timer = timer_for_test()
    sampler = Sampler(AgentConfig())
    sampler.timer = timer
    burn_sample(timer, 1)
    tick(sampler)  # a timer sample
    tick(sampler)  # none: owed to the next tick
    tick(sampler)  # none again: the tick's own view counts
    tick(sampler)  # and again
    counts = stacks(sampler)
    # the main thread is in this test, joining the tick's thread
    assert main_thread_counts(counts, ":burn_sample") == 1
    assert main_thread_counts(counts, ":tick") == 2, counts


def test_an_intervals_first_tick_without_a_timer_sample_counts_the_sampling_threads_view() -> None:
    timer = timer_for_test()
    sampler = Sampler(AgentConfig())
    sampler.timer = timer
    tick(sampler)  # a program's last interval may have this one tick only: it must not be empty
    aggregate = sampler.seal()
    assert aggregate.num_times_sampled == 1 and sum(aggregate.counts) == 1


def interrupted_here(inside: threading.Lock) -> None:
    in_handler(inside)


def in_handler(inside: threading.Lock) -> None:
    inside.acquire()  # a C call: this function's frame is the thread's top frame while it waits


def test_a_main_thread_caught_in_the_handler_is_counted_where_the_handler_interrupted_it() -> None:
    # The tick's own view of the main thread (no timer sample yet) may find it running the handler:
    # it counts the frame the signal interrupted. A thread stands in for the main thread here, and
    # a function of the test for the handler, so that the tick finds it there for sure.
    timer = timer_for_test()
    inside = threading.Lock()
    inside.acquire()
    worker = threading.Thread(target=interrupted_here, args=(inside,))
    worker.start()
    try:
        waiting = in_handler.__code__
        wait_until(lambda: sys._current_frames()[worker.ident or 0].f_code is waiting, 10, "the thread in in_handler")
        timer.ident = worker.ident
        timer.handler_code = in_handler.__code__
        sampler = Sampler(AgentConfig())
        sampler.timer = timer
        tick(sampler)  # the interval's first tick, no timer sample: the tick's own view counts
    finally:
        inside.release()
        worker.join()
    counts = stacks(sampler)
    assert main_thread_counts(counts, ":interrupted_here") == 1, counts
    assert main_thread_counts(counts, ":in_handler") == 0, counts


def test_an_excluded_main_thread_is_not_counted_from_its_timer_either() -> None:
    timer = timer_for_test()
    sampler = Sampler(AgentConfig(excluded_threads=frozenset({threading.main_thread().name})))
    sampler.timer = timer
    burn_sample(timer, 1)
    tick(sampler)
    assert main_thread_counts(stacks(sampler), ":burn_sample") == 0


def test_a_timer_given_up_records_and_counts_nothing() -> None:
    timer = timer_for_test()
    sampler = Sampler(AgentConfig())
    sampler.timer = timer
    burn_sample(timer, 1)
    timer.ours = lambda: False  # type: ignore[method-assign]  # the program installed its own handler
    tick(sampler)
    burn_sample(timer, 1)
    assert not timer.live and timer.reasons == {"handlerReplaced": 1}
    assert timer.drain() == []
    assert main_thread_counts(stacks(sampler), ":burn_sample") == 0


def test_a_paused_timer_records_nothing_and_forgets_what_waited() -> None:
    timer = timer_for_test()
    burn_sample(timer, 2)
    timer.hold(True)
    burn_sample(timer, 1)
    assert timer.drain() == []
    timer.hold(False)
    burn_sample(timer, 1)
    assert len(timer.drain()) == 1


def test_the_handler_cuts_the_stack_at_the_depth_bound() -> None:
    timer = timer_for_test()
    timer.max_depth = 2
    sampler = Sampler(AgentConfig(max_stack_depth=2))
    sampler.timer = timer
    burn_sample(timer, 1)
    chain = timer.samples[0]
    assert len(chain) == 5 and chain[-1] is None  # two frames, two offsets, the cut
    tick(sampler)
    counts = stacks(sampler)
    assert (
        counts.get(("<Truncated>", "tests.test_timer:burn_sample", "tests.test_timer:record"))
        or counts.get(("<Truncated>", "test_timer:burn_sample", "test_timer:record"))
    ) == 1, counts


def test_a_signal_with_no_python_frame_records_nothing() -> None:
    timer = timer_for_test()
    timer.handler(14, None)
    assert timer.drain() == []


def spin(cpu_s: float = 0.015) -> None:
    """Use ``cpu_s`` of this thread's CPU time."""
    end = time.thread_time() + cpu_s
    while time.thread_time() < end:
        pass


def test_the_timer_is_wanted_while_the_main_thread_runs_and_not_while_it_waits() -> None:
    timer = timer_for_test()
    sampler = Sampler(AgentConfig())
    sampler.timer = timer
    for _ in range(4):
        burn_sample(timer, 1)
        time.sleep(0.05)  # the main thread waits between two ticks: next to no CPU time
        tick(sampler)
    assert not sampler.timer_wanted
    timer.interval_s = 0.0  # what the runner does: the main thread is now seen by the tick
    tick(sampler)
    spin()
    tick(sampler)
    assert sampler.timer_wanted
    counts = stacks(sampler)
    assert main_thread_counts(counts, ":burn_sample") == 4
    assert main_thread_counts(counts, ":tick") == 2, counts  # the two ticks with the timer stopped


def test_kept_armed_the_timer_stays_wanted_while_the_main_thread_waits() -> None:
    timer = timer_for_test()
    timer.always_armed = True
    sampler = Sampler(AgentConfig())
    sampler.timer = timer
    for _ in range(5):
        burn_sample(timer, 1)
        time.sleep(0.05)
        tick(sampler)
    assert sampler.timer_wanted
