"""PostgreSQL time partitions (migration 0005) on a real server: created ahead and on demand,
dropped by retention, and the upgrade of an unpartitioned database that holds readings."""

from __future__ import annotations

import asyncio
import itertools
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
from iotcollector.storage.query import POSTGRES, readings_query
from iotcollector.storage.retention import PostgresPurger
from support.postgres import refresh_all_rollups

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)
PARENTS = ("iot_data", "iot_rollup_1m", "iot_rollup_1h")
# Intervals before the current one that get a partition each (migration 0006).
RECENT = 7


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
    # The previous day too: a reading seconds late at midnight needs no on-demand creation.
    expected = [(today + k * DAY, today + (k + 1) * DAY) for k in range(-1, AHEAD + 1)]
    for parent in PARENTS:
        assert partitions(postgres_url, parent) == expected
    assert query(postgres_url, "SELECT relkind FROM pg_class WHERE relname = 'iot_data'") == [
        ("p",)
    ]
    # Migrating again (another replica starting) creates nothing more.
    await storage.migrate()
    assert partitions(postgres_url, "iot_data") == expected


async def test_a_page_of_one_series_is_an_index_only_scan(
    postgres_url: str, storage: PostgresStorage
) -> None:
    """Migration 0009: the reading key covers every column a page returns, so a page of one
    series reads no heap page (a series' rows lie one per heap page among the others')."""
    start = align_down(datetime.now(UTC), DAY) - DAY
    await storage.write_batch(
        [
            Reading(f"d{i % 50}", "temperature", float(i), "C", start + timedelta(seconds=i))
            for i in range(5_000)
        ],
        [],
    )
    query(postgres_url, "VACUUM ANALYZE iot_data")
    sql, params = readings_query(
        ReadingFilter("d7", "temperature", start, start + timedelta(hours=1)), None, 101, POSTGRES
    )
    [(plan,)] = query(postgres_url, f"EXPLAIN (FORMAT JSON) {sql}", tuple(params))
    nodes = [plan[0]["Plan"]]
    kinds = []
    while nodes:
        node = nodes.pop()
        kinds.append(node["Node Type"])
        nodes += node.get("Plans", [])
    assert "Index Only Scan" in kinds, kinds
    assert not {"Seq Scan", "Bitmap Heap Scan", "Index Scan"} & set(kinds), kinds


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
    # The recent ones in the partition of their own day, older ones in their year's coarse one.
    recent_start = align_down(now, DAY) - RECENT * DAY
    assert [name for _, name in rows] == [
        f"iot_data_p{t:%Y%m%d}" if t >= recent_start else f"iot_data_p{t.year}0101_0000_coarse"
        for t in sorted(moments)
    ]
    assert query(postgres_url, "SELECT count(*) FROM iot_rejected") == [(0,)]
    # The rollups counted each reading once.
    refresh_all_rollups(postgres_url)
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
        # The three days of 2010 share one coarse partition (per table), made once.
        assert len(partitions(postgres_url, "iot_data")) == 1 + 1 + AHEAD + 1
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
        # Rollups cover exactly the readings left (the pass refreshed the hours it counted).
        refresh_all_rollups(postgres_url)
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


