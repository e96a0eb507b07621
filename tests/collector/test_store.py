"""The database settings that make a 204 durable, and refusing a database of another schema."""

from __future__ import annotations

import sqlite3

import pytest

from codeguru_agent.collector.store import Store, StoreError


def test_a_file_database_is_in_wal_mode_with_full_sync(tmp_path):
    path = str(tmp_path / "collector.db")
    Store(path).close()

    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store = Store(path)
    try:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        store.close()


def test_a_database_of_another_schema_version_is_refused(tmp_path):
    path = str(tmp_path / "other.db")
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")

    with pytest.raises(StoreError, match="schema version 99"):
        Store(path)
