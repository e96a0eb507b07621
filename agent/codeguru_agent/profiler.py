"""The public lifecycle: ``Profiler``, ``start()`` and ``stop()``.

One agent per process. Every public call returns (``True``/``False``) and logs; none raises into
the host, whatever the configuration or the network does. ``start()`` only resolves the
configuration, decides whether to profile and creates the agent's two threads; the sampling thread
loads the sampler (a few small modules) and samples, then the uploader thread loads the rest (boto3
included) while sampling goes on. Profiling survives ``fork``: the child gets a fresh agent of its
own. At exit, the last interval and the backlog are flushed within one shutdown deadline, so the
process never hangs because of the agent.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Dict, Final, Mapping, Optional, Sequence

from codeguru_agent import config as configuration
from codeguru_agent.host import forksafe, native
from codeguru_agent.launch import Launch
from codeguru_agent.sampling.timer import MainThreadTimer, main_thread_timer

if TYPE_CHECKING:
    from codeguru_agent.fleet import FleetProvider
    from codeguru_agent.reporting.uploader import Uploader
    from codeguru_agent.sampling.runner import Runner

logger = logging.getLogger(__name__)

_lock = native.RLock()
_active: Optional[Profiler] = None


class Profiler:
    """A sampling profiler that reports to CodeGuru Profiler (or a local directory).

    Every option of the configuration table is a keyword argument here and an environment
    variable; arguments win. The official agent's ``environment_override`` keys are accepted too.
    """

    def __init__(
        self,
        profiling_group_name: Optional[str] = None,
        region_name: Optional[str] = None,
        aws_session: Any = None,
        *,
        fleet: Optional[FleetProvider] = None,
        environment_override: Optional[dict] = None,
        **options: Any,
    ) -> None:
        self._set_up_failed = False
        try:
            self._set_up(profiling_group_name, region_name, aws_session, fleet, environment_override, options)
        except configuration.UnknownOption:
            raise  # a typo in the host's code: the one mistake its developer must see at once
        except Exception:  # a broken environment or a bug of ours: the host runs on, unprofiled
            logger.warning("CodeGuru profiler disabled: it could not be set up", exc_info=True)
            self._set_up_disabled(aws_session, fleet)

    def _set_up(
        self,
        profiling_group_name: Optional[str],
        region_name: Optional[str],
        aws_session: Any,
        fleet: Optional[FleetProvider],
        environment_override: Optional[dict],
        options: Dict[str, Any],
    ) -> None:
        arguments = dict(
            options,
            profiling_group_name=profiling_group_name,
            region_name=region_name,
            environment_override=environment_override,
        )
        self._config = configuration.resolve(arguments).config
        group_env = configuration.environment_variables()["profiling_group_name"]
        # A group given but refused (bad name or ARN) has had its WARNING from the configuration.
        self._group_refused = not self._config.profiling_group_name and (
            profiling_group_name is not None
            or group_env in os.environ
            or bool(os.environ.get(configuration.GROUP_ARN_ENV))
        )
        self._aws_session = aws_session
        self._fleet = fleet
        self._runner: Optional[Runner] = None
        self._uploader: Optional[Uploader] = None
        self._launch: Optional[Launch] = None
        self._timer: Optional[MainThreadTimer] = None
        self._running = False
        self._paused = False
        """What pause() and resume() last asked for, applied to a runner still being built."""
        self._at_exit_registered = False
        if self._config.log_level:
            logging.getLogger("codeguru_agent").setLevel(self._config.log_level)

    def _set_up_disabled(self, aws_session: Any, fleet: Optional[FleetProvider]) -> None:
        """What a profiler that could not be set up holds: every public call works and does nothing."""
        self._set_up_failed = True
        self._config = configuration.AgentConfig(enabled=False)
        self._group_refused = False
        self._aws_session = aws_session
        self._fleet = fleet
        self._runner = None
        self._uploader = None
        self._launch = None
        self._timer = None
        self._running = False
        self._paused = False
        self._at_exit_registered = False

    # --- public API ----------------------------------------------------------------------------

    def start(self) -> bool:
        """Start profiling (or resume it if paused); False if the agent is disabled or another runs."""
        global _active
        try:
            with _lock:
                if self._running:
                    return self.resume()
                if not self._can_start():
                    return False
                if _active is not None and _active is not self and _active.is_running():
                    logger.warning(
                        "a CodeGuru profiler is already running in this process; "
                        "this second start() is ignored (one agent per process)"
                    )
                    return False
                launch = self._begin_launch(load_spool=True)
                try:
                    _active = self
                    if not self._at_exit_registered:
                        atexit.register(self._at_exit)
                        self._at_exit_registered = True
                    forksafe.on_fork_in_child(self._restart_in_child)
                    logger.info("CodeGuru profiler started for %s", self._target())
                finally:
                    launch.go.set()
            return True
        except RuntimeError as error:  # e.g. "can't create new thread at interpreter shutdown"
            logger.warning("CodeGuru profiler could not start: %s", error)
            return False
        except Exception:  # the host must never see an agent failure
            logger.warning("CodeGuru profiler could not start", exc_info=True)
            return False

    def stop(self) -> bool:
        """Stop, flushing the last interval and the backlog within the shutdown deadline."""
        global _active
        try:
            with _lock:
                if self._at_exit_registered:
                    atexit.unregister(self._at_exit)
                    self._at_exit_registered = False
                if not self._running:
                    return True
                self._running = False
                if _active is self:
                    _active = None
                launch = self._launch
            if launch is None:
                return True
            forksafe.settled()  # the host waits for the agent now: its start-up is over
            deadline = time.monotonic() + self._config.shutdown_timeout_ms / 1000.0
            launch.wait(deadline)  # then stop what it started, as if start() had done it all
            with _lock:
                launch.given_up = True
                runner, uploader = launch.runner, launch.uploader
            if runner is not None:
                runner.stop(max(0.0, deadline - time.monotonic()))
            if self._timer is not None and (runner is None or not runner.is_alive()):
                self._timer.uninstall()  # the runner has disarmed it; SIGALRM goes back to the program
            if uploader is not None:
                uploader.drain(deadline)
            return True
        except Exception:  # the host must never see an agent failure
            logger.warning("CodeGuru profiler did not stop cleanly", exc_info=True)
            return False

    def pause(self) -> bool:
        """Stop sampling until ``resume()``; paused time is kept out of the profile's duration."""
        return self._set_paused(True)

    def resume(self) -> bool:
        """Sample again after ``pause()``."""
        return self._set_paused(False)

    def is_running(self) -> bool:
        """True between a successful ``start()`` and ``stop()``, paused or not."""
        return self._running

    def wait_for_sampling(self, timeout_s: float = 2.0) -> bool:
        """Wait up to ``timeout_s`` until the first sample is taken; True once it has been (or once
        the agent has nothing to sample: paused, or stopped by the kill switch).

        start() returns before the agent's thread has loaded the sampler, and a CPU-bound program
        leaves that thread little of the GIL: a program whose first moments matter (a short script)
        waits here before it starts its work, as ``codeguru-agent run`` does.
        """
        try:
            launch = self._launch
            return self._running and launch is not None and launch.wait_under_way(max(0.0, timeout_s))
        except Exception:  # the host must never see an agent failure
            logger.warning("CodeGuru profiler wait failed", exc_info=True)
            return False

    def flush(self, timeout_s: Optional[float] = None) -> bool:
        """Seal the current interval now and deliver the backlog, waiting up to ``timeout_s``."""
        try:
            if not self._running:
                return False
            timeout = self._config.shutdown_timeout_ms / 1000.0 if timeout_s is None else timeout_s
            deadline = time.monotonic() + max(0.0, timeout)
            forksafe.settled()  # the host waits for the agent now: its start-up is over
            launch = self._launch
            runner, uploader = launch.wait(deadline) if launch is not None else (None, None)
            if runner is None or uploader is None:
                return False
            seal_failures = uploader.seal_failures
            if not runner.seal_now(max(0.0, deadline - time.monotonic())):
                return False
            return uploader.deliver_now(deadline, seal_failures)
        except Exception:  # the host must never see an agent failure
            logger.warning("CodeGuru profiler flush failed", exc_info=True)
            return False

    @property
    def config(self) -> configuration.AgentConfig:
        """The configuration in force (the service's answer applied)."""
        return self._config

    @property
    def flamegraph_path(self) -> Optional[str]:
        """In local mode, the flame graph written when the profiler stopped; None before or if none."""
        sink = self._uploader.sink if self._uploader is not None else None
        return getattr(sink, "flamegraph_path", None)

    def __enter__(self) -> Profiler:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"Profiler({self._target()}, {state})"

    # --- internals -----------------------------------------------------------------------------

    def _target(self) -> str:
        if self._config.local_dir:
            return f"local directory {self._config.local_dir}"
        return f"profiling group {self._config.profiling_group_name!r}"

    def _can_start(self) -> bool:
        if self._set_up_failed:  # said so with a WARNING when it was made
            return False
        if not self._config.enabled:
            logger.info("CodeGuru profiler is disabled (AWS_CODEGURU_PROFILER_ENABLED=false)")
            return False
        if not self._config.profiling_group_name and not self._config.local_dir:
            log = logger.info if self._group_refused else logger.warning
            log(
                "CodeGuru profiler not started: no profiling group name (set "
                "profiling_group_name, AWS_CODEGURU_PROFILER_GROUP_NAME or "
                "AWS_CODEGURU_PROFILER_GROUP_ARN, or AWS_CODEGURU_PROFILER_LOCAL_DIR)"
            )
            return False
        return True

    def _begin_launch(self, load_spool: bool, in_child: bool = False) -> Launch:
        """Mark the profiler running and start its two threads, which build everything else."""
        if native.threading_patched():
            native.prepare_host_hub()
        if self._config.asyncio_tasks and "greenlet" in sys.modules:
            _track_greenlets(in_child)
        if self._config.main_thread_timer:
            self._timer = main_thread_timer()
            self._timer.install()  # on the caller's thread: only the main thread may take SIGALRM
        launch = Launch(
            self._build_runner,
            lambda launch, runner: self._build_uploader(launch, runner, load_spool, in_child),
            self._abandon,
        )
        previous = self._launch
        self._launch, self._runner, self._uploader = launch, None, None
        self._running = True
        try:
            launch.start()
        except RuntimeError:  # Python 3.12 at interpreter shutdown; start() reports it
            self._launch, self._running = previous, False
            raise
        return launch

    def _build_runner(self, launch: Launch) -> Optional[Runner]:
        """On the sampling thread: build the runner, unless the launch was given up meanwhile."""
        with forksafe.agent_import():  # a few small modules of ours, in one step: no time to read them first
            from codeguru_agent.sampling.runner import Runner
        runner = Runner(
            self._config, on_sealed=launch.hand_over, exclude_ident=launch.uploader_ident, timer=self._timer
        )
        with _lock:
            if launch.given_up:
                return None
            if self._paused:
                runner.set_paused(True)
            if self._launch is launch:  # else start() has begun another run since a stop()
                self._runner = runner
            runner.adopt(launch.thread)
            launch.runner = runner
        return runner

    def _build_uploader(self, launch: Launch, runner: Runner, load_spool: bool, in_child: bool) -> Optional[Uploader]:
        """On the uploader's thread: build the uploader, unless the launch was given up meanwhile."""
        forksafe.load(["codeguru_agent.reporting.uploader"])
        from codeguru_agent.reporting.uploader import Uploader

        uploader = Uploader(
            self._config,
            sink_factory=lambda: self._make_sink(in_child),
            fleet_factory=self._make_fleet,
            on_configuration=self._on_configuration,
            on_disabled=self._on_disabled,
            is_killed=lambda: runner.killed,
            sampler_stats=lambda: (runner.cpu_s, runner.tick_errors),
            load_spool=load_spool,
        )
        with _lock:
            if launch.given_up:
                return None
            if self._launch is launch:
                self._uploader = uploader
            uploader.adopt(launch.uploader_thread)
        launch.attach(uploader)
        return uploader

    def _abandon(self, launch: Launch) -> None:
        """The launch failed: the profiler is no longer running (the failure has been logged).

        A runner already sampling stops: with no uploader, its samples could go nowhere.
        """
        global _active
        with _lock:
            launch.given_up = True
            if self._launch is launch:
                self._running = False
                self._runner = self._uploader = None
                if _active is self:
                    _active = None
            runner = launch.runner
        if runner is not None:
            runner.stop(0.0)

    def _make_sink(self, in_child: bool) -> Any:
        if self._config.local_dir:
            from codeguru_agent.reporting.local import LocalSink

            # A forked child's profiles join the directory; the parent writes the pages of them all.
            pages = None if in_child else _write_local_pages
            return LocalSink(self._config.local_dir, self._config.profiling_group_name, pages)
        from codeguru_agent.reporting.service import ServiceSink

        return ServiceSink(self._config, self._aws_session)

    def _make_fleet(self) -> FleetProvider:
        if self._fleet is not None:
            return self._fleet
        from codeguru_agent.fleet import detect

        return detect()

    def _on_configuration(self, config: configuration.AgentConfig, should_profile: bool) -> None:
        self._config = config
        runner = self._runner
        if runner is not None:
            runner.apply(config)
            runner.set_should_profile(should_profile)
        if self._uploader is not None:
            self._uploader.apply(config)

    def _on_disabled(self, reason: str) -> None:
        global _active
        with _lock:
            self._running = False
            if _active is self:
                _active = None
        if self._runner is not None:
            self._runner.stop(1.0)

    def _set_paused(self, paused: bool) -> bool:
        try:
            with _lock:
                if not self._running:
                    return False
                self._paused = paused
                if self._runner is not None:  # else the launcher applies it to the runner it builds
                    self._runner.set_paused(paused)
            return True
        except Exception:  # the host must never see an agent failure
            logger.warning("CodeGuru profiler pause/resume failed", exc_info=True)
            return False

    def _at_exit(self) -> None:
        self._at_exit_registered = False
        self.stop()

    def _restart_in_child(self) -> None:
        """In a forked child: forget the parent's threads and data, and profile the child afresh."""
        global _lock, _active
        _lock = native.RLock()
        if self._timer is not None:
            self._timer.reset_in_child()  # the kernel dropped the timer, the handler is the parent's
        if not self._running:
            return
        self._paused = False
        self._begin_launch(load_spool=False, in_child=True).go.set()
        _active = self
        _register_multiprocessing_flush(self)


