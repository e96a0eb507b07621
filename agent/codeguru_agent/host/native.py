"""Real OS threads, locks, events and sleeps for the agent, whatever gevent has patched.

Once ``gevent.monkey.patch_all()`` has run, ``threading.Thread`` starts greenlets, ``threading.Event``
waits on the hub, ``time.sleep`` yields to the hub and ``threading.get_ident`` names greenlets. An
agent built on them runs only when the hub lets it, samples itself, and stalls the host's greenlets
while it waits. So the agent's threads and everything they wait on come from here: the original
``_thread`` and ``time`` functions (taken from gevent's record of them if gevent patched before
this module was imported), and an Event and a Thread written on them alone.

Without gevent nothing changes: an agent thread is a ``threading.Thread`` (listed by
``threading.enumerate()``); only when ``threading`` is patched at the moment a thread is started is
it a bare OS thread, kept in this module's own list.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from time import monotonic as _monotonic
from typing import Any, Callable, Dict, Final, Iterator, List, Optional, Protocol, Tuple


def _original(module: str, name: str) -> Any:
    """The unpatched ``module.name``: gevent's saved original if it patched it, else the attribute."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        try:
            return monkey.get_original(module, name)
        except Exception:  # an odd gevent: fall back to the module's attribute
            pass
    return getattr(__import__(module), name)


start_new_thread: Final[Callable[..., int]] = _original("_thread", "start_new_thread")
allocate_lock: Final[Callable[[], Any]] = _original("_thread", "allocate_lock")
get_ident: Final[Callable[[], int]] = _original("_thread", "get_ident")
RLock: Final[Callable[[], Any]] = _original("_thread", "RLock")
sleep: Final[Callable[[float], None]] = _original("time", "sleep")
Lock = allocate_lock


