"""SQLite storage (the embedded default) on the stdlib ``sqlite3``, on one dedicated thread.

Every use of the connection happens on a single worker thread
(``ThreadPoolExecutor(max_workers=1)``), so the event loop never blocks and the connection is
never shared between threads. WAL mode with ``synchronous=FULL``: a committed (acknowledged)
batch survives a power failure; ``NORMAL`` in WAL mode may lose the last transactions on power
loss, which would break "no loss after ack" (the cost is measured in
``bench/storage_bench.py``). Times are stored as INTEGER microseconds since the Unix epoch.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from iotcollector.domain.epoch import from_epoch_us, to_epoch_us
from iotcollector.domain.reading import SparkplugBirth
from iotcollector.errors import PermanentStorageError, StorageError, TransientStorageError
from iotcollector.storage.base import (
    KEPT_BIRTHS,
    Bucket,
    DeviceRecord,
    StoredBirth,
    StoredDeadLetter,
    StoredReading,
    significant,
)
from iotcollector.storage.batch import Bisection, distinct_devices, settle
from iotcollector.storage.migrations import migrate_sqlite
from iotcollector.storage.query import (
    SQLITE,
    BirthTrim,
    births_query,
    devices_query,
    readings_query,
    rejected_query,
    trim_births_query,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import timedelta

    from iotcollector.domain.reading import DeadLetter, Reading, StatusChange
    from iotcollector.storage.base import DeadLetterFilter, Position, ReadingFilter, WriteResult

__all__ = ["SqliteStorage", "is_transient_sqlite_error", "translate_sqlite_error"]

_T = TypeVar("_T")

# Primary result codes (extended codes keep them in the low byte) worth retrying.
_TRANSIENT_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
    }
)
_TRANSIENT_MESSAGES = (
    "database is locked",
    "database table is locked",
    "disk i/o error",
    "database or disk is full",
    "unable to open database",
    "out of memory",
)

_INSERT_READING = """
INSERT INTO iot_data (device_id, sensor_type, value, unit, timestamp, received_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
"""
_UPSERT_DEVICE = """
INSERT INTO devices (device_id, first_seen, last_seen, status) VALUES (?, ?, ?, 'online')
ON CONFLICT (device_id) DO UPDATE
SET last_seen = max(devices.last_seen, excluded.last_seen), status = 'online'
"""
# Presence: 'online' refreshes last_seen; 'offline' (a Last Will) keeps it.
_APPLY_STATUS = """
INSERT INTO devices (device_id, first_seen, last_seen, status) VALUES (?, ?, ?, ?)
ON CONFLICT (device_id) DO UPDATE
SET status = excluded.status,
    last_seen = CASE WHEN excluded.status = 'online'
                     THEN max(devices.last_seen, excluded.last_seen) ELSE devices.last_seen END
"""
_INSERT_REJECTED = """
INSERT INTO iot_rejected (received_at, topic, payload, reason) VALUES (?, ?, ?, ?)
"""
_FORGET_NODE_BIRTHS = "DELETE FROM sparkplug_births WHERE node_key = ?"
_KEEP_BIRTH = """
INSERT INTO sparkplug_births (node_key, device, topic, payload, received_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (node_key, device) DO UPDATE
SET topic = excluded.topic, payload = excluded.payload, received_at = excluded.received_at
"""


def is_transient_sqlite_error(exc: BaseException) -> bool:
    """Locked, busy, I/O and disk-full errors may succeed later; the rest never will."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in _TRANSIENT_CODES:
        return True
    message = str(exc).lower()
    return any(text in message for text in _TRANSIENT_MESSAGES)


def _is_row_error(exc: BaseException) -> bool:
    """Errors caused by one row's data: bisect and isolate the row."""
    return isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError | OverflowError)


def translate_sqlite_error(exc: BaseException, doing: str) -> StorageError:
    if isinstance(exc, StorageError):
        return exc
    kind = TransientStorageError if is_transient_sqlite_error(exc) else PermanentStorageError
    return kind(f"sqlite {doing} failed: {exc}", getattr(exc, "sqlite_errorname", None))


class SqliteStorage:
    """The :class:`~iotcollector.storage.base.Storage` on one SQLite file."""

    # One writer thread and connection: SQLite takes one writing transaction at a time.
    concurrent_writes = 1

    def __init__(  # noqa: PLR0913 - keyword-only tuning knobs of one backend
        self,
        path: str,
        *,
        busy_timeout_ms: int = 5000,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        ping_timeout_s: float = 5.0,
        readers: int = 2,
        kept_births: int = KEPT_BIRTHS,
    ) -> None:
        if path in {"", ":memory:"} or path.startswith("file::memory:"):
            raise ValueError("an in-memory SQLite database cannot be used: give a file path")
        self._path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._synchronous = synchronous
        self._ping_timeout_s = ping_timeout_s
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # touched only on the worker thread
        # The API's reads: their own threads and connections (WAL readers never block the
        # writer nor wait for it); a connection is used by one thread at a time.
        self._readers = readers
        self._read_executor: ThreadPoolExecutor | None = None
        self._read_conns: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._migrated = False
        self._birth_trim = BirthTrim(kept_births)

    # -- plumbing ---------------------------------------------------------------------------

    async def _run(self, doing: str, func: Callable[[], _T]) -> _T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iot-sqlite")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, func)
        except Exception as exc:
            raise translate_sqlite_error(exc, doing) from exc

    def _connection(self) -> sqlite3.Connection:
        """The connection, opened on first use (worker thread only)."""
        if self._conn is not None:
            return self._conn
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout_ms / 1000,
            isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE … COMMIT
        )
        try:
            mode = _enable_wal(conn, self._busy_timeout_ms / 1000)
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
        if mode is None or str(mode[0]).lower() != "wal":
            conn.close()
            raise PermanentStorageError(f"sqlite {self._path}: cannot enable WAL mode")
        self._conn = conn
        return conn

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # -- life cycle -------------------------------------------------------------------------

    async def open(self) -> None:
        await self._run("open", self._connection)

    async def close(self) -> None:
        readers, self._read_executor = self._read_executor, None
        if readers is not None:
            await asyncio.get_running_loop().run_in_executor(None, readers.shutdown)
        while not self._read_conns.empty():
            self._read_conns.get_nowait().close()
        executor = self._executor
        if executor is None:
            return
        try:
            await self._run("close", self._close_sync)
        finally:
            self._executor = None
            executor.shutdown(wait=True)

    async def migrate(self) -> list[str]:
        applied = await self._run("migration", lambda: migrate_sqlite(self._connection()))
        self._migrated = True
        return applied

    async def ping(self) -> None:
        def probe() -> None:
            self._connection().execute("SELECT 1").fetchone()

        try:
            async with asyncio.timeout(self._ping_timeout_s):
                await self._run("ping", probe)
        except TimeoutError as exc:
            raise TransientStorageError("sqlite ping timed out") from exc
        except PermanentStorageError as exc:
            raise TransientStorageError(str(exc)) from exc

    # -- reading (the HTTP API) -------------------------------------------------------------

    async def read_readings(
        self, where: ReadingFilter, *, before: Position | None, limit: int
    ) -> list[StoredReading]:
        sql, params = readings_query(where, before, limit, SQLITE)

        def run(conn: sqlite3.Connection) -> list[StoredReading]:
            return [
                StoredReading(i, d, s, v, u, from_epoch_us(t))
                for i, d, s, v, u, t in conn.execute(sql, params)
            ]

        return await self._read("read", run)

    async def aggregate(
        self,
        *,
        sensor_type: str,
        device_id: str | None,
        start: datetime,
        end: datetime,
        bucket: timedelta,
    ) -> list[Bucket]:
        width = bucket.days * 86_400_000_000 + bucket.seconds * 1_000_000 + bucket.microseconds
        device = "AND device_id = :device_id" if device_id is not None else ""
        sql = _AGGREGATE.format(device=device)
        params = {
            "width": width,
            "sensor_type": sensor_type,
            "device_id": device_id,
            "start": to_epoch_us(start),
            "end": to_epoch_us(end),
        }

        def run(conn: sqlite3.Connection) -> list[Bucket]:
            return [
                Bucket(from_epoch_us(b), n, float(lo), float(hi), significant(float(mean)))
                for b, n, lo, hi, mean in conn.execute(sql, params)
            ]

        return await self._read("aggregate", run)

    async def list_devices(
        self,
        *,
        after: str | None,
        limit: int,
        status: str | None = None,
        online_since: datetime | None = None,
    ) -> list[DeviceRecord]:
        sql, params = devices_query(
            after=after, limit=limit, status=status, online_since=online_since, dialect=SQLITE
        )

        def run(conn: sqlite3.Connection) -> list[DeviceRecord]:
            rows = conn.execute(sql, params).fetchall()
            return [
                DeviceRecord(d, from_epoch_us(f), from_epoch_us(la), _sensor_types(conn, d), st)
                for d, f, la, st in rows
            ]

        return await self._read("device list", run)

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        def run(conn: sqlite3.Connection) -> DeviceRecord | None:
            row = conn.execute(
                "SELECT first_seen, last_seen, status FROM devices WHERE device_id = ?",
                (device_id,),
            ).fetchone()
            if row is None:
                return None
            return DeviceRecord(
                device_id,
                from_epoch_us(row[0]),
                from_epoch_us(row[1]),
                _sensor_types(conn, device_id),
                row[2],
            )

        return await self._read("device", run)

    async def list_rejected(
        self, where: DeadLetterFilter, *, after: int | None, limit: int, oldest_first: bool = False
    ) -> list[StoredDeadLetter]:
        sql, params = rejected_query(where, after, limit, oldest_first=oldest_first, dialect=SQLITE)

        def run(conn: sqlite3.Connection) -> list[StoredDeadLetter]:
            return [
                StoredDeadLetter(
                    i, from_epoch_us(at), t, bytes(p), r, None if rp is None else from_epoch_us(rp)
                )
                for i, at, t, p, r, rp in conn.execute(sql, params)
            ]

        return await self._read("dead letters", run)

    async def load_births(self, *, before: StoredBirth | None, limit: int) -> list[StoredBirth]:
        sql, params = births_query(before, limit, dialect=SQLITE)

        def run(conn: sqlite3.Connection) -> list[StoredBirth]:
            return [
                StoredBirth(t, bytes(p), from_epoch_us(at), k, d)
                for t, p, at, k, d in conn.execute(sql, params)
            ]

        return await self._read("sparkplug births", run)

    async def _read(self, doing: str, func: Callable[[sqlite3.Connection], _T]) -> _T:
        if not self._migrated:
            raise TransientStorageError("sqlite: the database is not opened and migrated yet")
        if self._read_executor is None:
            self._read_executor = ThreadPoolExecutor(
                max_workers=self._readers, thread_name_prefix="iot-sqlite-read"
            )
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._read_executor, functools.partial(self._read_sync, func)
            )
        except Exception as exc:
            raise translate_sqlite_error(exc, doing) from exc

    def _read_sync(self, func: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            conn = self._read_conns.get_nowait()
        except queue.Empty:
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,  # handed between reader threads, one at a time
            )
            conn.execute("PRAGMA query_only=ON")
        try:
            result = func(conn)
        except BaseException:
            conn.close()
            raise
        self._read_conns.put(conn)
        return result

    # -- writing ----------------------------------------------------------------------------

    async def write_batch(
        self,
        readings: Sequence[Reading],
        dead_letters: Sequence[DeadLetter],
        statuses: Sequence[StatusChange] = (),
    ) -> WriteResult:
        return await self._run(
            "write",
            functools.partial(self._write_sync, list(readings), list(dead_letters), list(statuses)),
        )

    def _write_sync(
        self,
        readings: list[Reading],
        dead_letters: list[DeadLetter],
        statuses: list[StatusChange],
    ) -> WriteResult:
        conn = self._connection()
        try:
            return self._write_tx(conn, readings, dead_letters, statuses, isolate=False)
        except Exception as exc:
            if not readings or not _is_row_error(exc):
                raise
        return self._write_tx(conn, readings, dead_letters, statuses, isolate=True)

    async def mark_offline(self, silent_since: datetime) -> int:
        def run() -> int:
            conn = self._connection()
            with conn:
                cur = conn.execute(
                    "UPDATE devices SET status = 'offline' "
                    "WHERE status = 'online' AND last_seen < ?",
                    (to_epoch_us(silent_since),),
                )
            return cur.rowcount

        return await self._run("mark devices offline", run)

    async def mark_replayed(self, ids: Sequence[int], at: datetime) -> int:
        def run() -> int:
            conn = self._connection()
            with conn:
                cur = conn.executemany(
                    "UPDATE iot_rejected SET replayed_at = ? WHERE id = ? AND replayed_at IS NULL",
                    [(to_epoch_us(at), i) for i in ids],
                )
            return cur.rowcount

        return await self._run("mark dead letters replayed", run)

    async def device_counts(self) -> tuple[int, int]:
        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            online, offline = conn.execute(
                "SELECT coalesce(sum(status = 'online'), 0), coalesce(sum(status = 'offline'), 0) "
                "FROM devices"
            ).fetchone()
            return int(online), int(offline)

        return await self._read("device counts", run)

    def _write_tx(
        self,
        conn: sqlite3.Connection,
        readings: list[Reading],
        dead_letters: list[DeadLetter],
        statuses: list[StatusChange],
        *,
        isolate: bool,
    ) -> WriteResult:
        now = datetime.now(UTC)
        now_us = to_epoch_us(now)
        bisection = Bisection(readings)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if isolate:
                _insert_isolating(conn, bisection, now_us)
            elif readings:
                bisection.landed(_insert(conn, readings, now_us))
            done = settle(
                readings, dead_letters, stored=bisection.stored, refused=bisection.rejected, now=now
            )
            conn.executemany(
                _UPSERT_DEVICE, [(d, now_us, now_us) for d in distinct_devices(done.accepted)]
            )
            conn.executemany(
                _APPLY_STATUS, [(s.device_id, now_us, now_us, s.status) for s in statuses]
            )
            births = [s for s in statuses if isinstance(s, SparkplugBirth)]
            for birth in births:
                _keep_birth(conn, birth)
            trim = self._birth_trim.due(len(births))
            if trim:
                conn.execute(*trim_births_query(self._birth_trim.kept, dialect=SQLITE))
            if done.rejected:
                conn.executemany(
                    _INSERT_REJECTED,
                    [(to_epoch_us(at), topic, p, why) for at, topic, p, why in done.rejected],
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._birth_trim.committed(len(births), trimmed=trim)
        return done.result


def _keep_birth(conn: sqlite3.Connection, birth: SparkplugBirth) -> None:
    """An NBIRTH starts its edge node afresh: its devices' births go with the old one."""
    if not birth.device:
        conn.execute(_FORGET_NODE_BIRTHS, (birth.node_key,))
    conn.execute(
        _KEEP_BIRTH,
        (birth.node_key, birth.device, birth.topic, birth.payload, to_epoch_us(birth.at)),
    )


def _insert_isolating(conn: sqlite3.Connection, bisection: Bisection, now_us: int) -> None:
    """Each chunk under a savepoint; a data error splits the chunk."""
    while (chunk := bisection.next_chunk()) is not None:
        conn.execute("SAVEPOINT isolate")
        try:
            stored = _insert(conn, chunk, now_us)
        except Exception as exc:
            conn.execute("ROLLBACK TO isolate")
            conn.execute("RELEASE isolate")
            if not _is_row_error(exc):
                raise
            bisection.refused(chunk, str(exc))
        else:
            conn.execute("RELEASE isolate")
            bisection.landed(stored)


def _insert(conn: sqlite3.Connection, readings: Sequence[Reading], now_us: int) -> int:
    before = conn.total_changes
    conn.executemany(
        _INSERT_READING,
        [
            (r.device_id, r.sensor_type, r.value, r.unit, to_epoch_us(r.timestamp), now_us)
            for r in readings
        ],
    )
    return conn.total_changes - before


# -- reading (the HTTP API) -------------------------------------------------------------------

_AGGREGATE = """
SELECT (timestamp / :width) * :width AS bucket_start, count(*), min(value), max(value), avg(value)
FROM iot_data
WHERE sensor_type = :sensor_type {device} AND timestamp >= :start AND timestamp < :end
GROUP BY bucket_start
ORDER BY bucket_start
"""


def _sensor_types(conn: sqlite3.Connection, device_id: str) -> tuple[str, ...]:
    """Distinct sensor types by skipping through the unique index, one probe per type."""
    found: list[str] = []
    row = conn.execute(
        "SELECT min(sensor_type) FROM iot_data WHERE device_id = ?", (device_id,)
    ).fetchone()
    while row is not None and row[0] is not None:
        found.append(row[0])
        row = conn.execute(
            "SELECT min(sensor_type) FROM iot_data WHERE device_id = ? AND sensor_type > ?",
            (device_id, row[0]),
        ).fetchone()
    return tuple(found)


def _enable_wal(conn: sqlite3.Connection, timeout_s: float) -> tuple[object, ...] | None:
    """``PRAGMA journal_mode=WAL``, retried while another connection holds the file busy.

    Switching to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY at once, without
    its busy handler, when waiting could deadlock (two processes opening a new file together).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            row: tuple[object, ...] | None = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
        else:
            return row
