"""The main thread's timer: a kernel interval timer whose handler records where the main thread is.

A sampling thread sees a busy thread only when it gets the GIL: at a blocking call or after the
switch interval (5 ms). CPU bursts shorter than that, between blocking calls (a request handler's
work), never show in its samples. ``ITIMER_REAL`` sends SIGALRM every sampling interval; CPython
runs the Python handler on the main thread at its next bytecode boundary (a blocking call is
interrupted, the handler runs, and the call is retried: PEP 475), and the handler's ``frame`` is
where the main thread was. So the main thread is seen where its wall-clock time goes.

The handler reads the main thread's frames where they are cheapest to read, on the main thread
itself: it looks each position up in the sampler's frame table (read only; ``positions``) and
appends the stack's frame ids, leaf first, to a short bounded deque (an atomic append). A position
the table does not know yet is the sampling thread's to resolve: the handler then keeps the frames
and their offsets instead, and the sampling thread walks them. The sampling thread drains the deque
at each tick. Kept frames keep their locals alive: the deque is drained every tick and holds a few
at most, and once the main thread's positions are known it holds none. The sampling thread stops
the timer while the main thread waits, and starts it again when it runs (``Sampler._main_waited``).

The timer is the host's signal, so it is taken only when nobody else uses it, and given up the
moment the host wants it (a handler of its own, or ``alarm``/``setitimer`` of its own): the host's
values are never touched. This module imports ``_signal``, the C module loaded at start-up, not
``signal`` (its enums cost a millisecond of the host's start()).
"""

from __future__ import annotations

import _signal as _c_signal
import logging
import os
import threading
import time
import types
from collections import deque
from typing import Any, Callable, Deque, Dict, Final, List, Optional

logger = logging.getLogger(__name__)
_signal: Any = _c_signal
"""``signal``'s functions without its enums; the type stubs describe only ``signal``."""

CAPACITY: Final = 16
"""Samples kept between two drains: the sampling thread drains every tick (about one sample), so
more than a few means it was starved; the oldest are dropped (and counted) first."""
DELIVERY_COST_S: Final = 25e-6
"""What one SIGALRM costs the main thread beyond the handler's own Python (timed at start-up): the
kernel's delivery, an interrupted system call's retry, CPython's trip and dispatch, and the caches
the handler's walk evicts. ``benchmarks/bursts.py --cost`` measured 16 to 39 µs per signal, handler
included, on two shared cores under load (the higher figures 40 frames deep)."""

# Why the timer is not (or no longer) in use; reported per reason in the profile's debug info.
NOT_MAIN_THREAD: Final = "notMainThread"
UNSUPPORTED: Final = "unsupported"
HANDLER_IN_USE: Final = "handlerInUse"
TIMER_IN_USE: Final = "timerInUse"
HANDLER_REPLACED: Final = "handlerReplaced"
TIMER_CHANGED: Final = "timerChanged"
EXEC: Final = "exec"
_REASONS: Final = {
    NOT_MAIN_THREAD: "start() was called off the main thread, where Python cannot install signal handlers",
    UNSUPPORTED: "this platform has no interval timer",
    HANDLER_IN_USE: "the program has its own SIGALRM handler",
    TIMER_IN_USE: "the program's interval timer (signal.alarm or setitimer) is in use",
    HANDLER_REPLACED: "the program installed its own SIGALRM handler",
    TIMER_CHANGED: "the program set the interval timer itself",
    EXEC: "the program called exec",
}

Sample = Any
"""``(stack_ids, stack_id, positions, ids)``: the stack's id in the sampler's ``stack_ids`` (-1 if
new there), and the ids of its frames, leaf first, read from the frame table whose ``fast`` dict is
``positions``; or (a position the table did not know) ``[frame, offset, caller, offset, ...]``,
leaf first, then None if the depth bound cut it. Either is read when the signal comes: a
coroutine's frame loses its caller when it suspends, and the frames move on before the sampling
thread reads them."""
_NO_POSITIONS: Final[Dict[int, int]] = {}
"""A code object's positions when the table has none of it (never written)."""


