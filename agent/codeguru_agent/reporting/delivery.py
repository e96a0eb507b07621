"""The delivery and backoff policy: which profile goes when, and what each answer means.

The backlog is delivered oldest first; a profile that fails to go out holds back the ones behind
it, and retries after an exponential backoff with jitter. A refused profile is dropped with a
WARNING that says why. A missing profiling group pauses sampling until ConfigureAgent finds it again
(or, with auto-create, until the group is created). ConfigureAgent is polled once per reporting
interval. Everything here runs on the uploader's thread.

The service's first answer comes first: no profile goes out before ConfigureAgent has answered
once, and if that first answer says not to profile, every profile sampled before it is dropped.
Until then ConfigureAgent is asked again after a backoff (not a whole reporting interval); at exit
it is asked once more, and without an answer nothing is sent (README: before the first answer).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Callable, Final, Optional

from codeguru_agent.config import AgentConfig
from codeguru_agent.fleet import FleetIdentity
from codeguru_agent.reporting.backlog import Backlog, Sealed, Spool
from codeguru_agent.reporting.counters import ErrorCounters
from codeguru_agent.reporting.sinks import Outcome, Result, Sink

logger = logging.getLogger(__name__)

_FIRST_BACKOFF_S: Final = 1.0
_MAX_BACKOFF_S: Final = 300.0


class Delivery:
    """Sends the backlog through the sink, and polls ConfigureAgent, each when it is due."""

    def __init__(
        self,
        sink: Sink,
        backlog: Backlog,
        errors: ErrorCounters,
        *,
        config: Callable[[], AgentConfig],
        on_configuration: Callable[[AgentConfig, bool], None],
        identity: Callable[[], FleetIdentity],
        is_killed: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self._backlog = backlog
        self._errors = errors
        self._config = config
        self._on_configuration = on_configuration
        self._identity = identity
        self._is_killed = is_killed
        self._clock = clock
        """Monotonic seconds; the retry and ConfigureAgent deadlines are read on it (a fake one in tests)."""
        self._failures = 0
        self._retry_at = 0.0
        self._group_missing = False
        self._group_just_created = False
        self._configure_at = 0.0
        self._answered = False
        """Whether ConfigureAgent has answered once: until then no profile goes out."""
        self._configure_failures = 0
        self.refused_before_ms: Optional[int] = None
        """Set when the first answer says not to profile: what was sampled before this time (epoch
        ms) is never sent."""

    def next_wait_s(self) -> float:
        """How long the uploader's thread may sleep before something here is due."""
        now = self._clock()
        deadlines = [self._configure_at]
        if len(self._backlog):
            deadlines.append(self._retry_at)
        return max(0.05, min(deadlines) - now)

    def retry_now(self) -> None:
        """A flush: the next :meth:`submit_due` does not wait for the backoff."""
        self._retry_at = 0.0

    @property
    def answered(self) -> bool:
        """Whether ConfigureAgent has answered once (profiles are held until it has)."""
        return self._answered

    def configure_if_due(self, now_anyway: bool = False) -> None:
        """Ask ConfigureAgent once per reporting interval (sooner until its first answer); apply its answer."""
        now = self._clock()
        if (now < self._configure_at and not now_anyway) or self._is_killed():
            return
        config = self._config()
        self._configure_at = now + config.reporting_interval_ms / 1000.0
        result = self.sink.configure(self._identity())
        if result.outcome is Outcome.ACCEPTED:
            first, self._answered = not self._answered, True
            if result.answer:
                should_profile = bool(result.answer.get("shouldProfile", True))
                config = config.with_server_configuration(result.answer)
                self._configure_at = now + config.reporting_interval_ms / 1000.0
                if first and not should_profile:
                    self._refuse_what_came_before()
                self._on_configuration(config, should_profile)
            if self._group_missing:
                self._group_missing = False
                self._retry_at = 0.0
                if not result.answer:
                    self._on_configuration(config, True)
            return
        self._errors.add("configureAgentErrors")
        if not self._answered:  # profiles wait for the first answer: ask again soon
            self._configure_failures += 1
            self._configure_at = now + min(self._backoff_s(self._configure_failures), self._configure_at - now)
        if result.outcome is Outcome.NOT_FOUND:
            self._group_not_found(result, "configure_agent")
        else:
            logger.info("configure_agent failed (%s); keeping the current configuration", result.reason)

    def _refuse_what_came_before(self) -> None:
        """The first answer says not to profile: nothing sampled before it may be sent."""
        self.refused_before_ms = int(time.time() * 1000)
        held = list(self._backlog)
        for sealed in held:
            self._backlog.remove(sealed)
            Spool.forget(sealed)
            self._errors.restore(sealed.reported_errors)
        logger.info(
            "the service says not to profile %s: %d profile(s) sampled before its answer are not sent",
            self._config().profiling_group_name,
            len(held),
        )

    def submit_due(self) -> None:
        """Deliver the backlog oldest first, until one fails or a retry is not yet due."""
        resent_after_create = False
        self._group_just_created = False
        while self._answered and not self._is_killed() and not self._group_missing:
            if self._clock() < self._retry_at:
                return
            sealed = self._backlog.oldest()
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

    def deliver_once(self, deadline: Optional[float]) -> None:
        """The final flush: try each profile once more, oldest first, until one fails or the deadline.

        Without an answer from ConfigureAgent yet (a program that ends before the agent asked),
        it is asked first; still without one, nothing is sent.
        """
        if self._is_killed():
            return
        if not self._answered and not self._group_missing:
            self.configure_if_due(now_anyway=True)
        if not self._answered:
            return
        for sealed in list(self._backlog):
            if deadline is not None and self._clock() >= deadline:
                return
            if not self._submit(sealed):
                return

    def _submit(self, sealed: Sealed) -> bool:
        """One attempt; True if the backlog can move on to the next profile."""
        sealed.attempts += 1
        result = self.sink.submit(sealed.body, sealed.content_type, sealed.token)
        if result.outcome is Outcome.ACCEPTED:
            self._backlog.remove(sealed)
            Spool.forget(sealed)
            self._failures = 0
            return True
        self._errors.add("postAgentProfileErrors")
        if result.outcome is Outcome.DROP:
            self._backlog.remove(sealed)
            Spool.forget(sealed)
            self._errors.restore(sealed.reported_errors)
            self._errors.add("droppedProfiles", error=False)
            logger.warning("profile %s dropped: the service refused it (%s)", sealed.token, result.reason)
            return True
        if result.outcome is Outcome.NOT_FOUND:
            self._group_not_found(result, "post_agent_profile")
            return False
        self._failures += 1
        delay = self._backoff_s(self._failures)
        self._retry_at = self._clock() + delay
        logger.info("profile %s not delivered (%s); retrying in %.1f s", sealed.token, result.reason, delay)
        return False

    def _backoff_s(self, failures: int) -> float:
        """Exponential with jitter, from one second up to the reporting interval (at most 300 s)."""
        cap = min(_MAX_BACKOFF_S, max(_FIRST_BACKOFF_S, self._config().reporting_interval_ms / 1000.0))
        return min(cap, _FIRST_BACKOFF_S * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)

    def _group_not_found(self, result: Result, operation: str) -> None:
        config = self._config()
        if config.auto_create_group:
            self._errors.add(
                "configureAgentRnfeAutoCreateEnabledErrors"
                if operation == "configure_agent"
                else "postAgentProfileRnfeAutoCreateEnabledErrors"
            )
            platform = self._identity().configure_agent_metadata.get("ComputePlatform", "Default")
            created = self.sink.create_group(platform)
            if created.outcome is Outcome.ACCEPTED:
                logger.info("created profiling group %s", config.profiling_group_name)
                self._retry_at = 0.0
                self._configure_at = 0.0
                self._group_just_created = True
                return
            self._errors.add("createProfilingGroupErrors")
        if not self._group_missing:
            logger.warning(
                "profiling group %r not found (%s): sampling paused; checking again every reporting interval",
                config.profiling_group_name,
                result.reason,
            )
        self._group_missing = True
        self._on_configuration(config, False)
