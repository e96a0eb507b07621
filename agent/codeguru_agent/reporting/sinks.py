"""Where sealed profiles go, as the uploader sees it: the :class:`Sink` protocol and its outcomes.

A sink answers each submission with an :class:`Outcome` the uploader can act on (accepted, retry
later, drop, or the profiling group does not exist), so the retry policy lives in one place
(``delivery``) and a sink only translates its own errors. The sinks: the CodeGuru Profiler service
through boto3 (``service``), or a local directory (``local``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Protocol

from codeguru_agent.fleet import FleetIdentity


class Outcome(enum.Enum):
    """What the uploader does with a profile after an attempt (see ``delivery``)."""

    ACCEPTED = "accepted"
    RETRY = "retry"
    DROP = "drop"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class Result:
    """What a call to the service came to, and why, in words for a log line."""

    outcome: Outcome
    reason: str = ""
    answer: Optional[Mapping[str, Any]] = None


class Sink(Protocol):
    """A destination of profiles; built on the uploader's thread, called only from it."""

    def submit(self, body: bytes, content_type: str, token: str) -> Result: ...

    def configure(self, identity: FleetIdentity) -> Result: ...

    def create_group(self, compute_platform: str) -> Result: ...

    def close(self) -> None: ...


class SetupError(Exception):
    """The agent cannot talk to the service at all (no credentials, no region): disable it."""
