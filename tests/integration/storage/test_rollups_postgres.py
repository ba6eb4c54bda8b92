"""Rollups (PostgreSQL, migrations 0005 and 0008) answer exactly as raw aggregation,
property-tested on a real server: random readings written in random batches, with late and
duplicate readings, the rollups refreshed after some batches only, then random aggregate
queries through the rollups compared with aggregating the raw rows, before and after the
pending minutes and hours are all refreshed. And the refresher misses no reading committed
while it runs."""

from __future__ import annotations

import asyncio
import math
import random
import struct
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotcollector.domain.reading import Reading
from iotcollector.storage.base import SIGNIFICANT_SQL, significant
from iotcollector.storage.postgres import PostgresStorage
from iotcollector.storage.rollups import LOCK_KEY, refresh_rollups
from support.postgres import refresh_all_rollups

if TYPE_CHECKING:
    from iotcollector.storage.base import Bucket

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
SPAN_S = 5 * 3600  # readings within 5 hours: crosses a day (a partition) and several hours
DEVICES = ("d1", "d2")
SENSORS = ("temperature", "humidity")
BUCKETS = (60, 120, 90, 3600, 7200, 300, 86_400)

_RAW = """
SELECT date_bin(%(bucket)s, "timestamp", TIMESTAMPTZ '1970-01-01 00:00:00+00'), count(*),
       min(value), max(value), avg(value)
FROM iot_data
WHERE sensor_type = %(sensor_type)s AND (%(device_id)s::text IS NULL OR device_id = %(device_id)s)
  AND "timestamp" >= %(start)s AND "timestamp" < %(end)s
GROUP BY 1 ORDER BY 1
"""

readings_strategy = st.lists(
    st.builds(
        Reading,
        st.sampled_from(DEVICES),
        st.sampled_from(SENSORS),
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
        st.just(""),
        st.integers(0, SPAN_S * 1000).map(lambda ms: T0 + timedelta(milliseconds=ms)),
    ),
    min_size=1,
    max_size=120,
)
query_strategy = st.tuples(
    st.sampled_from(SENSORS),
    st.sampled_from((*DEVICES, None)),
    st.integers(-600, SPAN_S + 600),  # start, seconds from T0 (may be unaligned)
    st.integers(0, SPAN_S + 1200),  # length
    st.sampled_from(BUCKETS),
    st.integers(0, 999),  # sub-second part of start
)


def _as_tuples(buckets: list[Bucket]) -> list[tuple[Any, ...]]:
    return [(b.bucket_start, b.count, b.min, b.max) for b in buckets]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    batches=st.lists(readings_strategy, min_size=1, max_size=4),
    redelivered=st.lists(st.integers(0, 10_000), max_size=30),
    refresh_after=st.lists(st.booleans(), min_size=6, max_size=6),
    queries=st.lists(query_strategy, min_size=1, max_size=6),
)
def test_rollup_answers_equal_raw_answers(
    postgres_url: str,
    batches: list[list[Reading]],
    redelivered: list[int],
    refresh_after: list[bool],
    queries: list[tuple[str, str | None, int, int, int, int]],
) -> None:
    everything = [r for batch in batches for r in batch]
    # Duplicates: readings already written come again, in a batch of their own and mixed
    # into a later batch (arriving late, after newer readings).
    again = [everything[i % len(everything)] for i in redelivered]
    asyncio.run(_check(postgres_url, [*batches, again, again + batches[0]], refresh_after, queries))


async def _check(
    url: str,
    batches: list[list[Reading]],
    refresh_after: list[bool],
    queries: list[tuple[str, str | None, int, int, int, int]],
) -> None:
    store = PostgresStorage(url)
    await store.open()
    try:
        await store.migrate()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(
                b"TRUNCATE iot_data, iot_rollup_1m, iot_rollup_1h, iot_rollup_stale_1m, "
                b"iot_rollup_stale_1h"
            )
        for batch, refresh in zip(batches, refresh_after, strict=False):
            if batch:
                await store.write_batch(batch, [])
                # Its minutes are stale (unless all were duplicates), the others may not be.
                await _compare(store, url, queries)
            if refresh:
                refresh_all_rollups(url)
        await _compare(store, url, queries)
        refresh_all_rollups(url)
        await _compare(store, url, queries)
    finally:
        await store.close()


async def _compare(
    store: PostgresStorage, url: str, queries: list[tuple[str, str | None, int, int, int, int]]
) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as raw:
        for sensor, device, start_s, length_s, bucket_s, ms in queries:
            start = T0 + timedelta(seconds=start_s, milliseconds=ms)
            end = start + timedelta(seconds=length_s)
            bucket = timedelta(seconds=bucket_s)
            got = await store.aggregate(
                sensor_type=sensor, device_id=device, start=start, end=end, bucket=bucket
            )
            cur = await raw.execute(
                _RAW,
                {
                    "bucket": bucket,
                    "sensor_type": sensor,
                    "device_id": device,
                    "start": start,
                    "end": end,
                },
            )
            want = await cur.fetchall()
            assert _as_tuples(got) == [w[:4] for w in want]
            assert [b.avg for b in got] == pytest.approx([w[4] for w in want], rel=1e-9, abs=1e-6)


