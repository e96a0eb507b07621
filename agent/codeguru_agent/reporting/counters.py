"""Error counts that travel in the next sealed profile's debugInfo."""

from __future__ import annotations

from typing import Dict

from codeguru_agent.host import native


class ErrorCounters:
    """Error counts that travel in the next sealed profile's debugInfo.

    Each count goes into exactly one profile: ``take()`` hands everything counted so far to the
    profile being sealed, and a profile that is dropped undelivered gives its counts back with
    ``restore()``, so they ride in the next one. Several profiles waiting in the backlog therefore
    never report the same error twice.
    """

    def __init__(self) -> None:
        self._counts: Dict[str, int] = {}
        self._lock = native.Lock()

    def add(self, name: str, count: int = 1, error: bool = True) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + count
            if error:
                self._counts["errorsCount"] = self._counts.get("errorsCount", 0) + count

    def take(self) -> Dict[str, int]:
        """Everything counted since the last take, for the profile being sealed; the counts reset."""
        with self._lock:
            counts, self._counts = self._counts, {}
        return counts

    def restore(self, reported: Dict[str, int]) -> None:
        """Give back what a dropped profile carried, so the next sealed profile reports it."""
        with self._lock:
            for name, count in reported.items():
                self._counts[name] = self._counts.get(name, 0) + count
