"""Sealing tells the truth and loses nothing else: an interval that cannot be handed over makes
``seal_now()`` and ``flush()`` say False, and a profile that cannot be encoded costs no other
profile of its batch (the failure rides in the next one's counters)."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

import codeguru_agent
from codeguru_agent.config import AgentConfig
from codeguru_agent.fleet import FleetIdentity
from codeguru_agent.reporting import uploader as uploading
from codeguru_agent.reporting.document import Frame
from codeguru_agent.reporting.sinks import Outcome, Result
from codeguru_agent.reporting.uploader import Uploader
from codeguru_agent.sampling.runner import Runner
from codeguru_agent.sampling.sampler import Aggregate, FrameTable


class RecordingSink:
    """Accepts everything; keeps each submitted document."""

    def __init__(self) -> None:
        self.documents: List[Dict[str, Any]] = []

    def submit(self, body: bytes, content_type: str, token: str) -> Result:
        self.documents.append(json.loads(body))
        return Result(Outcome.ACCEPTED)

    def configure(self, identity: FleetIdentity) -> Result:
        return Result(Outcome.ACCEPTED, answer=None)

    def create_group(self, compute_platform: str) -> Result:
        return Result(Outcome.ACCEPTED)

    def close(self) -> None:
        pass


class Host:
    def identity(self) -> FleetIdentity:
        return FleetIdentity("host", {"id": "host", "type": "UNKNOWN", "vCPUs": 1})


def aggregate(start_ms: int, frame_offset: int = 0) -> Aggregate:
    """One interval of three samples on one stack; with ``frame_offset``, a stack whose frame the
    table does not hold (a frame table in a bad state): its profile cannot be built."""
    table = FrameTable()
    frame_id = table.intern(Frame("app:work", "/app.py", 1))
    return Aggregate(start_ms, start_ms + 1000, 1000, [(frame_id + frame_offset,)], [3], 3, 3, 0, 0, table)


def uploader_of(sink: RecordingSink) -> Tuple[Uploader, threading.Thread]:
    """An uploader that delivers to ``sink``, with its thread adopted and not yet started."""
    up = Uploader(
        AgentConfig(profiling_group_name="G"),
        sink_factory=lambda: sink,
        fleet_factory=Host,
        on_configuration=lambda config, should_profile: None,
        on_disabled=lambda reason: None,
        is_killed=lambda: False,
        sampler_stats=lambda: (0.0, 0),
    )
    thread = threading.Thread(target=up.run, name="codeguru-agent-uploader", daemon=True)
    up.adopt(thread)
    return up, thread


def test_one_interval_that_cannot_be_encoded_costs_no_other_profile_of_its_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = RecordingSink()
    up, thread = uploader_of(sink)
    for start_ms in (1_000, 2_000, 3_000, 4_000):  # one batch: all pending before the thread runs
        up.enqueue(aggregate(start_ms, frame_offset=1_000 if start_ms == 2_000 else 0), 10.0)

    with caplog.at_level(logging.WARNING, logger="codeguru_agent"):
        thread.start()
        assert up.drain(time.monotonic() + 30), "every profile but the broken one is delivered"
    thread.join(30)

    assert [document["start"] for document in sink.documents] == [1_000, 3_000, 4_000]
    errors = [document["debugInfo"]["errorsCount"] for document in sink.documents]
    assert [count.get("uploaderErrors", 0) for count in errors] == [0, 1, 0], "reported once, in the next profile"
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "could not be encoded" in warnings[0]


def test_seal_now_says_false_for_an_interval_that_could_not_be_handed_over() -> None:
    handed: List[Any] = []

    def on_sealed(sealed: Aggregate, interval_ms: float) -> None:
        handed.append(sealed)
        if len(handed) == 1:
            raise RuntimeError("the hand-over failed")

    runner = Runner(AgentConfig(profiling_group_name="G"), on_sealed=on_sealed)
    thread = threading.Thread(target=runner.run, name="codeguru-agent-sampler", daemon=True)
    runner.adopt(thread)
    thread.start()
    try:
        assert runner.wait_under_way(30)
        assert runner.seal_now(30) is False, "the interval was lost"
        assert runner.seal_now(30) is True
        assert runner.tick_errors == 1
    finally:
        runner.stop(30)
    assert not thread.is_alive()


def test_flush_says_false_when_its_profile_could_not_be_encoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_encode = uploading.encode
    calls: List[int] = []

    def encode_failing_once(document: Any, profile_format: str) -> Any:
        calls.append(1)
        if len(calls) == 1:
            encoded.set()
            raise ValueError("cannot encode this profile")
        return real_encode(document, profile_format)

    monkeypatch.setattr(uploading, "encode", encode_failing_once)
    real_deliver_now = Uploader.deliver_now
    encoded = threading.Event()

    def deliver_after_the_encoding(self: Uploader, deadline: float, *args: Any) -> bool:
        # The uploader's thread may encode the handed-over interval before flush() asks for its
        # delivery; make it so every time (the slow order a busy host sees), within a bound.
        if not calls:
            encoded.wait(0.5)
        return real_deliver_now(self, deadline, *args)

    monkeypatch.setattr(Uploader, "deliver_now", deliver_after_the_encoding)
    profiler = codeguru_agent.Profiler(local_dir=str(tmp_path / "out"))
    assert profiler.start()
    try:
        assert profiler.wait_for_sampling(30)
        # An interval with no sample is not encoded and not lost (a loaded machine may not have
        # ticked yet): flush until one reaches the encoder; that flush, and only it, says False.
        answers: List[bool] = []
        while not calls and len(answers) < 200:
            _busy(0.05)  # something for the interval to hold
            answers.append(profiler.flush(30))
        assert calls, "a profile went through the encoder"
        assert answers[-1] is False, "the flushed interval was lost"
        assert all(answers[:-1]), "an empty interval is not a lost one"
        _busy(0.05)
        assert profiler.flush(30) is True
    finally:
        assert profiler.stop()


def _busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


class NeverAnsweringSink(RecordingSink):
    """ConfigureAgent hangs until released: an endpoint that accepts the request and never answers."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = threading.Event()
        self.release = threading.Event()

    def configure(self, identity: FleetIdentity) -> Result:
        self.asked.set()
        self.release.wait(30)
        return Result(Outcome.ACCEPTED, answer=None)


def test_an_interval_handed_over_while_the_uploader_is_held_up_is_named_lost_at_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The uploader's thread is stuck in a request when the last interval arrives: it is never
    encoded, and the exit's warning must still count it (it was lost in silence)."""
    sink = NeverAnsweringSink()
    up, thread = uploader_of(sink)
    try:
        with caplog.at_level(logging.WARNING, logger="codeguru_agent"):
            thread.start()
            assert sink.asked.wait(30)
            up.enqueue(aggregate(1_000), 10.0)
            assert up.drain(time.monotonic() + 0.2) is False
    finally:
        sink.release.set()
        thread.join(30)

    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("1 profile(s) not delivered before the shutdown deadline") and "lost" in warnings[0]
