"""The uploader thread: documents, encoding, delivery with retries, and ConfigureAgent.

Sealed aggregates arrive from the sampling thread; here they become documents, get their
profileToken, enter the backlog (and the spool, when there is one) and are delivered oldest first
with exponential backoff and jitter. Non-retryable answers drop a profile with a WARNING that says
why; a missing profiling group pauses sampling until ConfigureAgent finds it again. Nothing here
ever blocks the sampling thread.
"""

from __future__ import annotations

import datetime
import logging
import os
import random
import time
import uuid
from typing import Callable, Dict, Final, List, Optional, Tuple

from codeguru_agent import __version__
from codeguru_agent.config import AgentConfig
from codeguru_agent.fleet import FleetIdentity, FleetProvider
from codeguru_agent.host import forksafe, native
from codeguru_agent.reporting.backlog import Backlog, Sealed, Spool
from codeguru_agent.reporting.document import Provenance, build_document
from codeguru_agent.reporting.encoding import encode
from codeguru_agent.reporting.sinks import Outcome, Result, SetupError, Sink
from codeguru_agent.sampling.sampler import Aggregate

logger = logging.getLogger(__name__)

THREAD_NAME: Final = "codeguru-agent-uploader"
_FIRST_BACKOFF_S: Final = 1.0
_MAX_BACKOFF_S: Final = 300.0


class ErrorCounters:
    """Error counts that travel in the next sealed profile's debugInfo.

    Each count goes into exactly one profile: ``take()`` hands everything counted so far to the
    profile being sealed, and a profile that is dropped undelivered gives its counts back with
    ``restore()``, so they ride in the next one. Several profiles waiting in the backlog therefore
    never report the same error twice.
    """

    def __init__(self) -> None:
        self._counts: Dict[str, int] = {}
        self._lock = native.Lock()

    def add(self, name: str, count: int = 1, error: bool = True) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + count
            if error:
                self._counts["errorsCount"] = self._counts.get("errorsCount", 0) + count

    def take(self) -> Dict[str, int]:
        """Everything counted since the last take, for the profile being sealed; the counts reset."""
        with self._lock:
            counts, self._counts = self._counts, {}
        return counts

    def restore(self, reported: Dict[str, int]) -> None:
        """Give back what a dropped profile carried, so the next sealed profile reports it."""
        with self._lock:
            for name, count in reported.items():
                self._counts[name] = self._counts.get(name, 0) + count


