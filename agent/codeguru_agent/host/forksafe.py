"""Fork safety: no fork while the agent imports or sets OpenSSL up, and a fresh agent in every child.

A fork taken while another thread holds a module's import lock leaves the child with a lock that
no thread will ever release; the child then hangs on its first import of that module (seen with
the official agent under ``gunicorn --preload``). So a fork waits while an agent thread is inside
an import. It must not wait for all of boto3 (seconds on a busy host): the agent loads its modules
with :func:`load`, one module at a time, each one's own imports first, and begins no module while a
fork is pending, so a fork waits for one module's import at most (a package whose ``__init__``
imports its own submodules is one such step: they cannot be imported before it). OpenSSL's own
locks are the same hazard: a process's first SSL context fetches and caches its ciphers under a
global write lock, and a child forked meanwhile hangs at its first SSL context (the host's too) and
at its exit (seen under ``gunicorn --preload``: a worker whose agent never delivered, then hung in
``OPENSSL_cleanup``). So a fork also waits while an agent thread creates an SSL context. In the child, registered
callbacks rebuild the agent's state; they must not log, since a logging lock may have been held at
the fork. A child whose agent fails to restart cannot report it itself: it counts it in memory
shared with its parent, whose next profile reports it.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import time
import weakref
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Dict, Final, FrozenSet, Iterable, Iterator, List, Optional, Set, Tuple

if TYPE_CHECKING:
    import mmap
    import types

from codeguru_agent.host import interpreters, native

GATE_WAIT_S: Final = 10.0
"""The longest a fork waits for an agent thread's import; a bound so the host can never hang on us."""
AGENT_THREAD_PREFIX: Final = "codeguru-agent"
"""Every thread of the agent is named with this prefix."""
_IMPORT_POLL_S: Final = 0.001
SETTLE_S: Final = 5.0
"""The longest the agent's loading waits, after gevent's ``patch_all()``, for the host's start-up
(see :func:`settle`)."""
_OPENSSL_SETUP: Final = (
    ("/ssl.py", frozenset({"__new__", "create_default_context", "load_default_certs"})),
    ("/urllib3/util/ssl_.py", frozenset({"create_urllib3_context"})),
)
"""Functions whose OpenSSL calls run without the GIL and take OpenSSL's global locks: an SSL
context's creation (``SSLContext.__new__``; the first in a process fetches every cipher under a
write lock) and the default certificates' loading. Not a connection's handshake or I/O: a fork
must not wait for the network."""
_STOP_OPCODES: Final = ("SETUP_FINALLY", "SETUP_WITH", "PUSH_EXC_INFO", "FOR_ITER", "RETURN_VALUE", "RETURN_CONST")
_COUNTER_SLOTS: Final = 64
"""Children count their failed restarts in the slot of their pid: two children of the same parent
would both have to fail at the same instant, with pids in the same slot, for one count to be lost."""
_COUNTER_BYTES: Final = 8

_gate = native.Condition()
"""Guards ``_holds`` and ``_loading``; notified when either falls to zero."""
_holds = 0
"""Forks in progress (and tests holding :func:`import_gate`): while any, :func:`load` begins no module."""
_loading = 0
"""Modules :func:`load` is importing now, on the agent's threads."""
_settling_until = 0.0
"""Until this ``time.monotonic()``, unless :func:`settled` comes first, no step of the agent's
loading begins (see :func:`settle`)."""
_reading: Set[int] = set()
"""Agent threads reading a module's code for :func:`load`: inside importlib, but holding no module's lock."""
_child_callbacks: List[weakref.WeakMethod[Callable[[], None]]] = []
_installed = False
_restart_failures: Optional[mmap.mmap] = None
"""Memory shared with this process's forked children, where each counts its failed restarts."""
_restart_failures_seen = 0


@contextmanager
def import_gate() -> Iterator[None]:
    """While held, no agent thread begins to load a module (:func:`load` waits between modules);
    a fork holds it from its start to its end. Held by tests to keep the agent's launch waiting."""
    _hold()
    try:
        yield
    finally:
        _release()


def load(modules: Iterable[str]) -> None:
    """Import ``modules`` on an agent thread, one module at a time, so a fork waits for one at most.

    Each module's module-level imports (read from its code) are loaded first, recursively, so that
    importing the module itself loads it alone; a package whose ``__init__`` imports its own
    submodules loads them with it, their other imports loaded first. Between modules, a pending
    fork goes first. A dependency that fails to load is left to the module that imports it (it may
    expect that failure: an optional package); a module asked for that fails raises, as ``import``
    would.
    """
    with agent_import():
        import dis  # noqa: F401  (loaded here, in a step of its own, for _import_instructions)
        import importlib.machinery  # (likewise, for _Loader)
        import importlib.util  # noqa: F401
    loader = _Loader()
    for name in modules:
        loader.load(name, required=True)


