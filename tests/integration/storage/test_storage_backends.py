"""Both storage backends against real databases: private PostgreSQL and a SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
import pytest

from iotcollector.domain.epoch import from_epoch_us
from iotcollector.domain.reading import DeadLetter, Reading, StatusChange
from iotcollector.errors import PermanentStorageError, TransientStorageError
from iotcollector.storage.migrations import SchemaTooNewError
from iotcollector.storage.postgres import PostgresStorage
from iotcollector.storage.sqlite import SqliteStorage
from support.postgres import PostgresServer, postgres_available

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from iotcollector.storage.base import Storage

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 28, 0, 0, 0, 123456, tzinfo=UTC)


@dataclass
class Backend:
    name: str
    make: Callable[[], Storage]
    target: str

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run ``sql`` (``%s`` placeholders) outside the storage under test."""
        if self.name == "postgres":
            with psycopg.connect(self.target, autocommit=True) as pg:
                cur = pg.execute(sql.encode(), params)
                return cur.fetchall() if cur.description else []
        with sqlite3.connect(self.target, isolation_level=None) as lite:
            return lite.execute(sql.replace("%s", "?"), params).fetchall()

    def time(self, value: Any) -> datetime:
        return from_epoch_us(value) if isinstance(value, int) else value


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return Backend("postgres", lambda: PostgresStorage(url), url)
    path = str(tmp_path / "sub" / "dir" / "iot.db")  # parent directories are created
    return Backend("sqlite", lambda: SqliteStorage(path), path)


@pytest.fixture
async def storage(backend: Backend) -> AsyncIterator[Storage]:
    store = backend.make()
    await store.open()
    await store.migrate()
    yield store
    await store.close()


def reading(device: str = "dev-1", sensor: str = "temperature", offset_s: int = 0) -> Reading:
    return Reading(device, sensor, 21.5 + offset_s, "C", T0 + timedelta(seconds=offset_s))


# -- migrations ------------------------------------------------------------------------------


VERSIONS = ["0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009"]


async def test_migrations_apply_once(backend: Backend) -> None:
    store = backend.make()
    await store.open()
    try:
        assert await store.migrate() == VERSIONS
        assert await store.migrate() == []
    finally:
        await store.close()
    again = backend.make()
    try:
        assert await again.migrate() == []
    finally:
        await again.close()
    assert sorted(backend.query("SELECT version FROM schema_migrations")) == [
        (v,) for v in VERSIONS
    ]
    assert backend.query("SELECT count(*) FROM iot_data") == [(0,)]


async def test_concurrent_migrations_apply_once(backend: Backend) -> None:
    # Several at once on a new file: SQLite refused the switch to WAL about one run in ten
    # before sqlite._enable_wal retried it.
    stores = [backend.make() for _ in range(8)]
    try:
        results = await asyncio.gather(*(s.migrate() for s in stores))
    finally:
        for s in stores:
            await s.close()
    assert sorted(v for applied in results for v in applied) == VERSIONS


async def test_newer_schema_is_refused(storage: Storage, backend: Backend) -> None:
    now: Any = datetime.now(UTC) if backend.name == "postgres" else 0
    backend.query(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (%s, %s)", ("9999", now)
    )
    with pytest.raises(SchemaTooNewError, match="9999"):
        await storage.migrate()


# -- readings --------------------------------------------------------------------------------


async def test_write_then_redeliver(storage: Storage, backend: Backend) -> None:
    batch = [reading(sensor=s, offset_s=i) for i in range(10) for s in ("temperature", "humidity")]
    first = await storage.write_batch(batch, [])
    assert (first.stored, first.duplicates, first.dead_letters) == (20, 0, 0)
    again = await storage.write_batch(batch, [])
    assert (again.stored, again.duplicates, again.dead_letters) == (0, 20, 0)
    rows = backend.query(
        'SELECT device_id, sensor_type, value, unit, "timestamp" FROM iot_data '
        'ORDER BY "timestamp", sensor_type LIMIT 1'
    )
    device, sensor, value, unit, ts = rows[0]
    assert (device, sensor, value, unit) == ("dev-1", "humidity", 21.5, "C")
    assert backend.time(ts) == T0  # microseconds kept exactly
    assert backend.query("SELECT count(*) FROM iot_data") == [(20,)]


