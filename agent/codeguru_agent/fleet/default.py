"""The fallback identity off any known platform: a random id per process.

The id stays the same for the life of a process and is new in a forked child, so two workers of a
pre-forking server are never taken for one.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Final, Optional, Tuple

from codeguru_agent.fleet import FleetIdentity

UNKNOWN_TYPE: Final = "UNKNOWN"

_lock = threading.Lock()
_current: Optional[Tuple[int, str]] = None
"""(pid, id) of the process the id was made in."""


def process_id() -> str:
    """This process's random id, made on first use."""
    global _current
    pid = os.getpid()
    with _lock:
        # The pid check also covers a fork that skipped the fork hooks (one made from C code).
        if _current is None or _current[0] != pid:
            _current = (pid, str(uuid.uuid4()))
        return _current[1]


def _after_fork_in_child() -> None:
    global _lock, _current
    _lock = threading.Lock()
    _current = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def vcpu_count() -> int:
    """The CPUs this process may run on, as the official agent counts them."""
    try:
        return len(os.sched_getaffinity(0)) or os.cpu_count() or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class DefaultProvider:
    """The identity of whichever process asks: the same id until it forks."""

    def identity(self) -> FleetIdentity:
        fleet_id = process_id()
        return FleetIdentity(fleet_id, {"id": fleet_id, "type": UNKNOWN_TYPE, "vCPUs": vcpu_count()})
