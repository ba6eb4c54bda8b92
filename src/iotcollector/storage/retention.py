"""Retention: readings older than ``IOT_RETENTION_DAYS`` go, without a long lock.

PostgreSQL (``iot_data`` partitioned by time, migration 0005): whole partitions older than the
horizon are detached ``CONCURRENTLY`` and dropped (:mod:`iotcollector.storage.partitions` says
what happens to the partition straddling the horizon); dropping a day costs milliseconds where
deleting its rows cost minutes and left bloat behind (bench/README.md). SQLite: rows are
deleted in small batches, each its own short transaction of at most ``batch_size`` rows (5,000)
chosen through the time index, with a short pause after each so that the collector's writes,
which take turns with it, go on. Dead letters (``iot_rejected``) older than the same window are
deleted in batches on both (they are few: one row per refused message). The purge uses its own
connection, never the writer's; the devices registry is kept.

Freed space: a dropped partition's files go back to the disk at once; after batched deletes
PostgreSQL's autovacuum makes the space reusable, and an SQLite file keeps its size and reuses
its free pages (``VACUUM`` while the collector is stopped gives it back to the disk).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from iotcollector.errors import StorageError
from iotcollector.storage.factory import SqliteTarget, parse_database_url

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Mapping

    from psycopg import AsyncConnection

__all__ = ["PurgeResult", "Purger", "RetentionTask", "open_purger"]

BATCH_SIZE = 5000
# SQLite: what each table's age is measured by.
_TABLES = (("iot_data", "timestamp"), ("iot_rejected", "received_at"))


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """Rows deleted by one purge, by table, and the partitions dropped (PostgreSQL)."""

    deleted: dict[str, int]
    partitions_dropped: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


class Purger(Protocol):
    async def purge(self, cutoff: datetime) -> PurgeResult:
        """Delete rows older than ``cutoff`` in batches; raise ``StorageError`` on failure."""

    async def close(self) -> None:
        """Release the connection; safe to call twice."""


def open_purger(url: str, *, batch_size: int = BATCH_SIZE, pause_s: float = 0.02) -> Purger:
    """The purger for ``IOT_DATABASE_URL``; it connects on first use."""
    target = parse_database_url(url)
    if isinstance(target, SqliteTarget):
        return SqlitePurger(target.path, batch_size=batch_size, pause_s=pause_s)
    return PostgresPurger(target.url, batch_size=batch_size, pause_s=pause_s)


class PostgresPurger:
    """Partitions dropped for ``iot_data``; batched deletes for ``iot_rejected``."""

    # lock_timeout: DETACH … CONCURRENTLY waits for the transactions that still use the
    # partition (an API query may run 30 s); it blocks neither reads nor writes meanwhile.
    _SESSION = (
        "SELECT set_config('statement_timeout', '120s', false), "
        "set_config('lock_timeout', '60s', false), "
        "set_config('idle_in_transaction_session_timeout', '60s', false)"
    )
    _DELETE_REJECTED = (
        "DELETE FROM iot_rejected WHERE id = ANY(ARRAY("
        # SKIP LOCKED: rows another replica's purge holds are left to it.
        "SELECT id FROM iot_rejected WHERE received_at < %s LIMIT %s FOR UPDATE SKIP LOCKED))"
    )

    def __init__(self, url: str, *, batch_size: int, pause_s: float) -> None:
        self._url = url
        self._batch = batch_size
        self._pause_s = pause_s
        self._conn: AsyncConnection[Any] | None = None

    async def purge(self, cutoff: datetime) -> PurgeResult:
        from iotcollector.storage.partitions import drop_before  # noqa: PLC0415 - lazy backend
        from iotcollector.storage.postgres_errors import translate_error  # noqa: PLC0415

        try:
            conn = await self._connection()
            dropped = await drop_before(conn, cutoff, batch_size=self._batch, pause_s=self._pause_s)
            deleted = {"iot_data": dropped.rows_deleted["iot_data"], "iot_rejected": 0}
            while True:
                cur = await conn.execute(self._DELETE_REJECTED, (cutoff, self._batch))
                deleted["iot_rejected"] += cur.rowcount
                if cur.rowcount < self._batch:
                    break
                await asyncio.sleep(self._pause_s)
        except Exception as exc:
            await self.close()
            raise translate_error(exc, "retention purge") from exc
        return PurgeResult(deleted, dropped.dropped)

    async def _connection(self) -> AsyncConnection[Any]:
        from psycopg import AsyncConnection  # noqa: PLC0415 - lazy backend

        if self._conn is None or self._conn.closed:
            conn = await AsyncConnection.connect(
                self._url,
                autocommit=True,  # every DELETE is its own short transaction
                connect_timeout=10,
                application_name="iot-collector-retention",
            )
            await conn.execute(self._SESSION)
            self._conn = conn
        return self._conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(Exception):
                await conn.close()


class SqlitePurger:
    """Batched deletes on its own connection and thread, one ``BEGIN IMMEDIATE`` each."""

    def __init__(self, path: str, *, batch_size: int, pause_s: float) -> None:
        self._path = path
        self._batch = batch_size
        self._pause_s = pause_s
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used on the executor's thread only

    async def _run(self, func: Callable[[], int]) -> int:
        from iotcollector.storage.sqlite import translate_sqlite_error  # noqa: PLC0415

        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iot-retention")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, func)
        except Exception as exc:
            raise translate_sqlite_error(exc, "retention purge") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(self._path, timeout=5, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout=5000")
        return self._conn

    def _delete_batch(self, table: str, column: str, cutoff_us: int) -> int:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(
                f"DELETE FROM {table} WHERE id IN ("
                f"SELECT id FROM {table} WHERE {column} < ? LIMIT ?)",
                (cutoff_us, self._batch),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return cur.rowcount

    async def purge(self, cutoff: datetime) -> PurgeResult:
        from iotcollector.domain.epoch import to_epoch_us  # noqa: PLC0415

        cutoff_us = to_epoch_us(cutoff)
        deleted: dict[str, int] = {}
        for table, column in _TABLES:
            deleted[table] = 0
            while True:
                count = await self._run(
                    functools.partial(self._delete_batch, table, column, cutoff_us)
                )
                deleted[table] += count
                if count < self._batch:
                    break
                await asyncio.sleep(self._pause_s)
        return PurgeResult(deleted)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return

        def close_conn() -> None:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

        await asyncio.get_running_loop().run_in_executor(executor, close_conn)
        executor.shutdown(wait=False)


class RetentionTask:
    """Purges every ``interval_s`` (the first time ``first_delay_s`` after ``run`` starts)."""

    def __init__(  # noqa: PLR0913 - keyword-only collaborators and limits
        self,
        purger: Purger,
        *,
        days: int,
        interval_s: float,
        logger: logging.Logger,
        on_purged: Callable[[Mapping[str, int]], None],
        first_delay_s: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._purger = purger
        self._keep = timedelta(days=days)
        self._interval_s = interval_s
        self._first_delay_s = first_delay_s
        self._log = logger
        self._on_purged = on_purged
        self._clock = clock

    async def run_once(self) -> PurgeResult:
        cutoff = self._clock() - self._keep
        result = await self._purger.purge(cutoff)
        self._on_purged(result.deleted)
        if result.total or result.partitions_dropped:
            self._log.info(
                "retention: deleted %s older than %s (partitions dropped: %s)",
                ", ".join(f"{n} rows of {t}" for t, n in result.deleted.items()),
                cutoff.isoformat(timespec="seconds"),
                ", ".join(result.partitions_dropped) or "none",
            )
        return result

    async def run(self) -> None:
        try:
            await asyncio.sleep(min(self._first_delay_s, self._interval_s))
            while True:
                try:
                    await self.run_once()
                except StorageError as exc:
                    self._log.warning("retention purge failed (retried next time): %s", exc)
                # A little jitter so replicas sharing a database do not purge in lockstep.
                await asyncio.sleep(self._interval_s * random.uniform(0.9, 1.1))  # noqa: S311
        finally:
            await self._purger.close()
