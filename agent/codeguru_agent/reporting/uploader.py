"""The uploader thread: sealed aggregates become encoded profiles in the backlog, then go out.

Sealed aggregates arrive from the sampling thread; here they become documents, get their
profileToken and enter the backlog (and the spool, when there is one). When each profile goes out,
and what each answer means, is the delivery policy's (``delivery``). Nothing here ever blocks the
sampling thread.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
import uuid
from typing import Callable, Final, List, Optional, Tuple

from codeguru_agent.config import AgentConfig
from codeguru_agent.fleet import FleetIdentity, FleetProvider
from codeguru_agent.host import forksafe, native
from codeguru_agent.reporting.backlog import Backlog, Sealed, Spool
from codeguru_agent.reporting.counters import ErrorCounters
from codeguru_agent.reporting.delivery import Delivery
from codeguru_agent.reporting.document import Provenance, build_document, profile_of
from codeguru_agent.reporting.encoding import encode
from codeguru_agent.reporting.sinks import SetupError, Sink
from codeguru_agent.sampling.sampler import Aggregate
from codeguru_agent.version import VERSION

logger = logging.getLogger(__name__)

THREAD_NAME: Final = "codeguru-agent-uploader"


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
        self._pending: List[Tuple[Aggregate, float, float]] = []
        """Sealed aggregates with their effective interval and the process CPU time at the seal."""
        self._pending_lock = native.Lock()
        self._wake = native.Event()
        self._stopping = native.Event()
        self._flush_requested = native.Event()
        self._flushed = native.Event()
        self._thread: Optional[native.AgentThread] = None
        self._fleet: Optional[FleetProvider] = None
        self._delivery: Optional[Delivery] = None
        """Built with the sink, on this thread."""
        self._started_at = datetime.datetime.now(datetime.timezone.utc)
        self._last_process_cpu = time.process_time()
        self._last_sampler_cpu = 0.0
        self._last_own_cpu = 0.0
        self._tick_errors_seen = 0
        self._drop_warned = False
        self.seal_failures = 0
        """Aggregates that could not be sealed into a profile (each lost), since the start."""

    # --- from other threads --------------------------------------------------------------------

    def adopt(self, thread: Optional[native.AgentThread]) -> None:
        """Run on ``thread``, which calls :meth:`run`: the profiler's uploader thread, created by
        start() on the host's thread, builds this uploader and then runs it."""
        self._thread = thread

    def run(self) -> None:
        """The uploader's loop, on the adopted thread."""
        self._run()

    def enqueue(self, aggregate: Aggregate, interval_ms: float) -> None:
        """Called on the sampling thread at each seal: O(1), the work happens on this thread."""
        with self._pending_lock:
            self._pending.append((aggregate, interval_ms, time.process_time()))
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
            if thread.is_alive() or self.backlog:
                self._give_up()
                return False
        else:
            self._deliver_until(deadline)
            self._give_up()
        return not self.backlog

    def deliver_now(self, deadline: float, seal_failures_before: int) -> bool:
        """Encode what is pending and try the backlog now, on the uploader's thread; True if all of
        it went out (False if anything is left, or a profile failed to encode since the count of
        ``seal_failures`` was ``seal_failures_before``: the caller reads it before it hands over
        the interval, which this thread may encode before this method is even called)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return False
        self._flushed.clear()
        self._flush_requested.set()
        self._wake.set()
        self._flushed.wait(max(0.0, deadline - time.monotonic()))
        return not self._pending and not self.backlog and self.seal_failures == seal_failures_before

    # --- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        delivery = self._setup()
        if delivery is None:
            return
        while True:
            stopping = self._stopping.is_set()
            try:
                self._encode_pending()
                if stopping:
                    break
                delivery.configure_if_due()
                if self._flush_requested.is_set():
                    self._flush_requested.clear()
                    delivery.retry_now()
                    delivery.submit_due()
                    self._flushed.set()
                else:
                    delivery.submit_due()
            except Exception:  # the thread must outlive any one failure; counted
                self.errors.add("uploaderErrors")
                logger.debug("uploader step failed", exc_info=True)
            self._wake.wait(delivery.next_wait_s())
            self._wake.clear()
        self._deliver_until(None)
        self._close_sink()

    def _setup(self) -> Optional[Delivery]:
        """Build the sink (boto3 is imported here) and the delivery policy; None disables the agent."""
        try:
            sink = self._sink_factory()
            self._fleet = self._fleet_factory()
        except SetupError as error:
            logger.warning("CodeGuru profiler disabled: %s", error)
            self._on_disabled(str(error))
            return None
        except Exception as error:  # e.g. a broken boto3 install: disable, never break the host
            logger.warning("CodeGuru profiler disabled: cannot set up the client: %s", error)
            logger.debug("set-up failure", exc_info=True)
            self._on_disabled(str(error))
            return None
        self._delivery = Delivery(
            sink,
            self.backlog,
            self.errors,
            config=lambda: self._config,
            on_configuration=self._configured,
            identity=self._identity,
            is_killed=self._is_killed,
        )
        if self._spool is not None and self._load_spool:
            try:
                spooled = self._spool.load()
            except OSError as error:  # the directory went away: profiles still flow, without it
                self.errors.add("spoolErrors")
                logger.warning("cannot read the spool %s: %s", self._spool.directory, error)
                spooled = []
            for sealed in spooled:
                self._add_to_backlog(sealed)
        return self._delivery

    def _configured(self, config: AgentConfig, should_profile: bool) -> None:
        """The service's configuration (or a missing group's pause): in force here, and for the profiler."""
        self._config = config
        self._on_configuration(config, should_profile)

    def _encode_pending(self) -> None:
        """Seal and encode every pending aggregate into the backlog; one that fails costs no other.

        What was sampled before a first answer that said not to profile is dropped here.
        """
        with self._pending_lock:
            pending, self._pending = self._pending, []
        refused_before_ms = self._delivery.refused_before_ms if self._delivery is not None else None
        for aggregate, interval_ms, process_cpu in pending:
            if refused_before_ms is not None and aggregate.start_ms < refused_before_ms:
                continue
            try:
                sealed = self._seal(aggregate, interval_ms, process_cpu)
            except Exception as error:  # this profile is lost; the others are not, and the next one says so
                self.seal_failures += 1
                self.errors.add("uploaderErrors")
                logger.warning("a profile could not be encoded and is lost: %s", error)
                logger.debug("encoding failure", exc_info=True)
                continue
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
        failed_children = forksafe.take_child_restart_failures()
        if failed_children:
            self.errors.add("childRestartErrors", failed_children)
        if aggregate.num_times_sampled == 0 or not any(aggregate.counts):
            return None
        metrics = {
            "samplingIntervalInMs_configured": float(
                aggregate.sampling_interval_ms or self._config.sampling_interval_ms
            ),
            "samplingIntervalInMs_effective": float(interval_ms),
            "ticks": float(aggregate.ticks),
            "foldedStacks": float(aggregate.folded_stacks),
            "backlogProfiles": float(len(self.backlog)),
            "taskSamples": float(aggregate.task_samples),
            "greenletSamples": float(aggregate.greenlet_samples),
        }
        if aggregate.skipped_ticks:
            metrics["ticksSkippedForInterpreters"] = float(aggregate.skipped_ticks)
        if aggregate.unit_errors:
            metrics["taskSamplingErrors"] = float(aggregate.unit_errors)
        if self._config.main_thread_timer:
            metrics["timerSamples"] = float(aggregate.timer_samples)
            if aggregate.timer_fallbacks:
                metrics["timerFallbackTicks"] = float(aggregate.timer_fallbacks)
            if aggregate.timer_dropped:
                metrics["timerDroppedSamples"] = float(aggregate.timer_dropped)
            for reason, count in aggregate.timer_off:
                metrics["timerFallback_" + reason] = float(count)
        profile = profile_of(
            aggregate, cpu_time_s=round(cpu_s, 6), agent_cpu_ms=int(agent_cpu_s * 1000), generic_metrics=metrics
        )
        identity = self._identity()
        reported = self.errors.take()
        provenance = Provenance(
            fleet_info=identity.fleet_info,
            agent_version=VERSION,
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

    def _deliver_until(self, deadline: Optional[float]) -> None:
        """The final flush: encode what is pending and try each profile once more, oldest first."""
        self._encode_pending()
        if self._delivery is not None:
            self._delivery.deliver_once(deadline)

    def _give_up(self) -> None:
        """At the deadline: what is still undelivered stays in the spool, or is counted as lost.

        An interval handed over but not yet encoded (this thread was held up, in a request to an
        endpoint that never answers, say) is lost too, and counted with the rest: never silently.
        """
        held = len(self.backlog)
        with self._pending_lock:
            unencoded = sum(
                1 for aggregate, _, _ in self._pending if aggregate.num_times_sampled and any(aggregate.counts)
            )
        left = held + unencoded
        if not left:
            return
        spool = self._spool
        kept = spool is not None and held > 0
        if spool is None or not held:
            fate = "lost"
        elif unencoded:
            fate = f"{held} kept in the spool {spool.directory}, {unencoded} lost before it could be encoded"
        else:
            fate = f"kept in the spool {spool.directory}"
        if self._delivery is not None and not self._delivery.answered:
            logger.warning(
                "%d profile(s) not delivered before the shutdown deadline: ConfigureAgent never "
                "answered, and nothing is sent before the service's first answer (%s)",
                left,
                fate,
            )
        elif kept:
            logger.warning(
                "%d profile(s) not delivered before exit (%s); the next process delivers the spool", left, fate
            )
        else:
            logger.warning(
                "%d profile(s) not delivered before the shutdown deadline and lost%s",
                left,
                "" if self._spool is not None else " (set AWS_CODEGURU_PROFILER_SPOOL_DIR to keep them)",
            )

    def _close_sink(self) -> None:
        if self._delivery is not None:
            try:
                self._delivery.sink.close()
            except Exception:  # closing is best effort
                logger.debug("closing the sink failed", exc_info=True)

    @property
    def sink(self) -> Optional[Sink]:
        """The sink, once built on the uploader's thread (the profiler reads a local sink's flame graph path)."""
        return self._delivery.sink if self._delivery is not None else None
