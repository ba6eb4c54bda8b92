"""Time partitions of ``iot_data`` and its rollups on PostgreSQL (migration 0005).

Each interval of ``IOT_PARTITION_INTERVAL`` (aligned to the Unix epoch) has one partition in
each of ``iot_data``, ``iot_rollup_1m`` and ``iot_rollup_1h``. They are made by the SQL
function ``iot_create_partitions`` (one advisory lock, so any number of collectors may call it
at once; no lock at all when there is nothing to create):

- ahead: at start-up and then every few minutes the writer makes sure the previous, the
  current and the next ``AHEAD`` intervals exist (the previous one for readings a little late
  across a boundary, and for rows written with plain SQL just after it);
- on demand: a reading whose partition does not exist (late or back-filled data, any accepted
  timestamp back to 2000) fails its batch with "no partition of relation … found for row";
  the writer creates the partitions for the batch's timestamps and writes the batch again.
  No reading is refused for want of a partition. Only the recent window (the 7 intervals
  before the current one, and later) gets a partition per interval; an older moment gets a
  ``…_coarse`` partition filling the gaps of its UTC year (migration 0006), so that no message
  makes more than a few dozen partitions per table.

Retention drops whole partitions: every partition whose upper bound is at or before the
horizon (rounded down to the hour) is detached ``CONCURRENTLY`` (the collectors' writes and
the API's reads go on) and dropped. A partition straddling the horizon is kept whole until
its upper bound passes it, so readings live up to one interval longer than
``IOT_RETENTION_DAYS``. The exception is the partitions spanning many intervals, the
``…_legacy`` ones an upgrade made from the unpartitioned table and the ``…_coarse`` ones of old
readings: their rows older than the horizon are deleted in batches. Rollup rows go with their
readings, so the rollups and the raw rows always cover the same time.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from iotcollector.domain.epoch import EPOCH
from iotcollector.storage.rollups import refresh_rollups

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from psycopg import AsyncConnection

__all__ = [
    "AHEAD",
    "LOCK_KEY",
    "PARENTS",
    "DropResult",
    "Partition",
    "align_down",
    "create_ahead",
    "create_for",
    "drop_before",
    "is_missing_partition",
    "list_partitions",
]

# Intervals created ahead of the current one.
AHEAD = 2
# The advisory lock of partition changes, also taken by iot_create_partitions ("iotpart").
LOCK_KEY = 29677418446942836
PARENTS = ("iot_data", "iot_rollup_1h", "iot_rollup_1m")
HOUR = timedelta(hours=1)
# Partitions spanning many intervals: straddling the horizon, their old rows are deleted.
_WIDE = re.compile(r"_legacy$|_coarse(_[0-9a-f]{6})?$")
# PostgreSQL's message for a row no partition accepts (SQLSTATE 23514, check_violation).
_MISSING = re.compile(r"^no partition of relation \"?iot_(data|rollup_1m|rollup_1h)\"? found")
_DETACHED = "iot-collector: detached by retention, to be dropped"


@dataclass(frozen=True, slots=True)
class Partition:
    parent: str
    name: str
    lower: datetime
    upper: datetime
    detach_pending: bool

    @property
    def wide(self) -> bool:
        """An upgrade's ``…_legacy`` or an old reading's ``…_coarse`` partition."""
        return _WIDE.search(self.name) is not None


@dataclass(slots=True)
class DropResult:
    """What one retention pass removed."""

    dropped: list[str] = field(default_factory=list)
    rows_deleted: dict[str, int] = field(default_factory=dict)


def align_down(moment: datetime, width: timedelta) -> datetime:
    """The start of the ``width``-wide bucket (aligned to the Unix epoch) holding ``moment``."""
    return moment - (moment - EPOCH) % width


def is_missing_partition(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL refusing a row because its partition does not exist."""
    return (
        isinstance(exc, psycopg.errors.CheckViolation)
        and _MISSING.match(exc.diag.message_primary or "") is not None
    )


async def create_for(
    conn: AsyncConnection[Any], times: Iterable[datetime], interval: timedelta
) -> int:
    """Create the partitions holding ``times`` (autocommit ``conn``); return how many."""
    buckets = sorted({align_down(t, interval) for t in times})
    if not buckets:
        return 0
    cur = await conn.execute("SELECT iot_create_partitions(%s, %s)", (buckets, interval))
    row = await cur.fetchone()
    return int(row[0]) if row is not None else 0


async def create_ahead(conn: AsyncConnection[Any], now: datetime, interval: timedelta) -> int:
    """Create the previous and current intervals' partitions and the ``AHEAD`` next ones."""
    return await create_for(conn, (now + k * interval for k in range(-1, AHEAD + 1)), interval)


