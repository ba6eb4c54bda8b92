"""Aggregates from the rollups (PostgreSQL, migration 0005) instead of the raw readings.

``iot_rollup_1m`` and ``iot_rollup_1h`` hold count, sum, min and max per series and bucket
(aligned to the Unix epoch), kept by a statement trigger on ``iot_data`` in the transaction
that inserts the readings, from the rows really inserted: a duplicate never counts twice, a
late reading lands in its bucket. A requested bucket that is a whole number of hours reads the
1-hour rollup, a whole number of minutes the 1-minute one; a bucket of another width reads the
raw rows. The whole rollup buckets inside ``[start, end)`` come from the rollup, the partial
ones at either end (less than one rollup width each) from the raw rows, and both are summed
per requested bucket: the answer is the raw aggregation's, with ``avg`` = sum / count equal to
PostgreSQL's ``avg`` up to the order of the floating-point additions (about 1e-15 relative).
SQLite has no rollups and always aggregates raw rows.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from iotcollector.domain.epoch import EPOCH

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["ROLLUPS", "aggregate_query", "rollup_for"]

# (width, table), widest first.
ROLLUPS = ((timedelta(hours=1), "iot_rollup_1h"), (timedelta(minutes=1), "iot_rollup_1m"))

_RAW = """
SELECT date_bin(%(bucket)s, "timestamp", TIMESTAMPTZ '1970-01-01 00:00:00+00') AS bucket_start,
       count(*) AS n, sum(value) AS total, min(value) AS lo, max(value) AS hi
FROM iot_data
WHERE sensor_type = %(sensor_type)s {device} AND "timestamp" >= %({lower})s
  AND "timestamp" < %({upper})s
GROUP BY 1"""

_ROLLUP = """
SELECT date_bin(%(bucket)s, bucket, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS bucket_start,
       sum(count) AS n, sum(sum) AS total, min(min) AS lo, max(max) AS hi
FROM {table}
WHERE sensor_type = %(sensor_type)s {device} AND bucket >= %(inner_start)s
  AND bucket < %(inner_end)s
GROUP BY 1"""

_COMBINED = """
SELECT bucket_start, sum(n)::bigint, min(lo), max(hi), sum(total) / sum(n)::float8
FROM ({parts}) AS parts
GROUP BY bucket_start
ORDER BY bucket_start
"""


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


def aggregate_query(
    *,
    sensor_type: str,
    device_id: str | None,
    start: datetime,
    end: datetime,
    bucket: timedelta,
) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters of one aggregate: count, min, max, avg per bucket, oldest first."""
    device = "AND device_id = %(device_id)s" if device_id is not None else ""
    params: dict[str, Any] = {
        "bucket": bucket,
        "sensor_type": sensor_type,
        "device_id": device_id,
        "start": start,
        "end": end,
    }
    rollup = rollup_for(bucket)
    inner_start = inner_end = start
    if rollup is not None:
        width, table = rollup
        inner_start, inner_end = _ceil(start, width), _floor(end, width)
    if rollup is None or inner_start >= inner_end:
        parts = [_RAW.format(device=device, lower="start", upper="end")]
    else:
        params["inner_start"], params["inner_end"] = inner_start, inner_end
        parts = [_ROLLUP.format(table=table, device=device)]
        if start < inner_start:
            parts.append(_RAW.format(device=device, lower="start", upper="inner_start"))
        if inner_end < end:
            parts.append(_RAW.format(device=device, lower="inner_end", upper="end"))
    return _COMBINED.format(parts="\n  UNION ALL".join(parts)), params
