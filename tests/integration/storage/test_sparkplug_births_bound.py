"""Kept Sparkplug births on real databases: the table is bounded and a restart or a replay
reads only the newest births, up to the host's memory bound, whatever the table holds."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import psycopg
import pytest

from iotcollector.domain.reading import SparkplugBirth
from iotcollector.domain.sparkplug import SparkplugCode
from iotcollector.pipeline.sparkplug_host import SparkplugHost, restore_births
from iotcollector.storage.postgres import PostgresStorage
from iotcollector.storage.sqlite import SqliteStorage
from support.sparkplug import DOUBLE, encode, metric

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from iotcollector.storage.base import StoredBirth

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
KEPT = 150  # more than two pages of restore_births
BOUND = KEPT + KEPT // 10  # trimmed once per KEPT // 10 births
# An edge node below costs six entries (four, and one per alias); a device two more.
CAP = 60


class Births:
    """The storage under test, counting the births it hands out."""

    def __init__(self, store: SqliteStorage | PostgresStorage, count: Callable[[], int]) -> None:
        self.store = store
        self.count = count
        self.handed = 0

    async def load_births(self, *, before: StoredBirth | None, limit: int) -> list[StoredBirth]:
        page = await self.store.load_births(before=before, limit=limit)
        self.handed += len(page)
        return page


@pytest.fixture(params=["sqlite", "postgres"])
async def births(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Births]:
    store: SqliteStorage | PostgresStorage
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        store = PostgresStorage(url, kept_births=KEPT)

        def count() -> int:
            with psycopg.connect(url, autocommit=True) as pg:
                row = pg.execute("SELECT count(*) FROM sparkplug_births").fetchone()
                assert row is not None
                return int(row[0])
    else:
        path = str(tmp_path / "iot.db")
        store = SqliteStorage(path, kept_births=KEPT)

        def count() -> int:
            with sqlite3.connect(path) as lite:
                return int(lite.execute("SELECT count(*) FROM sparkplug_births").fetchone()[0])

    await store.open()
    await store.migrate()
    yield Births(store, count)
    await store.close()


def _nbirth(node: int) -> bytes:
    return encode(
        [
            metric(f"n{node}/a", 1.0, alias=1, datatype=DOUBLE),
            metric(f"n{node}/b", 2.0, alias=2, datatype=DOUBLE),
        ]
    )


async def _born(births: Births, nodes: range, *, per_batch: int = 7) -> None:
    """Edge nodes born one second apart (a later node is newer), stored in batches."""
    live = SparkplugHost()
    statuses: list[SparkplugBirth] = []
    for n in nodes:
        out = live.receive(
            f"spBv1.0/g/NBIRTH/n{n}", _nbirth(n), received_at=T0 + timedelta(seconds=n)
        )
        statuses += [s for s in out.statuses if isinstance(s, SparkplugBirth)]
        if len(statuses) == per_batch:
            await births.store.write_batch([], [], statuses)
            statuses = []
            assert births.count() <= BOUND
    await births.store.write_batch([], [], statuses)


def _decodes(host: SparkplugHost, node: int) -> bool:
    data = encode([metric(value=5.0, alias=2, datatype=DOUBLE)])
    out = host.receive(f"spBv1.0/g/NDATA/n{node}", data, received_at=T0 + timedelta(hours=1))
    if out.rejections:
        assert [r.code for r in out.rejections] == [SparkplugCode.UNKNOWN_ALIAS]
        return False
    assert [(r.sensor_type, r.value) for r in out.readings] == [(f"n{node}.b", 5.0)]
    return True


async def test_kept_births_are_bounded_newest_kept(births: Births) -> None:
    await _born(births, range(2 * KEPT))
    kept = births.count()
    assert KEPT <= kept <= BOUND
    host = SparkplugHost()
    await restore_births(host, births)
    assert births.handed == kept
    assert [n for n in range(2 * KEPT) if _decodes(host, n)] == list(
        range(2 * KEPT - kept, 2 * KEPT)
    )


async def test_restart_reads_only_the_newest_births_up_to_the_memory_bound(
    births: Births,
) -> None:
    await _born(births, range(KEPT))
    newest = KEPT - 1
    dbirth = encode([metric("speed", 3.0, alias=3, datatype=DOUBLE)])
    live = SparkplugHost()
    live.receive(f"spBv1.0/g/NBIRTH/n{newest}", _nbirth(newest), received_at=T0)
    out = live.receive(
        f"spBv1.0/g/DBIRTH/n{newest}/d", dbirth, received_at=T0 + timedelta(seconds=KEPT)
    )
    await births.store.write_batch([], [], out.statuses)

    host = SparkplugHost(max_entries=CAP)
    await restore_births(host, births)
    assert host.entries <= CAP
    assert births.handed == 64  # one page: the memory was full within it
    # The newest node (nine entries with its device) and the eight next (six each).
    assert [n for n in range(KEPT) if _decodes(host, n)] == list(range(KEPT - 9, KEPT))
    ddata = encode([metric(value=4.0, alias=3, datatype=DOUBLE)])
    data = host.receive(f"spBv1.0/g/DDATA/n{newest}/d", ddata, received_at=T0)
    assert [(r.device_id, r.sensor_type, r.value) for r in data.readings] == [
        (f"n{newest}:d", "speed", 4.0)
    ]
    # After the restart the live order holds: a new birth forgets the oldest restored node.
    host.receive("spBv1.0/g/NBIRTH/new", _nbirth(0), received_at=T0 + timedelta(hours=2))
    assert host.entries <= CAP
    assert not _decodes(host, KEPT - 9)
    assert _decodes(host, KEPT - 8)
