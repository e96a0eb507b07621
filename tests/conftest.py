"""Fixtures shared by the whole suite. Keep this file small: helpers live in ``tests/support/``."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from codeguru_agent.collector.server import CollectorOptions, CollectorServer
from support.collector_client import CollectorHandle, spawn_collector


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
