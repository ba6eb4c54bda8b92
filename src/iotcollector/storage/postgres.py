"""PostgreSQL storage on psycopg 3 (async): one writer connection, one ping connection.

``write_batch`` is one transaction: readings (idempotent, ``ON CONFLICT DO NOTHING``), dead
letters, and the devices registry, committed before it returns. The readings are first
``COPY``'d (binary) straight into ``iot_data`` under a savepoint; a batch that holds a reading
already stored (a redelivery) fails on the unique key and goes through a temporary staging
table filled by ``COPY`` then ``INSERT … SELECT … ON CONFLICT DO NOTHING``. Direct COPY costs
PostgreSQL 5-6 µs of CPU per row against 9-11 µs through staging (``bench/pg_row_cost.py``),
and staging was the fastest idempotent path measured (``bench/storage_bench.py``);
``unnest`` and ``executemany`` stay selectable for the benchmark.

Errors are translated here: connection loss, shutdown, overload, serialization failures and
deadlocks are transient (the connection is dropped and re-made on the next call); data errors
are permanent. A batch refused for a data error is retried with the rows bisected under
savepoints, and each refused reading goes to ``iot_rejected`` so the rest lands.

Devices registry: ``first_seen`` / ``last_seen`` are the collector's storage time
(``now()``, the transaction's time), not the devices' clocks, which may be wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from psycopg import AsyncConnection

from iotcollector.errors import PermanentStorageError, StorageError, TransientStorageError
from iotcollector.storage.base import Bucket, DeviceRecord, StoredReading, WriteResult
from iotcollector.storage.migrations import migrate_postgres
from iotcollector.storage.batch import (
    clean_text,
    distinct_devices,
    refused_payload,
    storage_reason,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
    from datetime import timedelta

    from iotcollector.domain.reading import DeadLetter, Reading, StatusChange
    from iotcollector.storage.base import Position, ReadingFilter

InsertMethod = Literal["copy", "unnest", "executemany"]

# SQLSTATE classes and codes worth retrying (after reconnecting).
_TRANSIENT_CLASSES = frozenset(
    {
        "08",  # connection exception
        "53",  # insufficient resources (disk full, out of memory, too many connections)
        "58",  # system error (I/O error)
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "40003",  # statement_completion_unknown
        "55P03",  # lock_not_available
        "55006",  # object_in_use
        "57014",  # query_canceled (statement timeout, our own cancel)
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, recovering)
        "57P05",  # idle_session_timeout
        "25P03",  # idle_in_transaction_session_timeout
    }
)
# Classes whose errors depend on the row's data: bisecting isolates the bad rows.
_ROW_ERROR_CLASSES = frozenset(
    {
        "22",  # data exception (value too long, out of range, bad encoding)
        "23",  # integrity constraint violation (not null, check)
        "54",  # program limit exceeded (index row too large)
    }
)

_STAGING = "iot_data_staging"
_CREATE_STAGING = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} (
    device_id text, sensor_type text, value double precision, unit text, ts timestamptz
) ON COMMIT DELETE ROWS
"""
_COPY_STAGING = (
    f"COPY {_STAGING} (device_id, sensor_type, value, unit, ts) FROM STDIN (FORMAT BINARY)"
)
_COPY_TYPES = ["text", "text", "float8", "text", "timestamptz"]
# The fast path: straight into iot_data. A batch holding a reading already stored (a
# redelivery) fails on the unique key and is written again through the staging table.
_COPY_DIRECT = (
    'COPY iot_data (device_id, sensor_type, value, unit, "timestamp") FROM STDIN (FORMAT BINARY)'
)
_INSERT_FROM_STAGING = f"""
INSERT INTO iot_data (device_id, sensor_type, value, unit, "timestamp")
SELECT device_id, sensor_type, value, unit, ts FROM {_STAGING}
ON CONFLICT DO NOTHING
"""
_INSERT_UNNEST = """
INSERT INTO iot_data (device_id, sensor_type, value, unit, "timestamp")
SELECT * FROM unnest(%s::text[], %s::text[], %s::float8[], %s::text[], %s::timestamptz[])
ON CONFLICT DO NOTHING
"""
_INSERT_VALUES = """
INSERT INTO iot_data (device_id, sensor_type, value, unit, "timestamp")
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""
_UPSERT_DEVICES = """
INSERT INTO devices AS d (device_id, first_seen, last_seen, status)
SELECT id, now(), now(), 'online' FROM unnest(%s::text[]) AS u(id)
ON CONFLICT (device_id) DO UPDATE
SET last_seen = greatest(d.last_seen, excluded.last_seen), status = 'online'
"""
# Presence: 'online' refreshes last_seen; 'offline' (a Last Will) keeps it.
_APPLY_STATUS = """
INSERT INTO devices AS d (device_id, first_seen, last_seen, status)
VALUES (%(device_id)s, now(), now(), %(status)s)
ON CONFLICT (device_id) DO UPDATE
SET status = excluded.status,
    last_seen = CASE WHEN excluded.status = 'online'
                     THEN greatest(d.last_seen, excluded.last_seen) ELSE d.last_seen END
