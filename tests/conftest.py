"""Fixtures shared by the whole suite. Keep this file small: helpers live in ``tests/support/``."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from codeguru_agent.collector.server import CollectorOptions, CollectorServer
from support.collector_client import CollectorHandle, spawn_collector


@pytest.fixture(autouse=True)
def no_instance_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn EC2 instance metadata off for every test (and the processes it starts), as boto3 and the
    agent's fleet detection read it: off EC2, a lookup waits for its timeout. A test that serves its
    own metadata sets ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` and removes this variable."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[CollectorHandle]:
    """A collector on a background thread of this process: test hooks on, no auto-create, fresh database."""
    options = CollectorOptions(port=0, db_path=str(tmp_path / "collector.db"), test_hooks=True)
    with CollectorServer(options) as server:
        yield CollectorHandle(server.url, db_path=options.db_path)


@pytest.fixture
def collector_process(tmp_path: Path) -> Iterator[CollectorHandle]:
    """The real command line in a subprocess (test hooks on, fresh database); killed at teardown."""
    with spawn_collector(str(tmp_path / "collector.db")) as handle:
        yield handle
