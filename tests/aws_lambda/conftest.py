"""The ``start_lambda`` fixture: simulated Lambda functions that are always cleaned up."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List

import pytest

from support.simulated_lambda import SimulatedLambda


@pytest.fixture
def start_lambda() -> Iterator[Any]:
    """Start a simulated function: ``start_lambda(env, exec_wrapper=False)``; killed at teardown."""
    started: List[SimulatedLambda] = []

    def start(env: Dict[str, str], exec_wrapper: bool = False) -> SimulatedLambda:
        simulated = SimulatedLambda(env, exec_wrapper)
        started.append(simulated)
        return simulated

    yield start
    for simulated in started:
        simulated.kill()