"""
_INSERT_REJECTED = """
INSERT INTO iot_rejected (received_at, topic, payload, reason)
SELECT * FROM unnest(%s::timestamptz[], %s::text[], %s::bytea[], %s::text[])
"""


def is_transient_sqlstate(sqlstate: str | None) -> bool:
    """Whether an error with this SQLSTATE may succeed when retried later."""
    if not sqlstate:
        return False
    return sqlstate[:2] in _TRANSIENT_CLASSES or sqlstate in _TRANSIENT_CODES


def is_row_sqlstate(sqlstate: str | None) -> bool:
    """Whether an error with this SQLSTATE is caused by a row's data (isolate the row)."""
    if not sqlstate or is_transient_sqlstate(sqlstate):
        return False
    return sqlstate[:2] in _ROW_ERROR_CLASSES


def is_transient_error(exc: BaseException) -> bool:
    """Classify any error met while talking to PostgreSQL: retry later, or never."""
    if isinstance(exc, psycopg.Error):
        if exc.sqlstate:
            return is_transient_sqlstate(exc.sqlstate)
        # No SQLSTATE: raised by libpq/psycopg itself (refused, reset, closed connection).
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    return isinstance(exc, OSError | TimeoutError)


def _is_row_error(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.Error) and is_row_sqlstate(exc.sqlstate)


