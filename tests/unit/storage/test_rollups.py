"""Which rollup serves an aggregate, and the SQL that combines it with the raw edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from iotcollector.storage.rollups import aggregate_query, rollup_for

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def test_the_widest_rollup_that_divides_the_bucket() -> None:
    assert rollup_for(timedelta(hours=2)) == (timedelta(hours=1), "iot_rollup_1h")
    assert rollup_for(timedelta(days=1)) == (timedelta(hours=1), "iot_rollup_1h")
    assert rollup_for(timedelta(minutes=90)) == (timedelta(minutes=1), "iot_rollup_1m")
    assert rollup_for(timedelta(seconds=60)) == (timedelta(minutes=1), "iot_rollup_1m")
    assert rollup_for(timedelta(seconds=90)) is None
    assert rollup_for(timedelta(seconds=30)) is None


def test_aligned_range_reads_the_rollup_only() -> None:
    sql, params = aggregate_query(
        sensor_type="t",
        device_id="d",
        start=T0,
        end=T0 + timedelta(days=1),
        bucket=timedelta(hours=1),
    )
    assert "FROM iot_rollup_1h" in sql
    # Raw rows only for the minutes still pending (no partial bucket at either end).
    assert sql.count("FROM iot_data") == 1
    assert "FROM pending_minutes" in sql
    assert '"timestamp" >= %(start)s' not in sql
    assert '"timestamp" < %(end)s' not in sql
    assert (params["inner_start"], params["inner_end"]) == (T0, T0 + timedelta(days=1))


def test_unaligned_ends_read_raw_rows_for_the_partial_buckets() -> None:
    start = T0 + timedelta(seconds=90)
    end = T0 + timedelta(minutes=10, seconds=5)
    sql, params = aggregate_query(
        sensor_type="t", device_id=None, start=start, end=end, bucket=timedelta(minutes=2)
    )
    assert "FROM iot_rollup_1m" in sql
    assert "FROM iot_rollup_1h" not in sql
    assert sql.count("FROM iot_data") == 3  # both ends, and the pending minutes
    assert "device_id =" not in sql
    assert params["inner_start"] == T0 + timedelta(minutes=2)
    assert params["inner_end"] == T0 + timedelta(minutes=10)


def test_short_or_odd_ranges_read_raw_rows() -> None:
    for start, end, bucket in (
        (T0 + timedelta(seconds=1), T0 + timedelta(seconds=50), timedelta(minutes=1)),
        (T0, T0 + timedelta(days=1), timedelta(seconds=90)),
    ):
        sql, params = aggregate_query(
            sensor_type="t", device_id="d", start=start, end=end, bucket=bucket
        )
        assert "iot_rollup" not in sql
        assert "inner_start" not in params
