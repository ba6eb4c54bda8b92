"""PostgreSQL time partitions (migration 0005) on a real server: created ahead and on demand,
dropped by retention, and the upgrade of an unpartitioned database that holds readings."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from iotcollector.domain.reading import Reading
from iotcollector.storage.base import ReadingFilter
from iotcollector.storage.migrations import load_migrations
from iotcollector.storage.partitions import AHEAD, align_down
from iotcollector.storage.postgres import PostgresStorage
from iotcollector.storage.retention import PostgresPurger

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)
PARENTS = ("iot_data", "iot_rollup_1m", "iot_rollup_1h")


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql.encode(), params)
        return cur.fetchall() if cur.description else []


def partitions(url: str, parent: str) -> list[tuple[datetime, datetime]]:
    rows = query(
        url, "SELECT lower, upper FROM iot_partitions WHERE parent = %s ORDER BY lower", (parent,)
    )
    return [(lo, hi) for lo, hi in rows]


@pytest.fixture
async def storage(postgres_url: str) -> AsyncIterator[PostgresStorage]:
    store = PostgresStorage(postgres_url)
    await store.open()
    await store.migrate()
    yield store
    await store.close()


async def test_partitions_exist_after_migrate(postgres_url: str, storage: PostgresStorage) -> None:
    today = align_down(datetime.now(UTC), DAY)
    expected = [(today + k * DAY, today + (k + 1) * DAY) for k in range(AHEAD + 1)]
    for parent in PARENTS:
        assert partitions(postgres_url, parent) == expected
    assert query(postgres_url, "SELECT relkind FROM pg_class WHERE relname = 'iot_data'") == [
        ("p",)
    ]
    # Migrating again (another replica starting) creates nothing more.
    await storage.migrate()
    assert partitions(postgres_url, "iot_data") == expected


async def test_readings_of_any_accepted_date_are_stored_once(
    postgres_url: str, storage: PostgresStorage
) -> None:
    now = datetime.now(UTC)
    moments = [now, now - 40 * DAY, now - 400 * DAY, datetime(2001, 3, 4, 5, 6, 7, tzinfo=UTC)]
    readings = [Reading("dev-1", "temperature", float(i), "C", t) for i, t in enumerate(moments)]
    first = await storage.write_batch(readings, [])
    assert (first.stored, first.duplicates, first.dead_letters) == (4, 0, 0)
    # Redelivered, alone and mixed with a new one: stored once.
    again = await storage.write_batch([*readings, Reading("dev-2", "t", 1.0, "", now)], [])
    assert (again.stored, again.duplicates) == (1, 4)
    rows = query(
        postgres_url,
        "SELECT \"timestamp\", tableoid::regclass::text FROM iot_data WHERE device_id = 'dev-1' "
        'ORDER BY "timestamp"',
    )
    assert [t for t, _ in rows] == sorted(moments)
    # Each in the partition of its own day.
    assert [name for _, name in rows] == [
        f"iot_data_p{t.strftime('%Y%m%d')}" for t in sorted(moments)
    ]
    assert query(postgres_url, "SELECT count(*) FROM iot_rejected") == [(0,)]
    # The rollups counted each reading once.
    assert query(postgres_url, "SELECT sum(count) FROM iot_rollup_1m") == [(5,)]
    assert query(postgres_url, "SELECT sum(count) FROM iot_rollup_1h") == [(5,)]


async def test_several_writers_create_the_same_partitions_at_once(postgres_url: str) -> None:
    stores = [PostgresStorage(postgres_url) for _ in range(3)]
    try:
        for store in stores:
            await store.open()
        await stores[0].migrate()
        for store in stores[1:]:
            await store.migrate()
        old = datetime(2010, 1, 1, tzinfo=UTC)
        batches = [
            [Reading(f"w{w}", "t", 1.0, "", old + timedelta(hours=h)) for h in range(0, 72, 5)]
            for w in range(3)
        ]
        results = await asyncio.gather(
            *(s.write_batch(b, []) for s, b in zip(stores, batches, strict=True))
        )
        assert [r.stored for r in results] == [len(b) for b in batches]
        assert len(partitions(postgres_url, "iot_data")) == AHEAD + 1 + 3
    finally:
        for store in stores:
            await store.close()


async def test_retention_drops_whole_old_partitions_and_keeps_the_rest(
    postgres_url: str, storage: PostgresStorage
) -> None:
    now = datetime.now(UTC)
    ages_days = [400, 41, 40, 31, 29, 1, 0]
    readings = [
        Reading("dev-1", "temperature", float(a), "C", now - a * DAY - timedelta(minutes=m))
        for a in ages_days
        for m in (0, 30)
    ]
    await storage.write_batch(readings, [])
    before = {p: partitions(postgres_url, p) for p in PARENTS}
    cutoff = now - 30 * DAY
    purger = PostgresPurger(postgres_url, batch_size=100, pause_s=0)
    try:
        result = await purger.purge(cutoff)
        assert result.deleted["iot_data"] == sum(
            1 for r in readings if r.timestamp < align_down(cutoff, DAY)
        )
        horizon = align_down(cutoff, timedelta(hours=1))
        for parent in PARENTS:
            kept = partitions(postgres_url, parent)
            assert kept == [p for p in before[parent] if p[1] > horizon]
        assert all(name.startswith("iot_") for name in result.partitions_dropped)
        # The partition straddling the horizon is kept whole; nothing newer went.
        oldest = query(postgres_url, 'SELECT min("timestamp") FROM iot_data')[0][0]
        assert align_down(cutoff, DAY) <= oldest
        assert query(postgres_url, "SELECT count(*) FROM iot_data WHERE value <= 29") == [(6,)]
        # Rollups cover exactly the readings left.
        assert query(postgres_url, "SELECT sum(count) FROM iot_rollup_1h") == query(
            postgres_url, "SELECT count(*) FROM iot_data"
        )
        # A second pass has nothing left to drop; no detached table is left behind.
        again = await purger.purge(cutoff)
        assert (again.deleted["iot_data"], again.partitions_dropped) == (0, [])
        leftovers = query(
            postgres_url,
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE 'iot\\_%%\\_p%%' "
            "AND NOT relispartition",
        )
        assert leftovers == []
        # A late reading for a dropped day is stored again (its partition made anew).
        late = await storage.write_batch([Reading("dev-9", "t", 1.0, "", now - 40 * DAY)], [])
        assert late.stored == 1
    finally:
        await purger.close()


def _apply_unpartitioned_schema(url: str) -> None:
    """The migrations before 0005: an installation of the unpartitioned schema."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            b"CREATE TABLE schema_migrations "
            b"(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in load_migrations("postgres"):
            if migration.version >= "0005":
                break
            with conn.transaction():
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version) VALUES (%s)", (migration.version,)
                )