class _Loader:
    """One :func:`load`: the modules it has begun, and the specs it found for them."""

    def __init__(self) -> None:
        self._begun: Set[str] = set()
        self._specs: Dict[str, Any] = {}

    def load(self, name: str, required: bool) -> None:
        """Load ``name``'s imports, then ``name`` itself, unless its package is being loaded and
        imports it (a package is imported before its submodules, whatever the order of the code)."""
        if name in sys.modules or name in self._begun:
            return
        self._begun.add(name)
        try:
            parent = name.rpartition(".")[0]
            if parent:
                self.load(parent, required)
            for dependency, names in self._imports(name):
                self.load(dependency, required=False)
                module = sys.modules.get(dependency)
                spec = module.__spec__ if module is not None else self._specs.get(dependency)
                if spec is None or not spec.submodule_search_locations:
                    continue
                for submodule in names:  # ``from package import name``: perhaps a submodule
                    if not hasattr(module, submodule):
                        self.load(f"{dependency}.{submodule}", required=False)
            if parent and parent not in sys.modules:
                return
            with agent_import():
                importlib.import_module(name)
        except Exception:
            if required:
                raise

    def _imports(self, name: str) -> List[Tuple[str, Tuple[str, ...]]]:
        """The modules ``name`` imports as it runs its body (absolute names), with the names imported
        from each (``from x import y``: ``y`` may be a submodule); nothing if its code cannot be read
        without running it (built-in or extension modules, other importers).

        Finding a module (without importing its package) and reading its code take no module's
        import lock (the interpreter's global import lock, which ``os.fork()`` itself takes, aside),
        so a fork need not wait for this: the thread says so in ``_reading``, which
        :func:`_agent_thread_unsafe_to_fork` reads.
        """
        thread = native.get_ident()
        _reading.add(thread)
        try:
            spec = self._find(name)
            get_code = getattr(spec.loader, "get_code", None) if spec is not None else None
            code = get_code(name) if get_code is not None else None
        except Exception:  # anything odd is left to the import itself
            return []
        finally:
            _reading.discard(thread)
        if spec is None or code is None:
            return []
        self._specs[name] = spec
        found = []
        for module, level, fromlist in _import_instructions(code):
            try:
                absolute = importlib.util.resolve_name("." * level + module, spec.parent) if level else module
            except (ImportError, ValueError):
                continue
            if absolute:
                found.append((absolute, tuple(item for item in fromlist if item != "*")))
        return found

    def _find(self, name: str) -> Any:
        parent = name.rpartition(".")[0]
        if not parent or parent in sys.modules:
            return importlib.util.find_spec(name)
        parent_spec = self._specs.get(parent)  # being loaded: look in its directory, not importing it
        locations = parent_spec.submodule_search_locations if parent_spec is not None else None
        return importlib.machinery.PathFinder.find_spec(name, locations) if locations else None


@contextmanager
def agent_import() -> Iterator[None]:
    """One step of the agent's loading (an import, or reading a module's code for :func:`load`):
    begun only while no fork is pending, and counted while it runs, so that a fork waits for it.

    Every import the agent's own code makes on its threads is one (the sampling thread's lazy
    ones too): :func:`_agent_thread_unsafe_to_fork` returns before the fork, and the GIL may change
    hands in between (another before-fork hook, the import lock), long enough to begin an import.
    """
    global _loading
    with _gate:
        while True:
            if _holds:
                _gate.wait()
                continue
            settling_s = _settling_until - time.monotonic()
            if settling_s <= 0:
                break
            _gate.wait(settling_s)
        _loading += 1
    try:
        yield
    finally:
        with _gate:
            _loading -= 1
            if not _loading:
                _gate.notify_all()


def loading_open() -> bool:
    """Whether a step of the agent's loading would begin now, without waiting (for a thread that
    has better to do than wait, and asks again later)."""
    return not _holds and _settling_until <= time.monotonic()


def settle(timeout_s: float = SETTLE_S) -> None:
    """Hold the agent's loading back until :func:`settled`, ``timeout_s`` at most.

    For the host's start-up after gevent's ``patch_all()``: from then on the import system's module
    locks are gevent's, and an agent thread importing a module the host's main greenlet imports at
    the same moment (a gunicorn worker loading its application while the agent loads botocore: both
    import ``concurrent.futures``) makes the greenlet wait on a lock an OS thread holds, which gevent
    cannot do: the worker died at boot (``LoopExit``) or hung for good. :func:`settled` comes at the
    host's first wait on its hub (``native.when_host_hub_runs``), by when a server has loaded its
    code, or when the host waits for the agent (a flush, the exit).
    """
    global _settling_until
    with _gate:
        _settling_until = time.monotonic() + timeout_s


def settled() -> None:
    """The host's start-up is over: the agent's loading goes on (see :func:`settle`)."""
    global _settling_until
    with _gate:
        if _settling_until:
            _settling_until = 0.0
            _gate.notify_all()


