"""The overhead budget: slow sampling down instead of switching the agent off.

The official agent stops for good when it crosses its CPU limit, so it loses data exactly when the
host is busiest. Here the agent's own threads' CPU time is compared with a budget (a percentage of
one core) over short windows; over budget, the sampling interval grows step by step up to one
second; with room to spare it shrinks back towards the configured interval.
"""

from __future__ import annotations

from typing import Final

SLOWEST_INTERVAL_MS: Final = 1000.0
WINDOW_S: Final = 1.0
_SLOW_DOWN: Final = 1.5
_SPEED_UP: Final = 1.25


class OverheadGovernor:
    """Adjusts the sampling interval from the agent's measured CPU use per window."""

    def __init__(self, configured_interval_ms: float, cpu_limit_percent: float) -> None:
        self.configured_interval_ms = configured_interval_ms
        self.interval_ms = configured_interval_ms
        self.cpu_limit_percent = cpu_limit_percent
        self.slowdowns = 0

    def reconfigure(self, configured_interval_ms: float) -> None:
        """A new configured interval (from the service or the user) restarts the adjustment."""
        self.configured_interval_ms = configured_interval_ms
        self.interval_ms = max(configured_interval_ms, min(self.interval_ms, SLOWEST_INTERVAL_MS))

    def observe(self, agent_cpu_s: float, window_s: float) -> float:
        """Account one window of the agent's CPU time; returns the interval to use next."""
        if window_s <= 0:
            return self.interval_ms
        used_percent = 100.0 * agent_cpu_s / window_s
        if used_percent > self.cpu_limit_percent and self.interval_ms < SLOWEST_INTERVAL_MS:
            self.interval_ms = min(SLOWEST_INTERVAL_MS, self.interval_ms * _SLOW_DOWN)
            self.slowdowns += 1
        elif used_percent < self.cpu_limit_percent * 0.7 and self.interval_ms > self.configured_interval_ms:
            self.interval_ms = max(self.configured_interval_ms, self.interval_ms / _SPEED_UP)
        return self.interval_ms
