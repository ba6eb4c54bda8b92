"""Retention on a running collector: with readings spread over 40 days and
IOT_RETENTION_DAYS=30, the purge removes exactly the older ones while ingest goes on."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import orjson
import psycopg
import pytest

from support.collector import Collector, publish, query, scalar, wait_for_count
from support.mosquitto import MosquittoServer, mosquitto_available

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]

DAY = timedelta(days=1)
OLD_READINGS = 12_000  # more than two purge batches of 5,000
RECENT_READINGS = 3_000
LIVE_MESSAGES = 600
OLD_DEAD_LETTERS = 7


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _arrays(start: datetime, end: datetime, count: int, device: str) -> list[bytes]:
    """``count`` readings evenly spread over ``[start, end)``, 100 per message."""
    step = (end - start) / count
    readings = [
        {
            "device_id": f"{device}-{i % 10}",
            "sensor_type": "temperature",
            "value": i,
            "timestamp": _iso(start + step * i),
        }
        for i in range(count)
    ]
    return [orjson.dumps(readings[i : i + 100]) for i in range(0, count, 100)]


def _insert_old_dead_letters(url: str, when: datetime) -> None:
    rows = [(f"old-{i}".encode(),) for i in range(OLD_DEAD_LETTERS)]
    if url.startswith("sqlite:///"):
        us = int(when.timestamp() * 1_000_000)
        with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30) as lite:
            lite.executemany(
                "INSERT INTO iot_rejected (received_at, topic, payload, reason) "
                f"VALUES ({us}, 'iot/data', ?, 'invalid_json')",
                rows,
            )
        return
    with psycopg.connect(url, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO iot_rejected (received_at, topic, payload, reason) "
            "VALUES (%s, 'iot/data', %s, 'invalid_json')",
            [(when, payload) for (payload,) in rows],
        )


def _older_than(url: str, cutoff: datetime) -> int:
    if url.startswith("sqlite:///"):
        us = int(cutoff.timestamp() * 1_000_000)
        return scalar(url, f"SELECT count(*) FROM iot_data WHERE timestamp < {us}")
    return scalar(url, f"SELECT count(*) FROM iot_data WHERE timestamp < '{cutoff.isoformat()}'")


def _deleted(c: Collector, table: str) -> float:
    return c.metrics().get(f"iotcollector_retention_deleted_total{{table={table}}}", -1.0)


def test_purge_removes_exactly_the_older_readings_while_ingest_goes_on(
    broker: MosquittoServer, database_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    # Nothing within a day of the 30-day boundary: the cutoff moves while the test runs.
    old = _arrays(now - 40 * DAY, now - 31 * DAY, OLD_READINGS, "old")
    recent = _arrays(now - 29 * DAY, now - timedelta(minutes=5), RECENT_READINGS, "recent")
    live = [
        orjson.dumps(
            {
                "device_id": "live",
                "sensor_type": "temperature",
                "value": i,
                "timestamp": _iso(now + timedelta(milliseconds=i)),
            }
        )
        for i in range(LIVE_MESSAGES)
    ]
    c = Collector(
        mqtt_url=broker.url,
        database_url=database_url,
        client_id="retention",
        log_dir=tmp_path,
        env={"IOT_RETENTION_DAYS": "30", "IOT_RETENTION_INTERVAL_S": "1"},
    ).start()
    try:
        c.wait_ready()
        assert c.metrics()["iotcollector_retention_last_success_timestamp_seconds"] == 0
        _insert_old_dead_letters(database_url, now - 35 * DAY)
        # Live ingest at a steady rate all along, while the old and recent ones arrive and the
        # purge (every second) deletes the old ones in batches.
        live_thread = threading.Thread(
            target=publish, args=(broker.url, live), kwargs={"publishers": 1, "rate_per_s": 150}
        )
        live_thread.start()
        publish(broker.url, old + recent + [b"{not json"], publishers=2)
        live_thread.join()

        deadline = time.monotonic() + 60
        while (
            _deleted(c, "iot_data") < OLD_READINGS or _deleted(c, "iot_rejected") < OLD_DEAD_LETTERS
        ) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _deleted(c, "iot_data") == OLD_READINGS
        assert _deleted(c, "iot_rejected") == OLD_DEAD_LETTERS
        kept = RECENT_READINGS + LIVE_MESSAGES
        assert wait_for_count(database_url, "iot_data", kept, timeout=30) == kept
        time.sleep(1.5)  # another purge or more: nothing newer than 30 days goes
        assert scalar(database_url, "SELECT count(*) FROM iot_data") == kept
        assert _older_than(database_url, now - 30 * DAY) == 0
        assert scalar(database_url, "SELECT count(*) FROM iot_data WHERE device_id = 'live'") == (
            LIVE_MESSAGES
        )
        # The fresh dead letter stays; the devices registry is kept whole.
        assert query(database_url, "SELECT payload FROM iot_rejected") == [(b"{not json",)]
        assert scalar(database_url, "SELECT count(*) FROM devices") == 21
        assert c.metrics()["iotcollector_retention_last_success_timestamp_seconds"] > 0
        assert "retention: deleted" in c.log()
        assert c.stop() == 0
    finally:
        c.ensure_stopped()


def test_retention_is_off_by_default(
    broker: MosquittoServer, database_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    c = Collector(
        mqtt_url=broker.url, database_url=database_url, client_id="no-retention", log_dir=tmp_path
    ).start()
    try:
        c.wait_ready()
        publish(broker.url, _arrays(now - 400 * DAY, now - 300 * DAY, 200, "ancient"))
        assert wait_for_count(database_url, "iot_data", 200, timeout=20) == 200
        time.sleep(1.5)
        assert scalar(database_url, "SELECT count(*) FROM iot_data") == 200
        assert _deleted(c, "iot_data") == 0
        assert c.stop() == 0
    finally:
        c.ensure_stopped()