def _import_instructions(code: types.CodeType) -> Iterator[Tuple[str, int, Tuple[str, ...]]]:
    """``(module, level, fromlist)`` of the imports a module's body always runs: those before its
    first branch or ``try``.

    An import after one may never run (``if __name__ == "__main__"``, ``if TYPE_CHECKING``, a
    platform's module, an optional one tried in ``try``): loading it, or what it imports, would
    cost the host time and memory for nothing, so it is left to the module's own import. The
    bytecode is read directly: ``dis.get_instructions`` would cost more than the import itself.
    """
    import_name, load_const, extended_arg, cache, stops = _opcodes()
    raw, names, consts = code.co_code, code.co_names, code.co_consts
    end = min(len(raw), _first_protected_offset(code))
    previous: List[object] = [None, None]
    extended = 0
    for offset in range(0, end, 2):
        opcode = raw[offset]
        if opcode == cache:
            continue
        argument = raw[offset + 1] | extended
        if opcode == extended_arg:
            extended = argument << 8
            continue
        extended = 0
        if opcode in stops:
            return
        if opcode == import_name:
            level, fromlist = previous
            yield (
                names[argument],
                level if isinstance(level, int) else 0,
                fromlist if isinstance(fromlist, tuple) else (),
            )
        previous = [previous[1], consts[argument] if opcode == load_const else None]


@functools.cache
def _opcodes() -> Tuple[int, int, int, int, FrozenSet[int]]:
    """IMPORT_NAME, LOAD_CONST, EXTENDED_ARG, CACHE (-1 before 3.11), and where a body stops
    running straight on: every jump, ``try`` and ``with`` set-up, loop and return."""
    import dis

    opmap = dis.opmap
    stops = set(dis.hasjrel) | set(dis.hasjabs) | set(getattr(dis, "hasjump", ()))
    stops.update(opmap[name] for name in _STOP_OPCODES if name in opmap)
    return opmap["IMPORT_NAME"], opmap["LOAD_CONST"], opmap["EXTENDED_ARG"], opmap.get("CACHE", -1), frozenset(stops)


def _first_protected_offset(code: types.CodeType) -> int:
    """Where the first ``try`` or ``with`` begins: from 3.11 a range of the exception table, not an opcode."""
    if not getattr(code, "co_exceptiontable", b""):
        return len(code.co_code)
    import dis

    parse = getattr(dis, "_parse_exception_table", None)
    entries = parse(code) if parse is not None else getattr(dis.Bytecode(code), "exception_entries", ())
    return min((entry.start for entry in entries), default=len(code.co_code))


def _hold() -> None:
    global _holds
    with _gate:
        _holds += 1


def _release() -> None:
    global _holds
    with _gate:
        _holds -= 1
        if not _holds:
            _gate.notify_all()


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
    global _restart_failures
    if _restart_failures is None and _child_callbacks:
        _restart_failures = _shared_counters()
    hold_imports()


def hold_imports() -> None:
    """Keep the agent's threads out of imports until :func:`release_imports`: for a fork, and for
    gevent's ``patch_all()``, which swaps the import system's locks under a thread that imports."""
    _hold()
    if not _child_callbacks:
        return
    deadline = time.monotonic() + GATE_WAIT_S
    with _gate:  # the module load() is importing now, if any: one module
        _gate.wait_for(lambda: not _loading, GATE_WAIT_S)
    while _agent_thread_unsafe_to_fork() and time.monotonic() < deadline:
        native.sleep(_IMPORT_POLL_S)  # any other import on an agent thread (a lazy one, deep in a call)


def release_imports() -> None:
    _release()


def _agent_thread_unsafe_to_fork() -> bool:
    """True while one of the agent's threads is inside an import, holding that module's lock, or
    sets OpenSSL up (``_OPENSSL_SETUP``), holding OpenSSL's.

    :func:`load` covers the imports the agent knows it makes; this covers every other lazy import
    on its threads (fleet identity, the first request, a codec). Returning False with the GIL held
    means no agent thread can begin an import or an SSL context before the fork itself. While other
    interpreters run, no thread's frames may be read: :func:`load`'s count alone guards the fork then.
    """
    frames = interpreters.current_frames()
    if frames is None:
        return False
    frames.pop(native.get_ident(), None)  # our own frame must not join a cycle (see sampler.py)
    for ident, name in native.agent_threads():
        agents = ident is not None and name.startswith(AGENT_THREAD_PREFIX)
        frame = frames.get(ident) if agents and ident is not None else None
        reading = ident in _reading
        while frame is not None:
            code = frame.f_code
            if code.co_filename.startswith("<frozen importlib._bootstrap") and not reading:
                return True
            if _sets_openssl_up(code):
                return True
            frame = frame.f_back
    return False


def _sets_openssl_up(code: types.CodeType) -> bool:
    """Whether ``code`` is one of ``_OPENSSL_SETUP``'s functions."""
    filename = code.co_filename.replace("\\", "/")
    return any(code.co_name in names and filename.endswith(suffix) for suffix, names in _OPENSSL_SETUP)


def _after_in_parent() -> None:
    _release()


def _after_in_child() -> None:
    global _gate, _holds, _loading, _restart_failures, _restart_failures_seen, _settling_until
    _gate, _holds, _loading = native.Condition(), 0, 0  # the agent's threads are gone
    _settling_until = 0.0
    _reading.clear()
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
