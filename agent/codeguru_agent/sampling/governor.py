"""The overhead budget: slow sampling down instead of switching the agent off.

The official agent stops for good when it crosses its CPU limit, so it loses data exactly when the
host is busiest. Here the cost of sampling is compared with a budget (a percentage of one core) over
short windows; over budget, the sampling interval grows step by step up to one second; with room to
spare it shrinks back towards the configured interval.

The cost has two sides, and the budget bounds their sum. One is the CPU of the agent's own threads.
The other is what the host loses: a Python sampler holds the GIL while it ticks, so a host thread
running Python stops for the tick and for the two hand-overs of the GIL around it, time that shows
in no agent thread's CPU. The sampling thread estimates it per window (``runner._host_cost``). On a
CPU-bound host the two are about equal, and the rate the budget allows is halved; on a host that
waits for I/O the host loses next to nothing, and the agent's CPU has the whole budget.
"""

from __future__ import annotations

from typing import Final

SLOWEST_INTERVAL_MS: Final = 1000.0
WINDOW_S: Final = 0.5
_SLOW_DOWN: Final = 1.5
_SPEED_UP: Final = 1.25
_ROOM: Final = 0.7
"""Below this share of the budget the interval shrinks again; between it and the budget it holds."""


class OverheadGovernor:
    """Adjusts the sampling interval from the measured cost of sampling per window."""

    def __init__(self, configured_interval_ms: float, cpu_limit_percent: float) -> None:
        self.configured_interval_ms = configured_interval_ms
        self.interval_ms = configured_interval_ms
        self.cpu_limit_percent = cpu_limit_percent
        self.slowdowns = 0

    def reconfigure(self, configured_interval_ms: float) -> None:
        """A new configured interval (from the service or the user) restarts the adjustment."""
        self.configured_interval_ms = configured_interval_ms
        self.interval_ms = max(configured_interval_ms, min(self.interval_ms, SLOWEST_INTERVAL_MS))

    def observe(self, agent_cpu_s: float, window_s: float, host_s: float = 0.0) -> float:
        """Account one window: the agent's CPU time and the host's estimated loss (seconds); returns
        the interval to use next."""
        if window_s <= 0:
            return self.interval_ms
        used_percent = 100.0 * (agent_cpu_s + host_s) / window_s
        if used_percent > self.cpu_limit_percent and self.interval_ms < SLOWEST_INTERVAL_MS:
            self.interval_ms = min(SLOWEST_INTERVAL_MS, self.interval_ms * _SLOW_DOWN)
            self.slowdowns += 1
        elif used_percent < self.cpu_limit_percent * _ROOM and self.interval_ms > self.configured_interval_ms:
            self.interval_ms = max(self.configured_interval_ms, self.interval_ms / _SPEED_UP)
        return self.interval_ms