async def test_one_batch_of_readings_on_5000_days_makes_few_partitions(
    postgres_url: str, storage: PostgresStorage
) -> None:
    now = datetime.now(UTC)
    first = datetime(2000, 1, 1, tzinfo=UTC)
    rng = random.Random(6)
    today = (now - first).days
    # Any 4,992 older days, and the 8 recent ones (the recent window and today).
    days = [
        *rng.sample(range(today - RECENT), 5000 - RECENT - 1),
        *range(today - RECENT, today + 1),
    ]
    moments = sorted(
        min(first + d * DAY + timedelta(seconds=rng.randrange(86_400)), now) for d in days
    )
    assert len(moments) == len(set(moments)) == 5000
    readings = [
        Reading(f"dev-{i % 3}", "temperature", rng.uniform(-40, 40), "C", t)
        for i, t in enumerate(moments)
    ]
    result = await storage.write_batch(readings, [])
    assert (result.stored, result.duplicates) == (5000, 0)
    years = now.year - 2000 + 1
    recent_start = align_down(now, DAY) - RECENT * DAY
    for parent in PARENTS:
        made = partitions(postgres_url, parent)
        # One coarse partition per year, one per recent day, the ones made ahead.
        assert len(made) <= years + RECENT + 1 + AHEAD
        assert all(hi - lo == DAY for lo, hi in made if hi > recent_start)
        # Contiguous: every moment from 2000 on has exactly one partition.
        assert made[0][0] == first
        assert all(a[1] == b[0] for a, b in itertools.pairwise(made))
    assert query(postgres_url, 'SELECT count(*), count(DISTINCT "timestamp") FROM iot_data') == [
        (5000, 5000)
    ]
    again = await storage.write_batch(readings, [])
    assert (again.stored, again.duplicates) == (0, 5000)
    assert query(postgres_url, "SELECT count(*) FROM iot_data") == [(5000,)]
    # The rollups are the raw aggregation of these readings, bucket by bucket.
    refresh_all_rollups(postgres_url)
    for table, width in (("iot_rollup_1m", "1 minute"), ("iot_rollup_1h", "1 hour")):
        rollup = query(
            postgres_url,
            f"SELECT device_id, bucket, count, sum, min, max FROM {table} ORDER BY 1, 2",
        )
        raw = query(
            postgres_url,
            f"SELECT device_id, date_bin('{width}', \"timestamp\", TIMESTAMPTZ '1970-01-01Z'), "
            "count(*), sum(value), min(value), max(value) FROM iot_data "
            "GROUP BY 1, 2 ORDER BY 1, 2",
        )
        assert rollup == raw
    buckets = await storage.aggregate(
        sensor_type="temperature",
        device_id=None,
        start=datetime(2003, 1, 1, tzinfo=UTC),
        end=datetime(2003, 2, 1, tzinfo=UTC),
        bucket=timedelta(hours=1),
    )
    expected = [
        (r.timestamp.replace(minute=0, second=0), r.value)
        for r in readings
        if datetime(2003, 1, 1, tzinfo=UTC) <= r.timestamp < datetime(2003, 2, 1, tzinfo=UTC)
    ]
    assert expected
    assert [(b.bucket_start, b.count, b.min, b.max) for b in buckets] == [
        (start, 1, value, value) for start, value in expected
    ]

    # Retention: coarse partitions wholly older than the horizon are dropped, the one
    # straddling it loses its older rows in batches, with their rollups.
    cutoff = datetime(2010, 6, 15, 12, 34, tzinfo=UTC)
    horizon = align_down(cutoff, timedelta(hours=1))
    purger = PostgresPurger(postgres_url, batch_size=100, pause_s=0)
    try:
        purged = await purger.purge(cutoff)
    finally:
        await purger.close()
    older = sum(1 for r in readings if r.timestamp < horizon)
    assert purged.deleted["iot_data"] == older
    assert len(purged.partitions_dropped) == 3 * 10  # 2000-2009, three tables
    for parent in PARENTS:
        assert partitions(postgres_url, parent)[0] == (
            datetime(2010, 1, 1, tzinfo=UTC),
            datetime(2011, 1, 1, tzinfo=UTC),
        )
    assert query(
        postgres_url, 'SELECT count(*), min("timestamp") >= %s FROM iot_data', (horizon,)
    ) == [(5000 - older, True)]
    for table in ("iot_rollup_1m", "iot_rollup_1h"):
        assert query(
            postgres_url, f"SELECT sum(count), min(bucket) >= %s FROM {table}", (horizon,)
        ) == [(5000 - older, True)]


async def test_coarse_partitions_hold_whole_intervals_across_a_year_end(
    postgres_url: str,
) -> None:
    # 5-hour intervals do not divide a year: the coarse partitions end on interval bounds.
    store = PostgresStorage(postgres_url, partition_interval=timedelta(hours=5))
    await store.open()
    try:
        await store.migrate()
        new_year = datetime(2005, 1, 1, tzinfo=UTC)
        readings = [
            Reading("dev-1", "t", float(h), "", new_year + timedelta(hours=h))
            for h in range(-12, 12)
        ]
        result = await store.write_batch(readings, [])
        assert result.stored == len(readings)
        for parent in PARENTS:
            old = [(lo, hi) for lo, hi in partitions(postgres_url, parent) if lo.year < 2006]
            assert len(old) == 2
            assert all(
                (b - datetime(1970, 1, 1, tzinfo=UTC)) % timedelta(hours=5) == timedelta(0)
                for p in old
                for b in p
            )
    finally:
        await store.close()


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
        assert await store.migrate() == ["0005", "0006", "0007", "0008", "0009"]
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
        assert [(b.bucket_start, b.count, b.min, b.max) for b in buckets] == [r[:4] for r in raw]
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