async def test_a_reading_committed_while_the_refresher_runs_is_not_missed(
    postgres_url: str,
) -> None:
    """The refresher recomputes a minute while another transaction, not yet committed, adds a
    reading to it: the rollup lacks that reading, but the minute stays pending, so answers
    include it at once and the next refresh counts it."""
    minute = T0 + timedelta(minutes=7)
    store = PostgresStorage(postgres_url)
    await store.open()
    try:
        await store.migrate()
        await store.write_batch([Reading("d1", "temperature", 1.0, "", minute)], [])
        with psycopg.connect(postgres_url) as late:  # a transaction left open
            late.execute(
                'INSERT INTO iot_data (device_id, sensor_type, value, unit, "timestamp") '
                "VALUES ('d1', 'temperature', 5.0, '', %s)",
                (minute + timedelta(seconds=30),),
            )
            assert refresh_all_rollups(postgres_url) == 2  # the minute and its hour
            late.commit()
        for bucket in (timedelta(minutes=1), timedelta(hours=1)):
            got = await store.aggregate(
                sensor_type="temperature",
                device_id="d1",
                start=T0,
                end=T0 + timedelta(hours=1),
                bucket=bucket,
            )
            assert [(b.count, b.min, b.max, b.avg) for b in got] == [(2, 1.0, 5.0, 3.0)]
        assert _rollup_counts(postgres_url) == [(1, 1)]
        assert refresh_all_rollups(postgres_url) == 2
        assert _rollup_counts(postgres_url) == [(2, 2)]
        assert refresh_all_rollups(postgres_url) == 0
    finally:
        await store.close()


async def test_one_refresher_at_a_time_and_recent_minutes_wait(postgres_url: str) -> None:
    store = PostgresStorage(postgres_url)
    await store.open()
    try:
        await store.migrate()
        now = datetime.now(UTC)
        await store.write_batch(
            [
                Reading("d2", "humidity", 1.0, "", now - timedelta(hours=2)),
                Reading("d2", "humidity", 2.0, "", now),
            ],
            [],
        )
        async with (
            await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as one,
            await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as two,
        ):
            await one.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
            assert await refresh_rollups(two) is None
            await one.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
            # The old minute and its hour; the current minute (not closed) waits.
            assert await refresh_rollups(two) == 2
            cur = await two.execute("SELECT minute FROM iot_rollup_stale_1m")
            assert await cur.fetchall() == [(now.replace(second=0, microsecond=0),)]
    finally:
        await store.close()


def _rollup_counts(url: str) -> list[tuple[int, int]]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT sum(count) FROM iot_rollup_1m WHERE device_id = 'd1'), "
            "(SELECT sum(count) FROM iot_rollup_1h WHERE device_id = 'd1')"
        ).fetchone()
    assert row is not None
    return [(int(row[0]), int(row[1]))]


def test_postgres_rounds_averages_as_the_sqlite_path_does(postgres_url: str) -> None:
    """``SIGNIFICANT_SQL`` in the aggregate SQL gives the very double ``significant`` gives in
    Python (the SQLite path), for ordinary and extreme doubles alike."""
    rng = random.Random(7)
    values = [rng.uniform(-1e6, 1e6) / rng.choice((1, 3, 7, 11)) for _ in range(20_000)]
    values += [rng.uniform(-1, 1) * 10 ** rng.uniform(-9, 20) for _ in range(20_000)]
    values += [struct.unpack("<d", rng.randbytes(8))[0] for _ in range(20_000)]
    values += [0.0, -0.0, 1e-7, -1e-7, 9.99e-8, 1e15, 1e300, 5e-324, 1.7976931348623157e308]
    values = [v for v in values if math.isfinite(v)]
    sql = f"SELECT {SIGNIFICANT_SQL.format(x='v')} FROM unnest(%s::float8[]) AS v"
    with psycopg.connect(postgres_url) as conn:
        cur = conn.cursor(binary=True)
        cur.execute(sql.encode(), (values,))
        rounded = [row[0] for row in cur.fetchall()]
    assert rounded == [significant(v) for v in values]


async def test_an_average_has_no_rounding_noise(postgres_url: str) -> None:
    store = PostgresStorage(postgres_url)
    await store.open()
    try:
        await store.migrate()
        moments = (T0, T0 + timedelta(seconds=1))
        await store.write_batch(
            [Reading("d1", "t", v, "", t) for v, t in zip((0.1, 0.2), moments, strict=True)], []
        )
        for refreshed in (False, True):
            if refreshed:
                refresh_all_rollups(postgres_url)
            for bucket in (timedelta(minutes=1), timedelta(seconds=30), timedelta(hours=1)):
                got = await store.aggregate(
                    sensor_type="t",
                    device_id="d1",
                    start=T0,
                    end=T0 + timedelta(hours=1),
                    bucket=bucket,
                )
                # Not 0.15000000000000002.
                assert [b.avg for b in got] == [0.15], (refreshed, bucket)
    finally:
        await store.close()