def threading_patched() -> bool:
    """True once gevent has replaced ``threading``'s thread start with greenlets."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return False
    try:
        return bool(monkey.is_module_patched("threading"))
    except Exception:  # an odd gevent: assume the worst, real threads work either way
        return True


def prepare_host_hub() -> None:
    """Under gevent, create the calling thread's hub now, with the imports it makes.

    After ``patch_all()`` the import system's module locks are gevent locks. An OS thread that has to
    wait on one creates a hub of its own first, and that hub imports gevent's loop and its settings:
    if the host's thread is importing those same modules for its own first hub at that moment, the
    two threads wait on each other for ever (seen with ``patch_all()`` then ``start()``). With the
    host's hub made first, on the host's thread, an agent thread's hub imports nothing.
    """
    gevent = sys.modules.get("gevent")
    get_hub = getattr(gevent, "get_hub", None)
    if get_hub is not None:
        get_hub()


def when_host_hub_runs(callback: Callable[[], None]) -> bool:
    """Under gevent, call ``callback`` at the calling thread's hub's next turn: the host's first wait
    (a server's, once it has loaded its code and begins to serve). False if it cannot be arranged."""
    gevent = sys.modules.get("gevent")
    get_hub = getattr(gevent, "get_hub", None)
    if get_hub is None:
        return False
    try:
        get_hub().loop.run_callback(callback)
    except Exception:  # an odd gevent: the caller lets go itself
        return False
    return True


_agent_hubs: Dict[int, object] = {}
"""The hubs given the blocking resolver, by their agent thread's ident."""


def prepare_agent_hub() -> None:
    """On an agent thread about to use the network once gevent has patched ``socket``: give this
    thread's own hub a resolver that calls the system's directly.

    The agent's client (botocore, imported after the patch, or repointed) then makes gevent
    sockets, and an OS thread that is not the host's gets a hub of its own on first use. That hub's
    default resolver runs ``getaddrinfo`` in a thread pool whose first use imports
    ``concurrent.futures.thread``, which registers an exit hook: at interpreter exit (the agent's
    last delivery, or its first one for a program that ended first) that raises "can't register
    atexit after shutdown", and the delivery failed. The agent's thread may block on its own
    lookups: no greenlet of the host's runs there. Cheap to call again on the same thread.
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return
    try:
        if not monkey.is_module_patched("socket"):
            return
        import importlib

        hub = importlib.import_module("gevent").get_hub()
        ident = get_ident()
        if _agent_hubs.get(ident) is not hub:  # (an ident is reused by a later thread)
            hub.resolver = importlib.import_module("gevent.resolver.blocking").Resolver(hub=hub)
            _agent_hubs[ident] = hub
    except Exception:  # an odd gevent: its own resolver, as before
        pass


class Event:
    """``threading.Event`` on the original locks: set, clear, wait with a timeout, from any OS thread."""

    __slots__ = ("_flag", "_mutex", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._mutex = allocate_lock()
        self._waiters: List[Any] = []

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        with self._mutex:
            self._flag = True
            for waiter in self._waiters:
                waiter.release()
            self._waiters.clear()

    def clear(self) -> None:
        with self._mutex:
            self._flag = False

    def wait(self, timeout: Optional[float] = None) -> bool:
        with self._mutex:
            if self._flag:
                return True
            waiter = allocate_lock()
            waiter.acquire()
            self._waiters.append(waiter)
        woken = waiter.acquire(True, -1 if timeout is None else max(0.0, timeout))
        if not woken:
            with self._mutex:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return woken or self._flag


class Condition:
    """``threading.Condition`` on the original locks: its waits, unlike the stdlib's, never take a
    lock that gevent may have patched meanwhile."""

    __slots__ = ("_lock", "_waiters")

    def __init__(self) -> None:
        self._lock = allocate_lock()
        self._waiters: List[Any] = []

    def __enter__(self) -> bool:
        return bool(self._lock.acquire())

    def __exit__(self, *_exc: object) -> None:
        self._lock.release()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Release the lock until notified (or ``timeout`` passes), then take it again; held on entry."""
        waiter = allocate_lock()
        waiter.acquire()
        self._waiters.append(waiter)
        self._lock.release()
        try:
            return bool(waiter.acquire(True, -1 if timeout is None else max(0.0, timeout)))
        finally:
            self._lock.acquire()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def wait_for(self, predicate: Callable[[], Any], timeout: Optional[float] = None) -> Any:
        deadline = None if timeout is None else _monotonic() + timeout
        result = predicate()
        while not result:
            remaining = None if deadline is None else deadline - _monotonic()
            if remaining is not None and remaining <= 0:
                break
            self.wait(remaining)
            result = predicate()
        return result

    def notify_all(self) -> None:
        """Wake every waiter; called with the lock held."""
        for waiter in self._waiters:
            waiter.release()
        self._waiters.clear()


class AgentThread(Protocol):
    """What the agent needs of its threads, met by ``threading.Thread`` and :class:`OsThread` alike."""

    name: str

    @property
    def ident(self) -> Optional[int]: ...

    def start(self) -> None: ...

    def join(self, timeout: Optional[float] = None) -> None: ...

    def is_alive(self) -> bool: ...


_os_threads: Dict[int, OsThread] = {}
"""Live bare OS threads by ident, for :func:`agent_threads` (``threading.enumerate()`` misses them)."""


class OsThread:
    """A daemon OS thread started with the original ``_thread.start_new_thread``."""

    def __init__(self, target: Callable[..., Any], args: Tuple[Any, ...], name: str) -> None:
        self.name = name
        self._target = target
        self._args = args
        self._ident: Optional[int] = None
        self._started = Event()
        self._finished = Event()
        self._forked_away = False

    @property
    def ident(self) -> Optional[int]:
        return self._ident

    def start(self) -> None:
        start_new_thread(self._bootstrap, ())
        self._started.wait()

    def _bootstrap(self) -> None:
        self._ident = get_ident()
        _os_threads[self._ident] = self
        self._started.set()
        try:
            self._target(*self._args)
        except Exception:  # the agent's targets catch their own; nothing may reach the interpreter
            pass
        finally:
            _os_threads.pop(self._ident, None)
            self._finished.set()

    def join(self, timeout: Optional[float] = None) -> None:
        self._finished.wait(timeout)

    def is_alive(self) -> bool:
        return self._started.is_set() and not self._finished.is_set() and not self._forked_away


class _Thread(threading.Thread):
    """A ``threading.Thread`` that ends quietly if gevent patched ``threading`` while it ran: its
    ``_delete`` then looks itself up under a greenlet's ident, not the one it registered under."""

    def _delete(self) -> None:
        try:
            super()._delete()  # type: ignore[misc]
        except KeyError:
            with threading._active_limbo_lock:  # type: ignore[attr-defined]
                threading._active.pop(self._ident, None)  # type: ignore[attr-defined]


def thread(target: Callable[..., Any], args: Tuple[Any, ...], name: str) -> AgentThread:
    """A daemon thread, not yet started: an OS thread whatever gevent has patched."""
    if threading_patched():
        return OsThread(target, args, name)
    return _Thread(target=target, args=args, name=name, daemon=True)


def agent_threads() -> List[Tuple[Optional[int], str]]:
    """(ident, name) of every live thread started here: ``threading``'s and the bare ones."""
    threads: List[Tuple[Optional[int], str]] = [(t.ident, t.name) for t in threading.enumerate()]
    threads.extend((ident, os_thread.name) for ident, os_thread in list(_os_threads.items()))
    return threads


def is_current(agent_thread: Optional[AgentThread]) -> bool:
    """True on ``agent_thread`` itself (by OS ident: ``threading.current_thread()`` is a greenlet's
    under gevent)."""
    return agent_thread is not None and agent_thread.ident == get_ident()


PATCH_WAIT_S: Final = 10.0
"""The longest either side of :func:`outside_gevent_patch` waits for the other: a ``patch_all()``
that raised never says it is over, and the host must never hang on the agent."""


class _PatchGate:
    """gevent's ``patch_all()`` against the agent's SSL contexts, see :func:`outside_gevent_patch`."""

    def __init__(self) -> None:
        self.condition = Condition()
        self.pending = False
        """From gevent's ``will_patch_all`` to its ``did_patch_all``."""
        self.inside = 0
        """Agent threads inside :func:`outside_gevent_patch`."""


_patch_gate = _PatchGate()


@contextmanager
def outside_gevent_patch() -> Iterator[None]:
    """Run the block while no ``gevent.monkey.patch_all()`` is under way; one that begins meanwhile
    waits for the block to end.

    ``patch_all()`` replaces ``ssl.SSLContext`` early and its ``did_patch_all`` hook points the
    modules the agent imported before it (botocore, urllib3) at gevent's class only at the end. An
    SSL context those modules make in between is of the original class, whose ``options`` setter
    then recurses through gevent's until ``RecursionError`` (gevent issue 1016): an agent building
    its client then (a forked gunicorn worker's, whose ``patch_all()`` runs as the agent restarts)
    gave up for good. So the agent builds its session and client in this block.
    """
    gate = _patch_gate
    with gate.condition:
        gate.condition.wait_for(lambda: not gate.pending, PATCH_WAIT_S)
        gate.inside += 1
    try:
        yield
    finally:
        with gate.condition:
            gate.inside -= 1
            gate.condition.notify_all()


def gevent_patch_begins() -> None:
    """gevent's ``patch_all()`` is about to patch: wait for an agent thread inside
    :func:`outside_gevent_patch` to leave it (a client build: a fraction of a second, at most
    ``PATCH_WAIT_S``), and keep the others out until :func:`gevent_patch_ends`."""
    gate = _patch_gate
    with gate.condition:
        gate.pending = True
        gate.condition.wait_for(lambda: not gate.inside, PATCH_WAIT_S)


def gevent_patch_ends() -> None:
    gate = _patch_gate
    with gate.condition:
        gate.pending = False
        gate.condition.notify_all()


def gevent_patch_pending() -> bool:
    """True between :func:`gevent_patch_begins` and :func:`gevent_patch_ends`."""
    return _patch_gate.pending


def _after_fork_in_child() -> None:
    global _patch_gate
    _patch_gate = _PatchGate()  # a thread inside it, or its lock's holder, is not in the child
    _agent_hubs.clear()
    for os_thread in list(_os_threads.values()):
        if os_thread.ident != get_ident():
            os_thread._forked_away = True
    _os_threads.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