async def test_duplicates_inside_a_batch(storage: Storage) -> None:
    a, b = reading(offset_s=1), reading(offset_s=2)
    result = await storage.write_batch([a, b, a, a], [])
    assert (result.stored, result.duplicates) == (2, 2)


async def test_empty_batch(storage: Storage) -> None:
    result = await storage.write_batch([], [])
    assert (result.stored, result.duplicates, result.dead_letters) == (0, 0, 0)


async def test_dead_letters_are_kept_raw(storage: Storage, backend: Backend) -> None:
    raw = b'\xff\xfe{"device_id": \x00 not json'
    letter = DeadLetter(T0, "iot/data", raw, "invalid_json: unexpected byte")
    result = await storage.write_batch([reading()], [letter])
    assert (result.stored, result.dead_letters) == (1, 1)
    rows = backend.query("SELECT received_at, topic, payload, reason FROM iot_rejected")
    assert len(rows) == 1
    received_at, topic, payload, reason = rows[0]
    assert backend.time(received_at) == T0
    assert (topic, bytes(payload), reason) == ("iot/data", raw, "invalid_json: unexpected byte")


async def test_devices_registry(storage: Storage, backend: Backend) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    await storage.write_batch([reading("dev-a"), reading("dev-b"), reading("dev-a", "co2")], [])
    after = datetime.now(UTC) + timedelta(seconds=1)
    rows = backend.query("SELECT device_id, first_seen, last_seen, status FROM devices ORDER BY 1")
    assert [(r[0], r[3]) for r in rows] == [("dev-a", "online"), ("dev-b", "online")]
    first_seen = backend.time(rows[0][1])
    assert before <= first_seen <= after
    assert backend.time(rows[0][2]) == first_seen

    # Marked offline by someone else, seen again: online, first_seen kept, last_seen moves on
    # (PostgreSQL: once the 1-s last_seen resolution passed, a collector does not look sooner).
    backend.query("UPDATE devices SET status = 'offline' WHERE device_id = 'dev-a'")
    await asyncio.sleep(1.05)
    await storage.write_batch([reading("dev-a", offset_s=5)], [])
    (row,) = backend.query(
        "SELECT first_seen, last_seen, status FROM devices WHERE device_id = 'dev-a'"
    )
    assert backend.time(row[0]) == first_seen
    assert backend.time(row[1]) > first_seen
    assert row[2] == "online"


async def test_presence_statuses_sweep_and_counts(storage: Storage, backend: Backend) -> None:
    now = datetime.now(UTC)
    await storage.write_batch([reading("dev-a"), reading("dev-b")], [])
    # A Last Will for dev-a, an "online" from a device with no reading yet.
    await storage.write_batch(
        [], [], [StatusChange("dev-a", "offline", now), StatusChange("dev-c", "online", now)]
    )
    rows = backend.query("SELECT device_id, status FROM devices ORDER BY 1")
    assert [tuple(r) for r in rows] == [
        ("dev-a", "offline"),
        ("dev-b", "online"),
        ("dev-c", "online"),
    ]
    assert await storage.device_counts() == (2, 1)
    # Nobody silent yet; then everybody seen before "the future" is silent.
    assert await storage.mark_offline(now - timedelta(minutes=5)) == 0
    assert await storage.mark_offline(datetime.now(UTC) + timedelta(seconds=1)) == 2
    assert await storage.device_counts() == (0, 3)
    # A reading brings a device back.
    await storage.write_batch([reading("dev-b", offset_s=9)], [])
    assert await storage.device_counts() == (1, 2)


