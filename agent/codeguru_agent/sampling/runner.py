"""The sampling thread: ticks at a fixed, jittered rate, samples, and seals one aggregate per interval.

It does nothing else: encoding and network I/O happen on the uploader's thread, so a slow endpoint
can never stall sampling. It survives any error in one tick (counted, reported in the next profile),
stays idle while paused, while the kill-switch file exists, or while the service says not to
profile, and keeps paused time out of the profile's duration.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Callable, Final, Optional

from codeguru_agent.config import AgentConfig
from codeguru_agent.host import native
from codeguru_agent.sampling.governor import WINDOW_S, OverheadGovernor
from codeguru_agent.sampling.sampler import Aggregate, Sampler

logger = logging.getLogger(__name__)

THREAD_NAME: Final = "codeguru-agent-sampler"
KILLSWITCH_CHECK_S: Final = 0.5
_IDLE_WAIT_S: Final = 0.25
_JITTER: Final = 0.2
_SHORT_WAIT_S: Final = 0.05
_U64: Final = (1 << 64) - 1
_TWO_TO_53: Final = float(1 << 53)


class Runner:
    """Owns the sampler and its thread; hands sealed aggregates to ``on_sealed``."""

    def __init__(
        self,
        config: AgentConfig,
        on_sealed: Callable[[Aggregate, float], None],
        *,
        exclude_ident: Callable[[], Optional[int]] = lambda: None,
    ) -> None:
        self._config = config
        self._on_sealed = on_sealed
        self._exclude_ident = exclude_ident
        self._sampler = Sampler(config)
        self._governor = OverheadGovernor(config.sampling_interval_ms, config.cpu_limit_percent)
        self._stop = native.Event()
        self._wake = native.Event()
        self._thread: Optional[native.AgentThread] = None
        self._paused = False
        self._pause_lock = native.Lock()
        self._paused_since = 0.0
        self._paused_s = 0.0
        """Paused time not yet handed to the sampler, timed by the callers of ``set_paused``."""
        self._should_profile = True
        self._killed = False
        self._seal_now = False
        self._sealed = native.Event()
        self._under_way = native.Event()
        """Set once the loop has taken its first sample, found nothing to sample yet, or ended."""
        self.tick_errors = 0
        self.cpu_s = 0.0
        """The sampling thread's CPU time since it began to sample, updated every second and at
        each seal (so the uploader reads it right for the interval it sends): all of it, the
        wake-ups included, not only the ticks. Read once a second, not around every tick, where
        two more system calls would cost each sample."""
        self._cpu_start = 0.0
        self._jitter_state = int.from_bytes(os.urandom(8), "little")
        self._reporting_interval_s = config.reporting_interval_ms / 1000.0

    # --- control, from any thread --------------------------------------------------------------

    def adopt(self, thread: Optional[native.AgentThread]) -> None:
        """Run on ``thread``, which calls :meth:`run`: the profiler's sampling thread, created by
        start() on the host's thread (Python 3.12 refuses new threads at shutdown), builds this
        runner and then runs it."""
        self._thread = thread

    def run(self) -> None:
        """The sampling loop, on the adopted thread, until :meth:`stop`."""
        try:
            self._run()
        finally:
            self._under_way.set()

    def wait_under_way(self, timeout_s: float) -> bool:
        """Wait until the first sample is taken (or the loop idles or ends): a seal before it is empty."""
        return self._under_way.wait(max(0.0, timeout_s))

    def stop(self, timeout_s: float) -> None:
        """Stop sampling; the thread seals what it has before it ends."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and not native.is_current(thread) and thread.is_alive():
            thread.join(max(0.0, timeout_s))

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def ident(self) -> Optional[int]:
        return self._thread.ident if self._thread is not None else None

    def set_paused(self, paused: bool) -> None:
        """Pause or resume; once a pause returns, no tick runs until the resume (a tick in flight ends first).

        Paused time is timed here, not when this thread notices: Lambda may freeze the process right
        after the pause, before the thread has run again, and the frozen time must not count.
        """
        with self._pause_lock:
            now = time.monotonic()
            if paused and not self._paused:
                self._paused_since = now
            elif not paused and self._paused:
                self._paused_s += max(0.0, now - self._paused_since)
            self._paused = paused
        self._wake.set()

    @property
    def paused(self) -> bool:
        return self._paused

    def set_should_profile(self, should_profile: bool) -> None:
        self._should_profile = should_profile
        self._wake.set()

    @property
    def killed(self) -> bool:
        """True while the kill-switch file exists."""
        return self._killed

    def apply(self, config: AgentConfig) -> None:
        """Take a new configuration (the service's answer) at the next tick."""
        self._config = config
        self._reporting_interval_s = config.reporting_interval_ms / 1000.0
        self._governor.reconfigure(config.sampling_interval_ms)
        self._wake.set()

    def seal_now(self, timeout_s: float) -> bool:
        """Ask the thread to seal the current interval now; True once it has."""
        if not self.is_alive():
            return False
        self._sealed.clear()
        self._seal_now = True
        self._wake.set()
        return self._sealed.wait(timeout_s)

    @property
    def effective_interval_ms(self) -> float:
        return self._governor.interval_ms

    # --- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        sampler = self._sampler
        sampler.synthetic_leaves = "dis" in sys.modules and self._import_dis()
        first_tick = True
        sampler.exclude_thread(native.get_ident())
        sampler.exclude_thread(self._exclude_ident())
        clock = time.monotonic
        next_tick = clock()
        report_at = next_tick + self._reporting_interval_s
        window_start = next_tick
        window_cpu_start = self._cpu_start = time.thread_time()
        killswitch_checked = 0.0
        idle_since: Optional[float] = None
        while not self._stop.is_set():
            now = clock()
            if now - killswitch_checked >= KILLSWITCH_CHECK_S:
                killswitch_checked = now
                self._killed = os.path.exists(self._config.killswitch_file)
            if self._seal_now or now >= report_at:
                # Idle and paused time so far belong to the interval being sealed, not to the next
                # one: a Lambda thawed after a long freeze seals here, before it resumes.
                if idle_since is not None:
                    sampler.add_paused_time(int((now - idle_since) * 1000))
                    idle_since = now
                sampler.add_paused_time(self._take_paused_ms(now))
                self._seal()
                report_at = now + self._reporting_interval_s
                continue
            if self._paused or self._killed or not self._should_profile:
                if self._paused and idle_since is not None:  # from here on the pause is timed
                    sampler.add_paused_time(int((now - idle_since) * 1000))
                    idle_since = None
                elif idle_since is None and not self._paused:
                    idle_since = now
                if not self._under_way.is_set():
                    self._under_way.set()
                self._wake.wait(_IDLE_WAIT_S)
                self._wake.clear()
                continue
            if idle_since is not None:
                sampler.add_paused_time(int((now - idle_since) * 1000))
                idle_since = None
                next_tick = now
            wait_s = next_tick - now
            if wait_s > _SHORT_WAIT_S:
                if self._wake.wait(wait_s):
                    self._wake.clear()
                    continue
            elif wait_s > 0:
                native.sleep(wait_s)  # half the CPU of an Event wait; stop and pause still seen next tick
            self._tick()
            if first_tick:
                first_tick = False
                self._under_way.set()
                if not sampler.synthetic_leaves:
                    sampler.synthetic_leaves = self._import_dis()
            now = clock()
            interval_s = self._governor.interval_ms / 1000.0
            next_tick += interval_s * (1.0 + _JITTER * (2.0 * self._uniform() - 1.0))
            if next_tick < now:
                next_tick = now + interval_s * self._uniform()  # fell behind: skip, never burst
            if now - window_start >= WINDOW_S:
                cpu = time.thread_time()
                self._governor.observe(cpu - window_cpu_start, now - window_start)
                window_start, window_cpu_start = now, cpu
                self.cpu_s = cpu - self._cpu_start
        now = clock()
        if idle_since is not None:
            sampler.add_paused_time(int((now - idle_since) * 1000))
        sampler.add_paused_time(self._take_paused_ms(now))
        self._seal()

    @staticmethod
    def _import_dis() -> bool:
        """Import ``dis``, which the synthetic frames under a leaf are read with; True once loaded.

        Not before the first sample, nor in the middle of one: an import hands the GIL back at each
        file read, so a CPU-bound host would delay the first sample by several switch intervals, or
        run on while its stack was half read. So the first sample goes without synthetic frames,
        unless the host has loaded ``dis`` already.
        """
        try:
            import dis  # noqa: F401
        except Exception:  # a stripped-down interpreter: plain leaves, as before the import
            return False
        return True

    def _take_paused_ms(self, now: float) -> int:
        """The paused time up to ``now`` not yet handed over, restarting the count of a pause in progress."""
        with self._pause_lock:
            paused_s, self._paused_s = self._paused_s, 0.0
            if self._paused:
                paused_s += max(0.0, now - self._paused_since)
                self._paused_since = max(self._paused_since, now)
        return int(paused_s * 1000)

    def _tick(self) -> None:
        try:
            with self._pause_lock:
                if self._paused:  # paused since the loop looked: Lambda may freeze the process now
                    return
                self._sampler.sample()
        except Exception:  # never let one odd frame end profiling; counted in the next profile
            self.tick_errors += 1
            logger.debug("sampling tick failed", exc_info=True)

    def _seal(self) -> None:
        try:
            self.cpu_s = time.thread_time() - self._cpu_start
            aggregate = self._sampler.seal()
            self._on_sealed(aggregate, self._governor.interval_ms)
        except Exception:  # the hand-over must not end the thread either
            self.tick_errors += 1
            logger.debug("sealing failed", exc_info=True)
        finally:
            self._seal_now = False
            self._sealed.set()

    def _uniform(self) -> float:
        """A number in [0, 1) for the jitter: a 64-bit linear congruential generator, seeded from
        ``os.urandom`` once.

        Not the ``random`` module, which loads four shared libraries: the sampling thread imports
        this module before its first sample, and each file read of an import hands the GIL back to
        a busy host for a switch interval. Nor ``os.urandom`` each tick: a system call per sample,
        after the sleep, costs several microseconds. Jitter needs no better randomness than this.
        """
        self._jitter_state = (self._jitter_state * 6364136223846793005 + 1442695040888963407) & _U64
        return (self._jitter_state >> 11) / _TWO_TO_53
