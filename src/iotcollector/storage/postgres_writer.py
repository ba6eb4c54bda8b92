"""The ingest side of PostgreSQL: two writer connections, one ping connection, migrations.

``write_batch`` is one transaction: readings (idempotent), dead letters and the devices
registry, committed before it returns. The readings are first ``COPY``'d (binary) straight
into ``iot_data`` under a savepoint; a batch that holds a reading already stored (a
redelivery) fails on the unique key and goes through a temporary staging table filled by
``COPY`` then ``INSERT … SELECT … ON CONFLICT DO NOTHING``. The direct path costs PostgreSQL
about half the CPU per row of the staging one (``bench/README.md``).

Two batches may be written at once, each on its own writer connection (:data:`WRITERS`,
each with its staging table), so that one is copied while the other commits: one
connection's round trips (COPY, devices, commit) no longer bound ingest. The pipeline still
acknowledges in arrival order, and writes a batch with status changes alone. Between the two
transactions, devices rows are locked in ``device_id`` order (the rollup trigger only appends
to its log, migration 0008): they may wait for each other, not deadlock. A reading
redelivered in both, in crossing order, can deadlock them: PostgreSQL cancels one, which is
written again on its connection once the other write ended (it would meet the same readings).

On a transient error (connection loss, shutdown, overload, serialization failure, deadlock)
that batch's connection is dropped and made again on its next use. A batch refused for a
row's data is retried with the rows bisected under savepoints (:class:`~iotcollector.storage.
batch.Bisection`), and each refused reading goes to ``iot_rejected`` so the rest lands.

Devices registry: ``first_seen`` / ``last_seen`` are the collector's storage time
(``now()``, the transaction's time), not the devices' clocks, which may be wrong. A device
already ``online`` with a ``last_seen`` less than ``last_seen_resolution`` old (at most 1 s,
``storage.factory``) is left alone: a steady sender's row is updated about once a second,
not by every batch (an update, its WAL and a row lock the concurrent batch would wait for).
The devices whose rows this process wrote that recently are not even sent (:class:`_Fresh`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import psycopg

from iotcollector.domain.reading import SparkplugBirth
from iotcollector.errors import StorageError, TransientStorageError
from iotcollector.storage.base import KEPT_BIRTHS
from iotcollector.storage.batch import Bisection, distinct_devices, settle
from iotcollector.storage.migrations import migrate_postgres
from iotcollector.storage.partitions import create_ahead, create_for, is_missing_partition
from iotcollector.storage.postgres_connection import close_quietly, connect
from iotcollector.storage.postgres_errors import error_message, is_row_error, translate_error
from iotcollector.storage.query import POSTGRES, BirthTrim, trim_births_query

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Sequence

    from psycopg import AsyncConnection, AsyncCopy

    from iotcollector.domain.reading import DeadLetter, Reading, StatusChange
    from iotcollector.storage.base import WriteResult


class InsertReadings(Protocol):
    """Insert readings idempotently inside the caller's transaction; return how many were new.

    ``more_to_come``: more chunks follow in this transaction (bisection).
    """

    async def __call__(
        self, conn: AsyncConnection[Any], readings: Sequence[Reading], *, more_to_come: bool
    ) -> int: ...


DEFAULT_PARTITION_INTERVAL = timedelta(days=1)
# How often the writer makes sure the next partitions exist, and how many times a batch is
# written again on its connection: after creating the partition it missed (only a retention pass
# dropping that very partition at the same moment makes a second attempt fail), or after
# PostgreSQL chose it to break a deadlock with the other writer.
PARTITION_CHECK_S = 300.0
WRITE_ATTEMPTS = 3
# Errors of a transaction that met another one; the other goes on, this one is tried again.
_CONFLICTS = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure
# Writer connections: batches written at once (the pipeline's ``concurrent_writes``).
WRITERS = 2
# A device online and seen this recently keeps its devices row as it is (see above).
LAST_SEEN_RESOLUTION = timedelta(seconds=1)
# Devices :class:`_Fresh` remembers at most (a flood of new ids only costs upserts).
FRESH_DEVICES_KEPT = 100_000

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
_COPY_DIRECT = (
    'COPY iot_data (device_id, sensor_type, value, unit, "timestamp") FROM STDIN (FORMAT BINARY)'
)
_INSERT_FROM_STAGING = f"""
INSERT INTO iot_data (device_id, sensor_type, value, unit, "timestamp")
SELECT device_id, sensor_type, value, unit, ts FROM {_STAGING}
ON CONFLICT DO NOTHING
"""
# ORDER BY: every writer locks devices rows in the same order. The NOT EXISTS reads the
# committed rows without locking them.
_UPSERT_DEVICES = """
INSERT INTO devices AS d (device_id, first_seen, last_seen, status)
SELECT u.id, now(), now(), 'online' FROM unnest(%s::text[]) AS u(id)
WHERE NOT EXISTS (
    SELECT 1 FROM devices AS r
    WHERE r.device_id = u.id AND r.status = 'online' AND r.last_seen > now() - %s::interval
)
ORDER BY 1
ON CONFLICT (device_id) DO UPDATE
SET last_seen = greatest(d.last_seen, excluded.last_seen), status = 'online'
RETURNING device_id
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
_FORGET_NODE_BIRTHS = "DELETE FROM sparkplug_births WHERE node_key = %s"
_KEEP_BIRTH = """
INSERT INTO sparkplug_births (node_key, device, topic, payload, received_at)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (node_key, device) DO UPDATE
SET topic = excluded.topic, payload = excluded.payload, received_at = excluded.received_at
"""