_imports_held_for_gevent = False
"""Whether ``before_gevent_patch_all`` holds the agent's imports, for ``on_gevent_patch_all`` to let go."""


def before_gevent_patch_all(_event: Any = None) -> None:
    """gevent's ``will_patch_all`` plugin hook (an entry point): no agent thread may be inside an
    import while gevent replaces the import system's locks (boto3's import, begun before, then fails
    with "cannot release un-acquired lock"), so the agent's imports wait as they do for a fork; nor
    may it make an SSL context before the hook after the patch (see ``native.outside_gevent_patch``)."""
    global _imports_held_for_gevent
    if _active is not None and not _imports_held_for_gevent:
        native.gevent_patch_begins()
        forksafe.hold_imports()
        _imports_held_for_gevent = True


def on_gevent_patch_all(_event: Any = None) -> None:
    """gevent's ``did_patch_all`` plugin hook (an entry point), on the thread that patched: if an
    agent runs here, it records this thread's greenlets from now on, and its loading goes on once the
    host first waits on its hub (``forksafe.settle``: the host's own imports come first), within
    ``forksafe.SETTLE_S``. Never raises into gevent."""
    global _imports_held_for_gevent
    try:
        if _active is not None:  # before the agent's threads go on: they may build a client at once
            _repoint_ssl_contexts()
    except Exception:  # the host's patch_all must go on whatever happens here
        logger.debug("could not repoint the SSL contexts after patch_all", exc_info=True)
    try:
        profiler = _active
        if profiler is not None and profiler.is_running():
            native.prepare_host_hub()  # its imports before any agent thread's (see there)
            if profiler._config.asyncio_tasks:
                _track_greenlets(in_child=False)
    except Exception:  # the host's patch_all must go on whatever happens here
        logger.debug("could not track greenlets after patch_all", exc_info=True)
    if _imports_held_for_gevent:
        _imports_held_for_gevent = False
        forksafe.settle()
        if not native.when_host_hub_runs(forksafe.settled):
            forksafe.settled()
        native.gevent_patch_ends()
        forksafe.release_imports()


