"""The SQLite error classifier: a locked database is transient, a refused row is not."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest

from iotcollector.errors import PermanentStorageError, TransientStorageError
from iotcollector.storage.sqlite import SqliteStorage, is_transient_sqlite_error
from iotcollector.storage.sqlite import translate_sqlite_error as translate

if TYPE_CHECKING:
    from pathlib import Path


def test_a_really_locked_database_is_transient(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError) as caught:
            other.execute("BEGIN IMMEDIATE")
        assert is_transient_sqlite_error(caught.value)
        assert isinstance(translate(caught.value, "write"), TransientStorageError)
    finally:
        other.close()
        holder.close()


@pytest.mark.parametrize(
    "message", ["database is locked", "disk I/O error", "database or disk is full"]
)
def test_transient_messages(message: str) -> None:
    assert is_transient_sqlite_error(sqlite3.OperationalError(message))


@pytest.mark.parametrize(
    "exc",
    [
        sqlite3.OperationalError("no such table: iot_data"),
        sqlite3.IntegrityError("CHECK constraint failed"),
        sqlite3.ProgrammingError("Error binding parameter 1"),
        ValueError("other"),
    ],
)
def test_permanent_errors(exc: BaseException) -> None:
    assert not is_transient_sqlite_error(exc)
    assert isinstance(translate(exc, "write"), PermanentStorageError)


@pytest.mark.parametrize("path", ["", ":memory:", "file::memory:?cache=shared"])
def test_memory_database_is_refused(path: str) -> None:
    with pytest.raises(ValueError, match="in-memory"):
        SqliteStorage(path)