async def copy_readings(
    conn: AsyncConnection[Any], readings: Sequence[Reading], *, more_to_come: bool
) -> int:
    """Binary ``COPY`` into ``iot_data``; on a redelivery, through the staging table.

    ``more_to_come``: the staging table is emptied now; otherwise ``ON COMMIT DELETE ROWS``
    empties it at commit.
    """
    async with conn.cursor() as cur:
        try:
            async with conn.transaction(), cur.copy(_COPY_DIRECT) as copy:
                await _copy_rows(copy, readings)
        except psycopg.errors.UniqueViolation:
            pass
        else:
            return len(readings)
        async with cur.copy(_COPY_STAGING) as copy:
            await _copy_rows(copy, readings)
        await cur.execute(_INSERT_FROM_STAGING)
        stored = cur.rowcount
        if more_to_come:
            await cur.execute(f"TRUNCATE {_STAGING}")
        return stored


class _Fresh:
    """The devices whose rows this process set ``online`` with a new ``last_seen`` less than
    ``resolution`` ago: a batch leaves them out of the devices upsert, which would only skip
    them, after probing ``devices`` for each (PostgreSQL's CPU, every batch).

    A device is remembered once the upsert that wrote its row committed, with the time taken
    before that transaction began. A status this process writes, and an offline sweep that
    marked any device, forget at once. A device someone else marks offline meanwhile (another
    replica's Last Will) shows ``online`` again within ``resolution``, not at the next batch.
    """

    def __init__(self, resolution: timedelta) -> None:
        self._resolution_s = resolution.total_seconds()
        self._written_at: dict[str, float] = {}

    def due(self, device_ids: list[str], now: float) -> list[str]:
        """Those of ``device_ids``, in their order, whose rows may need refreshing at ``now``."""
        horizon = now - self._resolution_s
        written_at = self._written_at.get
        return [d for d in device_ids if written_at(d, -math.inf) <= horizon]

    def written(self, device_ids: list[str], at: float) -> None:
        self._written_at.update(dict.fromkeys(device_ids, at))
        if len(self._written_at) > FRESH_DEVICES_KEPT:
            horizon = at - self._resolution_s
            kept = {d: t for d, t in self._written_at.items() if t > horizon}
            self._written_at = kept if len(kept) <= FRESH_DEVICES_KEPT // 2 else {}

    def forget(self, device_ids: Iterable[str]) -> None:
        for device_id in device_ids:
            self._written_at.pop(device_id, None)

    def forget_all(self) -> None:
        self._written_at.clear()


