"""Delivery rules of the uploader, driven step by step with a scripted sink (no threads, no clock)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, Dict, List, Tuple

from codeguru_agent.config import AgentConfig
from codeguru_agent.fleet import FleetIdentity
from codeguru_agent.reporting.document import Frame
from codeguru_agent.reporting.sinks import Outcome, Result
from codeguru_agent.reporting.uploader import Uploader
from codeguru_agent.sampling.sampler import Aggregate, FrameTable
from support.waiting import wait_until


class ScriptedSink:
    """Answers submissions from a script of outcomes, then accepts; records every attempt."""

    def __init__(self, *script: Outcome) -> None:
        self.script = list(script)
        self.attempts: List[Tuple[str, Dict[str, Any]]] = []
        self.configure_calls = 0

    def submit(self, body: bytes, content_type: str, token: str) -> Result:
        self.attempts.append((token, json.loads(body)))
        outcome = self.script.pop(0) if self.script else Outcome.ACCEPTED
        return Result(outcome, reason=f"scripted {outcome.value}")

    def configure(self, identity: FleetIdentity) -> Result:
        self.configure_calls += 1
        return Result(Outcome.ACCEPTED, answer=None)

    def create_group(self, compute_platform: str) -> Result:
        return Result(Outcome.ACCEPTED)

    def close(self) -> None:
        pass

    def accepted_tokens(self) -> List[str]:
        return [token for token, _ in self.attempts]


class Host:
    def identity(self) -> FleetIdentity:
        return FleetIdentity("host", {"id": "host", "type": "UNKNOWN", "vCPUs": 1})


def aggregate(start_ms: int, samples: int = 3) -> Aggregate:
    table = FrameTable()
    frame_id = table.intern(Frame("app:work", "/app.py", 1))
    return Aggregate(
        start_ms=start_ms,
        end_ms=start_ms + 1000,
        duration_ms=1000,
        stacks=[(frame_id,)],
        counts=[samples],
        num_times_sampled=samples,
        threads_seen=samples,
        folded_stacks=0,
        memory_bytes=0,
        table=table,
    )


def uploader(sink: ScriptedSink, **options: Any) -> Uploader:
    config = AgentConfig(profiling_group_name="G", **options)
    paused: List[bool] = []
    result = Uploader(
        config,
        sink_factory=lambda: sink,
        fleet_factory=Host,
        on_configuration=lambda c, should: paused.append(not should),
        on_disabled=lambda reason: None,
        is_killed=lambda: False,
        sampler_stats=lambda: (0.0, 0),
    )
    assert result._setup()
    result.paused_calls = paused  # type: ignore[attr-defined]
    return result


def step(up: Uploader, retry_now: bool = True) -> None:
    """One turn of the uploader's loop: encode, ask ConfigureAgent when due, submit."""
    up._encode_pending()
    up._delivery.configure_if_due()
    if retry_now:
        up._delivery.retry_now()  # as a flush does; the backoff itself: test_delivery.py
    up._delivery.submit_due()


def test_a_retried_profile_keeps_its_token_and_later_profiles_wait_their_turn() -> None:
    sink = ScriptedSink(Outcome.RETRY, Outcome.RETRY)
    up = uploader(sink)
    up.enqueue(aggregate(1_000), 10.0)
    up.enqueue(aggregate(2_000), 10.0)
    step(up)
    step(up)
    step(up)
    tokens = sink.accepted_tokens()
    first = tokens[0]
    assert str(uuid.UUID(first)) == first
    assert tokens[:3] == [first, first, first]  # two failures, then accepted
    assert len(tokens) == 4 and tokens[3] != first  # the second profile only after the first
    assert [body["start"] for _, body in sink.attempts] == [1_000, 1_000, 1_000, 2_000]
    assert not up.backlog


def test_a_refused_profile_is_dropped_with_a_warning_and_the_next_goes_on(caplog: Any) -> None:
    sink = ScriptedSink(Outcome.DROP)
    up = uploader(sink)
    up.enqueue(aggregate(1_000), 10.0)
    with caplog.at_level("WARNING", logger="codeguru_agent"):
        step(up)
    up.enqueue(aggregate(2_000), 10.0)
    step(up)
    assert [body["start"] for _, body in sink.attempts] == [1_000, 2_000]
    assert any("dropped" in r.message and "scripted drop" in r.message for r in caplog.records)
    assert sink.attempts[1][1]["debugInfo"]["errorsCount"]["postAgentProfileErrors"] == 1


def test_a_full_backlog_drops_the_oldest_and_reports_it_in_the_next_delivered_profile(caplog: Any) -> None:
    sink = ScriptedSink(*[Outcome.RETRY] * 3)
    up = uploader(sink, backlog_max_profiles=2)
    with caplog.at_level("WARNING", logger="codeguru_agent"):
        for start in (1_000, 2_000, 3_000, 4_000):
            up.enqueue(aggregate(start), 10.0)
            step(up)
    assert len([r for r in caplog.records if "backlog full" in r.message]) == 1
    for _ in range(3):
        step(up)
    up.enqueue(aggregate(5_000), 10.0)  # sealed after the second drop, so it carries that one
    step(up)
    delivered = [body for _, body in sink.attempts[3:]]
    assert [body["start"] for body in delivered] == [3_000, 4_000, 5_000]
    reported = sum(body["debugInfo"]["errorsCount"].get("backlogDroppedProfiles", 0) for body in delivered)
    assert reported == 2


