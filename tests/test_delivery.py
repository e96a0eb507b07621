"""The delivery policy's backoff, on a fake clock: each failure doubles the wait (with jitter) up to
a cap, a retry never goes before its time, a success starts over, and a flush does not wait."""

from __future__ import annotations

from typing import List

from codeguru_agent.config import AgentConfig
from codeguru_agent.fleet import FleetIdentity
from codeguru_agent.reporting.backlog import Backlog, Sealed
from codeguru_agent.reporting.counters import ErrorCounters
from codeguru_agent.reporting.delivery import Delivery
from codeguru_agent.reporting.sinks import Outcome, Result

REPORTING_INTERVAL_S = 3600.0
"""Longer than the backoff's cap, so the next ConfigureAgent never comes first."""
CAP_S = 300.0
"""The longest wait between two attempts: five minutes (or the reporting interval, if shorter)."""


class Clock:
    def __init__(self) -> None:
        self.now_s = 1_000.0

    def __call__(self) -> float:
        return self.now_s


class Sink:
    """Fails every submission until told otherwise; records the time of each attempt."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.accept = False
        self.attempts: List[float] = []

    def submit(self, body: bytes, content_type: str, token: str) -> Result:
        self.attempts.append(self.clock())
        return Result(Outcome.ACCEPTED if self.accept else Outcome.RETRY, reason="scripted")

    def configure(self, identity: FleetIdentity) -> Result:
        return Result(Outcome.ACCEPTED, answer=None)

    def create_group(self, compute_platform: str) -> Result:
        return Result(Outcome.ACCEPTED)

    def close(self) -> None:
        pass


def delivery(clock: Clock, sink: Sink, backlog: Backlog) -> Delivery:
    config = AgentConfig(profiling_group_name="G", reporting_interval_ms=int(REPORTING_INTERVAL_S * 1000))
    result = Delivery(
        sink,  # type: ignore[arg-type]
        backlog,
        ErrorCounters(),
        config=lambda: config,
        on_configuration=lambda config, should_profile: None,
        identity=lambda: FleetIdentity("host", {"id": "host", "type": "UNKNOWN", "vCPUs": 1}),
        is_killed=lambda: False,
        clock=clock,
    )
    result.configure_if_due()  # the first ConfigureAgent; the next is an hour away
    return result


def sealed(start_ms: int) -> Sealed:
    return Sealed(token=f"token-{start_ms}", body=b"{}", content_type="application/json", start_ms=start_ms)


def fail_until_due(clock: Clock, sink: Sink, policy: Delivery) -> float:
    """Wait out the backoff on the fake clock, checking that no attempt comes early; the next wait."""
    wait_s = policy.next_wait_s()
    attempts = len(sink.attempts)
    clock.now_s += wait_s - 0.01
    policy.submit_due()
    assert len(sink.attempts) == attempts, "a retry went before its time"
    clock.now_s += 0.01
    policy.submit_due()
    assert len(sink.attempts) == attempts + 1, "a retry did not go when due"
    return policy.next_wait_s()


def test_each_failure_doubles_the_wait_up_to_the_cap() -> None:
    clock, backlog = Clock(), Backlog(20, 2**20)
    sink = Sink(clock)
    policy = delivery(clock, sink, backlog)
    backlog.add(sealed(1))

    policy.submit_due()
    waits = [policy.next_wait_s()] + [fail_until_due(clock, sink, policy) for _ in range(11)]

    for failures, wait_s in enumerate(waits, start=1):
        full_s = min(CAP_S, 2.0 ** (failures - 1))
        assert full_s / 2 <= wait_s <= full_s, (failures, waits)  # jitter: half to all of the full wait
    assert max(waits) <= CAP_S and min(waits[-3:]) >= CAP_S / 2
    assert len(sink.attempts) == 12 and len(backlog) == 1


def test_a_success_starts_the_backoff_over_and_the_next_profile_goes_at_once() -> None:
    clock, backlog = Clock(), Backlog(20, 2**20)
    sink = Sink(clock)
    policy = delivery(clock, sink, backlog)
    backlog.add(sealed(1))
    backlog.add(sealed(2))
    policy.submit_due()
    for _ in range(5):
        fail_until_due(clock, sink, policy)

    sink.accept = True
    clock.now_s += policy.next_wait_s()
    policy.submit_due()
    assert len(backlog) == 0 and sink.attempts[-1] == sink.attempts[-2] == clock.now_s

    sink.accept = False
    backlog.add(sealed(3))
    policy.submit_due()
    assert 0.5 <= policy.next_wait_s() <= 1.0, "the first failure after a success waits a second at most"


def test_a_flush_retries_at_once() -> None:
    clock, backlog = Clock(), Backlog(20, 2**20)
    sink = Sink(clock)
    policy = delivery(clock, sink, backlog)
    backlog.add(sealed(1))
    for _ in range(4):
        policy.submit_due()
        clock.now_s += policy.next_wait_s()
    attempts = len(sink.attempts)

    policy.submit_due()
    policy.retry_now()
    policy.submit_due()

    assert len(sink.attempts) == attempts + 2 and sink.attempts[-1] == sink.attempts[-2]