async def _copy_rows(copy: AsyncCopy, readings: Sequence[Reading]) -> None:
    """Rows formatted by psycopg one by one, sent a buffer at a time (``write_row`` awaits for
    every row: 0.2 µs more of the collector's CPU per reading, measured)."""
    copy.set_types(_COPY_TYPES)
    format_row = copy.formatter.write_row
    for r in readings:
        if data := format_row((r.device_id, r.sensor_type, r.value, r.unit, r.timestamp)):
            await copy.write(data)


@dataclass(eq=False, slots=True)
class _Writer:
    """One writer connection, made on first use and after it was dropped; ``done`` is set
    when its current use ends; ``yielding``: it waits for the others after a deadlock."""

    conn: AsyncConnection[Any] | None = None
    done: asyncio.Event = field(default_factory=lambda: _set(asyncio.Event()))
    yielding: bool = False


class PostgresWriter:
    """Batches, presence and migrations on ``writers`` connections; ``ping`` on its own."""

    def __init__(  # noqa: PLR0913 - keyword-only tuning knobs of one backend
        self,
        url: str,
        *,
        connect_timeout_s: float = 5.0,
        operation_timeout_s: float = 30.0,
        insert: InsertReadings = copy_readings,
        partition_interval: timedelta = DEFAULT_PARTITION_INTERVAL,
        kept_births: int = KEPT_BIRTHS,
        writers: int = WRITERS,
        last_seen_resolution: timedelta = LAST_SEEN_RESOLUTION,
    ) -> None:
        self._url = url
        self._last_seen_resolution = last_seen_resolution
        self._fresh = _Fresh(last_seen_resolution)
        self._birth_trim = BirthTrim(kept_births)
        self._partition_interval = partition_interval
        self._partitions_checked_at = -math.inf
        self._migrated = False
        self._connect_timeout_s = connect_timeout_s
        self._operation_timeout_s = operation_timeout_s
        self._insert = insert
        self.concurrent_writes = writers
        # Idle writers, the last used on top (one at a time keeps a single connection busy).
        self._writers = [_Writer() for _ in range(writers)]
        self._idle = list(self._writers)
        self._free = asyncio.Semaphore(writers)
        self._pinger: AsyncConnection[Any] | None = None
        self._ping_lock = asyncio.Lock()

    # -- life cycle -------------------------------------------------------------------------

    async def open(self) -> None:
        async with self._writer() as writer:
            await self._connection(writer)

    async def close(self) -> None:
        """Drop every writer connection (after the write it is busy with) and the pinger."""
        taken = 0
        try:
            while taken < self.concurrent_writes:
                await self._free.acquire()
                taken += 1
            for writer in self._idle:
                await self._drop(writer)
        finally:
            for _ in range(taken):
                self._free.release()
        async with self._ping_lock:
            await self._drop_pinger()

    async def migrate(self) -> list[str]:
        async with self._writer() as writer:
            conn = await self._connection(writer)
            try:
                applied = await migrate_postgres(conn)
                await self._create_partitions_ahead(conn)
                self._migrated = True
                return applied  # noqa: TRY300 - the except clauses translate errors only
            except StorageError:
                raise
            except Exception as exc:
                error = translate_error(exc, "migration")
                if isinstance(error, TransientStorageError):
                    await self._discard(writer)
                raise error from exc

    async def ping(self) -> None:
        async with self._ping_lock:
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    if self._pinger is None or self._pinger.closed:
                        self._pinger = await connect(self._url, self._connect_timeout_s)
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
        async with self._writer() as writer:
            try:
                async with asyncio.timeout(self._operation_timeout_s):
                    conn = await self._connection(writer)
                    if (
                        self._migrated
                        and time.monotonic() - self._partitions_checked_at > PARTITION_CHECK_S
                    ):
                        await self._create_partitions_ahead(conn)
                    return await self._write_creating_partitions(
                        writer, conn, readings, dead_letters, statuses
                    )
            except asyncio.CancelledError:
                # Cancelled mid-statement: the connection's state is unknown, start afresh.
                await self._drop(writer)
                raise
            except Exception as exc:
                # The whole batch failed: the next attempt starts on a fresh connection, which
                # also picks up settings fixed meanwhile (default_transaction_read_only, a
                # failover, new privileges).
                await self._discard(writer)
                raise translate_error(exc, "write") from exc

    async def _write_creating_partitions(
        self,
        writer: _Writer,
        conn: AsyncConnection[Any],
        readings: Sequence[Reading],
        dead_letters: Sequence[DeadLetter],
        statuses: Sequence[StatusChange],
    ) -> WriteResult:
        """Write; a reading whose partition is missing has it created, then all is rewritten;
        so is a batch rolled back to break a deadlock, once the other writes under way ended.
        A row's data error isolates the row."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                return await self._write(conn, readings, dead_letters, statuses, isolate=False)
            except psycopg.Error as exc:
                if attempt < WRITE_ATTEMPTS and is_missing_partition(exc):
                    await create_for(
                        conn, (r.timestamp for r in readings), self._partition_interval
                    )
                elif attempt < WRITE_ATTEMPTS and exc.sqlstate in _CONFLICTS:
                    await self._yield_to_others(writer)
                elif readings and is_row_error(exc):
                    break
                else:
                    raise
        return await self._write(conn, readings, dead_letters, statuses, isolate=True)

    async def _create_partitions_ahead(self, conn: AsyncConnection[Any]) -> None:
        await create_ahead(conn, datetime.now(UTC), self._partition_interval)
        self._partitions_checked_at = time.monotonic()

    async def _write(
        self,
        conn: AsyncConnection[Any],
        readings: Sequence[Reading],
        dead_letters: Sequence[DeadLetter],
        statuses: Sequence[StatusChange],
        *,
        isolate: bool,
    ) -> WriteResult:
        began = time.monotonic()
        refreshed: list[str] = []
        async with conn.transaction():
            bisection = Bisection(readings)
            if isolate:
                await self._insert_isolating(conn, bisection)
            elif readings:
                bisection.landed(await self._insert(conn, readings, more_to_come=False))
            done = settle(
                readings,
                dead_letters,
                stored=bisection.stored,
                refused=bisection.rejected,
                now=datetime.now(UTC),
            )
            due = self._fresh.due(distinct_devices(done.accepted), began)
            if due:
                cur = await conn.execute(_UPSERT_DEVICES, (due, self._last_seen_resolution))
                refreshed = [device_id for (device_id,) in await cur.fetchall()]
            if statuses:
                async with conn.cursor() as cur:
                    await cur.executemany(
                        _APPLY_STATUS,
                        [{"device_id": s.device_id, "status": s.status} for s in statuses],
                    )
            births = [s for s in statuses if isinstance(s, SparkplugBirth)]
            for birth in births:
                await _keep_birth(conn, birth)
            trim = self._birth_trim.due(len(births))
            if trim:
                await conn.execute(*trim_births_query(self._birth_trim.kept, dialect=POSTGRES))
            if done.rejected:
                await conn.execute(
                    _INSERT_REJECTED, [list(c) for c in zip(*done.rejected, strict=True)]
                )
        self._birth_trim.committed(len(births), trimmed=trim)
        self._fresh.written(refreshed, began)
        self._fresh.forget(s.device_id for s in statuses)
        return done.result

    async def _insert_isolating(self, conn: AsyncConnection[Any], bisection: Bisection) -> None:
        """Each chunk under a savepoint; a data error splits the chunk."""
        while (chunk := bisection.next_chunk()) is not None:
            try:
                async with conn.transaction():  # a savepoint inside the batch's transaction
                    stored = await self._insert(conn, chunk, more_to_come=True)
            except psycopg.Error as exc:
                if not is_row_error(exc):
                    raise
                bisection.refused(chunk, error_message(exc))
            else:
                bisection.landed(stored)

    async def mark_replayed(self, ids: Sequence[int], at: datetime) -> int:
        return await self._update(
            "mark dead letters replayed",
            "UPDATE iot_rejected SET replayed_at = %s WHERE id = ANY(%s) AND replayed_at IS NULL",
            (at, list(ids)),
        )

    async def mark_offline(self, silent_since: datetime) -> int:
        marked = await self._update(
            "mark devices offline",
            "UPDATE devices SET status = 'offline' WHERE status = 'online' AND last_seen < %s",
            (silent_since,),
        )
        if marked:
            self._fresh.forget_all()
        return marked

    async def _update(self, doing: str, sql: str, params: tuple[object, ...]) -> int:
        """One statement in its own transaction on a writer connection; its row count."""
        async with self._writer() as writer:
            try:
                async with asyncio.timeout(self._operation_timeout_s):
                    conn = await self._connection(writer)
                    async with conn.transaction():
                        cur = await conn.execute(sql, params)
                        return cur.rowcount
            except Exception as exc:
                error = translate_error(exc, doing)
                if isinstance(error, TransientStorageError) or isinstance(exc, TimeoutError):
                    await self._discard(writer)
                raise error from exc

    # -- connections ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _writer(self) -> AsyncIterator[_Writer]:
        """An idle writer, waited for, used by this caller alone until the block ends."""
        async with self._free:
            writer = self._idle.pop()
            writer.done.clear()
            try:
                yield writer
            finally:
                writer.done.set()
                self._idle.append(writer)

    async def _yield_to_others(self, writer: _Writer) -> None:
        """After a deadlock: wait until the other writes under way end, so that the retry
        does not meet their readings again (not for those waiting likewise)."""
        writer.yielding = True
        try:
            others = [w for w in self._writers if w is not writer and not w.yielding]
            await asyncio.gather(*(w.done.wait() for w in others if not w.done.is_set()))
        finally:
            writer.yielding = False

    async def _connection(self, writer: _Writer) -> AsyncConnection[Any]:
        """The writer's connection, made (with its staging table) if it has none."""
        if writer.conn is not None and not writer.conn.closed:
            return writer.conn
        conn = await connect(self._url, self._connect_timeout_s)
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await conn.execute(_CREATE_STAGING)
        except Exception as exc:
            await conn.close()
            raise translate_error(exc, "connect") from exc
        writer.conn = conn
        return conn

    async def _discard(self, writer: _Writer) -> None:
        """After a failure: drop this writer's connection and the idle ones' (a restarted or
        failed-over server broke them too; each would fail its next batch once)."""
        await self._drop(writer)
        for idle in list(self._idle):
            await self._drop(idle)

    @staticmethod
    async def _drop(writer: _Writer) -> None:
        conn, writer.conn = writer.conn, None
        await close_quietly(conn)

    async def _drop_pinger(self) -> None:
        conn, self._pinger = self._pinger, None
        await close_quietly(conn)


def _set(event: asyncio.Event) -> asyncio.Event:
    event.set()
    return event


async def _keep_birth(conn: AsyncConnection[Any], birth: SparkplugBirth) -> None:
    """An NBIRTH starts its edge node afresh: its devices' births go with the old one."""
    if not birth.device:
        await conn.execute(_FORGET_NODE_BIRTHS, (birth.node_key,))
    await conn.execute(
        _KEEP_BIRTH, (birth.node_key, birth.device, birth.topic, birth.payload, birth.at)
    )
