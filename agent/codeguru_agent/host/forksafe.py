"""Fork safety: no fork while the agent imports, and a fresh agent in every child.

A fork taken while another thread holds a module's import lock leaves the child with a lock that
no thread will ever release; the child then hangs on its first import of that module (seen with
the official agent under ``gunicorn --preload``). The agent imports boto3 on its own thread, so it
does so behind a gate that ``fork()`` waits for. In the child, registered callbacks rebuild the
agent's state; they must not log, since a logging lock may have been held at the fork. A child
whose agent fails to restart cannot report it itself: it counts it in memory shared with its
parent, whose next profile reports it.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Final, Iterator, List, Optional

if TYPE_CHECKING:
    import mmap

from codeguru_agent.host import interpreters

GATE_WAIT_S: Final = 10.0
"""The longest a fork waits for the agent's imports; a bound so the host can never hang on us."""
AGENT_THREAD_PREFIX: Final = "codeguru-agent"
"""Every thread of the agent is named with this prefix."""
_IMPORT_POLL_S: Final = 0.001
_COUNTER_SLOTS: Final = 64
"""Children count their failed restarts in the slot of their pid: two children of the same parent
would both have to fail at the same instant, with pids in the same slot, for one count to be lost."""
_COUNTER_BYTES: Final = 8

_gate = threading.Lock()
_gate_held_for_fork = False
_child_callbacks: List[weakref.WeakMethod[Callable[[], None]]] = []
_installed = False
_restart_failures: Optional[mmap.mmap] = None
"""Memory shared with this process's forked children, where each counts its failed restarts."""
_restart_failures_seen = 0


@contextmanager
def import_gate() -> Iterator[None]:
    """Hold this while importing or doing anything a fork must not cut in half."""
    gate = _gate
    with gate:
        yield


def on_fork_in_child(callback: Callable[[], None]) -> None:
    """Call a bound method in each forked child (held weakly, so it never keeps its owner alive).

    Registering the same method again (a profiler started, stopped and started) keeps one entry:
    a second call in the child would start a second agent there.
    """
    _install()
    reference = weakref.WeakMethod(callback)  # type: ignore[arg-type, unused-ignore]
    if reference not in _child_callbacks:
        _child_callbacks.append(reference)


def _install() -> None:
    global _installed
    if _installed or not hasattr(os, "register_at_fork"):
        return
    _installed = True
    os.register_at_fork(before=_before_fork, after_in_parent=_after_in_parent, after_in_child=_after_in_child)


def take_child_restart_failures() -> int:
    """How many forked children of this process failed to restart their agent since the last call."""
    global _restart_failures_seen
    counters = _restart_failures
    if counters is None:
        return 0
    total = sum(
        int.from_bytes(counters[slot : slot + _COUNTER_BYTES], "little")
        for slot in range(0, _COUNTER_SLOTS * _COUNTER_BYTES, _COUNTER_BYTES)
    )
    new, _restart_failures_seen = total - _restart_failures_seen, total
    return new


def _shared_counters() -> Optional[mmap.mmap]:
    """Anonymous memory a forked child shares with this process (no file, no descriptor to leak)."""
    try:
        import mmap

        return mmap.mmap(-1, _COUNTER_SLOTS * _COUNTER_BYTES)
    except Exception:  # no shared memory here: failed restarts go uncounted, forks go on
        return None


def _count_restart_failure(counters: mmap.mmap, failures: int) -> None:
    slot = (os.getpid() % _COUNTER_SLOTS) * _COUNTER_BYTES
    count = int.from_bytes(counters[slot : slot + _COUNTER_BYTES], "little") + failures
    counters[slot : slot + _COUNTER_BYTES] = count.to_bytes(_COUNTER_BYTES, "little")


def _before_fork() -> None:
    global _gate_held_for_fork, _restart_failures
    if _restart_failures is None and _child_callbacks:
        _restart_failures = _shared_counters()
    deadline = time.monotonic() + GATE_WAIT_S
    _gate_held_for_fork = _gate.acquire(timeout=GATE_WAIT_S)
    while _child_callbacks and _agent_thread_importing() and time.monotonic() < deadline:
        time.sleep(_IMPORT_POLL_S)  # lets the agent's thread finish the import it is in


def _agent_thread_importing() -> bool:
    """True while one of the agent's threads is inside an import, holding that module's lock.

    The gate covers the imports the agent knows it makes; this covers every other lazy import on
    its threads (fleet identity, the first request, a codec). Returning False with the GIL held
    means no agent thread can begin an import before the fork itself. While other interpreters run,
    no thread's frames may be read: the gate alone guards the fork then.
    """
    frames = interpreters.current_frames()
    if frames is None:
        return False
    frames.pop(threading.get_ident(), None)  # our own frame must not join a cycle (see sampler.py)
    for thread in threading.enumerate():
        ident = thread.ident
        frame = frames.get(ident) if ident is not None and thread.name.startswith(AGENT_THREAD_PREFIX) else None
        while frame is not None:
            if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
                return True
            frame = frame.f_back
    return False


def _after_in_parent() -> None:
    global _gate_held_for_fork
    if _gate_held_for_fork:
        _gate_held_for_fork = False
        _gate.release()


def _after_in_child() -> None:
    global _gate, _gate_held_for_fork, _restart_failures, _restart_failures_seen
    _gate = threading.Lock()
    _gate_held_for_fork = False
    parents_counters, _restart_failures, _restart_failures_seen = _restart_failures, None, 0
    alive, failures = [], 0
    for reference in _child_callbacks:
        callback = reference()
        if callback is None:
            continue
        alive.append(reference)
        try:
            callback()
        except Exception:  # a child must start even if the agent cannot; nothing may be logged here
            failures += 1
    _child_callbacks[:] = alive
    if failures and parents_counters is not None:
        _count_restart_failure(parents_counters, failures)