def _message(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    return str(exc) or type(exc).__name__


def translate_error(exc: BaseException, doing: str) -> StorageError:
    """The project's error for ``exc`` (raise it ``from exc``)."""
    if isinstance(exc, StorageError):
        return exc
    kind = TransientStorageError if is_transient_error(exc) else PermanentStorageError
    sqlstate = exc.sqlstate if isinstance(exc, psycopg.Error) else None
    code = f" [{sqlstate}]" if sqlstate else ""
    return kind(f"postgresql {doing} failed{code}: {_message(exc)}")


class PostgresStorage:
    """The :class:`~iotcollector.storage.base.Storage` on PostgreSQL."""

    def __init__(  # noqa: PLR0913 - keyword-only tuning knobs of one backend
        self,
        url: str,
        *,
        connect_timeout_s: float = 5.0,
        operation_timeout_s: float = 30.0,
        insert_method: InsertMethod = "copy",
        read_pool_size: int = 4,
        read_timeout_s: float = 30.0,
    ) -> None:
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._operation_timeout_s = operation_timeout_s
        self._insert_method: InsertMethod = insert_method
        self._writer: AsyncConnection[Any] | None = None
        self._pinger: AsyncConnection[Any] | None = None
        self._writer_lock = asyncio.Lock()
        self._ping_lock = asyncio.Lock()
        # The API's reads use their own small pool: they never queue behind the writer.
        self._read_timeout_s = read_timeout_s
        self._readers = _ReadPool(self._connect_reader, read_pool_size)
        self._migrated = False

    # -- life cycle -------------------------------------------------------------------------

    async def open(self) -> None:
        async with self._writer_lock:
            await self._writer_connection()

    async def close(self) -> None:
        async with self._writer_lock:
            await self._drop_writer()
        async with self._ping_lock:
            await self._drop_pinger()
        await self._readers.close()

    async def migrate(self) -> list[str]:
        async with self._writer_lock:
            conn = await self._writer_connection()
            try:
                applied = await migrate_postgres(conn)
                self._migrated = True
                return applied  # noqa: TRY300 - the except clauses translate errors only
            except StorageError:
                raise
            except Exception as exc:
                error = translate_error(exc, "migration")
                if isinstance(error, TransientStorageError):
                    await self._drop_writer()
                raise error from exc

    async def ping(self) -> None:
        async with self._ping_lock:
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    if self._pinger is None or self._pinger.closed:
                        self._pinger = await self._connect()
                    await self._pinger.execute("SELECT 1")
            except Exception as exc:
                await self._drop_pinger()
                error = translate_error(exc, "ping")
                if not isinstance(error, TransientStorageError):
                    error = TransientStorageError(str(error))
                raise error from exc

    # -- writing ----------------------------------------------------------------------------

    async def write_batch(
        self,
        readings: Sequence[Reading],
        dead_letters: Sequence[DeadLetter],
        statuses: Sequence[StatusChange] = (),
    ) -> WriteResult:
        async with self._writer_lock:
            try:
                async with asyncio.timeout(self._operation_timeout_s):
                    conn = await self._writer_connection()
                    try:
                        return await self._write(
                            conn, readings, dead_letters, statuses, isolate=False
                        )
                    except psycopg.Error as exc:
                        if not readings or not _is_row_error(exc):
                            raise
                    return await self._write(conn, readings, dead_letters, statuses, isolate=True)
            except asyncio.CancelledError:
                # Cancelled mid-statement: the connection's state is unknown, start afresh.
                await self._drop_writer()
                raise
            except Exception as exc:
                error = translate_error(exc, "write")
                if isinstance(error, TransientStorageError) or isinstance(exc, TimeoutError):
                    await self._drop_writer()
                raise error from exc

    async def _write(
        self,
        conn: AsyncConnection[Any],
        readings: Sequence[Reading],
        dead_letters: Sequence[DeadLetter],
        statuses: Sequence[StatusChange],
        *,
        isolate: bool,
    ) -> WriteResult:
        refused: list[tuple[Reading, str]] = []
        async with conn.transaction():
            if not readings:
                stored = 0
            elif isolate:
                stored = await self._insert_isolating(conn, readings, refused)
            else:
                stored = await self._insert(conn, readings)
            refused_ids = {id(r) for r, _ in refused}
            accepted = [r for r in readings if id(r) not in refused_ids] if refused else readings
            if accepted:
                await conn.execute(_UPSERT_DEVICES, (distinct_devices(accepted),))
            if statuses:
                async with conn.cursor() as cur:
                    await cur.executemany(
                        _APPLY_STATUS,
                        [{"device_id": s.device_id, "status": s.status} for s in statuses],
                    )
            await self._insert_rejected(conn, dead_letters, refused)
        return WriteResult(
            stored=stored,
            duplicates=len(accepted) - stored,
            dead_letters=len(dead_letters) + len(refused),
        )

    async def _insert_isolating(
        self,
        conn: AsyncConnection[Any],
        readings: Sequence[Reading],
        refused: list[tuple[Reading, str]],
    ) -> int:
        """Insert under a savepoint; on a data error bisect down to the refused rows."""
        try:
            async with conn.transaction():  # a savepoint inside the batch's transaction
                return await self._insert(conn, readings, more_to_come=True)
        except psycopg.Error as exc:
            if not _is_row_error(exc):
                raise
            if len(readings) == 1:
                refused.append((readings[0], storage_reason(_message(exc))))
                return 0
        middle = len(readings) // 2
        first = await self._insert_isolating(conn, readings[:middle], refused)
        return first + await self._insert_isolating(conn, readings[middle:], refused)

    async def _insert(
        self, conn: AsyncConnection[Any], readings: Sequence[Reading], *, more_to_come: bool = False
    ) -> int:
        """Insert readings idempotently; return how many rows were new.

        ``more_to_come``: more chunks follow in this transaction (bisection), so the staging
        table is emptied now; otherwise ``ON COMMIT DELETE ROWS`` empties it at commit.
        """
        async with conn.cursor() as cur:
            if self._insert_method == "copy":
                try:
                    async with conn.transaction(), cur.copy(_COPY_DIRECT) as copy:
                        copy.set_types(_COPY_TYPES)
                        for r in readings:
                            await copy.write_row(
                                (r.device_id, r.sensor_type, r.value, r.unit, r.timestamp)
                            )
                except psycopg.errors.UniqueViolation:
                    pass
                else:
                    return len(readings)
                async with cur.copy(_COPY_STAGING) as copy:
                    copy.set_types(_COPY_TYPES)
                    for r in readings:
                        await copy.write_row(
                            (r.device_id, r.sensor_type, r.value, r.unit, r.timestamp)
                        )
                await cur.execute(_INSERT_FROM_STAGING)
                stored = cur.rowcount
                if more_to_come:
                    await cur.execute(f"TRUNCATE {_STAGING}")
                return stored
            if self._insert_method == "unnest":
                await cur.execute(
                    _INSERT_UNNEST,
                    (
                        [r.device_id for r in readings],
                        [r.sensor_type for r in readings],
                        [r.value for r in readings],
                        [r.unit for r in readings],
                        [r.timestamp for r in readings],
                    ),
                )
                return cur.rowcount
            await cur.executemany(
                _INSERT_VALUES,
                [(r.device_id, r.sensor_type, r.value, r.unit, r.timestamp) for r in readings],
            )
            return cur.rowcount

    async def _insert_rejected(
        self,
        conn: AsyncConnection[Any],
        dead_letters: Sequence[DeadLetter],
        refused: Sequence[tuple[Reading, str]],
    ) -> None:
        if not dead_letters and not refused:
            return
        now = datetime.now(UTC)
        received = [d.received_at for d in dead_letters] + [now] * len(refused)
        topics = [clean_text(d.topic) for d in dead_letters] + [""] * len(refused)
        payloads = [bytes(d.payload) for d in dead_letters] + [
            refused_payload(r) for r, _ in refused
        ]
        reasons = [clean_text(d.reason) for d in dead_letters] + [
            clean_text(reason) for _, reason in refused
        ]
        await conn.execute(_INSERT_REJECTED, (received, topics, payloads, reasons))

    # -- reading (the HTTP API) -------------------------------------------------------------

    async def read_readings(
        self, where: ReadingFilter, *, before: Position | None, limit: int
    ) -> list[StoredReading]:
        sql, params = readings_query(where, before, limit)
        async with self._reading("read") as conn:
            cur = await conn.execute(sql, params)
            return [StoredReading(*row) for row in await cur.fetchall()]

    async def aggregate(
        self,
        *,
        sensor_type: str,
        device_id: str | None,
        start: datetime,
        end: datetime,
        bucket: timedelta,
    ) -> list[Bucket]:
        device = "AND device_id = %(device_id)s" if device_id is not None else ""
        sql = _AGGREGATE.format(device=device)
        params = {
            "bucket": bucket,
            "sensor_type": sensor_type,
            "device_id": device_id,
            "start": start,
            "end": end,
        }
        async with self._reading("aggregate") as conn, conn.cursor(binary=True) as cur:
            # Binary results: a day of 1-minute buckets parses in half the time of text.
            await cur.execute(sql, params)
            return [Bucket(*row) for row in await cur.fetchall()]

    async def list_devices(
        self,
        *,
        after: str | None,
        limit: int,
        status: str | None = None,
        online_since: datetime | None = None,
    ) -> list[DeviceRecord]:
        conditions = ["TRUE"]
        params: list[Any] = []
        if after is not None:
            conditions.append("device_id > %s")
            params.append(after)
        if status is not None and online_since is not None:
            online = "(status = 'online' AND last_seen >= %s)"
            conditions.append(online if status == "online" else f"NOT {online}")
            params.append(online_since)
        sql = (
            "SELECT device_id, first_seen, last_seen, status FROM devices "
            f"WHERE {' AND '.join(conditions)} ORDER BY device_id LIMIT %s"
        )
        async with self._reading("device list") as conn:
            cur = await conn.execute(sql, [*params, limit])
            rows = await cur.fetchall()
            types = await _sensor_types(conn, [row[0] for row in rows])
        return [DeviceRecord(d, first, last, types.get(d, ()), st) for d, first, last, st in rows]

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        async with self._reading("device") as conn:
            cur = await conn.execute(
                "SELECT device_id, first_seen, last_seen, status FROM devices WHERE device_id = %s",
                (device_id,),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            types = await _sensor_types(conn, [device_id])
        return DeviceRecord(row[0], row[1], row[2], types.get(device_id, ()), row[3])

    async def mark_offline(self, silent_since: datetime) -> int:
        async with self._writer_lock:
            try:
                async with asyncio.timeout(self._operation_timeout_s):
                    conn = await self._writer_connection()
                    async with conn.transaction():
                        cur = await conn.execute(
                            "UPDATE devices SET status = 'offline' "
                            "WHERE status = 'online' AND last_seen < %s",
                            (silent_since,),
                        )
                        return cur.rowcount
            except Exception as exc:
                error = translate_error(exc, "mark devices offline")
                if isinstance(error, TransientStorageError) or isinstance(exc, TimeoutError):
                    await self._drop_writer()
                raise error from exc

    async def device_counts(self) -> tuple[int, int]:
        async with self._reading("device counts") as conn:
            cur = await conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'online'), "
                "count(*) FILTER (WHERE status = 'offline') FROM devices"
            )
            row = await cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    @contextlib.asynccontextmanager
    async def _reading(self, doing: str) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled read connection, errors translated, bounded by the read timeout."""
        if not self._migrated:
            raise TransientStorageError("postgresql: the database is not connected and migrated")
        try:
            async with asyncio.timeout(self._read_timeout_s), self._readers.connection() as conn:
                yield conn
        except StorageError:
            raise
        except TimeoutError as exc:
            raise TransientStorageError(f"postgresql {doing} timed out") from exc
        except Exception as exc:
            raise translate_error(exc, doing) from exc

    # -- connections ------------------------------------------------------------------------

    async def _connect_reader(self) -> AsyncConnection[Any]:
        conn = await self._connect()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await conn.execute(
                    "SELECT set_config('statement_timeout', %s, false), "
                    "set_config('default_transaction_read_only', 'on', false), "
                    "set_config('TimeZone', 'UTC', false)",
                    (f"{int(self._read_timeout_s * 1000)}ms",),
                )
        except Exception as exc:
            await _close_quietly(conn)
            raise translate_error(exc, "connect") from exc
        return conn

    async def _connect(self) -> AsyncConnection[Any]:
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                return await AsyncConnection.connect(
                    self._url,
                    autocommit=True,
                    # libpq wants whole seconds (and treats 1 as 2).
                    connect_timeout=max(2, math.ceil(self._connect_timeout_s)),
                    application_name="iot-collector",
                    keepalives=1,
                    keepalives_idle=10,
                    keepalives_interval=5,
                    keepalives_count=3,
                )
        except Exception as exc:
            error = translate_error(exc, "connect")
            if not isinstance(error, TransientStorageError) and isinstance(
                exc, psycopg.OperationalError
            ):
                error = TransientStorageError(str(error))
            raise error from exc

    async def _writer_connection(self) -> AsyncConnection[Any]:
        if self._writer is not None and not self._writer.closed:
            return self._writer
        conn = await self._connect()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await conn.execute(_CREATE_STAGING)
        except Exception as exc:
            await conn.close()
            raise translate_error(exc, "connect") from exc
        self._writer = conn
        return conn

    async def _drop_writer(self) -> None:
        conn, self._writer = self._writer, None
        await _close_quietly(conn)

    async def _drop_pinger(self) -> None:
        conn, self._pinger = self._pinger, None
        await _close_quietly(conn)


async def _close_quietly(conn: AsyncConnection[Any] | None) -> None:
    if conn is None or conn.closed:
        return
    try:
        async with asyncio.timeout(2.0):
            await conn.close()
    except Exception:  # noqa: S110 - the connection is being discarded anyway
        pass


# -- reading (the HTTP API) -------------------------------------------------------------------

_READ_COLUMNS = 'id, device_id, sensor_type, value, unit, "timestamp"'

_AGGREGATE = """
SELECT date_bin(%(bucket)s, "timestamp", TIMESTAMPTZ '1970-01-01 00:00:00+00') AS bucket_start,
       count(*), min(value), max(value), avg(value)
