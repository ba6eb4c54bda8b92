"""Rollups on PostgreSQL: aggregates answered from them, and their background refresher.

``iot_rollup_1m`` and ``iot_rollup_1h`` (migration 0005) hold count, sum, min and max per
series and bucket (aligned to the Unix epoch). Since migration 0008 they are kept the way
TimescaleDB keeps its continuous aggregates: the inserting transaction only logs the minutes
it touched (``iot_rollup_stale_1m``, from the rows really inserted: a duplicate logs
nothing), and :class:`RollupRefresher` recomputes each closed minute from the raw rows, then
each closed hour from its minutes (``iot_rollup_stale_1h`` lists the hours waiting), in one
``REPEATABLE READ`` snapshot per step (the SQL function ``iot_refresh_rollups`` says why that
is exact under concurrent writes).

Aggregates (:func:`aggregate_query`): a requested bucket that is a whole number of hours reads
the 1-hour rollup, a whole number of minutes the 1-minute one; a bucket of another width reads
the raw rows. Usually nothing in the range is stale: one statement, with no transaction
around it, answers from the rollup and the raw edges on condition that no minute or hour of
the range is stale in its own snapshot, and gives no row otherwise. Then (or for an empty
answer) the whole rollup buckets inside ``[start, end)`` are read in tiers, in one
``REPEATABLE READ`` transaction (one snapshot): first the stale minutes and hours of the
range (:data:`STALE_QUERY`: the last minute or two, or late readings), then one statement
that reads a clean hour from the 1-hour rollup, a stale hour (or one with a stale minute)
from its clean 1-minute rows, a stale minute from the raw rows (one statement with every
tier whatever is stale cost ~6 ms of planning over 31 daily partitions of three tables).
The partial buckets at either end (less than one rollup width each) come
from the raw rows. So the answer is the raw aggregation's whatever the refresher's progress,
with ``avg`` = sum / count equal to PostgreSQL's ``avg`` up to the order of the
floating-point additions (about 1e-15 relative), then given to 15 significant digits
(``storage.base.significant``).
SQLite has no rollups and always aggregates raw rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from iotcollector.domain.epoch import EPOCH
from iotcollector.errors import StorageError
from iotcollector.storage.base import SIGNIFICANT_SQL

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from psycopg import AsyncConnection

__all__ = [
    "ROLLUPS",
    "STALE_QUERY",
    "RollupRefresher",
    "aggregate_query",
    "refresh_rollups",
    "rollup_for",
    "rollup_window",
]

# (width, table), widest first.
ROLLUPS = ((timedelta(hours=1), "iot_rollup_1h"), (timedelta(minutes=1), "iot_rollup_1m"))
HOUR = ROLLUPS[0][0]

# A minute is recomputed once it ended this long ago: readings a little late (clock skew,
# queueing) still find it pending; later ones make it pending again.
SETTLE = timedelta(seconds=10)
# Minutes recomputed per transaction (at 100 k readings/s, one minute is 6 M raw rows).
MINUTES_PER_STEP = 10
# The refresher's advisory lock ("iotrollup"), held for a whole pass by one collector.
LOCK_KEY = 29677418447478896

_EPOCH_SQL = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"

# The stale minutes and hours of a range, read first in the aggregate's REPEATABLE READ
# transaction (one snapshot for both statements): usually none but the last minute or two.
STALE_QUERY = """
SELECT ARRAY(SELECT DISTINCT minute FROM iot_rollup_stale_1m
             WHERE minute >= %(inner_start)s AND minute < %(inner_end)s ORDER BY 1),
       ARRAY(SELECT hour FROM iot_rollup_stale_1h
             WHERE hour >= %(inner_start)s AND hour < %(inner_end)s ORDER BY 1)
"""

_RAW = f"""
SELECT date_bin(%(bucket)s, "timestamp", {_EPOCH_SQL}) AS bucket_start,
       count(*) AS n, sum(value) AS total, min(value) AS lo, max(value) AS hi