async def test_a_bad_row_is_isolated(storage: Storage, backend: Backend) -> None:
    too_long = "x" * 60  # bypasses validation: the database refuses it
    good = [reading(offset_s=i) for i in range(8)]
    batch = [*good[:3], reading(too_long), *good[3:6], reading(too_long, offset_s=1), *good[6:]]
    letter = DeadLetter(T0, "iot/data", b"{}", "missing_field: device_id")
    result = await storage.write_batch(batch, [letter])
    assert (result.stored, result.duplicates, result.dead_letters) == (8, 0, 3)
    assert backend.query("SELECT count(*) FROM iot_data") == [(8,)]
    rejected = backend.query(
        "SELECT topic, payload, reason FROM iot_rejected WHERE reason LIKE 'storage:%%' ORDER BY id"
    )
    assert len(rejected) == 2
    topic, payload, reason = rejected[0]
    assert topic == ""
    assert orjson.loads(bytes(payload))["device_id"] == too_long
    assert reason.startswith("storage: ")
    assert [r[0] for r in backend.query("SELECT device_id FROM devices")] == ["dev-1"]
    # The good readings were committed once: a redelivery is all duplicates except the bad.
    again = await storage.write_batch(batch, [])
    assert (again.stored, again.duplicates, again.dead_letters) == (0, 8, 2)


async def test_storage_can_be_closed_twice(backend: Backend) -> None:
    store = backend.make()
    await store.open()
    await store.close()
    await store.close()


# -- transient errors ------------------------------------------------------------------------


@pytest.fixture
def private_postgres() -> AsyncIterator[PostgresServer]:  # type: ignore[misc]
    if not postgres_available():
        pytest.skip("PostgreSQL binaries not found")
    server = PostgresServer()
    server.start()
    yield server
    server.cleanup()


async def _raises_transient_quickly(call: Callable[[], Any], within_s: float = 15.0) -> None:
    began = time.monotonic()
    with pytest.raises(TransientStorageError):
        await call()
    assert time.monotonic() - began < within_s


async def test_postgres_outage_is_transient_and_recovers(private_postgres: PostgresServer) -> None:
    store = PostgresStorage(private_postgres.url, connect_timeout_s=2.0)
    await store.open()
    await store.migrate()
    try:
        assert (await store.write_batch([reading(offset_s=0)], [])).stored == 1
        await store.ping()

        private_postgres.stop("immediate")
        await _raises_transient_quickly(lambda: store.write_batch([reading(offset_s=1)], []))
        await _raises_transient_quickly(lambda: store.write_batch([reading(offset_s=1)], []))
        await _raises_transient_quickly(store.ping)

        private_postgres.start()  # same port, same data directory
        result = await store.write_batch([reading(offset_s=1), reading(offset_s=0)], [])
        assert (result.stored, result.duplicates) == (1, 1)
        await store.ping()

        private_postgres.stop("fast")  # AdminShutdown on the idle connection
        await _raises_transient_quickly(lambda: store.write_batch([reading(offset_s=2)], []))
        private_postgres.start()
        assert (await store.write_batch([reading(offset_s=2)], [])).stored == 1
    finally:
        await store.close()


async def test_postgres_unreachable_at_open() -> None:
    store = PostgresStorage("postgresql://postgres@127.0.0.1:1/iot", connect_timeout_s=2.0)
    await _raises_transient_quickly(store.open)
    await _raises_transient_quickly(store.ping)
    await store.close()


async def test_postgres_missing_schema_is_permanent(postgres_url: str) -> None:
    store = PostgresStorage(postgres_url)
    try:
        with pytest.raises(PermanentStorageError, match="iot_data"):
            await store.write_batch([reading()], [])
    finally:
        await store.close()


async def test_sqlite_locked_is_transient_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "iot.db"
    store = SqliteStorage(str(path), busy_timeout_ms=100)
    await store.migrate()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        await _raises_transient_quickly(lambda: store.write_batch([reading()], []))
        holder.execute("ROLLBACK")
        assert (await store.write_batch([reading()], [])).stored == 1
        await store.ping()
    finally:
        holder.close()
        await store.close()


async def test_cancelled_write_leaves_a_usable_storage(storage: Storage) -> None:
    big = [reading(offset_s=i) for i in range(20_000)]
    task = asyncio.create_task(storage.write_batch(big, []))
    await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Whatever was committed or not, a retry of the same batch lands everything once.
    result = await storage.write_batch(big, [])
    assert result.stored + result.duplicates == len(big)
    result = await storage.write_batch([reading(offset_s=-1)], [])
    assert result.stored == 1
