"""Fork safety: no fork while the agent imports, and a fresh agent in every child.

A fork taken while another thread holds a module's import lock leaves the child with a lock that
no thread will ever release; the child then hangs on its first import of that module (seen with
the official agent under ``gunicorn --preload``). The agent imports boto3 on its own thread, so it
does so behind a gate that ``fork()`` waits for. In the child, registered callbacks rebuild the
agent's state; they must not log, since a logging lock may have been held at the fork.
"""

from __future__ import annotations

import os
import sys
import time
import weakref
from contextlib import contextmanager
from typing import Callable, Final, Iterator, List

from codeguru_agent.host import native

GATE_WAIT_S: Final = 10.0
"""The longest a fork waits for the agent's imports; a bound so the host can never hang on us."""
AGENT_THREAD_PREFIX: Final = "codeguru-agent"
"""Every thread of the agent is named with this prefix."""
_IMPORT_POLL_S: Final = 0.001

_gate = native.Lock()
_gate_held_for_fork = False
_child_callbacks: List[weakref.WeakMethod[Callable[[], None]]] = []
_installed = False


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
    reference = weakref.WeakMethod(callback)  # type: ignore[arg-type]
    if reference not in _child_callbacks:
        _child_callbacks.append(reference)


def _install() -> None:
    global _installed
    if _installed or not hasattr(os, "register_at_fork"):
        return
    _installed = True
    os.register_at_fork(before=_before_fork, after_in_parent=_after_in_parent, after_in_child=_after_in_child)


def hold_imports() -> None:
    """Keep the agent's threads out of imports until :func:`release_imports` (as for a fork):
    for gevent's ``patch_all()``, which swaps the import system's locks under a thread that imports."""
    _before_fork()


def release_imports() -> None:
    _after_in_parent()


def _before_fork() -> None:
    global _gate_held_for_fork
    deadline = time.monotonic() + GATE_WAIT_S
    _gate_held_for_fork = _gate.acquire(timeout=GATE_WAIT_S)
    while _child_callbacks and _agent_thread_importing() and time.monotonic() < deadline:
        native.sleep(_IMPORT_POLL_S)  # lets the agent's thread finish the import it is in


def _agent_thread_importing() -> bool:
    """True while one of the agent's threads is inside an import, holding that module's lock.

    The gate covers the imports the agent knows it makes; this covers every other lazy import on
    its threads (fleet identity, the first request, a codec). Returning False with the GIL held
    means no agent thread can begin an import before the fork itself.
    """
    frames = sys._current_frames()
    frames.pop(native.get_ident(), None)  # our own frame must not join a cycle (see sampler.py)
    for ident, name in native.agent_threads():
        frame = frames.get(ident) if ident is not None and name.startswith(AGENT_THREAD_PREFIX) else None
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
    global _gate, _gate_held_for_fork
    _gate = native.Lock()
    _gate_held_for_fork = False
    alive = []
    for reference in _child_callbacks:
        callback = reference()
        if callback is None:
            continue
        alive.append(reference)
        try:
            callback()
        except Exception:  # a child must start even if the agent cannot; nothing may be logged here
            pass
    _child_callbacks[:] = alive
