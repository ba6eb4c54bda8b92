"""The HTTP API's side of PostgreSQL: a small pool of read-only connections and the queries.

Reads never queue behind the ingest writer: they have their own connections, each with a
statement timeout, read-only and in UTC.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import psycopg

from iotcollector.errors import StorageError, TransientStorageError
from iotcollector.storage.base import (
    Bucket,
    DeviceRecord,
    StoredBirth,
    StoredDeadLetter,
    StoredReading,
)
from iotcollector.storage.postgres_connection import close_quietly, connect
from iotcollector.storage.postgres_errors import translate_error
from iotcollector.storage.query import (
    POSTGRES,
    births_query,
    devices_query,
    readings_query,
    rejected_query,
)
from iotcollector.storage.rollups import STALE_QUERY, aggregate_query, rollup_window

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from datetime import datetime, timedelta

    from psycopg import AsyncConnection

    from iotcollector.storage.base import DeadLetterFilter, Position, ReadingFilter

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


class PostgresReader:
    """The :class:`~iotcollector.storage.base.ReadingQueries` on PostgreSQL.

    Refuses every query (``TransientStorageError``) until :meth:`set_migrated`.
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = 5.0,
        pool_size: int = 4,
        read_timeout_s: float = 30.0,
    ) -> None:
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._pool = _ReadPool(self._connect, pool_size)
        self._migrated = False

    def set_migrated(self) -> None:
        """The schema is current: reads may start."""
        self._migrated = True

    async def close(self) -> None:
        await self._pool.close()

    async def read_readings(
        self, where: ReadingFilter, *, before: Position | None, limit: int
    ) -> list[StoredReading]:
        sql, params = readings_query(where, before, limit, POSTGRES)
        async with self._reading("read") as conn, conn.cursor(binary=True) as cur:
            await cur.execute(sql, params)
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
        terms: dict[str, Any] = {
            "sensor_type": sensor_type,
            "device_id": device_id,
            "start": start,
            "end": end,
            "bucket": bucket,
        }
        window = rollup_window(start, end, bucket)
        async with self._reading("aggregate") as conn:
            # Usually nothing in the window is stale: one statement, no transaction.
            found = await _buckets(conn, *aggregate_query(**terms, unless_stale=True))
            if found or window is None:
                return found
            # Something is stale (or nothing is there): the stale buckets first, then the
            # answer, in one REPEATABLE READ snapshot (every read connection's level).
            async with conn.transaction():
                cur = await conn.execute(STALE_QUERY, window)
                minutes, hours = await cur.fetchone() or ([], [])
                sql, params = aggregate_query(**terms, stale_minutes=minutes, stale_hours=hours)
                return await _buckets(conn, sql, params)

    async def list_devices(
        self,
        *,
        after: str | None,
        limit: int,
        status: str | None = None,
        online_since: datetime | None = None,
    ) -> list[DeviceRecord]:
        sql, params = devices_query(
            after=after, limit=limit, status=status, online_since=online_since, dialect=POSTGRES
        )
        async with self._reading("device list") as conn:
            cur = await conn.execute(sql, params)
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

    async def list_rejected(
        self, where: DeadLetterFilter, *, after: int | None, limit: int, oldest_first: bool = False
    ) -> list[StoredDeadLetter]:
        sql, params = rejected_query(
            where, after, limit, oldest_first=oldest_first, dialect=POSTGRES
        )
        async with self._reading("dead letters") as conn:
            cur = await conn.execute(sql, params)
            return [StoredDeadLetter(*row) for row in await cur.fetchall()]

    async def load_births(self, *, before: StoredBirth | None, limit: int) -> list[StoredBirth]:
        sql, params = births_query(before, limit, dialect=POSTGRES)
        async with self._reading("sparkplug births") as conn:
            cur = await conn.execute(sql, params)
            return [StoredBirth(t, bytes(p), at, k, d) for t, p, at, k, d in await cur.fetchall()]

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
            async with asyncio.timeout(self._read_timeout_s), self._pool.connection() as conn:
                yield conn
        except StorageError:
            raise
        except TimeoutError as exc:
            raise TransientStorageError(f"postgresql {doing} timed out") from exc
        except Exception as exc:
            raise translate_error(exc, doing) from exc

    async def _connect(self) -> AsyncConnection[Any]:
        conn = await connect(self._url, self._connect_timeout_s)
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await conn.execute(
                    "SELECT set_config('statement_timeout', %s, false), "
                    "set_config('default_transaction_read_only', 'on', false), "
                    "set_config('TimeZone', 'UTC', false)",
                    (f"{int(self._read_timeout_s * 1000)}ms",),
                )
            # For the explicit transactions only (aggregates); the rest run in autocommit.
            await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        except Exception as exc:
            await close_quietly(conn)
            raise translate_error(exc, "connect") from exc
        return conn


async def _buckets(conn: AsyncConnection[Any], sql: str, params: dict[str, Any]) -> list[Bucket]:
    async with conn.cursor(binary=True) as cur:
        # Binary results: a day of 1-minute buckets parses in half the time of text.
        await cur.execute(sql, params)
        return [Bucket(*row) for row in await cur.fetchall()]


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
                    await close_quietly(conn)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await close_quietly(conn)
