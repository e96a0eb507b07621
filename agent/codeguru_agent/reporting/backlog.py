"""Sealed profiles waiting to be delivered: bounded, oldest first, each with its own profileToken.

A profile gets its token once, when it is sealed, and keeps it for every retry and across processes
(through the spool), so the service can never count it twice. When the backlog is full the oldest
profile is dropped and counted: fresh data is worth more than old data.
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field
from typing import Deque, Dict, Iterator, List, Optional

from codeguru_agent.files import write_atomically
from codeguru_agent.host import native
from codeguru_agent.reporting.encoding import content_type_of, extension_for


@dataclass
class Sealed:
    """One encoded profile and its delivery state."""

    token: str
    body: bytes
    content_type: str
    start_ms: int
    reported_errors: Dict[str, int] = field(default_factory=dict)
    """The error counters this profile's debugInfo carries: handed on to the next one if it is dropped."""
    spool_path: Optional[str] = None
    attempts: int = 0


class Backlog:
    """A thread-safe FIFO of sealed profiles bounded by count and by bytes."""

    def __init__(self, max_profiles: int, max_bytes: int) -> None:
        self.max_profiles = max(1, max_profiles)
        self.max_bytes = max(1, max_bytes)
        self._items: Deque[Sealed] = collections.deque()
        self._bytes = 0
        self._lock = native.Lock()

    def add(self, sealed: Sealed) -> List[Sealed]:
        """Append a profile; returns the oldest ones dropped to make room (never the new one)."""
        dropped: List[Sealed] = []
        with self._lock:
            self._items.append(sealed)
            self._bytes += len(sealed.body)
            while len(self._items) > 1 and (len(self._items) > self.max_profiles or self._bytes > self.max_bytes):
                oldest = self._items.popleft()
                self._bytes -= len(oldest.body)
                dropped.append(oldest)
        return dropped

    def oldest(self) -> Optional[Sealed]:
        with self._lock:
            return self._items[0] if self._items else None

    def remove(self, sealed: Sealed) -> None:
        with self._lock:
            try:
                self._items.remove(sealed)
            except ValueError:
                return
            self._bytes -= len(sealed.body)

    def take_all(self) -> List[Sealed]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._bytes = 0
        return items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Sealed]:
        with self._lock:
            return iter(list(self._items))

    @property
    def bytes(self) -> int:
        return self._bytes


class Spool:
    """A directory where sealed profiles wait on disk until delivered, surviving the process.

    Every sealed profile is written here before its first attempt and removed once accepted, so a
    crash (even ``kill -9``) or an outage longer than the process loses nothing; the next process
    that starts with the same spool sends what it finds, under the original tokens.
    """

    def __init__(self, directory: str, group: str) -> None:
        self.directory = directory
        self._prefix = group + "__"
        os.makedirs(directory, exist_ok=True)

    def write(self, sealed: Sealed) -> None:
        extension = extension_for(sealed.content_type)
        path = os.path.join(self.directory, f"{self._prefix}{sealed.start_ms}__{sealed.token}.{extension}")
        write_atomically(path, sealed.body, durable=True)
        sealed.spool_path = path

    @staticmethod
    def forget(sealed: Sealed) -> None:
        if sealed.spool_path:
            try:
                os.unlink(sealed.spool_path)
            except FileNotFoundError:
                pass  # another process sharing the spool delivered it first

    def load(self) -> List[Sealed]:
        """Profiles left by earlier processes for this group, oldest first."""
        found: List[Sealed] = []
        for name in sorted(os.listdir(self.directory)):
            if not name.startswith(self._prefix) or name.endswith(".tmp"):
                continue
            parts = name[len(self._prefix) :].rsplit(".", 1)
            fields = parts[0].split("__")
            if len(parts) != 2 or len(fields) != 2 or not fields[0].isdigit():
                continue
            path = os.path.join(self.directory, name)
            try:
                with open(path, "rb") as file:
                    body = file.read()
            except OSError:
                continue
            found.append(Sealed(fields[1], body, content_type_of(parts[1]), int(fields[0]), spool_path=path))
        found.sort(key=lambda sealed: sealed.start_ms)
        return found