FROM iot_data
WHERE sensor_type = %(sensor_type)s {{device}} AND "timestamp" >= %({{lower}})s
  AND "timestamp" < %({{upper}})s
GROUP BY 1"""

# The clean buckets of the rollup (all of its buckets when nothing in the range is stale).
_CLEAN = f"""
SELECT date_bin(%(bucket)s, r.bucket, {_EPOCH_SQL}) AS bucket_start,
       sum(r.count) AS n, sum(r.sum) AS total, min(r.min) AS lo, max(r.max) AS hi
FROM {{table}} AS r
WHERE r.sensor_type = %(sensor_type)s {{device}} AND r.bucket >= %(inner_start)s
  AND r.bucket < %(inner_end)s {{clean}}
GROUP BY 1"""

# The same when each requested bucket is one rollup row (one series, bucket = rollup width):
# the rows as they are, in index order.
_CLEAN_ROWS = """
SELECT r.bucket AS bucket_start, r.count AS n, r.sum AS total, r.min AS lo, r.max AS hi
FROM {table} AS r
WHERE r.sensor_type = %(sensor_type)s {device} AND r.bucket >= %(inner_start)s
  AND r.bucket < %(inner_end)s {clean}"""

# The clean minutes of the stale hours (1-hour buckets only).
_MINUTES_OF_STALE_HOURS = f"""
SELECT date_bin(%(bucket)s, r.bucket, {_EPOCH_SQL}) AS bucket_start,
       sum(r.count) AS n, sum(r.sum) AS total, min(r.min) AS lo, max(r.max) AS hi
FROM unnest(%(stale_hours)s::timestamptz[]) AS h(hour)
CROSS JOIN LATERAL (
    SELECT r.bucket, r.count, r.sum, r.min, r.max FROM iot_rollup_1m AS r
    WHERE r.sensor_type = %(sensor_type)s {{device}} AND r.bucket >= h.hour
      AND r.bucket < h.hour + interval '1 hour' {{clean}}
) AS r
GROUP BY 1"""

_STALE_MINUTES_RAW = f"""
SELECT date_bin(%(bucket)s, d."timestamp", {_EPOCH_SQL}) AS bucket_start,
       count(*) AS n, sum(d.value) AS total, min(d.value) AS lo, max(d.value) AS hi
FROM unnest(%(stale_minutes)s::timestamptz[]) AS m(minute)
CROSS JOIN LATERAL (
    SELECT "timestamp", value FROM iot_data
    WHERE sensor_type = %(sensor_type)s {{device}} AND "timestamp" >= m.minute
      AND "timestamp" < m.minute + interval '1 minute'
) AS d
GROUP BY 1"""

# avg to 15 significant digits, as storage.base.significant does.
_COMBINED = f"""
SELECT bucket_start, sum(n)::bigint, min(lo), max(hi),
       {SIGNIFICANT_SQL.format(x="(sum(total) / sum(n)::float8)")}
