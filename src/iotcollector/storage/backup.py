"""``iot-collector backup`` / ``restore``: one file holding a consistent copy of the database.

PostgreSQL: ``pg_dump --format=custom`` (one snapshot, so consistent while collectors write:
every committed batch is in it whole or not at all) and ``pg_restore --single-transaction``.
The password never reaches a command line (``ps`` shows those): it is taken out of the URL
and handed to the tools in ``PGPASSWORD``. SQLite: the online backup API
(``sqlite3.Connection.backup``) copies every page in one step under one read transaction, a
consistent snapshot that does not block the collector's writes (WAL).

Restore refuses to replace a database that holds any reading, dead letter or device unless
``force`` is given; stop the collectors first (docs/runbooks/disaster-recovery.md).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from iotcollector.errors import IotCollectorError
from iotcollector.storage.factory import SqliteTarget, parse_database_url

if TYPE_CHECKING:
    import logging

__all__ = [
    "DATA_TABLES",
    "BackupError",
    "RestoreRefusedError",
    "backup",
    "find_pg_tool",
    "restore",
]

# The tables whose rows make a database "not empty" (schema_migrations does not count).
DATA_TABLES = ("iot_data", "iot_rejected", "devices")
_PG_MAGIC = b"PGDMP"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_PG_TIMEOUT_S = 6 * 3600
# A restore waits at most this long for a table lock (a collector still running holds them).
_PG_LOCK_TIMEOUT = "60s"


class BackupError(IotCollectorError):
    """A backup or restore could not be done; the message says why."""


class RestoreRefusedError(BackupError):
    """The target database holds data and ``force`` was not given."""


@dataclass(frozen=True, slots=True)
class Outcome:
    path: Path
    size_bytes: int
    seconds: float


def backup(url: str, output: Path, *, logger: logging.Logger, force: bool = False) -> Outcome:
    """Write a consistent backup of the database at ``url`` to ``output`` (mode 0600).

    The file appears only when complete (written beside it, then renamed). An existing file
    (an earlier backup, most likely) is replaced only with ``force``.
    """
    started = time.monotonic()
    output = output.expanduser()
    if output.is_dir():
        raise BackupError(f"{output} is a directory: give a file name")
    if output.exists() and not force:
        raise BackupError(
            f"{output} exists (an earlier backup?): give another file name, or --force to "
            "replace it"
        )
    partial = output.with_name(output.name + ".partial")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)
        partial.touch(mode=0o600)
        target = parse_database_url(url)
        if isinstance(target, SqliteTarget):
            _sqlite_backup(Path(target.path), partial)
        else:
            _pg_dump(target.url, partial)
        _fsync(partial)
        partial.replace(output)
    except OSError as exc:
        raise BackupError(f"cannot write {output}: {exc.strerror or exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    outcome = Outcome(output, output.stat().st_size, time.monotonic() - started)
    logger.info(
        "backup written: %s (%d bytes in %.1f s)",
        outcome.path,
        outcome.size_bytes,
        outcome.seconds,
    )
    return outcome


def restore(url: str, source: Path, *, force: bool, logger: logging.Logger) -> Outcome:
    """Replace the database at ``url`` with the backup ``source``.

    Raises :class:`RestoreRefusedError` when the database holds data and ``force`` is false.
    """
    started = time.monotonic()
    source = source.expanduser()
    try:
        with source.open("rb") as file:
            head = file.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise BackupError(f"cannot read {source}: {exc.strerror or exc}") from exc
    target = parse_database_url(url)
    if isinstance(target, SqliteTarget):
        if head != _SQLITE_MAGIC:
            raise BackupError(f"{source} is not an SQLite backup (made by iot-collector backup)")
        path = Path(target.path)
        rows = _sqlite_rows(path)
        _refuse_unless_forced(rows, force, str(path), logger)
        _sqlite_restore(source, path)
    else:
        if not head.startswith(_PG_MAGIC):
            raise BackupError(
                f"{source} is not a PostgreSQL custom-format backup (made by iot-collector backup)"
            )
        rows = _pg_rows(target.url)
        _refuse_unless_forced(rows, force, "the PostgreSQL database", logger)
        _pg_restore(target.url, source)
    outcome = Outcome(source, source.stat().st_size, time.monotonic() - started)
    logger.info("restored %s in %.1f s", source, outcome.seconds)
    return outcome


def _refuse_unless_forced(
    rows: dict[str, bool], force: bool, where: str, logger: logging.Logger
) -> None:
    holding = [table for table, has_rows in rows.items() if has_rows]
    if not holding:
        return
    if not force:
        raise RestoreRefusedError(
            f"{where} is not empty ({', '.join(holding)} hold rows): refusing to overwrite it. "
            "Restore into an empty database, or add --force to replace its data with the backup"
        )
    logger.warning("--force: replacing the data of %s (%s)", where, ", ".join(holding))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- SQLite -------------------------------------------------------------------------------------


def _sqlite_backup(path: Path, output: Path) -> None:
    if not path.is_file():
        raise BackupError(f"no SQLite database at {path}")
    try:
        with (
            contextlib.closing(sqlite3.connect(path, timeout=30)) as src,
            contextlib.closing(sqlite3.connect(output)) as dst,
        ):
            # pages=-1 (the default): every page in one step, one consistent snapshot.
            src.backup(dst)
            # One self-contained file: no -wal beside it.
            dst.execute("PRAGMA journal_mode=DELETE")
            _sqlite_check(dst, str(output))
    except sqlite3.Error as exc:
        raise BackupError(f"sqlite backup of {path} failed: {exc}") from exc


def _sqlite_check(conn: sqlite3.Connection, name: str) -> None:
    result = conn.execute("PRAGMA quick_check").fetchone()
    if result is None or result[0] != "ok":
        raise BackupError(f"{name} failed its integrity check: {result}")


def _sqlite_rows(path: Path) -> dict[str, bool]:
    if not path.exists():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            present = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            return {
                table: conn.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()[0] == 1
                for table in DATA_TABLES
                if table in present
            }
    except sqlite3.Error as exc:
        raise BackupError(f"cannot read the SQLite database at {path}: {exc}") from exc


def _sqlite_restore(source: Path, path: Path) -> None:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src:
            _sqlite_check(src, str(source))
            tables = {r[0] for r in src.execute("SELECT name FROM sqlite_master")}
            if "iot_data" not in tables:
                raise BackupError(f"{source} holds no iot_data table: not an iot-collector backup")
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as dst:
                # Replaces every page of the target, in one transaction on its side.
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=WAL")
                _sqlite_check(dst, str(path))
    except sqlite3.Error as exc:
        raise BackupError(f"sqlite restore into {path} failed: {exc}") from exc


# -- PostgreSQL ---------------------------------------------------------------------------------


def find_pg_tool(name: str) -> str:
    """``pg_dump`` / ``pg_restore``: on ``PATH``, else the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found

    def major(path: Path) -> int:
        digits = re.sub(r"\D", "", path.parts[-3])
        return int(digits) if digits else 0

    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=major, reverse=True)
    if candidates:
        return str(candidates[0])
    raise BackupError(
        f"{name} not found: install the PostgreSQL client tools (postgresql-client, the same "
        "major version as the server or newer) or put them on PATH"
    )


