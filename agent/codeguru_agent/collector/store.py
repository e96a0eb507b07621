"""The collector's storage: profiling groups and received profiles in one SQLite database.

Durability: the database runs in WAL mode with ``synchronous=FULL`` and every write commits before
the server answers. A profile acknowledged with 204 is therefore in the WAL file on disk, fsynced,
and survives ``kill -9`` of the collector and even a power cut. (NORMAL would survive ``kill -9``
too, since a committed transaction has already been written to the OS, but could lose the last
commits on power loss; one fsync per profile is cheap at the rate agents report.)

Concurrency: one connection shared by the server's threads behind a lock. Every operation is a few
milliseconds of SQLite work, so a lock is simpler than a connection per thread and just as fast here.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any, Dict, Final, Iterator, List, Optional, Tuple

SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    arn TEXT NOT NULL,
    compute_platform TEXT NOT NULL,
    profiling_enabled INTEGER NOT NULL,
    tags TEXT NOT NULL,
    client_token TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    orchestrated_ms INTEGER,
    reported_ms INTEGER,
    latest_profile_start_ms INTEGER
);
CREATE TABLE IF NOT EXISTS profiles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_name TEXT NOT NULL,
    token TEXT NOT NULL,
    content_type TEXT NOT NULL,
    content_encoding TEXT,
    received_ms INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    document TEXT NOT NULL,
    UNIQUE (group_name, token)
);
CREATE INDEX IF NOT EXISTS profiles_by_start ON profiles (group_name, start_ms);
"""
# A profile covers [start, end); a zero-length one still covers its own millisecond.
_OVERLAPS: Final = "group_name = ? AND start_ms < ? AND MAX(end_ms, start_ms + 1) > ?"


class StoreError(RuntimeError):
    """The database cannot be used (wrong schema version, unreadable file)."""


@dataclass(frozen=True)
class Group:
    """A profiling group as stored."""

    id: int
    name: str
    arn: str
    compute_platform: str
    profiling_enabled: bool
    tags: Dict[str, str]
    client_token: Optional[str]
    created_ms: int
    updated_ms: int
    orchestrated_ms: Optional[int]
    reported_ms: Optional[int]
    latest_profile_start_ms: Optional[int]


@dataclass(frozen=True)
class StoredProfile:
    """A profile as stored, ``id`` giving the arrival order (ignored when adding one);
    ``document`` is its canonical JSON text."""

    id: int
    group_name: str
    token: str
    content_type: str
    content_encoding: Optional[str]
    received_ms: int
    start_ms: int
    end_ms: int
    document: str