FROM ({{parts}}) AS parts {{guard}}
GROUP BY bucket_start
ORDER BY bucket_start
"""

# One part: nothing to combine (a second aggregation of a day of 1-minute buckets cost as
# much as the first).
_SINGLE = f"""
SELECT bucket_start, n::bigint, lo, hi, {SIGNIFICANT_SQL.format(x="(total / n::float8)")}
FROM ({{parts}}) AS part {{guard}}
ORDER BY bucket_start
"""

# The optimistic aggregate's condition: no stale minute (and, reading the 1-hour rollup, no
# stale hour) in the window, checked in the statement's own snapshot.
_NO_STALE_MINUTE = """NOT EXISTS (
    SELECT FROM iot_rollup_stale_1m
    WHERE minute >= %(inner_start)s AND minute < %(inner_end)s)"""
_NO_STALE_HOUR = """NOT EXISTS (
    SELECT FROM iot_rollup_stale_1h WHERE hour >= %(inner_start)s AND hour < %(inner_end)s)"""


def _combined(parts: list[str], guard: str = "") -> str:
    template = _SINGLE if len(parts) == 1 else _COMBINED
    return template.format(parts="\n  UNION ALL".join(parts), guard=guard)


def rollup_for(bucket: timedelta) -> tuple[timedelta, str] | None:
    """The widest rollup whose width divides ``bucket``, or ``None``."""
    for width, table in ROLLUPS:
        if bucket >= width and bucket % width == timedelta(0):
            return width, table
    return None


def _ceil(moment: datetime, width: timedelta) -> datetime:
    rest = (moment - EPOCH) % width
    return moment if not rest else moment + (width - rest)


def _floor(moment: datetime, width: timedelta) -> datetime:
    return moment - (moment - EPOCH) % width


def rollup_window(start: datetime, end: datetime, bucket: timedelta) -> dict[str, datetime] | None:
    """The whole rollup buckets inside ``[start, end)`` (``inner_start``, ``inner_end``: the
    parameters of :data:`STALE_QUERY`), or ``None`` when the aggregate reads raw rows only."""
    rollup = rollup_for(bucket)
    if rollup is None:
        return None
    inner_start, inner_end = _ceil(start, rollup[0]), _floor(end, rollup[0])
    if inner_start >= inner_end:
        return None
    return {"inner_start": inner_start, "inner_end": inner_end}


def aggregate_query(  # noqa: PLR0913 - one aggregate's keyword-only terms
    *,
    sensor_type: str,
    device_id: str | None,
    start: datetime,
    end: datetime,
    bucket: timedelta,
    stale_minutes: Sequence[datetime] = (),
    stale_hours: Sequence[datetime] = (),
    unless_stale: bool = False,
) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters of one aggregate: count, min, max, avg per bucket, oldest first.

    ``stale_minutes`` and ``stale_hours``: what :data:`STALE_QUERY` read in the same snapshot
    (the rollup rows of those are not to be trusted); with none, the statement reads the
    rollup alone, as cheap to plan as to run.

    ``unless_stale``: the optimistic statement, one round trip with no transaction around
    it: the answer assuming nothing in the window is stale, and no row at all if something is
    (checked in the statement's own snapshot, so an answer it gives is exact). No row means:
    ask again with :data:`STALE_QUERY` first (or there is no reading in the range).
    """
    device = "AND device_id = %(device_id)s" if device_id is not None else ""
    params: dict[str, Any] = {
        "bucket": bucket,
        "sensor_type": sensor_type,
        "device_id": device_id,
        "start": start,
        "end": end,
    }
    window = rollup_window(start, end, bucket)
    rollup = rollup_for(bucket)
    if window is None or rollup is None:
        return _combined([_RAW.format(device=device, lower="start", upper="end")]), params
    params |= window
    width, table = rollup
    guard = ""
    if unless_stale:
        checks = [_NO_STALE_MINUTE, _NO_STALE_HOUR] if width == HOUR else [_NO_STALE_MINUTE]
        guard = "WHERE " + " AND ".join(checks)
    minutes = sorted(set(stale_minutes))
    params["stale_minutes"] = minutes
    clean_minutes = "AND r.bucket <> ALL(%(stale_minutes)s)" if minutes else ""
    if width == HOUR:
        hours = sorted(set(stale_hours) | {_floor(m, HOUR) for m in minutes})
        params["stale_hours"] = hours
        clean = "AND r.bucket <> ALL(%(stale_hours)s)" if hours else ""
        parts = [_clean(table, device, clean, rows=device_id is not None and bucket == width)]
        if hours:
            parts.append(_MINUTES_OF_STALE_HOURS.format(device=device, clean=clean_minutes))
    else:
        rows = device_id is not None and bucket == width
        parts = [_clean(table, device, clean_minutes, rows=rows)]
    if minutes:
        parts.append(_STALE_MINUTES_RAW.format(device=device))
    if start < window["inner_start"]:
        parts.append(_RAW.format(device=device, lower="start", upper="inner_start"))
    if window["inner_end"] < end:
        parts.append(_RAW.format(device=device, lower="inner_end", upper="end"))
    return _combined(parts, guard), params