FROM iot_data
WHERE sensor_type = %(sensor_type)s {device}
  AND "timestamp" >= %(start)s AND "timestamp" < %(end)s
GROUP BY bucket_start
ORDER BY bucket_start
"""

# Distinct sensor types per device without reading every row: a loose index scan (one probe
# of the unique index (device_id, sensor_type, timestamp) per type found, plus one per device).
_SENSOR_TYPES = """
WITH RECURSIVE t(device_id, sensor_type) AS (
    SELECT d.id, (SELECT min(sensor_type) FROM iot_data WHERE device_id = d.id)
    FROM unnest(%s::text[]) AS d(id)
  UNION ALL
    SELECT t.device_id,
           (SELECT min(sensor_type) FROM iot_data
            WHERE device_id = t.device_id AND sensor_type > t.sensor_type)
    FROM t WHERE t.sensor_type IS NOT NULL
)
SELECT device_id, sensor_type FROM t WHERE sensor_type IS NOT NULL ORDER BY 1, 2
"""

# Newest first for one device over all its sensors (``readings_query``): within one sensor
# the timestamp is unique, so each branch is an ordered backward scan of the unique index
# that stops after ``limit`` rows; the condition (device, range, keyset) is applied inside.
_DEVICE_READINGS = f"""
WITH RECURSIVE s(sensor_type) AS (
    SELECT min(sensor_type) FROM iot_data WHERE device_id = %s
  UNION ALL
    SELECT (SELECT min(sensor_type) FROM iot_data
            WHERE device_id = %s AND sensor_type > s.sensor_type)
    FROM s WHERE s.sensor_type IS NOT NULL
)
SELECT r.* FROM s CROSS JOIN LATERAL (
    SELECT {_READ_COLUMNS} FROM iot_data
    WHERE sensor_type = s.sensor_type AND {{condition}}
    ORDER BY "timestamp" DESC LIMIT %s
) AS r
ORDER BY "timestamp" DESC, id DESC LIMIT %s
"""


def readings_query(
    where: ReadingFilter, before: Position | None, limit: int
) -> tuple[str, list[Any]]:
    """The newest-first keyset query for ``where`` (docs/api.md shows its plans).

    With both ``device_id`` and ``sensor_type`` the timestamp is unique (the unique key), so
    ordering and the keyset need the timestamp only and the unique index serves it exactly;
    otherwise ``id`` breaks ties between readings of the same instant.
    """
    conditions: list[str] = []
    params: list[Any] = []
    if where.device_id is not None:
        conditions.append("device_id = %s")
        params.append(where.device_id)
    if where.sensor_type is not None:
        conditions.append("sensor_type = %s")
        params.append(where.sensor_type)
    if where.start is not None:
        conditions.append('"timestamp" >= %s')
        params.append(where.start)
    unique_time = where.device_id is not None and where.sensor_type is not None
    end = where.end
    if unique_time and before is not None:
        # One upper bound rather than two: the planner estimates a single range well.
        end = before.timestamp if end is None else min(end, before.timestamp)
    if end is not None:
        conditions.append('"timestamp" < %s')
        params.append(end)
    if before is not None and not unique_time:
        conditions.append('"timestamp" <= %s AND ("timestamp" < %s OR id < %s)')
        params += [before.timestamp, before.timestamp, before.id]
    order = '"timestamp" DESC' if unique_time else '"timestamp" DESC, id DESC'
    condition = " AND ".join(conditions) or "TRUE"
    if where.device_id is not None and where.sensor_type is None:
        # One device, all its sensors: the newest ``limit`` of each sensor from the unique
        # index (its types found by a loose index scan), merged. No index of its own: one on
        # (device_id, timestamp) cost PostgreSQL 2-3 µs of CPU per ingested reading.
        sql = _DEVICE_READINGS.format(condition=condition)
        return sql, [where.device_id, where.device_id, *params, limit, limit]
    sql = f"SELECT {_READ_COLUMNS} FROM iot_data WHERE {condition} ORDER BY {order} LIMIT %s"
    return sql, [*params, limit]


async def _sensor_types(
    conn: AsyncConnection[Any], device_ids: list[str]
) -> dict[str, tuple[str, ...]]:
    if not device_ids:
        return {}
    cur = await conn.execute(_SENSOR_TYPES, (device_ids,))
    found: dict[str, list[str]] = {}
    for device_id, sensor_type in await cur.fetchall():
        found.setdefault(device_id, []).append(sensor_type)
    return {d: tuple(types) for d, types in found.items()}


class _ReadPool:
    """At most ``size`` read connections, made on demand, kept while healthy."""

    def __init__(self, connect: Callable[[], Awaitable[AsyncConnection[Any]]], size: int) -> None:
        self._connect = connect
        self._slots = asyncio.Semaphore(size)
        self._idle: list[AsyncConnection[Any]] = []

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = await self._connect()
            healthy = False
            try:
                yield conn
                healthy = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            finally:
                if healthy:
                    self._idle.append(conn)
                else:
                    # Failed or cancelled mid-query: its state is unknown, make a new one.
                    await _close_quietly(conn)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close_quietly(conn)
