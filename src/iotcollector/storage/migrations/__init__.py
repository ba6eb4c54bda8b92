"""Versioned SQL migrations, one directory per backend, and the runner that applies them.

Files are ``<backend>/<NNNN>_<name>.sql``, read with :mod:`importlib.resources`. Applied
versions are recorded in ``schema_migrations(version, applied_at)``. Each migration runs in its
own transaction together with its ``schema_migrations`` row, so it is applied entirely or not
at all. On PostgreSQL every step holds a transaction-scoped advisory lock, so two processes
migrating at once apply each migration exactly once; on SQLite ``BEGIN IMMEDIATE`` takes the
database's single write lock. A database whose recorded version is newer than this code knows
is refused: running old code on a newer schema could corrupt data.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

from iotcollector.domain.epoch import to_epoch_us
from iotcollector.errors import PermanentStorageError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from psycopg import AsyncConnection

Backend = Literal["postgres", "sqlite"]

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
# pg_advisory_xact_lock key: "iotmigr" as an integer, any constant unique to this project.
_PG_LOCK_KEY = int.from_bytes(b"iotmigr", "big")

_PG_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text        PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
_SQLITE_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    TEXT    PRIMARY KEY,
    applied_at INTEGER NOT NULL
)
"""


class SchemaTooNewError(PermanentStorageError):
    """The database was migrated by a newer version of this program."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    sql: str


def load_migrations(backend: Backend) -> list[Migration]:
    """The migrations shipped for ``backend``, in version order."""
    folder = resources.files(__name__).joinpath(backend)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        found.append(Migration(match["version"], match["name"], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions for {backend}: {versions}")
    return found


def pending_migrations(known: list[Migration], applied: Iterable[str]) -> list[Migration]:
    """The migrations still to apply; refuse a schema newer than ``known``."""
    applied_set = set(applied)
    known_versions = {m.version for m in known}
    unknown = sorted(applied_set - known_versions)
    if unknown:
        latest = max(known_versions, default="none")
        raise SchemaTooNewError(
            f"the database schema has migration(s) {', '.join(unknown)} that this version of "
            f"iot-collector does not know (latest known: {latest}); upgrade iot-collector "
            "instead of running an older version against this database"
        )
    return [m for m in known if m.version not in applied_set]


def split_sql_script(script: str) -> list[str]:
    """Split an SQLite script into complete statements (comments and triggers handled)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    leftover = "\n".join(
        text for text in (part.strip() for part in buffer.splitlines()) if not text.startswith("--")
    )
    if leftover:
        raise ValueError(f"incomplete SQL statement at the end of the script: {leftover[:80]!r}")
    return statements


# -- PostgreSQL -------------------------------------------------------------------------------


async def migrate_postgres(conn: AsyncConnection[Any]) -> list[str]:
    """Apply pending migrations on an autocommit connection; return the versions applied."""
    known = load_migrations("postgres")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))
        await conn.execute(_PG_CREATE_TABLE)
        cur = await conn.execute("SELECT version FROM schema_migrations")
        applied = [row[0] for row in await cur.fetchall()]
    applied_now: list[str] = []
    for migration in pending_migrations(known, applied):
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))
            cur = await conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)
            )
            if await cur.fetchone() is not None:
                continue  # another process applied it while we waited for the lock
            # No parameters: psycopg sends the script with the simple query protocol, which
            # allows several statements.
            await conn.execute(migration.sql.encode())
            await conn.execute(
                "INSERT INTO schema_migrations (version) VALUES (%s)", (migration.version,)
            )
        applied_now.append(migration.version)
    return applied_now


# -- SQLite -----------------------------------------------------------------------------------


def migrate_sqlite(conn: sqlite3.Connection) -> list[str]:
    """Apply pending migrations on an autocommit (``isolation_level=None``) connection."""
    known = load_migrations("sqlite")
    with _sqlite_transaction(conn):
        conn.execute(_SQLITE_CREATE_TABLE)
        applied = [row[0] for row in conn.execute("SELECT version FROM schema_migrations")]
    applied_now: list[str] = []
    for migration in pending_migrations(known, applied):
        with _sqlite_transaction(conn):
            row = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
            ).fetchone()
            if row is not None:
                continue
            for statement in split_sql_script(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                (migration.version, to_epoch_us(datetime.now(UTC))),
            )
        applied_now.append(migration.version)
    return applied_now


@contextmanager
def _sqlite_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; ``ROLLBACK`` on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
