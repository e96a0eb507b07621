"""The extra error counters of ``debugInfo.errorsCount`` (README, Known limits): each reported in the
next profile delivered; ``droppedProfiles`` is not added to the total ``errorsCount``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Dict

import pytest

from codeguru_agent import Profiler
from codeguru_agent.fleet import FleetIdentity
from reliability.helpers import stored
from reliability.in_process import use_agent_env
from support.collector_client import CollectorHandle

GROUP = "ErrorCounters"


def errors_of_each(collector: CollectorHandle) -> list:
    return [entry["document"]["debugInfo"]["errorsCount"] for entry in stored(collector, GROUP)]


def started(**options: Any) -> Profiler:
    profiler = Profiler(**options)
    assert profiler.start() and profiler.wait_for_sampling(10.0)
    return profiler


def test_a_refused_profile_is_counted_as_dropped_but_not_in_the_total(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector.create_group(GROUP)
    use_agent_env(monkeypatch, collector, GROUP, tmp_path)
    collector.fail_next("PostAgentProfile", status=400, code="ValidationException")
    profiler = started()

    assert profiler.flush(10.0), "the refused profile is dropped, so nothing is left to deliver"
    assert profiler.wait_for_sampling(10.0) and profiler.flush(10.0)
    assert profiler.stop()

    errors = errors_of_each(collector)[0]
    assert (errors["droppedProfiles"], errors["postAgentProfileErrors"], errors["errorsCount"]) == (1, 1, 1)


def test_a_spool_that_cannot_be_written_is_counted(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector.create_group(GROUP)
    spool = tmp_path / "spool"
    use_agent_env(monkeypatch, collector, GROUP, tmp_path, spool_dir=spool)
    profiler = started()
    assert profiler.flush(10.0) and any(spool.iterdir()) is False, "delivered, and so no longer spooled"
    shutil.rmtree(spool)
    spool.write_text("a file where the spool directory was")

    assert profiler.wait_for_sampling(10.0) and profiler.flush(10.0)
    assert profiler.wait_for_sampling(10.0) and profiler.flush(10.0)
    assert profiler.stop()

    first, second, third = errors_of_each(collector)[:3]
    assert "spoolErrors" not in first and "spoolErrors" not in second
    assert third["spoolErrors"] == 1 and third["errorsCount"] == 1, "the failed write is reported in the next profile"


class FailingOnce:
    """A platform whose identity fails the first time it is asked."""

    def __init__(self) -> None:
        self.calls = 0

    def identity(self) -> FleetIdentity:
        self.calls += 1
        if self.calls == 1:
            raise OSError("metadata service went away")
        return FleetIdentity("host-1", {"id": "host-1", "type": "UNKNOWN"})


def test_a_platform_identity_that_fails_is_counted(
    collector: CollectorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector.create_group(GROUP)
    use_agent_env(monkeypatch, collector, GROUP, tmp_path)
    profiler = started(fleet=FailingOnce())

    assert profiler.flush(10.0)
    assert profiler.wait_for_sampling(10.0) and profiler.flush(10.0)
    assert profiler.stop()

    counted: Dict[str, int] = {}
    for errors in errors_of_each(collector):
        for name in ("fleetErrors", "errorsCount"):
            counted[name] = counted.get(name, 0) + errors.get(name, 0)
    assert counted == {"fleetErrors": 1, "errorsCount": 1}
