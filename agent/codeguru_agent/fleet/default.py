"""The fallback identity off any known platform: a random id per process.

The id stays the same for the life of a process and is new in a forked child, so two workers of a
pre-forking server are never taken for one.
"""

from __future__ import annotations

import os
import uuid
from typing import Dict, Final

from codeguru_agent.fleet import FleetIdentity

UNKNOWN_TYPE: Final = "UNKNOWN"

_ids: Dict[int, str] = {}
"""The id of each process by pid; a forked child finds its own pid missing and makes its own."""


def process_id() -> str:
    """This process's random id, made on first use.

    No lock: a lock held by another thread at a fork would be held forever in the child, whose
    restarted agent asks for its id before any fork hook could replace the lock. ``setdefault`` is
    atomic, so of two threads racing on first use both get the id that was stored first.
    """
    return _ids.setdefault(os.getpid(), str(uuid.uuid4()))


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
