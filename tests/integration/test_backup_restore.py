"""``iot-collector backup`` / ``restore`` on both backends, with a collector ingesting over MQTT:
a round trip restores every row identically, and a backup taken under load is consistent."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import orjson
import pytest

from support.collector import Collector, publish, query, scalar, wait_for_count
from support.messages import make_stream
from support.mosquitto import MosquittoServer, mosquitto_available

if TYPE_CHECKING:
    from support.postgres import PostgresServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]

TABLES = {
    "iot_data": "SELECT * FROM iot_data ORDER BY id",
    "iot_rejected": "SELECT * FROM iot_rejected ORDER BY id",
    "devices": "SELECT * FROM devices ORDER BY device_id",
}


class Db:
    """One test database that can be wiped (dropped and made again, empty)."""

    def __init__(self, kind: str, tmp_path: Path, server: PostgresServer | None) -> None:
        self.kind = kind
        self._tmp = tmp_path
        self._server = server
        self._names = 0
        self.url = self.fresh()

    def fresh(self) -> str:
        """A new, empty database's URL."""
        self._names += 1
        if self._server is None:
            return f"sqlite:///{self._tmp}/iot-{self._names}.db"
        return self._server.create_database(f"backup_{os.getpid()}_{id(self)}_{self._names}")

    def wipe(self) -> None:
        if self._server is None:
            path = Path(self.url.removeprefix("sqlite:///"))
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        else:
            name = urlsplit(self.url).path.lstrip("/")
            self._server.drop_database(name)
            self._server.create_database(name)

    def rows(self, url: str | None = None) -> dict[str, list[tuple[object, ...]]]:
        return {table: query(url or self.url, sql) for table, sql in TABLES.items()}


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    server = request.getfixturevalue("postgres_server") if request.param == "postgres" else None
    return Db(request.param, tmp_path, server)


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOT_")}
    env["IOT_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "iotcollector", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _collector(broker: MosquittoServer, url: str, tmp_path: Path, name: str) -> Collector:
    return Collector(mqtt_url=broker.url, database_url=url, client_id=name, log_dir=tmp_path)


def test_round_trip_restores_every_row_identically(
    broker: MosquittoServer, db: Db, tmp_path: Path
) -> None:
    stream = make_stream(3000)
    c = _collector(broker, db.url, tmp_path, "backup-1").start()
    try:
        c.wait_ready()
        publish(broker.url, stream.payloads)
        assert wait_for_count(db.url, "iot_data", stream.readings) == stream.readings
        assert wait_for_count(db.url, "iot_rejected", stream.rejected) == stream.rejected
        assert c.stop() == 0
    finally:
        c.ensure_stopped()
    before = db.rows()
    assert all(before.values())

    backup_file = tmp_path / "backups" / "iot.backup"
    result = cli(db.url, "backup", "--output", str(backup_file))
    assert result.returncode == 0, result.stderr
    assert backup_file.stat().st_mode & 0o077 == 0  # readable by its owner only
    assert not list(backup_file.parent.glob("*.partial"))
    # An existing file is not replaced without --force: exit 1, a clear message.
    written = backup_file.read_bytes()
    result = cli(db.url, "backup", "--output", str(backup_file))
    assert result.returncode == 1
    assert "exists" in result.stderr
    assert "--force" in result.stderr
    assert backup_file.read_bytes() == written
    result = cli(db.url, "backup", "--output", str(backup_file), "--force")
    assert result.returncode == 0, result.stderr

    db.wipe()
    result = cli(db.url, "restore", "--input", str(backup_file))
    assert result.returncode == 0, result.stderr
    assert db.rows() == before

    # A database with data is not overwritten without --force: exit 1, a clear message.
    result = cli(db.url, "restore", "--input", str(backup_file))
    assert result.returncode == 1
    assert "not empty" in result.stderr
    assert "--force" in result.stderr
    result = cli(db.url, "restore", "--input", str(backup_file), "--force")
    assert result.returncode == 0, result.stderr
    assert db.rows() == before

    # The restored database takes new readings: identities continue after the restored ones.
    c = _collector(broker, db.url, tmp_path, "backup-2").start()
    try:
        c.wait_ready()
        more = make_stream(200, start=datetime.now(UTC))
        publish(broker.url, more.payloads)
        total = stream.readings + more.readings
        assert wait_for_count(db.url, "iot_data", total) == total
        assert c.stop() == 0
    finally:
        c.ensure_stopped()
    after = db.rows()
    assert after["iot_data"][: len(before["iot_data"])] == before["iot_data"]


def test_restore_refuses_a_file_of_the_other_kind_or_a_missing_one(db: Db, tmp_path: Path) -> None:
    assert cli(db.url, "migrate").returncode == 0
    bogus = tmp_path / "bogus.backup"
    bogus.write_bytes(b"not a backup at all")
    result = cli(db.url, "restore", "--input", str(bogus))
    assert result.returncode == 1
    assert "is not a" in result.stderr
    result = cli(db.url, "restore", "--input", str(tmp_path / "absent.backup"))
    assert result.returncode == 1
    assert "cannot read" in result.stderr


SENSORS = 10


def _load_messages(count: int) -> list[bytes]:
    """Each message: one device's 10 sensors at one instant (stored in one batch, or not)."""
    base = datetime.now(UTC) - timedelta(hours=1)
    return [
        orjson.dumps(
            [
                {
                    "device_id": f"load-{i % 25:02d}",
                    "sensor_type": f"s{j}",
                    "value": i + j / 10,
                    "timestamp": (base + timedelta(milliseconds=i)).isoformat(),
                }
                for j in range(SENSORS)
            ]
        )
        for i in range(count)
    ]


def test_backup_under_load_restores_a_consistent_state(
    broker: MosquittoServer, db: Db, tmp_path: Path
) -> None:
    messages = _load_messages(12_000)
    total = len(messages) * SENSORS
    c = _collector(broker, db.url, tmp_path, "backup-load").start()
    try:
        c.wait_ready()
        # Paced (about 6 s in all), so that ingest still runs while the backup is taken.
        publisher = threading.Thread(
            target=publish, args=(broker.url, messages), kwargs={"rate_per_s": 2_000}
        )
        publisher.start()
        # Back up in the middle of ingest.
        assert wait_for_count(db.url, "iot_data", total // 5, timeout=60) >= total // 5
        backup_file = tmp_path / "load.backup"
        result = cli(db.url, "backup", "--output", str(backup_file))
        assert result.returncode == 0, result.stderr
        ingest_went_on = scalar(db.url, "SELECT count(*) FROM iot_data")
        publisher.join()
        assert wait_for_count(db.url, "iot_data", total, timeout=90) == total
        assert c.stop() == 0
    finally:
        c.ensure_stopped()

    restored = db.fresh()
    result = cli(restored, "restore", "--input", str(backup_file))
    assert result.returncode == 0, result.stderr
    count = scalar(restored, "SELECT count(*) FROM iot_data")
    assert 0 < count <= ingest_went_on
    assert count < total, "the backup was meant to be taken in the middle of ingest"
    # No partial batch: every message's 10 readings are all there or all absent...
    groups = query(
        restored,
        "SELECT device_id, timestamp, count(*) FROM iot_data GROUP BY device_id, timestamp",
    )
    assert {n for _, _, n in groups} == {SENSORS}
    assert len(groups) * SENSORS == count
    # ...and the registry was committed with them: each device with readings is registered.
    with_readings = {r[0] for r in query(restored, "SELECT DISTINCT device_id FROM iot_data")}
    registered = {r[0] for r in query(restored, "SELECT device_id FROM devices")}
    assert with_readings == registered
    # The backed-up rows are exactly the source's rows with the same ids.
    ids = [r[0] for r in query(restored, "SELECT id FROM iot_data ORDER BY id")]
    source = query(
        db.url, f"SELECT * FROM iot_data WHERE id IN ({','.join(map(str, ids))}) ORDER BY id"
    )
    assert query(restored, "SELECT * FROM iot_data ORDER BY id") == source
