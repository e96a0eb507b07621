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
from typing import Callable, Final, List, Optional, Tuple

from codeguru_agent.config import AgentConfig
from codeguru_agent.host import forksafe, native
from codeguru_agent.sampling.governor import WINDOW_S, OverheadGovernor
from codeguru_agent.sampling.sampler import Aggregate, Sampler
from codeguru_agent.sampling.timer import DELIVERY_COST_S, MainThreadTimer

logger = logging.getLogger(__name__)

THREAD_NAME: Final = "codeguru-agent-sampler"
KILLSWITCH_CHECK_S: Final = 0.5
_IDLE_WAIT_S: Final = 0.25
_JITTER: Final = 0.2
_SHORT_WAIT_S: Final = 0.05
_JITTER_TABLE: Final = 1024
"""Jitter draws kept, used in turn: ten seconds of distinct intervals at 100 samples a second."""


class Runner:
    """Owns the sampler and its thread; hands sealed aggregates to ``on_sealed``."""

    def __init__(
        self,
        config: AgentConfig,
        on_sealed: Callable[[Aggregate, float], None],
        *,
        exclude_ident: Callable[[], Optional[int]] = lambda: None,
        timer: Optional[MainThreadTimer] = None,
    ) -> None:
        self._config = config
        self._timer = timer
        """The main thread's timer, installed by start() on the main thread; armed here while sampling."""
        self._rearm = True
        """Set by a new interval (the governor's or the configuration's): the timer takes it."""
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
        self._paused_total_s = 0.0
        """Every pause's time since start, ended pauses only: a tick's weight leaves out the pauses
        since the last tick, which the profile's duration leaves out too."""
        self._should_profile = True
        self._killed = False
        self._seal_now = False
        self._sealed = native.Event()
        self._sealed_ok = False
        """Whether the last seal handed its interval over (what ``seal_now`` reports)."""
        self._new_config: Optional[AgentConfig] = None
        """A configuration from :meth:`apply` that waits for the interval so far to be sealed."""
        self._under_way = native.Event()
        """Set once the loop has taken its first sample, found nothing to sample yet, or ended."""
        self.tick_errors = 0
        self.cpu_s = 0.0
        """The sampling thread's CPU time since it began to sample, updated every governor window
        (half a second) and at each seal (so the uploader reads it right for the interval it
        sends): all of it, the wake-ups included, not only the ticks. Read once a window, not
        around every tick, where two more system calls would cost each sample."""
        self._cpu_start = 0.0
        self.host_cost_s = 0.0
        """What the host is estimated to have lost to the ticks since sampling began (see
        :meth:`_run`), updated with ``cpu_s``."""
        self._attention = False
        """Set by every control method with ``_wake``: the loop then looks at its state before the
        next tick. Between those and its own deadlines the loop only sleeps and ticks."""
        self._new_limits = False
        """Set by ``apply()``: the sampler takes the new depth and memory bound before its next tick."""
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
            if self._timer is not None:
                self._timer.disarm()
                self._timer.hold(True)  # nothing drains it any more: no frames kept alive
            self._under_way.set()

    def wait_under_way(self, timeout_s: float) -> bool:
        """Wait until the first sample is taken (or the loop idles or ends): a seal before it is empty."""
        return self._under_way.wait(max(0.0, timeout_s))

    def stop(self, timeout_s: float) -> None:
        """Stop sampling; the thread seals what it has before it ends."""
        self._stop.set()
        self._attention = True
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
                self._paused_total_s += max(0.0, now - self._paused_since)
            self._paused = paused
            if self._timer is not None:
                self._timer.hold(paused)
        self._attention = True
        self._wake.set()

    @property
    def paused(self) -> bool:
        return self._paused

    def set_should_profile(self, should_profile: bool) -> None:
        """Sample or not, as the service says; told to stop, the thread seals what it has at once,
        so that the samples taken before the answer are a profile of their own (the uploader
        drops them if the answer is the service's first)."""
        if self._should_profile and not should_profile:
            self._seal_now = True
        self._should_profile = should_profile
        self._attention = True
        self._wake.set()

    @property
    def killed(self) -> bool:
        """True while the kill-switch file exists."""
        return self._killed

    def apply(self, config: AgentConfig) -> None:
        """Take a new configuration (the service's answer) at the next tick.

        If it changes how samples are taken (interval, depth, threads, memory), the thread first
        seals what it sampled under the old one: each profile is sampled under one configuration.
        """
        if _sampling_options(config) != _sampling_options(self._config):
            self._new_config = config
            self._seal_now = True
        else:
            self._use(config)
        self._attention = True
        self._wake.set()

    def seal_now(self, timeout_s: float) -> bool:
        """Ask the thread to seal the current interval now; True once it has handed it over, False
        if it could not (the interval is lost: counted in the next profile) or not in time."""
        if not self.is_alive():
            return False
        self._sealed.clear()
        self._seal_now = True
        self._attention = True
        self._wake.set()
        return self._sealed.wait(timeout_s) and self._sealed_ok

    @property
    def effective_interval_ms(self) -> float:
        return self._governor.interval_ms

    # --- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        """Sleep, tick, repeat; everything else only when a control method asks or a deadline passes.

        The steady state is built for the host's sake: after each sleep the thread holds the GIL
        the host gave up, with cold caches, so the loop between two sleeps is a clock read, a flag,
        the tick and the next deadline. The kill-switch file, the seal, the idle states and the
        governor's window wait for ``check_at`` (the earliest of their deadlines) or ``_attention``.

        Each window also tells what the host lost to the ticks (``_host_cost``), the governor's
        second input. A tick that got the GIL half a switch interval or more after its deadline
        found a host thread running Python, which had to hand the GIL over (on a host thread's
        own time) and wait for it back: that thread lost the tick's time and two hand-overs.
        """
        sampler = self._sampler
        sampler.synthetic_leaves = False
        leaves_pending = self._take_up_leaves() if "dis" in sys.modules else True
        first_tick = True
        sampler.exclude_thread(native.get_ident())
        sampler.exclude_thread(self._exclude_ident())
        timer = self._timer
        sampler.timer = timer
        if timer is not None:
            timer.max_depth = self._config.max_stack_depth
            with self._pause_lock:
                timer.hold(self._paused)
        timer_cost_s = DELIVERY_COST_S  # per timer sample, until calibrated after the first tick
        timer_counted = 0
        clock = time.monotonic
        sleep = native.sleep
        sample = sampler.sample
        pause_lock = self._pause_lock
        jitter = [int.from_bytes(pair, "little") / 65536.0 for pair in _pairs(os.urandom(2 * _JITTER_TABLE))]
        turn = 0
        switch_s = sys.getswitchinterval()
        interval_s = self._governor.interval_ms / 1000.0
        weight_ratio = self._governor.interval_ms / self._governor.configured_interval_ms
        weight_carried = 0.0  # the fraction of a configured interval the ticks so far owe the counts
        configured_s = self._governor.configured_interval_ms / 1000.0
        next_tick = clock()
        sampled_at = next_tick  # the last tick, the seal, or the end of an idle spell
        paused_seen_s = 0.0  # self._paused_total_s at the last tick
        report_at = next_tick + self._reporting_interval_s
        window_start = next_tick
        window_cpu_start = self._cpu_start = time.thread_time()
        held_s = contended_held_s = 0.0  # this window's ticks: their time; those that took the GIL from the host
        ticks = contended = 0
        killswitch_checked = 0.0
        check_at = next_tick
        idle_since: Optional[float] = None
        while True:
            now = clock()
            if self._attention or now >= check_at:
                self._attention = False
                check_at = now  # until this pass reaches the tick, the next one looks again
                if self._stop.is_set():
                    break
                if now - killswitch_checked >= KILLSWITCH_CHECK_S:
                    killswitch_checked = now
                    self._killed = os.path.exists(self._config.killswitch_file)
                if self._new_limits:  # the sampler is this thread's alone: it takes them between ticks
                    self._new_limits = False
                    sampler.set_limits(self._config)
                if leaves_pending and not first_tick:  # dis was held back at the first tick: again now
                    leaves_pending = self._take_up_leaves()
                if now - window_start >= WINDOW_S:
                    cpu = time.thread_time()
                    switch_s = sys.getswitchinterval()
                    cpu_s = cpu - window_cpu_start
                    host_s = _host_cost(cpu_s, held_s, ticks, contended_held_s, contended)
                    # the handler runs on the main thread's time: each timer sample is the host's cost
                    host_s += (sampler.timer_samples_taken - timer_counted) * timer_cost_s
                    timer_counted = sampler.timer_samples_taken
                    self._rearm = True  # a new jitter draw each window, and the governor's interval
                    self._governor.observe(cpu_s, now - window_start, host_s)
                    self.host_cost_s += host_s
                    window_start, window_cpu_start = now, cpu
                    held_s = contended_held_s = 0.0
                    ticks = contended = 0
                    self.cpu_s = cpu - self._cpu_start
                interval_s = self._governor.interval_ms / 1000.0
                weight_ratio = self._governor.interval_ms / self._governor.configured_interval_ms
                configured_s = self._governor.configured_interval_ms / 1000.0
                if self._seal_now or now >= report_at:
                    # Idle and paused time so far belong to the interval being sealed, not to the next
                    # one: a Lambda thawed after a long freeze seals here, before it resumes.
                    idle_since = self._count_idle(idle_since, now, still_idle=True)
                    sampler.add_paused_time(self._take_paused_ms(now))
                    self._seal()
                    # from after the seal: the new interval began inside it, and a full one must
                    # last the reporting interval (``now`` is from before, a GIL wait ago at times)
                    report_at = clock() + self._reporting_interval_s
                    sampled_at = -1.0  # the new interval's first tick stands for its own time only
                    continue
                if self._paused or self._killed or not self._should_profile:
                    sampled_at = -1.0  # the first tick after it stands for the time since it ended only
                    if timer is not None and timer.interval_s:
                        timer.disarm()  # no signals while nothing samples
                        timer.drain()  # nor samples from before: they would count after the idle time
                        self._rearm = True
                    elif timer is not None and timer.live:
                        timer.check()  # a program that sets its own alarm meanwhile gets SIGALRM back
                    if self._paused:  # from here on the pause is timed
                        idle_since = self._count_idle(idle_since, now, still_idle=False)
                    elif idle_since is None:
                        idle_since = now
                    if not self._under_way.is_set():
                        self._under_way.set()
                    self._wake.wait(_IDLE_WAIT_S)
                    self._wake.clear()
                    continue
                if sampled_at < 0:
                    sampled_at = now  # an idle spell ended, or an interval began, since the last pass
                if idle_since is not None:
                    idle_since = self._count_idle(idle_since, now, still_idle=False)
                    next_tick = now
                if timer is not None and self._rearm and timer.live and sampler.timer_wanted:
                    self._rearm = False
                    # ITIMER_REAL is strictly periodic: a fresh period each window keeps it from
                    # locking onto a periodic workload's phase. Never longer than the ticks' mean
                    # interval, so that every tick finds its main thread sample (the sampler drops
                    # the surplus): a longer period would leave some ticks without one
                    timer.arm(interval_s * (1.0 - _JITTER * jitter[turn]))
                check_at = min(killswitch_checked + KILLSWITCH_CHECK_S, window_start + WINDOW_S, report_at)
            wait_s = next_tick - now
            if wait_s > _SHORT_WAIT_S:
                if self._wake.wait(wait_s):
                    self._wake.clear()
                    continue
            elif wait_s > 0:
                sleep(wait_s)  # half the CPU of an Event wait; stop and pause still seen next tick
            else:
                next_tick = now
            woke = clock()
            # Each tick counts as the configured intervals it stands for (Sampler.sample), whole
            # ones, the fraction carried to the next tick so that the counts add up to the time;
            # never for more than the time sampled since the last tick (or the seal, or the end of
            # an idle spell) allows, give or take the jitter, so that a tick after a pause, or one
            # that follows closely after falling behind, does not count time the profile has not.
            paused_s, paused_seen_s = self._paused_total_s - paused_seen_s, self._paused_total_s
            sampled_s = woke - sampled_at - paused_s
            weight_carried += min(weight_ratio, max(1.0, sampled_s / ((1.0 - _JITTER) * configured_s)))
            weight = int(weight_carried)
            weight_carried -= weight
            sampled_at = min(woke, next_tick)  # its deadline: a late tick does not shorten the next one's time
            try:
                with pause_lock:
                    if not self._paused:  # paused since the loop looked: Lambda may freeze the process now
                        sample(weight)
            except Exception:  # never let one odd frame end profiling; counted in the next profile
                self.tick_errors += 1
                logger.debug("sampling tick failed", exc_info=True)
            if timer is not None and sampler.timer_wanted is not bool(timer.interval_s) and timer.live:
                if timer.interval_s:
                    timer.disarm()  # the main thread waits: the tick sees it (Sampler._main_waited)
                else:
                    timer.arm(interval_s * (1.0 - _JITTER * jitter[turn]))
            done = clock()
            ticks += 1
            held_s += done - woke
            if woke - next_tick >= switch_s / 2:  # the GIL came from a host thread running Python
                contended += 1
                contended_held_s += done - woke
            if first_tick:
                first_tick = False
                self._under_way.set()
                if leaves_pending:
                    leaves_pending = self._take_up_leaves()
                if timer is not None:
                    timer_cost_s = timer.handler_cost_s(sys._getframe())
            draw = jitter[turn]
            turn = (turn + 1) % _JITTER_TABLE
            next_tick += interval_s * (1.0 + _JITTER * (2.0 * draw - 1.0))
            if next_tick < done:
                next_tick = done + interval_s * draw  # fell behind: skip, never burst
        now = clock()
        self._count_idle(idle_since, now, still_idle=False)
        sampler.add_paused_time(self._take_paused_ms(now))
        self._seal()

    def _take_up_leaves(self) -> bool:
        """Turn the synthetic frames under a leaf on once ``dis``, which reads them, is imported;
        True while its import is still to come.

        Not before the first sample, nor in the middle of one: an import hands the GIL back at each
        file read, so a CPU-bound host would delay the first sample by several switch intervals, or
        run on while its stack was half read. So the first sample goes without synthetic frames,
        unless the host has loaded ``dis`` already. A step of the agent's loading
        (``forksafe.agent_import``), as every import on its threads, begun only while the loading
        is open: while it is held (a fork, the host's start-up after gevent's ``patch_all()``) the
        sampling thread samples on without it and asks again at its next control pass.
        """
        if not forksafe.loading_open():
            return True
        try:
            with forksafe.agent_import():
                import dis  # noqa: F401
        except Exception:  # a stripped-down interpreter: plain leaves, as before the import
            return False
        self._sampler.synthetic_leaves = True
        return False

    def _count_idle(self, idle_since: Optional[float], now: float, still_idle: bool) -> Optional[float]:
        """Count the idle time since ``idle_since`` (killed, or told not to profile) up to ``now`` as
        paused; returns when the idle time still to count began (``now``, or None once it is over).

        Idle time, like paused time, is kept out of the profile's duration.
        """
        if idle_since is None:
            return None
        self._sampler.add_paused_time(int((now - idle_since) * 1000))
        return now if still_idle else None

    def _take_paused_ms(self, now: float) -> int:
        """The paused time up to ``now`` not yet handed over, restarting the count of a pause in progress."""
        with self._pause_lock:
            paused_s, self._paused_s = self._paused_s, 0.0
            if self._paused:
                paused_s += max(0.0, now - self._paused_since)
                self._paused_since = max(self._paused_since, now)
        return int(paused_s * 1000)

    def _seal(self) -> None:
        """Hand the interval over, then take the configuration that waited for it (see :meth:`apply`)."""
        sealed = False
        try:
            self.cpu_s = time.thread_time() - self._cpu_start
            aggregate = self._sampler.seal()
            self._on_sealed(aggregate, self._governor.interval_ms)
            sealed = True
        except Exception:  # the hand-over must not end the thread either
            self.tick_errors += 1
            logger.debug("sealing failed", exc_info=True)
        finally:
            self._sealed_ok = sealed
            self._seal_now = False
            self._sealed.set()
        config, self._new_config = self._new_config, None
        if config is not None:
            self._use(config)

    def _use(self, config: AgentConfig) -> None:
        """The configuration in force from now on; the sampler takes its limits before the next tick."""
        self._config = config
        self._reporting_interval_s = config.reporting_interval_ms / 1000.0
        self._governor.reconfigure(config.sampling_interval_ms)
        if self._timer is not None:
            self._timer.max_depth = config.max_stack_depth
        self._rearm = True
        self._new_limits = True
        self._attention = True


def _host_cost(cpu_s: float, held_s: float, ticks: int, contended_held_s: float, contended: int) -> float:
    """What the host's threads lost to one window's ticks, in seconds.

    Per tick that took the GIL from a host thread: the tick's own time (the GIL was ours) and the
    two hand-overs of the GIL around it, which the host's thread pays on its own time (it drops the
    GIL and waits for it, then is woken when it comes back). A hand-over is the kernel's work of
    putting one thread to sleep and waking another: the sampling thread pays the same for its own
    wake-ups, so they are priced at its CPU outside the ticks, per tick.
    """
    if not ticks:
        return 0.0
    wake_s = max(0.0, cpu_s - held_s) / ticks
    return contended_held_s + contended * wake_s


def _pairs(data: bytes) -> List[bytes]:
    """``data`` cut into two-byte pieces.

    The jitter table comes from ``os.urandom`` once, when the thread starts: not the ``random``
    module, which loads four shared libraries (the sampling thread imports this module before its
    first sample, and each file read of an import hands the GIL back to a busy host for a switch
    interval), nor a draw per tick, where even a few big-integer operations cost each sample.
    """
    return [data[i : i + 2] for i in range(0, len(data), 2)]


def _sampling_options(config: AgentConfig) -> Tuple[object, ...]:
    """What decides how samples are taken: a change seals the interval first."""
    return (
        config.sampling_interval_ms,
        config.max_stack_depth,
        config.max_threads,
        config.excluded_threads,
        config.memory_limit_mb,
    )
