"""The launch of one run of a profiler: its two threads, and the runner and uploader they build.

Both threads are created by start() on the caller's thread: Python 3.12 refuses new threads once
the interpreter is shutting down, and a short program may be there before the launch is done.
The sampling thread imports and builds the runner (a few small modules) and samples; the uploader
thread waits for the first sample, then imports and builds the uploader (boto3 and the rest).
Intervals sealed before the uploader exists wait here for it. What to build is the profiler's
decision (``build_runner``, ``build_uploader``); this module only runs it on the right thread.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Final, List, Optional, Tuple

from codeguru_agent.host import forksafe, native

if TYPE_CHECKING:  # none of this is loaded on the host's thread, whose start() imports this module
    from codeguru_agent.reporting.uploader import Uploader
    from codeguru_agent.sampling.runner import Runner
    from codeguru_agent.sampling.sampler import Aggregate

    BuildRunner = Callable[["Launch"], Optional[Runner]]
    """Builds the runner on the sampling thread; None if the launch was given up meanwhile."""
    BuildUploader = Callable[["Launch", Runner], Optional[Uploader]]
    """Builds the uploader on its thread, once sampling is under way; None if given up meanwhile."""

logger = logging.getLogger(__name__)

SAMPLER_THREAD_NAME: Final = forksafe.AGENT_THREAD_PREFIX + "-sampler"
"""The name of ``runner.THREAD_NAME``, known here without importing the runner on the host's thread."""
UPLOADER_THREAD_NAME: Final = forksafe.AGENT_THREAD_PREFIX + "-uploader"
"""The name of ``uploader.THREAD_NAME``, likewise."""
FIRST_TICK_WAIT_S: Final = 1.0


class Launch:
    """One run of a profiler: its two threads, the runner and uploader they build, and the hand-over
    of the intervals sealed before the uploader exists."""

    def __init__(self, build_runner: BuildRunner, build_uploader: BuildUploader, on_failure: Callable[[Launch], None]):
        self._build_runner = build_runner
        self._build_uploader = build_uploader
        self._on_failure = on_failure
        self.thread = native.thread(self._run_sampling_thread, (), SAMPLER_THREAD_NAME)
        self.uploader_thread = native.thread(self._run_uploader_thread, (), UPLOADER_THREAD_NAME)
        self.runner: Optional[Runner] = None
        self.uploader: Optional[Uploader] = None
        self.go = native.Event()
        """Set by the caller of start() as it returns: the threads begin their work then."""
        self.sampling = native.Event()
        """Set once the runner is built and about to sample, or building it has failed."""
        self.built = native.Event()
        """Set once the uploader is built and running too, or building either has failed."""
        self.given_up = False
        """Set by stop() once its deadline has passed: a thread still building starts nothing."""
        self._handover = native.Lock()
        self._early: List[Tuple[Aggregate, float]] = []

    def start(self) -> None:
        """Start both threads; they wait for ``go``: started early, their imports would take the GIL
        from the caller's thread in the middle of start()."""
        try:
            self.thread.start()
            self.uploader_thread.start()
        except RuntimeError:  # Python 3.12 at interpreter shutdown; start() reports it
            self.given_up = True
            self.go.set()  # a thread already started ends at once
            raise

    def hand_over(self, aggregate: Aggregate, interval_ms: float) -> None:
        """The runner's ``on_sealed``: to the uploader, or kept until it exists."""
        with self._handover:
            uploader = self.uploader
            if uploader is None:
                self._early.append((aggregate, interval_ms))
                return
        uploader.enqueue(aggregate, interval_ms)

    def attach(self, uploader: Uploader) -> None:
        """The uploader is built: it takes the intervals sealed before, oldest first."""
        with self._handover:
            self.uploader = uploader
            early, self._early = self._early, []
        for aggregate, interval_ms in early:
            uploader.enqueue(aggregate, interval_ms)

    def uploader_ident(self) -> Optional[int]:
        """The uploader thread's id, which the sampler leaves out of the profile."""
        return self.uploader_thread.ident

    def wait_under_way(self, timeout_s: float) -> bool:
        """Wait (up to ``timeout_s``) until the runner is built and has taken its first sample."""
        deadline = time.monotonic() + timeout_s
        if not self.sampling.wait(max(0.0, timeout_s)) or self.runner is None:
            return False
        return self.runner.wait_under_way(deadline - time.monotonic())

    def wait(self, deadline: float) -> Tuple[Optional[Runner], Optional[Uploader]]:
        """The runner and uploader once built and sampling (None if building failed or outlasts the deadline).

        A seal asked for before the runner's first sample would be empty, and a short run's samples
        lost, so this also waits (briefly) for that first sample.
        """
        if native.is_current(self.thread) or native.is_current(self.uploader_thread):
            return self.runner, self.uploader
        self.built.wait(max(0.0, deadline - time.monotonic()))
        runner = self.runner
        if runner is not None:
            runner.wait_under_way(min(deadline - time.monotonic(), FIRST_TICK_WAIT_S))
        return self.runner, self.uploader

    # --- the two threads -----------------------------------------------------------------------

    def _run_sampling_thread(self) -> None:
        """The sampling thread: import and build the runner, then sample until stopped."""
        self.go.wait()
        _block_host_signals()
        self._build_then_run(lambda: self._build_runner(self), self.sampling, "sampling")

    def _run_uploader_thread(self) -> None:
        """The uploader's thread: once sampling is under way, build the uploader, then run it.

        Its imports (boto3 among them) would compete for the GIL with the sampling thread's before
        the first sample, so they wait for it.
        """
        self.go.wait()
        _block_host_signals()

        def build() -> Optional[Uploader]:
            self.sampling.wait()
            runner = self.runner
            if runner is None:
                return None
            runner.wait_under_way(FIRST_TICK_WAIT_S)
            return self._build_uploader(self, runner)

        self._build_then_run(build, self.built, "uploads")

    def _build_then_run(self, build: Callable[[], Any], built: native.Event, what: str) -> None:
        """An agent thread's life: build its runner or uploader, say so through ``built``, run it.

        Neither step lets an exception out: the host must never see an agent failure. A failed
        build abandons the launch, and the host runs unprofiled.
        """
        worker = None
        try:
            worker = build()
        except Exception:
            logger.warning("CodeGuru profiler could not start", exc_info=True)
            self._on_failure(self)
        finally:
            built.set()
        if worker is None:
            return
        try:
            worker.run()
        except Exception:  # as on any agent thread: log, never raise into the interpreter
            logger.warning("CodeGuru profiler %s stopped", what, exc_info=True)


def _block_host_signals() -> None:
    """On an agent thread, first thing: see ``signalmask`` (imported here, not by start()).

    The import is a step of the agent's loading (``forksafe.agent_import``): a host that forks as the
    agent starts (``gunicorn --preload``) would otherwise fork mid-import, and the child's agent
    find the module half imported (ImportError: the worker went unprofiled, 1 run in 90).
    """
    with forksafe.agent_import():
        from codeguru_agent.host.signalmask import block_host_signals

    block_host_signals()