_SSL_CONTEXT_USERS: Final = ("botocore.httpsession", "urllib3.util.ssl_", "urllib3.util")


def _repoint_ssl_contexts() -> None:
    """After ``patch_all()``: botocore and urllib3, imported by the agent before it, still build the
    original ``ssl.SSLContext``, whose ``options`` setter then recurses through gevent's subclass
    until ``RecursionError`` (gevent issue 1016); no client, ours or the host's, could be made. They
    build gevent's context instead, as they would had they been imported after the patch."""
    ssl = sys.modules.get("ssl")
    monkey = sys.modules.get("gevent.monkey")
    if ssl is None or monkey is None:
        return
    original = monkey.get_original("ssl", "SSLContext")
    if original is ssl.SSLContext:
        return
    for name in _SSL_CONTEXT_USERS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "SSLContext", None) is original:
            module.SSLContext = ssl.SSLContext  # type: ignore[attr-defined]


def _track_greenlets(in_child: bool) -> None:
    """Record the greenlet switches of this thread (the host's, where gevent runs), see ``greenlets``."""
    from codeguru_agent.sampling import greenlets

    if in_child:
        greenlets.reset_after_fork()
    greenlets.track_current_thread()


def _write_local_pages(documents: Sequence[Mapping[str, Any]], out_path: str, title: str, output_format: str) -> str:
    """The local sink's page writer: the viewer's, loaded only when the sink closes."""
    from codeguru_agent.viewer.flamegraph import write_flamegraph

    return write_flamegraph(documents, out_path, title, output_format)