def test_errors_are_reported_once_in_the_profile_after_they_happen() -> None:
    sink = ScriptedSink(Outcome.RETRY)
    up = uploader(sink)
    up.enqueue(aggregate(1_000), 10.0)
    step(up)
    step(up)
    up.enqueue(aggregate(2_000), 10.0)
    step(up)
    up.enqueue(aggregate(3_000), 10.0)
    step(up)
    bodies = {body["start"]: body for _, body in sink.attempts}
    assert bodies[1_000]["debugInfo"]["errorsCount"]["postAgentProfileErrors"] == 0
    assert bodies[2_000]["debugInfo"]["errorsCount"]["postAgentProfileErrors"] == 1
    assert bodies[3_000]["debugInfo"]["errorsCount"]["postAgentProfileErrors"] == 0


def test_a_missing_group_pauses_sampling_and_holds_the_profile() -> None:
    sink = ScriptedSink(Outcome.NOT_FOUND)
    up = uploader(sink)
    up.enqueue(aggregate(1_000), 10.0)
    step(up)
    assert up.paused_calls == [True]  # type: ignore[attr-defined]
    assert len(up.backlog) == 1
    step(up)
    assert len(sink.attempts) == 1  # held while the group is missing
    up._delivery._configure_at = 0.0
    up._delivery.configure_if_due()  # the group exists again: ConfigureAgent answers
    step(up)
    assert up.paused_calls[-1] is False  # type: ignore[attr-defined]
    assert len(sink.attempts) == 2 and sink.attempts[0][0] == sink.attempts[1][0]


def test_with_auto_create_a_missing_group_is_created_and_the_profile_sent_again_in_the_same_pass() -> None:
    """Lambda freezes the process after each invocation: the retry cannot wait for a backoff."""
    sink = ScriptedSink(Outcome.NOT_FOUND, Outcome.NOT_FOUND)
    up = uploader(sink, auto_create_group=True)
    up.enqueue(aggregate(1_000), 10.0)
    step(up, retry_now=False)
    assert len(sink.attempts) == 2 and sink.attempts[0][0] == sink.attempts[1][0]  # same token, same pass
    assert len(up.backlog) == 1  # still missing after the create: kept, and no loop of creates
    step(up, retry_now=False)
    assert len(sink.attempts) == 3
    assert not up.backlog


def test_empty_intervals_are_not_submitted() -> None:
    sink = ScriptedSink()
    up = uploader(sink)
    up.enqueue(aggregate(1_000, samples=0), 10.0)
    step(up)
    assert sink.attempts == []


def test_a_spool_directory_that_went_away_is_counted_and_delivery_goes_on(tmp_path: Any, caplog: Any) -> None:
    spool = tmp_path / "spool"
    sink = ScriptedSink()
    config = AgentConfig(profiling_group_name="G", spool_dir=str(spool))
    up = Uploader(
        config,
        sink_factory=lambda: sink,
        fleet_factory=Host,
        on_configuration=lambda c, should: None,
        on_disabled=lambda reason: None,
        is_killed=lambda: False,
        sampler_stats=lambda: (0.0, 0),
    )
    spool.rmdir()  # made when the uploader was built, removed before its thread reads it

    with caplog.at_level("WARNING", logger="codeguru_agent"):
        assert up._setup() is not None
    up.enqueue(aggregate(1_000), 10.0)
    step(up)

    assert [body["debugInfo"]["errorsCount"].get("spoolErrors") for _, body in sink.attempts] == [1]
    assert any("cannot read the spool" in record.getMessage() for record in caplog.records)


class FailingOnceSink(ScriptedSink):
    """A sink with a bug: its first submission raises instead of answering."""

    def submit(self, body: bytes, content_type: str, token: str) -> Result:
        if not self.attempts:
            self.attempts.append((token, json.loads(body)))
            raise RuntimeError("sink bug")
        return super().submit(body, content_type, token)


def test_a_failing_step_is_counted_and_the_uploaders_thread_goes_on() -> None:
    sink = FailingOnceSink()
    up = uploader(sink)
    thread = threading.Thread(target=up.run, name="test-uploader", daemon=True)
    up.adopt(thread)
    thread.start()
    try:
        up.enqueue(aggregate(1_000), 10.0)
        wait_until(lambda: len(sink.attempts) >= 2, 10, "the profile tried again after the failed step")
        up.enqueue(aggregate(2_000), 10.0)
        wait_until(lambda: len(sink.attempts) >= 3, 10, "the next profile")
    finally:
        assert up.drain(time.monotonic() + 10)
        thread.join(10)

    assert [body["start"] for _, body in sink.attempts] == [1_000, 1_000, 2_000]
    assert [body["debugInfo"]["errorsCount"].get("uploaderErrors") for _, body in sink.attempts] == [None, None, 1]
