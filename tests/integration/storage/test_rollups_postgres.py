"""Rollups (PostgreSQL, migration 0005) answer exactly as raw aggregation, property-tested on a
real server: random readings written in random batches, with late and duplicate readings, then
random aggregate queries through the rollups compared with aggregating the raw rows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotcollector.domain.reading import Reading
from iotcollector.storage.postgres import PostgresStorage

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
    return [(b.start, b.count, b.min, b.max) for b in buckets]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    batches=st.lists(readings_strategy, min_size=1, max_size=4),
    redelivered=st.lists(st.integers(0, 10_000), max_size=30),
    queries=st.lists(query_strategy, min_size=1, max_size=6),
)
def test_rollup_answers_equal_raw_answers(
    postgres_url: str,
    batches: list[list[Reading]],
    redelivered: list[int],
    queries: list[tuple[str, str | None, int, int, int, int]],
) -> None:
    everything = [r for batch in batches for r in batch]
    # Duplicates: readings already written come again, in a batch of their own and mixed
    # into a later batch (arriving late, after newer readings).
    again = [everything[i % len(everything)] for i in redelivered]
    asyncio.run(_check(postgres_url, [*batches, again, again + batches[0]], queries))


async def _check(
    url: str,
    batches: list[list[Reading]],
    queries: list[tuple[str, str | None, int, int, int, int]],
) -> None:
    store = PostgresStorage(url)
    await store.open()
    try:
        await store.migrate()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(b"TRUNCATE iot_data, iot_rollup_1m, iot_rollup_1h")
        for batch in batches:
            if batch:
                await store.write_batch(batch, [])
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
                assert [b.avg for b in got] == pytest.approx(
                    [w[4] for w in want], rel=1e-9, abs=1e-6
                )
    finally:
        await store.close()