def _register_multiprocessing_flush(profiler: Profiler) -> None:
    """multiprocessing children leave through ``os._exit``, skipping atexit; its own exit hook runs."""
    import sys

    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return
    util.register_after_fork(profiler, _flush_at_multiprocessing_exit)


def _flush_at_multiprocessing_exit(profiler: Profiler) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(profiler, profiler.stop, exitpriority=100)


def start(profiling_group_name: Optional[str] = None, **options: Any) -> Optional[Profiler]:
    """Start the process's profiler (see :class:`Profiler` for the options); returns it.

    A second call while one is running says so and returns the running one.
    """
    try:
        with _lock:
            if _active is not None and _active.is_running():
                logger.warning("a CodeGuru profiler is already running in this process; start() ignored")
                return _active
            profiler = Profiler(profiling_group_name=profiling_group_name, **options)
        profiler.start()
        return profiler
    except configuration.UnknownOption:
        raise
    except Exception:  # the host must never see an agent failure
        logger.warning("CodeGuru profiler could not start", exc_info=True)
        return None


def stop() -> bool:
    """Stop the running profiler, if any, flushing what it has."""
    profiler = _active
    return profiler.stop() if profiler is not None else True


def active() -> Optional[Profiler]:
    """The profiler running in this process, if any."""
    return _active