def _pg_conninfo(url: str) -> tuple[str, dict[str, str]]:
    """The connection string without the password, and an environment that carries it."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: PLC0415 - postgres only

    try:
        params = conninfo_to_dict(url)
    except Exception as exc:  # psycopg.ProgrammingError; its text may quote the URL
        raise BackupError(
            f"IOT_DATABASE_URL is not a valid PostgreSQL URL ({type(exc).__name__})"
        ) from None
    password = params.pop("password", None)
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None}), env


def _run_pg(tool: str, args: list[str], env: dict[str, str], doing: str) -> None:
    command = [find_pg_tool(tool), *args]
    try:
        result = subprocess.run(  # noqa: S603 - fixed tool, arguments built here
            command, env=env, capture_output=True, timeout=_PG_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackupError(f"{doing} failed: {exc}") from exc
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise BackupError(
            f"{doing} failed ({tool} exited {result.returncode}): " + " | ".join(detail)
        )


def _pg_dump(url: str, output: Path) -> None:
    conninfo, env = _pg_conninfo(url)
    _run_pg(
        "pg_dump",
        ["--format=custom", "--no-password", f"--file={output}", f"--dbname={conninfo}"],
        env,
        "pg_dump",
    )


def _pg_rows(url: str) -> dict[str, bool]:
    import psycopg  # noqa: PLC0415 - postgres only

    try:
        with psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
            rows: dict[str, bool] = {}
            for table in DATA_TABLES:
                exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
                if exists and exists[0]:
                    row = conn.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()
                    rows[table] = bool(row and row[0])
            return rows
    except psycopg.Error as exc:
        # libpq's own text (host, port, reason): it never contains the password.
        lines = str(exc).strip().splitlines()
        message = lines[0] if lines else type(exc).__name__
        raise BackupError(f"cannot inspect the PostgreSQL database: {message}") from None


def _pg_restore(url: str, source: Path) -> None:
    """One transaction (``psql --single-transaction``) fed by three passes over the archive:
    the definitions with ``--clean``, which then drops only tables, views and functions (their
    indexes and constraints go with them; a partition's own inherited constraint cannot be
    dropped, which fails a whole-archive ``pg_restore --clean``), the rows, then the indexes,
    constraints and triggers. Any error rolls everything back."""
    conninfo, env = _pg_conninfo(url)
    # Read the archive's table of contents first: a damaged file fails before anything changes.
    _run_pg("pg_restore", ["--list", str(source)], env, f"reading {source}")
    env["PGOPTIONS"] = f"-c lock_timeout={_PG_LOCK_TIMEOUT}"
    with tempfile.TemporaryFile() as errors:
        psql = subprocess.Popen(  # noqa: S603 - fixed tool, arguments built here
            [
                find_pg_tool("psql"),
                "--single-transaction",
                "--no-psqlrc",
                "--quiet",
                "--set=ON_ERROR_STOP=1",
                "--no-password",
                f"--dbname={conninfo}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env=env,
        )
        assert psql.stdin is not None
        try:
            for section in ("pre-data", "data", "post-data"):
                clean = ["--clean", "--if-exists"] if section == "pre-data" else []
                # Objects belong to the restoring role; grants (e.g. Grafana's read-only role)
                # are the deployment's to re-apply, so a target without those roles restores.
                done = subprocess.run(  # noqa: S603 - fixed tool, arguments built here
                    [
                        find_pg_tool("pg_restore"),
                        f"--section={section}",
                        *clean,
                        "--no-owner",
                        "--no-privileges",
                        "--file=-",
                        str(source),
                    ],
                    stdout=psql.stdin,
                    stderr=subprocess.PIPE,
                    env=env,
                    timeout=_PG_TIMEOUT_S,
                    check=False,
                )
                if done.returncode != 0:
                    psql.kill()  # its transaction is rolled back: nothing changed
                    detail = done.stderr.decode(errors="replace").strip().splitlines()[-5:]
                    raise BackupError(
                        f"pg_restore failed (exited {done.returncode}): " + " | ".join(detail)
                    )
        except (OSError, subprocess.TimeoutExpired) as exc:
            psql.kill()
            raise BackupError(f"pg_restore failed: {exc}") from exc
        finally:
            psql.stdin.close()
            returncode = psql.wait(timeout=_PG_TIMEOUT_S)
        if returncode != 0:
            errors.seek(0)
            detail = errors.read().decode(errors="replace").strip().splitlines()[-5:]
            raise BackupError(
                f"pg_restore failed (psql exited {returncode}): " + " | ".join(detail)
            )