class MainThreadTimer:
    """SIGALRM and ``ITIMER_REAL``, owned by the agent while the host does not use them.

    ``install`` and ``uninstall`` run on the main thread (Python allows signal handlers nowhere
    else); ``arm``, ``disarm``, ``drain`` and ``check`` on the sampling thread.
    """

    def __init__(self) -> None:
        self.samples: Deque[Sample] = deque(maxlen=CAPACITY)
        """What the handler records, drained by the sampling thread at each tick (inline, not by a call)."""
        self.dropped = 0
        """Samples the deque had no room for (the sampling thread was starved)."""
        self.live = False
        """Installed and not given up: the handler records samples, the sampling thread drains them."""
        self.interval_s = 0.0
        """The interval the timer is armed with (0: disarmed)."""
        self.held = False
        """Set while the profiler is paused: a signal still in flight records nothing (Lambda may
        freeze the process right after the pause, and nothing after it belongs to a profile)."""
        self.reasons: Dict[str, int] = {}
        """Why the timer was not installed or was given up, by reason (see the module's constants)."""
        self.program_owns_timer = False
        """The program set the interval timer (``alarm``/``setitimer``) while the handler was ours."""
        self.ident = threading.main_thread().ident
        self.always_armed = False
        """Keep the timer running while the main thread waits (for tests and measurements: by
        default it stops then, see ``Sampler._main_waited``)."""
        self.max_depth = 1000
        """Frames captured per sample at most: the sampler's depth bound, set by the runner."""
        self.positions: Optional[Dict[int, Dict[int, int]]] = None
        """The sampler's frame table's ``fast`` dict (id of a code object -> its offsets' frame ids),
        read by the handler; set by the sampler, again whenever its table is a new one."""
        self.leaf_children: Dict[Any, int] = {}
        """The same table's ``leaf_children`` ((id of code, offset) -> synthetic child id, or -1)."""
        self.truncated_id = 0
        """The same table's id of the frame that marks a stack the depth bound cut."""
        self.stack_ids: Dict[Any, int] = {}
        """The sampler's stack ids of the current interval (a stack key -> its id), read by the handler."""
        self.handler = self._make_handler(self.samples)
        """SIGALRM's handler: the tick compares the installed one with it (a C call, not :meth:`check`)."""
        self.handler_code = self.handler.__code__
        """The handler's code: a main thread the sampling thread finds running it is counted where
        the handler interrupted it."""
        self._real_exec: Dict[str, Callable[..., Any]] = {}

    def _make_handler(
        self, samples: Deque[Sample], calibration: bool = False
    ) -> Callable[[int, Optional[types.FrameType]], None]:
        append = samples.append

        def on_alarm(signum: int, frame: Optional[types.FrameType]) -> None:
            """The main thread's sample (a ``Sample``: its frame ids if the table knows every
            position, else its frames and their offsets); none for a signal that came while the
            handler ran (its own frame: the sample is being taken).
            A signal while the timer is not armed may be the program's (see ``_not_armed``)."""
            if not calibration and not (self.live and self.interval_s):
                self._not_armed(signum)
                return
            if frame is not None and (calibration or not self.held) and frame.f_code is not on_alarm.__code__:
                if len(samples) == CAPACITY:
                    self.dropped += 1
                positions = self.positions
                if positions is not None:  # the sampler's walk, on the thread whose frames are in cache
                    code, lasti = frame.f_code, frame.f_lasti
                    frame_id = positions.get(id(code), _NO_POSITIONS).get(lasti, -1)
                    child = self.leaf_children.get((id(code), lasti), -2)
                    if frame_id >= 0 and child != -2:
                        ids = [child, frame_id] if child >= 0 else [frame_id]
                        caller = frame.f_back
                        depth = self.max_depth - 1
                        while caller is not None and depth:
                            frame_id = positions.get(id(caller.f_code), _NO_POSITIONS).get(caller.f_lasti, -1)
                            if frame_id < 0:
                                break  # a position to resolve: the frames are kept instead
                            ids.append(frame_id)
                            caller = caller.f_back
                            depth -= 1
                        else:
                            if caller is not None:
                                ids.append(self.truncated_id)
                            stack_ids = self.stack_ids
                            append((stack_ids, stack_ids.get(tuple(ids), -1), positions, ids))
                            return
                        del caller
                chain: List[Any] = []
                push = chain.append
                depth = self.max_depth
                while frame is not None and depth:
                    push(frame)
                    push(frame.f_lasti)
                    frame = frame.f_back
                    depth -= 1
                if frame is not None:
                    push(None)  # cut by the depth bound
                append(chain)

        return on_alarm

    def _not_armed(self, signum: int) -> None:
        """A SIGALRM while the timer is not armed. Once the program has set the interval timer
        itself (the sampling thread saw it), SIGALRM is the program's again: its default action
        comes back here, on the main thread, and if the program's timer has run out, this signal
        is the program's (``signal.alarm`` as a watchdog), which ends the process as it would
        without the agent. Otherwise it is one of the timer's own, come after the timer stopped
        (CPython runs a handler once the main thread is back from a call, which may be long after
        the signal): nothing to do. Never raises into the host."""
        if not self.program_owns_timer:
            return
        try:
            if _signal.getsignal(_signal.SIGALRM) is not self.handler:
                return
            remaining, interval = _signal.getitimer(_signal.ITIMER_REAL)
            _signal.signal(_signal.SIGALRM, _signal.SIG_DFL)
            if remaining > 0 and not interval:
                return  # the program's alarm is still to come: this signal was one of the timer's own
            os.kill(os.getpid(), signum)
        except Exception:  # not the main thread after all, or no such call here: the signal is dropped
            return

    # --- on the main thread ------------------------------------------------------------------------

    def install(self) -> bool:
        """Take SIGALRM if nobody uses it or its timer; False (and the reason, said once) otherwise."""
        if self.live and self.ours():
            self.held = False
            return True
        setitimer = getattr(_signal, "setitimer", None)
        if setitimer is None or not hasattr(_signal, "SIGALRM"):
            return self._refuse(UNSUPPORTED)
        if threading.current_thread() is not threading.main_thread():
            return self._refuse(NOT_MAIN_THREAD)
        try:
            if _signal.getsignal(_signal.SIGALRM) not in (_signal.SIG_DFL, self.handler):  # ours: left inert
                return self._refuse(HANDLER_IN_USE)
            if _signal.getitimer(_signal.ITIMER_REAL) != (0.0, 0.0):
                return self._refuse(TIMER_IN_USE)
            self.samples.clear()
            self.ident = threading.main_thread().ident
            self.held = False
            self.program_owns_timer = False
            self.live = True
            _signal.signal(_signal.SIGALRM, self.handler)
        except ValueError:  # the main thread of another interpreter
            self.live = False
            return self._refuse(NOT_MAIN_THREAD)
        self._guard_exec()
        return True

    def uninstall(self) -> None:
        """Disarm, and give SIGALRM back to the default action if the handler is still ours (else
        the host's handler stays). Off the main thread the handler cannot be changed: it stays,
        inert, until the next start() or the process's end."""
        self.live = False
        self.disarm()
        self._unguard_exec()
        if threading.current_thread() is threading.main_thread() and self.ours():
            try:
                _signal.signal(_signal.SIGALRM, _signal.SIG_DFL)
            except ValueError:  # another interpreter's main thread: left inert
                pass
        self.samples.clear()

    def reset_in_child(self) -> None:
        """In a forked child (its only thread, its main thread): the kernel dropped the timer, the
        handler was inherited. The program's own disposition comes back; a restarted agent installs
        again."""
        was_ours = self.ours()
        self.live = False
        self.interval_s = 0.0
        self.program_owns_timer = False
        self.dropped = 0
        self.reasons = {}  # the child's own, said again if they apply to it
        self.samples.clear()
        self._unguard_exec()
        if was_ours:
            try:
                _signal.signal(_signal.SIGALRM, _signal.SIG_DFL)
            except ValueError:  # not the main thread after all: left inert
                pass

    # --- on the sampling thread --------------------------------------------------------------------

    def arm(self, interval_s: float) -> None:
        """Fire every ``interval_s`` (rounded to the microsecond, the kernel's unit), if still ours."""
        interval_s = max(1e-6, round(interval_s, 6))
        if not self.check():
            return
        if not self.interval_s and _signal.getitimer(_signal.ITIMER_REAL) != (0.0, 0.0):
            self._give_up(TIMER_CHANGED, disarm=False)  # the program set it since install() or disarm()
            return
        previous, self.interval_s = self.interval_s, interval_s  # first: its first signal is its own
        try:
            _signal.setitimer(_signal.ITIMER_REAL, interval_s, interval_s)
        except (OSError, ValueError):  # refused by the kernel: the sampling thread's view for good
            self.interval_s = previous
            self._give_up(UNSUPPORTED, disarm=False)

    def disarm(self) -> None:
        """Stop the timer, only if it is still the one set here (never the host's)."""
        if not self.interval_s:
            return
        ours = self._timer_is_ours()
        self.interval_s = 0.0  # before the call: a signal from here on may be in flight, not a sample
        if ours:
            try:
                _signal.setitimer(_signal.ITIMER_REAL, 0.0, 0.0)
            except (OSError, ValueError):  # nothing more to do: it was ours and stays as the kernel left it
                pass

    def check(self) -> bool:
        """Whether the timer is still live: the handler still ours and the timer still as set here;
        if the host took either, give up (leaving the host's values alone)."""
        if not self.live:
            return False
        if not self.ours():
            self._give_up(HANDLER_REPLACED, disarm=True)
            return False
        if self.interval_s and not self._timer_is_ours():
            self._give_up(TIMER_CHANGED, disarm=False)
            return False
        if not self.interval_s and self._program_timer_set():
            self._give_up(TIMER_CHANGED, disarm=False)  # set while this one was stopped
            return False
        return True

    def hold(self, held: bool) -> None:
        """Record nothing from now on (pause), or again (resume); either way forget what waits."""
        self.held = held
        self.samples.clear()

    def drain(self) -> List[Sample]:
        """The samples recorded since the last drain, oldest first (none once given up)."""
        samples = self.samples
        if not samples:
            return []
        drained = []
        pop = samples.popleft
        try:
            while True:
                drained.append(pop())
        except IndexError:
            pass
        return drained if self.live else []

    def interrupted(self, frame: types.FrameType) -> types.FrameType:
        """Where the main thread was: its frame, or, caught in this timer's handler, the frame the
        handler interrupted."""
        if frame.f_code is self.handler_code and frame.f_back is not None:
            return frame.f_back
        return frame

    def handler_cost_s(self, frame: types.FrameType, calls: int = 200) -> float:
        """The handler's own cost per call, timed on the calling thread with a private deque, plus
        the signal's delivery (``DELIVERY_COST_S``): what each timer sample is charged to the budget."""
        handler = self._make_handler(deque(maxlen=CAPACITY), calibration=True)
        dropped = self.dropped
        try:
            start = time.thread_time()
            for _ in range(calls):
                handler(14, frame)
            elapsed = time.thread_time() - start
        finally:
            self.dropped = dropped
        return max(0.0, elapsed / calls) + DELIVERY_COST_S

    # --- both --------------------------------------------------------------------------------------

    def ours(self) -> bool:
        """Whether SIGALRM's handler is this timer's."""
        try:
            return _signal.getsignal(_signal.SIGALRM) is self.handler
        except Exception:  # no SIGALRM here: not ours
            return False

    def _timer_is_ours(self) -> bool:
        try:
            interval = _signal.getitimer(_signal.ITIMER_REAL)[1]
        except Exception:  # no interval timer here
            return False
        return abs(float(interval) - self.interval_s) < 2e-6

    def _program_timer_set(self) -> bool:
        try:
            return bool(_signal.getitimer(_signal.ITIMER_REAL) != (0.0, 0.0))
        except Exception:  # no interval timer here
            return False

    def _give_up(self, reason: str, *, disarm: bool) -> None:
        if reason == TIMER_CHANGED:
            self.program_owns_timer = True
        self.live = False
        if disarm:
            self.disarm()
        self.interval_s = 0.0
        self.samples.clear()
        self._refuse(reason)

    def _refuse(self, reason: str) -> bool:
        count = self.reasons.get(reason, 0)
        self.reasons[reason] = count + 1
        if not count:
            logger.info("the main thread is sampled by the sampling thread only: %s", _REASONS[reason])
        return False

    def _guard_exec(self) -> None:
        """Interval timers survive ``exec`` while handlers do not: the new program would die of the
        first SIGALRM. ``os.execv`` and ``os.execve`` (which the other ``os.exec*`` call) disarm first."""
        if self._real_exec:
            return
        for name in ("execv", "execve"):
            real = getattr(os, name, None)
            if real is not None:
                self._real_exec[name] = real
                setattr(os, name, self._exec_guard(real))

    def _exec_guard(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def exec_without_timer(*args: Any, **kwargs: Any) -> Any:
            if self.live:
                self._give_up(EXEC, disarm=True)
            return real(*args, **kwargs)

        exec_without_timer.__name__ = real.__name__
        exec_without_timer.__doc__ = real.__doc__
        exec_without_timer.__wrapped__ = real  # type: ignore[attr-defined]
        return exec_without_timer

    def _unguard_exec(self) -> None:
        """Put ``os.execv``/``os.execve`` back, unless someone wrapped them after us."""
        for name, real in self._real_exec.items():
            current = getattr(os, name, None)
            if getattr(current, "__wrapped__", None) is real:
                setattr(os, name, real)
        self._real_exec = {}


_timer: Optional[MainThreadTimer] = None


def main_thread_timer() -> MainThreadTimer:
    """The process's one timer (SIGALRM is one per process)."""
    global _timer
    if _timer is None:
        _timer = MainThreadTimer()
    return _timer