async def test_upgrade_from_the_unpartitioned_table_keeps_every_row(postgres_url: str) -> None:
    _apply_unpartitioned_schema(postgres_url)
    rng = random.Random(13)
    t0 = datetime(2026, 10, 1, 3, 4, 5, tzinfo=UTC)
    rows = [
        (
            f"dev-{i % 7}",
            ("temperature", "humidity")[i % 2],
            rng.uniform(-50, 50),
            "C",
            t0 + timedelta(seconds=37 * i),
        )
        for i in range(5000)
    ]
    with psycopg.connect(postgres_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            'INSERT INTO iot_data (device_id, sensor_type, value, unit, "timestamp") '
            "VALUES (%s, %s, %s, %s, %s)",
            rows,
        )
    table = 'SELECT id, device_id, sensor_type, value, unit, "timestamp", received_at FROM iot_data'
    before = query(postgres_url, f"{table} ORDER BY id")

    store = PostgresStorage(postgres_url)
    await store.open()
    try:
        assert await store.migrate() == ["0005"]
        assert query(postgres_url, f"{table} ORDER BY id") == before
        assert query(
            postgres_url, "SELECT name FROM iot_partitions WHERE name LIKE '%%legacy' ORDER BY 1"
        ) == [("iot_data_legacy",), ("iot_rollup_1h_legacy",), ("iot_rollup_1m_legacy",)]
        # The API answers as before: pages newest first, aggregates as the raw rows give them.
        page = await store.read_readings(
            ReadingFilter("dev-3", "humidity"), before=None, limit=10_000
        )
        expected = sorted(
            (r for r in before if r[1] == "dev-3" and r[2] == "humidity"),
            key=lambda r: r[5],
            reverse=True,
        )
        assert [(p.id, p.value, p.timestamp) for p in page] == [
            (r[0], r[3], r[5]) for r in expected
        ]
        buckets = await store.aggregate(
            sensor_type="temperature",
            device_id=None,
            start=t0,
            end=t0 + DAY,
            bucket=timedelta(hours=1),
        )
        raw = query(
            postgres_url,
            "SELECT date_bin('1 hour', \"timestamp\", TIMESTAMPTZ '1970-01-01Z'), count(*), "
            "min(value), max(value), avg(value) FROM iot_data WHERE sensor_type = 'temperature' "
            'AND "timestamp" >= %s AND "timestamp" < %s GROUP BY 1 ORDER BY 1',
            (t0, t0 + DAY),
        )
        assert [(b.start, b.count, b.min, b.max) for b in buckets] == [r[:4] for r in raw]
        assert [b.avg for b in buckets] == pytest.approx([r[4] for r in raw], rel=1e-12)
        # New readings get new ids after the old ones, in new partitions or the legacy one.
        result = await store.write_batch(
            [
                Reading("dev-1", "temperature", 1.0, "C", datetime.now(UTC)),
                Reading("dev-1", "temperature", 2.0, "C", t0 + timedelta(seconds=1)),
            ],
            [],
        )
        assert result.stored == 2
        new_ids = query(postgres_url, "SELECT id FROM iot_data WHERE value IN (1.0, 2.0)")
        assert min(i for (i,) in new_ids) > max(r[0] for r in before)
    finally:
        await store.close()
