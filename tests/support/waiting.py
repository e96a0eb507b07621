"""Waiting, with a deadline, for another thread or process to get somewhere: the suite's one polling loop."""

from __future__ import annotations

import time
from typing import Callable, Final, TypeVar, Union

POLL_INTERVAL_S: Final = 0.02

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout_s: float, what: Union[str, Callable[[], str]]) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; fail after ``timeout_s``.

    ``what`` names what is awaited in the failure; a callable is asked only then, so that the message
    can say how far things got.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            awaited = what if isinstance(what, str) else what()
            raise AssertionError(f"timed out after {timeout_s} s waiting for {awaited}")
        time.sleep(POLL_INTERVAL_S)
