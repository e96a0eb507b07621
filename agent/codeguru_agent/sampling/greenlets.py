"""Suspended greenlets as units of work: each counts one sample a tick on ``<greenlet NAME>`` and its frames.

``sys._current_frames()`` shows the greenlet running on each thread; a suspended one keeps its
stack in ``gr_frame``. Greenlets are found without scanning the heap: a ``greenlet.settrace``
function, installed on each thread that runs greenlets (:func:`track_current_thread`, chained
with any trace function already there), records every greenlet that switches out, by id with a
weak reference; the sampling thread reads a copy of that record. The running greenlet's
``gr_frame`` is None: it is the thread's real stack, sampled as the thread.
"""

import sys
import types
import weakref
from typing import Any, Callable, Dict, Final, List, Mapping, Optional

from codeguru_agent.sampling.units import UnitCounter, unit_frame, weighted_subset

_SWITCH_EVENTS: Final = frozenset({"switch", "throw"})


_PRUNE_AT_LEAST: Final = 1024


class _Tracker:
    """Every greenlet seen switching out, by id, held weakly; one for the process."""

    def __init__(self) -> None:
        self.suspended: Dict[int, weakref.ref[Any]] = {}
        self.threads: Dict[int, Optional[Callable[[str, Any], Any]]] = {}
        """Thread ident -> the trace function found there, for the threads tracked."""
        self.traces: weakref.WeakSet[Callable[[str, Any], Any]] = weakref.WeakSet()
        """Our trace functions: a thread is tracked if its own trace is one of them. Its ident does
        not say so: a thread that ends leaves its ident to the next one started."""
        self.prune_at = _PRUNE_AT_LEAST
        """The size at which the trace itself drops dead greenlets: the sampler does it at each tick,
        but a stopped agent leaves the trace installed, and a server's greenlets come and go."""

    def prune(self) -> None:
        suspended = self.suspended
        for key, reference in list(suspended.items()):
            if reference() is None and suspended.get(key) is reference:
                suspended.pop(key, None)
        self.prune_at = max(_PRUNE_AT_LEAST, 2 * len(suspended))


_tracker = _Tracker()


def track_current_thread() -> bool:
    """Record this thread's greenlet switches from now on; True if they are (greenlet is loaded).

    Cheap to call again: a thread already tracked is left as it is.
    """
    greenlet = sys.modules.get("greenlet")
    settrace = getattr(greenlet, "settrace", None)
    if settrace is None:
        return False
    import _thread

    ident = _thread.get_ident()  # the OS thread's, whatever gevent patched into ``threading``
    gettrace = getattr(greenlet, "gettrace", None)
    if gettrace is not None and gettrace() in _tracker.traces:
        return True
    tracker = _tracker
    suspended = tracker.suspended
    ref = weakref.ref
    previous: Optional[Callable[[str, Any], Any]] = None

    def trace(event: str, args: Any) -> Any:
        if event in _SWITCH_EVENTS:
            origin = args[0]
            suspended[id(origin)] = ref(origin)
            if len(suspended) > tracker.prune_at:
                tracker.prune()
        if previous is not None:
            return previous(event, args)
        return None

    previous = settrace(trace)
    _tracker.traces.add(trace)
    _tracker.threads[ident] = previous
    return True


def reset_after_fork() -> None:
    """In a forked child: only the forking thread survives, and its trace function with it."""
    import _thread

    ident = _thread.get_ident()
    tracked = ident in _tracker.threads
    kept = _tracker.threads.get(ident)
    _tracker.threads.clear()
    if tracked:
        _tracker.threads[ident] = kept


class GreenletSampler:
    """Counts every suspended greenlet (hubs aside), at most ``max_units`` a tick."""

    def __init__(self, max_units: int) -> None:
        self._max_units = max_units
        self._frame_ids: Dict[str, int] = {}
        self._table: object = None

    def sample(self, threads: Mapping[int, types.FrameType], counter: UnitCounter) -> int:
        """Count this tick's greenlet samples on ``counter``; returns how many were counted."""
        if not _tracker.threads:
            return 0
        if counter.table is not self._table:
            self._table = counter.table
            self._frame_ids.clear()
        suspended = _tracker.suspended
        units: List[Any] = []
        for key, reference in list(suspended.items()):  # one C-level copy; the trace writes meanwhile
            unit = reference()
            if unit is None or unit.dead:
                if suspended.get(key) is reference:
                    suspended.pop(key, None)
            elif unit.gr_frame is not None and not _is_hub(unit):
                units.append(unit)
        counted = 0
        for unit, weight in weighted_subset(units, self._max_units):
            top = unit.gr_frame
            if top is None:  # switched in since it was looked at: the thread's own sample has it
                continue
            stack = counter.stack_below(top)
            del top
            if stack is None:
                continue
            counter.count_unit(stack + (self._unit_id(unit, counter),), weight)
            counted += weight
        return counted

    def _unit_id(self, unit: Any, counter: UnitCounter) -> int:
        name = _greenlet_name(unit)
        frame_id = self._frame_ids.get(name)
        if frame_id is None:
            frame_id = counter.synthetic_id(unit_frame("greenlet", name))
            if frame_id < 0:
                return counter.truncated_id
            self._frame_ids[name] = frame_id
        return frame_id


def _is_hub(unit: Any) -> bool:
    """gevent's hub: its own loop, idle or not, is in no request's time."""
    hub = sys.modules.get("gevent.hub")
    hub_type = getattr(hub, "Hub", None)
    return hub_type is not None and isinstance(unit, hub_type)


def _greenlet_name(unit: Any) -> str:
    """The name the program gave a gevent greenlet; else its function's qualified name.

    An assigned name is in the instance's ``__dict__``; the ``name`` property would make up
    ``Greenlet-N`` through the hub's registry of idents, not something to do from another thread.
    """
    name = getattr(unit, "__dict__", {}).get("name")
    if isinstance(name, str) and name:
        return name
    if getattr(unit, "parent", 0) is None:
        return "main"
    run = getattr(unit, "_run", None) or getattr(unit, "run", None)  # a started raw greenlet has neither
    run = getattr(run, "func", run)  # functools.partial
    return str(getattr(run, "__qualname__", None) or type(unit).__name__)
