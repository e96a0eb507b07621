"""Suspended greenlets sampled as units of work, and the agent's own primitives under gevent's patching.

Greenlets run on a thread of their own here (switch tracking is per thread and stays installed),
without monkey patching: the patched cases run as programs in ``e2e/test_units_to_collector.py``.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Tuple

import pytest

from codeguru_agent.config import AgentConfig
from codeguru_agent.host import native
from codeguru_agent.reporting.document import Frame, profile_of
from codeguru_agent.sampling.sampler import Sampler

gevent = pytest.importorskip("gevent")
greenlet = pytest.importorskip("greenlet")
from gevent.event import Event as GreenEvent  # noqa: E402

from codeguru_agent.sampling import greenlets  # noqa: E402

WAIT_S = 10.0


def short(name: str) -> str:
    return name if name.startswith("<") else name.rsplit(":", 1)[-1]


def greenlet_paths(stacks: Dict[Tuple[Frame, ...], int]) -> Dict[Tuple[str, ...], int]:
    paths: Dict[Tuple[str, ...], int] = {}
    for stack, count in stacks.items():
        names = tuple(short(frame.name) for frame in stack)
        if names and names[0].startswith("<greenlet "):
            paths[names] = paths.get(names, 0) + count
    return paths


def wait_for_order(event: Any) -> None:
    event.wait()


def nap() -> None:
    gevent.sleep(3600)


def test_a_thread_that_takes_a_finished_threads_ident_is_tracked_too() -> None:
    """Thread idents are reused as soon as a thread ends (a pool's threads come and go): the second
    thread's greenlets must be recorded although its ident was tracked before."""
    first_ident: List[int] = []

    def track_and_end() -> None:
        greenlets.track_current_thread()
        first_ident.append(threading.get_ident())

    seen: Dict[str, bool] = {}

    def spawn_one_waiter() -> None:
        seen["same ident"] = threading.get_ident() == first_ident[0]
        greenlets.track_current_thread()
        waiter = gevent.spawn(nap)
        gevent.sleep(0)  # the waiter runs and switches out to the hub
        seen["recorded"] = id(waiter) in greenlets._tracker.suspended
        waiter.kill()

    for _ in range(200):  # the C library hands an ended thread's stack, hence its ident, to the next
        first_ident.clear()
        first = threading.Thread(target=track_and_end)
        first.start()
        first.join(WAIT_S)
        second = threading.Thread(target=spawn_one_waiter)
        second.start()
        second.join(WAIT_S)
        if seen.get("same ident"):
            break
    assert seen.get("same ident"), "no ident was reused in 200 tries: the case is not exercised"
    assert seen.get("recorded"), "the second thread's greenlet switches were not recorded"


def test_suspended_greenlets_are_samples_under_their_name_and_the_running_one_is_the_thread() -> None:
    ready, release = threading.Event(), threading.Event()
    traced: List[str] = []

    def hub_thread() -> None:
        greenlet.settrace(lambda event, args: traced.append(event))  # a trace already there is kept
        greenlets.track_current_thread()
        event = GreenEvent()
        waiting = [gevent.spawn(wait_for_order, event) for _ in range(3)]
        named = gevent.spawn(nap)
        named.name = "nightly-report"
        gevent.sleep(0.01)
        ready.set()
        while not release.is_set():
            gevent.sleep(0.005)
        event.set()
        gevent.joinall(waiting)
        named.kill()

    thread = threading.Thread(target=hub_thread, name="hub", daemon=True)
    thread.start()
    assert ready.wait(WAIT_S)
    sampler = Sampler(AgentConfig())
    for _ in range(3):
        sampler.sample()
    release.set()
    thread.join(WAIT_S)
    aggregate = sampler.seal()
    paths = greenlet_paths(profile_of(aggregate).stacks)
    assert paths.get(("<greenlet wait_for_order>", "wait_for_order")) == 9, paths
    assert paths.get(("<greenlet nightly-report>", "nap", "sleep")) == 3, paths
    assert not any("Hub" in path[0] for path in paths), "the hub is the idle thread, not a unit"
    assert aggregate.greenlet_samples >= 12 and aggregate.unit_errors == 0
    assert "switch" in traced, "the trace function found on the thread still runs"


def test_dead_greenlets_are_forgotten() -> None:
    done = threading.Event()

    def hub_thread() -> None:
        greenlets.track_current_thread()
        gevent.joinall([gevent.spawn(gevent.sleep, 0) for _ in range(20)])
        done.set()

    thread = threading.Thread(target=hub_thread, daemon=True)
    thread.start()
    assert done.wait(WAIT_S)
    thread.join(WAIT_S)
    sampler = Sampler(AgentConfig())
    sampler.sample()
    names = greenlet_paths(profile_of(sampler.seal()).stacks)
    assert not any("<greenlet sleep>" in path for path in names)
    assert all(reference() is None or not reference().dead for reference in greenlets._tracker.suspended.values())


def test_the_agents_event_wakes_a_waiter_on_another_os_thread_and_times_out() -> None:
    event = native.Event()
    assert event.wait(0.0) is False
    woken: List[bool] = []
    waiter = native.OsThread(lambda: woken.append(event.wait(WAIT_S)), (), "codeguru-agent-test")
    waiter.start()
    assert waiter.ident is not None and waiter.is_alive()
    assert "codeguru-agent-test" in {name for _, name in native.agent_threads()}
    event.set()
    waiter.join(WAIT_S)
    assert woken == [True] and not waiter.is_alive()
    event.clear()
    assert not event.is_set() and event.wait(0.001) is False


def test_agent_threads_are_real_threads_even_once_threading_is_patched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "threading_patched", lambda: True)
    ran_on: List[int] = []
    thread = native.thread(lambda: ran_on.append(native.get_ident()), (), "codeguru-agent-test")
    assert isinstance(thread, native.OsThread)
    thread.start()
    thread.join(WAIT_S)
    assert ran_on == [thread.ident] and ran_on[0] != threading.get_ident()


