"""Every reliability test ends with no agent running in this process and none of its threads left."""

from __future__ import annotations

from typing import Iterator

import pytest

from codeguru_agent import profiler as lifecycle
from reliability.helpers import wait_until
from reliability.in_process import agent_threads


@pytest.fixture(autouse=True)
def no_agent_left() -> Iterator[None]:
    yield
    lifecycle.stop()
    wait_until(lambda: not agent_threads(), 15, "the agent's threads to end")
