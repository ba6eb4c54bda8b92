"""Two batches written at once on PostgreSQL's two writer connections: same devices, and
readings redelivered in both, in crossing order (the shape that deadlocks two inserters);
and the devices rows those writers refresh once per ``last_seen`` resolution."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from iotcollector.domain.reading import Reading, StatusChange
from iotcollector.storage.factory import open_storage
from iotcollector.storage.postgres import PostgresStorage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.integration

DEVICES = [f"dev-{i:03d}" for i in range(100)]


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql.encode(), params)
        return cur.fetchall() if cur.description else []


def readings(start: datetime, count: int, sensor: str) -> list[Reading]:
    """``count`` readings over every device, one per device and millisecond."""
    return [
        Reading(DEVICES[i % len(DEVICES)], sensor, float(i), "C", start + timedelta(milliseconds=i))
        for i in range(count)
    ]


@pytest.fixture
async def storage(postgres_url: str) -> AsyncIterator[PostgresStorage]:
    # Resolution 0: every batch upserts every device row, so the two transactions meet there.
    store = PostgresStorage(postgres_url, last_seen_resolution=timedelta(0))
    await store.open()
    await store.migrate()
    yield store
    await store.close()


async def test_postgres_writes_two_batches_at_once(storage: PostgresStorage) -> None:
    assert storage.concurrent_writes == 2


async def test_overlapping_batches_both_commit_and_store_each_reading_once(
    postgres_url: str, storage: PostgresStorage
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    head = readings(start, 200, "shared-head")
    tail = readings(start, 200, "shared-tail")
    own_a = readings(start, 20_000, "only-a")
    own_b = readings(start, 20_000, "only-b")
    # a meets tail after b took it, b meets head after a took it: each waits for the other,
    # PostgreSQL cancels one (every run here), which is written again on its connection.
    batch_a = head + own_a + tail
    batch_b = tail[::-1] + own_b + head[::-1]

    result_a, result_b = await asyncio.gather(
        storage.write_batch(batch_a, []), storage.write_batch(batch_b, [])
    )

    shared = len(head) + len(tail)
    assert result_a.stored + result_b.stored == len(own_a) + len(own_b) + shared
    assert result_a.duplicates + result_b.duplicates == shared
    rows = query(
        postgres_url,
        'SELECT sensor_type, count(*), count(DISTINCT (device_id, "timestamp")) FROM iot_data '
        "GROUP BY 1 ORDER BY 1",
    )
    assert rows == [
        ("only-a", 20_000, 20_000),
        ("only-b", 20_000, 20_000),
        ("shared-head", 200, 200),
        ("shared-tail", 200, 200),
    ]
    devices = query(postgres_url, "SELECT device_id, status FROM devices ORDER BY 1")
    assert devices == [(d, "online") for d in DEVICES]


async def test_many_overlapping_batches_at_once_lose_nothing(
    postgres_url: str, storage: PostgresStorage
) -> None:
    """More callers than connections: they queue for the two writers, all commit."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    every = readings(start, 6_000, "t")
    # Each batch redelivers half of the previous one, some of them backwards.
    batches = [every[i * 1_000 : i * 1_000 + 2_000] for i in range(5)]
    batches = [b if i % 2 else b[::-1] for i, b in enumerate(batches)]
    results = await asyncio.gather(*(storage.write_batch(b, []) for b in batches))
    assert sum(r.stored for r in results) == 6_000
    assert sum(r.stored + r.duplicates for r in results) == 10_000
    assert query(postgres_url, "SELECT count(*) FROM iot_data") == [(6_000,)]


async def test_last_seen_is_refreshed_once_per_resolution_and_status_at_once(
    postgres_url: str,
) -> None:
    store = open_storage(postgres_url, device_offline_after=timedelta(seconds=3))
    await store.open()
    await store.migrate()
    start = datetime.now(UTC) - timedelta(minutes=5)

    def seen() -> tuple[datetime, str]:
        ((last_seen, status),) = query(
            postgres_url, "SELECT last_seen, status FROM devices WHERE device_id = 'dev-000'"
        )
        return last_seen, status

    try:
        await store.write_batch(readings(start, 1, "t"), [])
        first, _ = seen()
        # Seen again within a tenth of IOT_DEVICE_OFFLINE_AFTER_S (0.3 s): the row is kept.
        await store.write_batch(readings(start + timedelta(seconds=1), 1, "t"), [])
        assert seen() == (first, "online")
        await asyncio.sleep(0.4)
        await store.write_batch(readings(start + timedelta(seconds=2), 1, "t"), [])
        second, _ = seen()
        assert second > first
        # Marked offline by this collector (the sweep, a Last Will): online with its next reading.
        assert await store.mark_offline(datetime.now(UTC) + timedelta(seconds=1)) == 1
        await store.write_batch(readings(start + timedelta(seconds=3), 1, "t"), [])
        third, status = seen()
        assert (status, third > second) == ("online", True)
        await store.write_batch([], [], [StatusChange("dev-000", "offline", datetime.now(UTC))])
        await store.write_batch(readings(start + timedelta(seconds=4), 1, "t"), [])
        fourth, status = seen()
        assert (status, fourth > third) == ("online", True)
        # By someone else (another replica): this collector, which wrote the row less than the
        # resolution ago, does not look again until it passed.
        query(postgres_url, "UPDATE devices SET status = 'offline' WHERE device_id = 'dev-000'")
        await store.write_batch(readings(start + timedelta(seconds=5), 1, "t"), [])
        assert seen() == (fourth, "offline")
        await asyncio.sleep(0.4)
        await store.write_batch(readings(start + timedelta(seconds=6), 1, "t"), [])
        fifth, status = seen()
        assert (status, fifth > fourth) == ("online", True)
    finally:
        await store.close()