class Store:
    """Groups and profiles in SQLite; every method is one committed transaction."""

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise StoreError(f"{path} has schema version {version}; this collector reads version {SCHEMA_VERSION}")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the collector database {path}: {error}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create_group(self, group: Group) -> Tuple[Group, bool]:
        """Insert ``group`` unless one of that name exists; returns the stored group and whether it is new."""
        with self._lock, self._transaction():
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO groups (name, arn, compute_platform, profiling_enabled, tags, client_token,"
                " created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    group.name,
                    group.arn,
                    group.compute_platform,
                    int(group.profiling_enabled),
                    json.dumps(group.tags),
                    group.client_token,
                    group.created_ms,
                    group.updated_ms,
                ),
            )
            stored = self._group(group.name)
        assert stored is not None
        return stored, cursor.rowcount == 1

    def group(self, name: str) -> Optional[Group]:
        with self._lock:
            return self._group(name)

    def groups(self, after_id: int, limit: int) -> List[Group]:
        """Groups in creation order, after the one with ``after_id``."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM groups WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
            return [_group(row) for row in rows.fetchall()]

    def update_group(self, name: str, profiling_enabled: bool, updated_ms: int) -> Optional[Group]:
        with self._lock, self._transaction():
            self._db.execute(
                "UPDATE groups SET profiling_enabled = ?, updated_ms = ? WHERE name = ?",
                (int(profiling_enabled), updated_ms, name),
            )
            return self._group(name)

    def delete_group(self, name: str) -> bool:
        """Delete a group and all its profiles; False when there was no such group."""
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM profiles WHERE group_name = ?", (name,))
            return self._db.execute("DELETE FROM groups WHERE name = ?", (name,)).rowcount == 1

    def record_orchestration(self, name: str, at_ms: int) -> None:
        """Remember when an agent of the group last called ConfigureAgent."""
        with self._lock, self._transaction():
            self._db.execute("UPDATE groups SET orchestrated_ms = ? WHERE name = ?", (at_ms, name))

    def add_profile(self, profile: StoredProfile) -> bool:
        """Store a profile once per (group, token); False when that token was already stored."""
        with self._lock, self._transaction():
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO profiles (group_name, token, content_type, content_encoding, received_ms,"
                " start_ms, end_ms, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    profile.group_name,
                    profile.token,
                    profile.content_type,
                    profile.content_encoding,
                    profile.received_ms,
                    profile.start_ms,
                    profile.end_ms,
                    profile.document,
                ),
            )
            if cursor.rowcount != 1:
                return False
            self._db.execute(
                "UPDATE groups SET reported_ms = ?,"
                " latest_profile_start_ms = MAX(COALESCE(latest_profile_start_ms, ?), ?) WHERE name = ?",
                (profile.received_ms, profile.start_ms, profile.start_ms, profile.group_name),
            )
            return True

    def profiles(self, group_name: Optional[str] = None) -> List[StoredProfile]:
        """Every profile of a group, or of all groups, in arrival order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM profiles WHERE ? IS NULL OR group_name = ? ORDER BY id", (group_name, group_name)
            )
            return [StoredProfile(*row) for row in rows.fetchall()]

    def overlapping(self, group_name: str, start_ms: int, end_ms: int) -> Iterator[StoredProfile]:
        """The profiles of a group that overlap [start_ms, end_ms), oldest first, read one at a time."""
        after_id = 0
        while True:
            with self._lock:
                row = self._db.execute(
                    f"SELECT * FROM profiles WHERE {_OVERLAPS} AND id > ? ORDER BY id LIMIT 1",
                    (group_name, end_ms, start_ms, after_id),
                ).fetchone()
            if row is None:
                return
            profile = StoredProfile(*row)
            after_id = profile.id
            yield profile

    def latest_end_ms(self, group_name: str) -> Optional[int]:
        with self._lock:
            row = self._db.execute("SELECT MAX(end_ms) FROM profiles WHERE group_name = ?", (group_name,)).fetchone()
        return None if row[0] is None else int(row[0])

    def profile_times(
        self,
        group_name: str,
        period_ms: int,
        start_ms: int,
        end_ms: int,
        ascending: bool,
        after: Optional[int],
        limit: int,
    ) -> List[int]:
        """Start times of the ``period_ms`` buckets (aligned to the epoch) holding a profile that
        overlaps [start_ms, end_ms), each once, after the bucket ``after`` in the chosen order."""
        order, beyond = ("ASC", ">") if ascending else ("DESC", "<")
        bucket = "start_ms - start_ms % ?"
        query = (
            f"SELECT DISTINCT {bucket} AS bucket FROM profiles WHERE {_OVERLAPS}"
            + (f" AND {bucket} {beyond} ?" if after is not None else "")
            + f" ORDER BY bucket {order} LIMIT ?"
        )
        parameters: Tuple[Any, ...] = (period_ms, group_name, end_ms, start_ms)
        if after is not None:
            parameters += (period_ms, after)
        with self._lock:
            return [row[0] for row in self._db.execute(query, parameters + (limit,)).fetchall()]

    def _group(self, name: str) -> Optional[Group]:
        row = self._db.execute("SELECT * FROM groups WHERE name = ?", (name,)).fetchone()
        return None if row is None else _group(row)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error: nothing half-written is ever visible."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def _group(row: Tuple[Any, ...]) -> Group:
    values = list(row)
    values[4] = bool(values[4])
    values[5] = json.loads(values[5])
    return Group(*values)
