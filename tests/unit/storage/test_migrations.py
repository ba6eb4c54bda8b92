"""Migration files, version checks and the SQLite script splitter."""

from __future__ import annotations

import sqlite3

import pytest

from iotcollector.errors import PermanentStorageError
from iotcollector.storage.migrations import (
    Migration,
    SchemaTooNewError,
    load_migrations,
    migrate_sqlite,
    pending_migrations,
    split_sql_script,
)


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_both_backends_ship_the_same_versions(backend: str) -> None:
    versions = [m.version for m in load_migrations(backend)]  # type: ignore[arg-type]
    assert versions[0] == "0001"
    assert versions == sorted(versions)
    assert versions == [m.version for m in load_migrations("postgres")]


def _known(*versions: str) -> list[Migration]:
    return [Migration(v, "m", "SELECT 1;") for v in versions]


def test_pending_skips_applied() -> None:
    pending = pending_migrations(_known("0001", "0002", "0003"), ["0001"])
    assert [m.version for m in pending] == ["0002", "0003"]


def test_nothing_pending() -> None:
    assert pending_migrations(_known("0001"), ["0001"]) == []


def test_newer_database_is_refused() -> None:
    with pytest.raises(SchemaTooNewError, match=r"0002.*latest known: 0001"):
        pending_migrations(_known("0001"), ["0001", "0002"])
    assert issubclass(SchemaTooNewError, PermanentStorageError)


def test_split_handles_comments_and_triggers() -> None:
    script = """-- a comment; with a semicolon
CREATE TABLE t (x INTEGER); -- trailing
CREATE TRIGGER tr AFTER INSERT ON t BEGIN
    UPDATE t SET x = x + 1;
END;
-- the end
"""
    statements = split_sql_script(script)
    assert len(statements) == 2
    assert statements[1].endswith("END;")


def test_split_refuses_an_incomplete_statement() -> None:
    with pytest.raises(ValueError, match="incomplete"):
        split_sql_script("CREATE TABLE t (x INTEGER)")


def test_sqlite_migration_applies_once_in_memory() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    assert migrate_sqlite(conn) == [m.version for m in load_migrations("sqlite")]
    assert migrate_sqlite(conn) == []
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"iot_data", "iot_rejected", "devices", "schema_migrations"} <= tables