class Uploader:
    """Owns the backlog and the sink; runs on its own daemon thread."""

    def __init__(
        self,
        config: AgentConfig,
        sink_factory: Callable[[], Sink],
        fleet_factory: Callable[[], FleetProvider],
        *,
        on_configuration: Callable[[AgentConfig, bool], None],
        on_disabled: Callable[[str], None],
        is_killed: Callable[[], bool],
        sampler_stats: Callable[[], Tuple[float, int]],
        load_spool: bool = True,
    ) -> None:
        self._config = config
        self._sink_factory = sink_factory
        self._fleet_factory = fleet_factory
        self._on_configuration = on_configuration
        self._on_disabled = on_disabled
        self._is_killed = is_killed
        self._sampler_stats = sampler_stats
        self._load_spool = load_spool
        self.errors = ErrorCounters()
        self.backlog = Backlog(config.backlog_max_profiles, int(config.backlog_max_mb * 2**20))
        self._spool = Spool(config.spool_dir, config.profiling_group_name or "local") if config.spool_dir else None
        self._pending: List[Tuple[Aggregate, float, float, float]] = []
        self._pending_lock = native.Lock()
        self._wake = native.Event()
        self._stopping = native.Event()
        self._drained = native.Event()
        self._flush_requested = native.Event()
        self._flushed = native.Event()
        self._thread: Optional[native.AgentThread] = None
        self._sink: Optional[Sink] = None
        self._fleet: Optional[FleetProvider] = None
        self._ready = native.Event()
        self._failures = 0
        self._retry_at = 0.0
        self._group_missing = False
        self._group_just_created = False
        self._configure_at = 0.0
        self._started_at = datetime.datetime.now(datetime.timezone.utc)
        self._last_process_cpu = time.process_time()
        self._last_sampler_cpu = 0.0
        self._last_own_cpu = 0.0
        self._tick_errors_seen = 0
        self._drop_warned = False
        self.delivered = 0

    # --- from other threads --------------------------------------------------------------------

    def adopt(self, thread: Optional[native.AgentThread]) -> None:
        """Run on ``thread``, which calls :meth:`run`: the profiler's uploader thread, created by
        start() on the host's thread, builds this uploader and then runs it."""
        self._thread = thread

    def run(self) -> None:
        """The uploader's loop, on the adopted thread."""
        self._run()

    @property
    def ident(self) -> Optional[int]:
        return self._thread.ident if self._thread is not None else None

    def enqueue(self, aggregate: Aggregate, interval_ms: float) -> None:
        """Called on the sampling thread at each seal: O(1), the work happens on this thread."""
        with self._pending_lock:
            self._pending.append((aggregate, interval_ms, time.process_time(), time.monotonic()))
        self._wake.set()

    def apply(self, config: AgentConfig) -> None:
        self._config = config

    def drain(self, deadline: float) -> bool:
        """Deliver everything pending before ``deadline`` (monotonic); True if nothing is left."""
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and not native.is_current(thread):
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self._give_up()
                return False
        else:
            self._deliver_until(deadline)
            self._give_up()
        return not self.backlog

    def deliver_now(self, deadline: float) -> bool:
        """Encode what is pending and try the backlog now, on the uploader's thread; True if empty."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return False
        self._flushed.clear()
        self._flush_requested.set()
        self._wake.set()
        self._flushed.wait(max(0.0, deadline - time.monotonic()))
        return not self._pending and not self.backlog

    def wait_ready(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s)

    # --- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        if not self._setup():
            return
        while True:
            stopping = self._stopping.is_set()
            try:
                self._encode_pending()
                if stopping:
                    break
                self._configure_if_due()
                if self._flush_requested.is_set():
                    self._flush_requested.clear()
                    self._retry_at = 0.0
                    self._submit_due()
                    self._flushed.set()
                else:
                    self._submit_due()
            except Exception:  # the thread must outlive any one failure; counted
                self.errors.add("uploaderErrors")
                logger.debug("uploader step failed", exc_info=True)
            self._wake.wait(self._next_wait_s())
            self._wake.clear()
        self._deliver_until(None)
        self._close_sink()

    def _setup(self) -> bool:
        try:
            with forksafe.import_gate():
                self._sink = self._sink_factory()
            self._fleet = self._fleet_factory()
        except SetupError as error:
            logger.warning("CodeGuru profiler disabled: %s", error)
            self._on_disabled(str(error))
            self._ready.set()
            return False
        except Exception as error:  # e.g. a broken boto3 install: disable, never break the host
            logger.warning("CodeGuru profiler disabled: cannot set up the client: %s", error)
            logger.debug("set-up failure", exc_info=True)
            self._on_disabled(str(error))
            self._ready.set()
            return False
        if self._spool is not None and self._load_spool:
            for sealed in self._spool.load():
                self._add_to_backlog(sealed)
        self._ready.set()
        return True

    def _next_wait_s(self) -> float:
        now = time.monotonic()
        deadlines = [self._configure_at]
        if len(self.backlog):
            deadlines.append(self._retry_at)
        return max(0.05, min(deadlines) - now)

    def _encode_pending(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, []
        for aggregate, interval_ms, process_cpu, _ in pending:
            sealed = self._seal(aggregate, interval_ms, process_cpu)
            if sealed is not None:
                if self._spool is not None:
                    try:
                        self._spool.write(sealed)
                    except OSError as error:
                        self.errors.add("spoolErrors")
                        logger.warning("cannot write to the spool %s: %s", self._spool.directory, error)
                self._add_to_backlog(sealed)

    def _seal(self, aggregate: Aggregate, interval_ms: float, process_cpu: float) -> Optional[Sealed]:
        sampler_cpu, tick_errors = self._sampler_stats()
        own_cpu = time.thread_time() if native.is_current(self._thread) else self._last_own_cpu
        agent_cpu_s = (sampler_cpu - self._last_sampler_cpu) + (own_cpu - self._last_own_cpu)
        cpu_s = process_cpu - self._last_process_cpu
        self._last_sampler_cpu, self._last_own_cpu, self._last_process_cpu = sampler_cpu, own_cpu, process_cpu
        if tick_errors > self._tick_errors_seen:
            self.errors.add("samplerErrors", tick_errors - self._tick_errors_seen)
            self._tick_errors_seen = tick_errors
        if aggregate.num_times_sampled == 0 or not any(aggregate.counts):
            return None
        metrics = {
            "samplingIntervalInMs_configured": float(self._config.sampling_interval_ms),
            "samplingIntervalInMs_effective": float(interval_ms),
            "foldedStacks": float(aggregate.folded_stacks),
            "backlogProfiles": float(len(self.backlog)),
            "taskSamples": float(aggregate.task_samples),
            "greenletSamples": float(aggregate.greenlet_samples),
        }
        if aggregate.unit_errors:
            metrics["taskSamplingErrors"] = float(aggregate.unit_errors)
        profile = aggregate.to_profile(
            cpu_time_s=round(cpu_s, 6), agent_cpu_ms=int(agent_cpu_s * 1000), generic_metrics=metrics
        )
        identity = self._identity()
        reported = self.errors.take()
        provenance = Provenance(
            fleet_info=identity.fleet_info,
            agent_version=__version__,
            agent_start_time=self._started_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            process_id=os.getpid(),
            errors=reported,
        )
        try:
            encoded = encode(build_document(profile, provenance), self._config.profile_format)
        except Exception:
            self.errors.restore(reported)  # the counts ride in the next profile instead
            raise
        return Sealed(str(uuid.uuid4()), encoded.body, encoded.content_type, profile.start_ms, reported)

    def _identity(self) -> FleetIdentity:
        if self._fleet is not None:
            try:
                return self._fleet.identity()
            except Exception:  # a provider that fails once must not cost the profile
                self.errors.add("fleetErrors")
        return FleetIdentity("unknown", {"type": "UNKNOWN"})

    def _add_to_backlog(self, sealed: Sealed) -> None:
        for dropped in self.backlog.add(sealed):
            Spool.forget(dropped)
            self.errors.restore(dropped.reported_errors)
            self.errors.add("backlogDroppedProfiles")
            if not self._drop_warned:
                self._drop_warned = True
                logger.warning(
                    "profile backlog full (%d profiles or %.1f MB): dropping the oldest undelivered "
                    "profiles; the count is reported in the next delivered profile",
                    self.backlog.max_profiles,
                    self.backlog.max_bytes / 2**20,
                )

    def _configure_if_due(self) -> None:
        now = time.monotonic()
        if now < self._configure_at or self._sink is None or self._is_killed():
            return
        self._configure_at = now + self._config.reporting_interval_ms / 1000.0
        result = self._sink.configure(self._identity())
        if result.outcome is Outcome.ACCEPTED:
            if result.answer:
                should_profile = bool(result.answer.get("shouldProfile", True))
                self._config = self._config.with_server_configuration(result.answer)
                self._configure_at = now + self._config.reporting_interval_ms / 1000.0
                self._on_configuration(self._config, should_profile)
            if self._group_missing:
                self._group_missing = False
                self._retry_at = 0.0
                if not result.answer:
                    self._on_configuration(self._config, True)
            return
        self.errors.add("configureAgentErrors")
        if result.outcome is Outcome.NOT_FOUND:
            self._group_not_found(result, "configure_agent")
        else:
            logger.info("configure_agent failed (%s); keeping the current configuration", result.reason)

    def _group_not_found(self, result: Result, operation: str) -> None:
        if self._config.auto_create_group and self._sink is not None:
            self.errors.add(
                "configureAgentRnfeAutoCreateEnabledErrors"
                if operation == "configure_agent"
                else "postAgentProfileRnfeAutoCreateEnabledErrors"
            )
            platform = self._identity().configure_agent_metadata.get("ComputePlatform", "Default")
            created = self._sink.create_group(platform)
            if created.outcome is Outcome.ACCEPTED:
                logger.info("created profiling group %s", self._config.profiling_group_name)
                self._retry_at = 0.0
                self._configure_at = 0.0
                self._group_just_created = True
                return
            self.errors.add("createProfilingGroupErrors")
        if not self._group_missing:
            logger.warning(
                "profiling group %r not found (%s): sampling paused; checking again every reporting interval",
                self._config.profiling_group_name,
                result.reason,
            )
        self._group_missing = True
        self._on_configuration(self._config, False)

    def _submit_due(self) -> None:
        resent_after_create = False
        self._group_just_created = False
        while not self._is_killed() and not self._group_missing:
            if time.monotonic() < self._retry_at:
                return
            sealed = self.backlog.oldest()
            if sealed is None:
                return
            if self._submit(sealed):
                continue
            if not self._group_just_created or resent_after_create:
                return
            # The group was missing and has just been created: send the same profile again now,
            # once, rather than after a backoff that a Lambda freeze would stretch to the next call.
            resent_after_create = True
            self._group_just_created = False

    def _submit(self, sealed: Sealed) -> bool:
        """One attempt; True if the backlog can move on to the next profile."""
        assert self._sink is not None
        sealed.attempts += 1
        result = self._sink.submit(sealed.body, sealed.content_type, sealed.token)
        if result.outcome is Outcome.ACCEPTED:
            self.backlog.remove(sealed)
            Spool.forget(sealed)
            self._failures = 0
            self.delivered += 1
            return True
        self.errors.add("postAgentProfileErrors")
        if result.outcome is Outcome.DROP:
            self.backlog.remove(sealed)
            Spool.forget(sealed)
            self.errors.restore(sealed.reported_errors)
            self.errors.add("droppedProfiles", error=False)
            logger.warning("profile %s dropped: the service refused it (%s)", sealed.token, result.reason)
            return True
        if result.outcome is Outcome.NOT_FOUND:
            self._group_not_found(result, "post_agent_profile")
            return False
        self._failures += 1
        cap = min(_MAX_BACKOFF_S, max(_FIRST_BACKOFF_S, self._config.reporting_interval_ms / 1000.0))
        delay = min(cap, _FIRST_BACKOFF_S * 2 ** (self._failures - 1)) * random.uniform(0.5, 1.0)
        self._retry_at = time.monotonic() + delay
        logger.info("profile %s not delivered (%s); retrying in %.1f s", sealed.token, result.reason, delay)
        return False

    def _deliver_until(self, deadline: Optional[float]) -> None:
        """The final flush: encode what is pending and try each profile once more, oldest first."""
        self._encode_pending()
        if self._sink is None or self._is_killed():
            return
        for sealed in list(self.backlog):
            if deadline is not None and time.monotonic() >= deadline:
                return
            if not self._submit(sealed):
                return

    def _give_up(self) -> None:
        """At the deadline: what is still undelivered stays in the spool, or is counted as lost."""
        left = len(self.backlog)
        if not left:
            return
        if self._spool is not None:
            logger.warning(
                "%d profile(s) not delivered before exit; kept in the spool %s for the next process",
                left,
                self._spool.directory,
            )
        else:
            logger.warning(
                "%d profile(s) not delivered before the shutdown deadline and lost "
                "(set AWS_CODEGURU_PROFILER_SPOOL_DIR to keep them)",
                left,
            )

    def _close_sink(self) -> None:
        if self._sink is not None:
            try:
                self._sink.close()
            except Exception:  # closing is best effort
                logger.debug("closing the sink failed", exc_info=True)
        self._drained.set()

    @property
    def sink(self) -> Optional[Sink]:
        return self._sink