async def list_partitions(conn: AsyncConnection[Any]) -> list[Partition]:
    cur = await conn.execute(
        "SELECT parent, name, lower, upper, detach_pending FROM iot_partitions "
        "ORDER BY array_position(%s, parent), lower",
        (list(PARENTS),),
    )
    return [Partition(*row) for row in await cur.fetchall()]


async def drop_before(
    conn: AsyncConnection[Any], cutoff: datetime, *, batch_size: int, pause_s: float
) -> DropResult:
    """Drop the partitions wholly older than ``cutoff`` (rounded down to the hour).

    ``conn`` is in autocommit mode (``DETACH … CONCURRENTLY`` cannot run in a transaction).
    The partition lock is held for the whole pass: no collector creates a partition meanwhile,
    so a detached range receives no row and the count of readings dropped (the 1-hour rollups'
    counts of that range, recomputed first for every hour before the horizon) is exact.
    """
    horizon = align_down(cutoff, HOUR)
    result = DropResult(rows_deleted={"iot_data": 0})
    # The readings dropped are counted from the 1-hour rollups: bring those hours up to date.
    await refresh_rollups(conn, closed_before=horizon, wait=True)
    await conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    try:
        await _drop_leftovers(conn, result)
        for part in await list_partitions(conn):
            if part.detach_pending:  # a detach interrupted half-way: finish it
                await conn.execute(
                    f"ALTER TABLE {_ident(part.parent)} "
                    f"DETACH PARTITION {_ident(part.name)} FINALIZE"
                )
                await _drop(conn, part.name, result)
            elif part.upper <= horizon:
                await _detach(conn, part)
                if part.parent == "iot_data":
                    result.rows_deleted["iot_data"] += await _rows_in(conn, part)
                await _drop(conn, part.name, result)
            elif part.wide and part.lower < horizon:
                column = '"timestamp"' if part.parent == "iot_data" else "bucket"
                deleted = await _delete_rows(
                    conn, part.name, column, horizon, batch_size=batch_size, pause_s=pause_s
                )
                if part.parent == "iot_data":
                    result.rows_deleted["iot_data"] += deleted
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return result


async def _detach(conn: AsyncConnection[Any], part: Partition) -> None:
    await conn.execute(f"COMMENT ON TABLE {_ident(part.name)} IS '{_DETACHED}'")
    await conn.execute(
        f"ALTER TABLE {_ident(part.parent)} DETACH PARTITION {_ident(part.name)} CONCURRENTLY"
    )


async def _rows_in(conn: AsyncConnection[Any], part: Partition) -> int:
    """The readings of a detached ``iot_data`` partition, from the 1-hour rollups (they are
    dropped after it, parents in ``PARENTS`` order), without reading the partition."""
    cur = await conn.execute(
        "SELECT coalesce(sum(count), 0) FROM iot_rollup_1h WHERE bucket >= %s AND bucket < %s",
        (part.lower, part.upper),
    )
    row = await cur.fetchone()
    return int(row[0]) if row is not None else 0


async def _drop_leftovers(conn: AsyncConnection[Any], result: DropResult) -> None:
    """Drop tables a previous pass detached but did not get to drop."""
    cur = await conn.execute(
        "SELECT c.relname FROM pg_class AS c "
        "WHERE c.relkind = 'r' AND NOT c.relispartition "
        "AND c.relnamespace = current_schema()::regnamespace "
        "AND obj_description(c.oid, 'pg_class') = %s",
        (_DETACHED,),
    )
    for (name,) in await cur.fetchall():
        await _drop(conn, name, result)


async def _drop(conn: AsyncConnection[Any], name: str, result: DropResult) -> None:
    await conn.execute(f"DROP TABLE IF EXISTS {_ident(name)}")
    result.dropped.append(name)


async def _delete_rows(  # noqa: PLR0913 - one table's batched delete, all keyword limits
    conn: AsyncConnection[Any],
    table: str,
    column: str,
    horizon: datetime,
    *,
    batch_size: int,
    pause_s: float,
) -> int:
    """Delete rows of ``table`` older than ``horizon`` in batches of ``batch_size``."""
    sql = (
        f"DELETE FROM {_ident(table)} WHERE ctid = ANY(ARRAY("
        f"SELECT ctid FROM {_ident(table)} WHERE {column} < %s LIMIT %s FOR UPDATE SKIP LOCKED))"
    )
    deleted = 0
    while True:
        cur = await conn.execute(sql, (horizon, batch_size))
        deleted += cur.rowcount
        if cur.rowcount < batch_size:
            return deleted
        await asyncio.sleep(pause_s)


def _ident(name: str) -> str:
    """A table name of ours quoted as an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'