def _clean(table: str, device: str, clean: str, *, rows: bool) -> str:
    return (_CLEAN_ROWS if rows else _CLEAN).format(table=table, device=device, clean=clean)


async def refresh_rollups(
    conn: AsyncConnection[Any],
    *,
    closed_before: datetime | None = None,
    wait: bool = False,
    step: int = MINUTES_PER_STEP,
) -> int | None:
    """Recompute every pending minute and hour that ended by ``closed_before`` (default:
    ``SETTLE`` ago, by the database's clock); ``None`` if another collector holds the
    refresher lock and ``wait`` is false (with ``wait``, wait for it).

    ``conn`` is in autocommit mode; each step is its own ``REPEATABLE READ`` transaction of
    at most ``step`` minutes. Returns the number of minutes and hours recomputed.
    """
    if wait:
        await conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    else:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
        row = await cur.fetchone()
        if row is None or not row[0]:
            return None
    done = 0
    try:
        while True:
            async with conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cur = await conn.execute(
                    "SELECT iot_refresh_rollups(coalesce(%s, now() - %s), %s)",
                    (closed_before, SETTLE, step),
                )
                row = await cur.fetchone()
            made = int(row[0]) if row is not None else 0
            if not made:
                return done
            done += made
    finally:
        # A broken connection has dropped the lock with it; its error is the one to report.
        with contextlib.suppress(Exception):
            await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


@dataclass(slots=True)
class RollupRefresher:
    """Refreshes the rollups every ``interval_s`` on its own connection (PostgreSQL only).

    Ingest comes first: while ``busy()`` (the collector drains a backlog) a pass waits, for
    at most ``max_deferral_s`` since the last one. Recomputing a minute costs PostgreSQL about
    as much as storing its readings again when series are sparse (bench/README.md), CPU the
    backlog's readings need more; aggregates stay exact meanwhile (pending minutes are read
    from the raw rows).
    """

    url: str
    logger: logging.Logger
    on_refreshed: Callable[[int], None]
    interval_s: float = 5.0
    connect_timeout_s: float = 5.0
    busy: Callable[[], bool] = lambda: False
    max_deferral_s: float = 60.0
    _conn: AsyncConnection[Any] | None = None
    _failing: bool = False
    _last_pass: float = field(default_factory=time.monotonic)

    def due(self) -> bool:
        """Whether a pass is to run now: ingest is not busy, or it has waited long enough."""
        return not self.busy() or time.monotonic() - self._last_pass >= self.max_deferral_s

    async def run_once(self) -> int | None:
        from iotcollector.storage.postgres_connection import connect  # noqa: PLC0415 - lazy
        from iotcollector.storage.postgres_errors import translate_error  # noqa: PLC0415

        try:
            if self._conn is None or self._conn.closed:
                self._conn = await connect(self.url, self.connect_timeout_s)
            started = time.perf_counter()
            done = await refresh_rollups(self._conn)
        except Exception as exc:
            await self.close()
            raise translate_error(exc, "rollup refresh") from exc
        if done is not None:
            self.on_refreshed(done)
            if done:
                self.logger.debug(
                    "rollups: %d minutes and hours recomputed in %.3f s",
                    done,
                    time.perf_counter() - started,
                )
        return done

    async def run(self) -> None:
        try:
            while True:
                if self.due():
                    self._last_pass = time.monotonic()
                    await self._pass()
                await asyncio.sleep(self.interval_s)
        finally:
            await self.close()

    async def _pass(self) -> None:
        try:
            await self.run_once()
        except StorageError as exc:
            if not self._failing:
                self.logger.warning(
                    "rollup refresh failed (retried; aggregates stay exact, reading more raw "
                    "rows meanwhile): %s",
                    exc,
                )
            self._failing = True
        else:
            if self._failing:
                self.logger.info("rollup refresh works again")
            self._failing = False

    async def close(self) -> None:
        from iotcollector.storage.postgres_connection import close_quietly  # noqa: PLC0415

        conn, self._conn = self._conn, None
        await close_quietly(conn)