def test_the_switch_record_stays_bounded_while_no_sampler_reads_it() -> None:
    """A stopped agent leaves the trace installed: greenlets that come and go must not pile up."""
    done = threading.Event()

    def hub_thread() -> None:
        greenlets.track_current_thread()
        for _ in range(5):
            gevent.joinall([gevent.spawn(gevent.sleep, 0) for _ in range(1000)])
        done.set()

    thread = threading.Thread(target=hub_thread, daemon=True)
    thread.start()
    assert done.wait(WAIT_S)
    thread.join(WAIT_S)
    assert len(greenlets._tracker.suspended) <= 2 * 1000 + 16  # without pruning: about 3,500


def test_a_gevent_patch_waits_for_the_client_build_under_way_and_keeps_the_next_one_out() -> None:
    """``patch_all()`` swaps ``ssl.SSLContext`` under the agent's feet: the two take turns."""
    inside, leave, order = threading.Event(), threading.Event(), []

    def build(name: str, entered: threading.Event, until: threading.Event) -> None:
        with native.outside_gevent_patch():
            order.append(f"{name} in")
            entered.set()
            until.wait(WAIT_S)
            order.append(f"{name} out")

    first = threading.Thread(target=build, args=("first", inside, leave))
    first.start()
    assert inside.wait(WAIT_S)
    patching = threading.Thread(target=lambda: (native.gevent_patch_begins(), order.append("patch")))
    patching.start()
    while "patch" not in order and not native.gevent_patch_pending():
        native.sleep(0.001)
    second_in, go = threading.Event(), threading.Event()
    go.set()
    second = threading.Thread(target=build, args=("second", second_in, go))
    second.start()
    assert not second_in.wait(0.05)  # held while the patch is pending (not a timing claim: it must wait)
    leave.set()
    patching.join(WAIT_S)
    assert order == ["first in", "first out", "patch"]
    native.gevent_patch_ends()
    assert second_in.wait(WAIT_S)
    for thread in (first, second):
        thread.join(WAIT_S)
    assert order == ["first in", "first out", "patch", "second in", "second out"]
    assert not native.gevent_patch_pending()
