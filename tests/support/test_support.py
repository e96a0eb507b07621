"""What the suite guarantees every test: no real instance metadata lookups, and one polling helper."""

from __future__ import annotations

import os
from typing import List

import pytest

from codeguru_agent.fleet import ec2
from support.waiting import wait_until


def test_ec2_instance_metadata_is_off_unless_a_test_turns_it_on() -> None:
    """A lookup against the real 169.254.169.254 waits for its timeout on every machine but EC2."""
    assert ec2.endpoint(os.environ) is None


def test_a_test_can_point_instance_metadata_at_its_own_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ec2.DISABLED_ENV)
    monkeypatch.setenv(ec2.ENDPOINT_ENV, "http://127.0.0.1:9")

    assert ec2.endpoint(os.environ) == "http://127.0.0.1:9"


def test_wait_until_polls_until_the_predicate_is_truthy_and_returns_its_value() -> None:
    answers = iter([None, [], 0, "", ["ready"]])

    assert wait_until(lambda: next(answers), 10, "the fifth answer") == ["ready"]


def test_wait_until_fails_after_the_timeout_saying_what_it_waited_for() -> None:
    asked: List[int] = []

    with pytest.raises(AssertionError, match=r"^timed out after 0.05 s waiting for the impossible$"):
        wait_until(lambda: asked.append(1), 0.05, "the impossible")
    assert len(asked) >= 2


def test_a_callable_description_is_asked_only_at_the_timeout() -> None:
    asked: List[int] = []

    def progress() -> str:
        asked.append(1)
        return f"3 profiles ({len(asked)} arrived)"

    with pytest.raises(AssertionError, match=r"waiting for 3 profiles \(1 arrived\)$"):
        wait_until(lambda: False, 0.05, progress)
