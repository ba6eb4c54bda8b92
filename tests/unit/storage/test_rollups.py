"""Which rollup serves an aggregate, and the SQL that combines it with the raw edges."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta

from iotcollector.storage.rollups import (
    RollupRefresher,
    aggregate_query,
    rollup_for,
    rollup_window,
)

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def test_the_widest_rollup_that_divides_the_bucket() -> None:
    assert rollup_for(timedelta(hours=2)) == (timedelta(hours=1), "iot_rollup_1h")
    assert rollup_for(timedelta(days=1)) == (timedelta(hours=1), "iot_rollup_1h")
    assert rollup_for(timedelta(minutes=90)) == (timedelta(minutes=1), "iot_rollup_1m")
    assert rollup_for(timedelta(seconds=60)) == (timedelta(minutes=1), "iot_rollup_1m")
    assert rollup_for(timedelta(seconds=90)) is None
    assert rollup_for(timedelta(seconds=30)) is None


def test_aligned_range_with_nothing_stale_reads_the_rollup_only() -> None:
    sql, params = aggregate_query(
        sensor_type="t",
        device_id="d",
        start=T0,
        end=T0 + timedelta(days=1),
        bucket=timedelta(hours=1),
        stale_minutes=(),
        stale_hours=(),
    )
    assert "FROM iot_rollup_1h" in sql
    assert "iot_data" not in sql
    assert "ALL(" not in sql
    assert (params["inner_start"], params["inner_end"]) == (T0, T0 + timedelta(days=1))
    assert rollup_window(T0, T0 + timedelta(days=1), timedelta(hours=1)) == {
        "inner_start": T0,
        "inner_end": T0 + timedelta(days=1),
    }


def test_stale_buckets_are_read_from_finer_tiers() -> None:
    minute = T0 + timedelta(hours=5, minutes=7)
    hour = T0 + timedelta(hours=9)
    sql, params = aggregate_query(
        sensor_type="t",
        device_id="d",
        start=T0,
        end=T0 + timedelta(days=1),
        bucket=timedelta(hours=1),
        stale_minutes=[minute, minute],
        stale_hours=[hour],
    )
    # Clean hours from the 1-hour rollup; the two stale hours (one with a stale minute) from
    # their clean 1-minute rows; the stale minute from the raw rows.
    assert params["stale_minutes"] == [minute]
    assert params["stale_hours"] == [T0 + timedelta(hours=5), hour]
    assert "FROM iot_rollup_1h AS r" in sql
    assert "iot_rollup_1m AS r" in sql
    assert sql.count("FROM iot_data") == 1
    assert sql.count("<> ALL(%(stale_hours)s)") == 1
    assert sql.count("<> ALL(%(stale_minutes)s)") == 1


def test_unaligned_ends_read_raw_rows_for_the_partial_buckets() -> None:
    start = T0 + timedelta(seconds=90)
    end = T0 + timedelta(minutes=10, seconds=5)
    sql, params = aggregate_query(
        sensor_type="t",
        device_id=None,
        start=start,
        end=end,
        bucket=timedelta(minutes=2),
        stale_minutes=[T0 + timedelta(minutes=4)],
        stale_hours=[T0],
    )
    assert "FROM iot_rollup_1m" in sql
    assert "iot_rollup_1h" not in sql  # 1-minute buckets: a stale hour does not matter
    assert sql.count("FROM iot_data") == 3  # both ends, and the stale minute
    assert "device_id =" not in sql
    assert params["inner_start"] == T0 + timedelta(minutes=2)
    assert params["inner_end"] == T0 + timedelta(minutes=10)


def test_short_or_odd_ranges_read_raw_rows() -> None:
    for start, end, bucket in (
        (T0 + timedelta(seconds=1), T0 + timedelta(seconds=50), timedelta(minutes=1)),
        (T0, T0 + timedelta(days=1), timedelta(seconds=90)),
    ):
        sql, params = aggregate_query(
            sensor_type="t",
            device_id="d",
            start=start,
            end=end,
            bucket=bucket,
            stale_minutes=(),
            stale_hours=(),
        )
        assert "iot_rollup" not in sql
        assert "inner_start" not in params
        assert rollup_window(start, end, bucket) is None


class _CountingRefresher(RollupRefresher):
    """A refresher whose passes only record their time (no database)."""

    passes: list[float]

    async def run_once(self) -> int:
        self.passes.append(time.monotonic())
        return 0


async def test_a_refresh_pass_waits_while_ingest_is_busy_at_most_max_deferral() -> None:
    busy = True
    refresher = _CountingRefresher(
        "postgresql://unused",
        logging.getLogger("test"),
        lambda _: None,
        interval_s=0.01,
        busy=lambda: busy,
        max_deferral_s=1.0,
    )
    refresher.passes = []
    started = time.monotonic()
    task = asyncio.create_task(refresher.run())
    await asyncio.sleep(0.3)
    assert refresher.passes == []  # busy, and not deferred for max_deferral_s yet
    await asyncio.sleep(1.2)
    assert len(refresher.passes) == 1  # deferred long enough: one pass, then waiting again
    assert refresher.passes[0] - started >= 1.0
    busy = False
    await asyncio.sleep(0.1)
    assert len(refresher.passes) > 3  # not busy: every interval
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
