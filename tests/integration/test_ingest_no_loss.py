"""The no-loss promises, end to end: real Mosquitto, real databases, real collector processes."""

from __future__ import annotations

import signal
import threading
import time
from typing import TYPE_CHECKING

import pytest

from support.collector import Collector, publish, query, scalar, wait_for_count
from support.messages import MALFORMED, make_stream
from support.mosquitto import MosquittoServer, mosquitto_available
from support.postgres import PostgresServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]


@pytest.fixture
def collectors(tmp_path: Path) -> Iterator[list[Collector]]:
    started: list[Collector] = []
    yield started
    for c in started:
        c.ensure_stopped()


def _collector(
    started: list[Collector],
    broker: MosquittoServer,
    database_url: str,
    tmp_path: Path,
    client_id: str = "collector-test",
    **env: str,
) -> Collector:
    c = Collector(
        mqtt_url=broker.url,
        database_url=database_url,
        client_id=client_id,
        log_dir=tmp_path,
        env=env,
    )
    started.append(c)
    return c.start()


def _count(url: str, table: str) -> int:
    return scalar(url, f"SELECT count(*) FROM {table}")


def _assert_exactly_once(
    url: str, expected_readings: int, expected_rejected: int, *, redelivered: bool = False
) -> None:
    """Every reading exactly once; every bad message kept (at least once after a redelivery)."""
    got = wait_for_count(url, "iot_data", expected_readings, timeout=90)
    assert got == expected_readings, f"stored {got}, expected {expected_readings}"
    rejected = wait_for_count(url, "iot_rejected", expected_rejected, timeout=30)
    if redelivered:
        assert rejected >= expected_rejected
    else:
        assert rejected == expected_rejected
    time.sleep(0.5)
    assert _count(url, "iot_data") == expected_readings
    distinct = query(
        url,
        "SELECT count(*) FROM (SELECT DISTINCT device_id, sensor_type, timestamp FROM iot_data) d",
    )[0][0]
    assert distinct == expected_readings


def _in_background(target: object, *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_mixed_stream_stored_exactly_once_and_metrics_agree(
    broker: MosquittoServer, database_url: str, collectors: list[Collector], tmp_path: Path
) -> None:
    stream = make_stream(20_000)
    c = _collector(collectors, broker, database_url, tmp_path)
    c.wait_ready()
    publish(broker.url, stream.payloads, publishers=8)
    _assert_exactly_once(database_url, stream.readings, stream.rejected)

    m = c.metrics()
    assert m["iotcollector_mqtt_messages_received_total"] == 20_000
    assert m["iotcollector_readings_stored_total"] == stream.readings
    assert m["iotcollector_readings_duplicate_total"] == 0
    rejected = sum(v for k, v in m.items() if k.startswith("iotcollector_readings_rejected_total"))
    assert rejected == _count(database_url, "iot_rejected") == stream.rejected
    assert m["iotcollector_mqtt_connected"] == 1
    assert m["iotcollector_batch_size_count"] > 0
    assert m["iotcollector_ingest_lag_seconds_count"] == stream.readings
    devices = _count(database_url, "devices")
    assert devices == 50
    reasons = [r[0] for r in query(database_url, "SELECT reason FROM iot_rejected")]
    assert all(isinstance(r, str) and ": " in r for r in reasons)
    assert c.stop() == 0


def test_sigkill_mid_stream_loses_nothing(
    broker: MosquittoServer, database_url: str, collectors: list[Collector], tmp_path: Path
) -> None:
    stream = make_stream(20_000)
    first = _collector(collectors, broker, database_url, tmp_path)
    first.wait_ready()
    pub = _in_background(publish, broker.url, stream.payloads)
    wait_for_count(database_url, "iot_data", stream.readings // 4, timeout=60)
    first.kill()
    second = _collector(collectors, broker, database_url, tmp_path)
    pub.join()
    second.wait_ready()
    _assert_exactly_once(database_url, stream.readings, stream.rejected, redelivered=True)
    assert second.stop() == 0


def test_sigterm_mid_stream_commits_everything_received(
    broker: MosquittoServer, database_url: str, collectors: list[Collector], tmp_path: Path
) -> None:
    stream = make_stream(20_000)
    c = _collector(collectors, broker, database_url, tmp_path)
    c.wait_ready()
    pub = _in_background(publish, broker.url, stream.payloads)
    wait_for_count(database_url, "iot_data", stream.readings // 4, timeout=60)
    started = time.monotonic()
    assert c.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 10
    log = c.log()
    assert "stopped: every message received was committed" in log, log[-2000:]
    pub.join()
    again = _collector(collectors, broker, database_url, tmp_path)
    again.wait_ready()
    _assert_exactly_once(database_url, stream.readings, stream.rejected, redelivered=True)
    assert again.stop() == 0


def test_broker_restart_mid_stream_reconnects_and_loses_nothing(
    broker: MosquittoServer, database_url: str, collectors: list[Collector], tmp_path: Path
) -> None:
    stream = make_stream(20_000)
    half = len(stream.payloads) // 2
    c = _collector(collectors, broker, database_url, tmp_path)
    c.wait_ready()
    publish(broker.url, stream.payloads[:half])
    broker.restart()
    publish(broker.url, stream.payloads[half:])
    _assert_exactly_once(database_url, stream.readings, stream.rejected, redelivered=True)
    m = c.metrics()
    assert m["iotcollector_mqtt_reconnects_total"] >= 1
    assert m["iotcollector_mqtt_connected"] == 1
    assert c.stop() == 0


def test_postgres_outage_keeps_running_bounded_then_loses_nothing(
    broker: MosquittoServer, collectors: list[Collector], tmp_path: Path
) -> None:
    pg = PostgresServer()
    pg.start()
    try:
        url = pg.create_database("outage")
        stream = make_stream(20_000)
        c = _collector(collectors, broker, url, tmp_path, IOT_MQTT_MAX_INFLIGHT="2000")
        c.wait_ready()
        first, rest = stream.payloads[:5000], stream.payloads[5000:]
        publish(broker.url, first)
        wait_for_count(url, "iot_data", 1000, timeout=60)
        pg.stop(mode="immediate")
        pub = _in_background(publish, broker.url, rest)
        statuses = set()
        outage_end = time.monotonic() + 10
        while time.monotonic() < outage_end:
            statuses.add(c.get("/readyz").status_code)
            c.rss()
            time.sleep(0.25)
        assert c.proc is not None
        assert c.proc.poll() is None, "the collector must survive a database outage"
        assert 503 in statuses
        assert c.peak_rss < 250 * 1024 * 1024, f"RSS {c.peak_rss / 1e6:.0f} MB during the outage"
        assert c.metrics()["iotcollector_pipeline_queue_depth"] <= 2000 + 1000
        pg.start()
        pub.join()
        _assert_exactly_once(url, stream.readings, stream.rejected, redelivered=True)
        c.wait_ready()
        assert c.metrics()["iotcollector_db_errors_total{kind=transient}"] >= 1
        assert c.stop() == 0
    finally:
        for col in collectors:
            col.ensure_stopped()
        pg.cleanup()


def test_shared_subscription_splits_work_and_survives_replica_kill(
    broker: MosquittoServer, database_url: str, collectors: list[Collector], tmp_path: Path
) -> None:
    stream = make_stream(30_000)
    group = {"IOT_MQTT_SHARED_GROUP": "collectors"}
    replicas = [
        _collector(collectors, broker, database_url, tmp_path, f"replica-{n}", **group)
        for n in range(3)
    ]
    for r in replicas:
        r.wait_ready()
    pub = _in_background(publish, broker.url, stream.payloads)
    wait_for_count(database_url, "iot_data", stream.readings // 5, timeout=60)
    replicas[1].kill()
    time.sleep(1)
    restarted = _collector(collectors, broker, database_url, tmp_path, "replica-1", **group)
    pub.join()
    restarted.wait_ready()
    _assert_exactly_once(database_url, stream.readings, stream.rejected, redelivered=True)
    for r in (replicas[0], replicas[2], restarted):
        assert r.metrics()["iotcollector_readings_stored_total"] > 0
        assert r.stop() == 0


def test_malformed_inputs_rejected_with_reasons_without_disturbing_others(
    broker: MosquittoServer, database_url: str, collectors: list[Collector], tmp_path: Path
) -> None:
    c = _collector(collectors, broker, database_url, tmp_path)
    c.wait_ready()
    bad = [
        *MALFORMED,
        b"x" * (10 * 1024 * 1024),
        b'{"device_id":"d","sensor_type":"t","value":Infinity}',
        b'{"device_id":"d","sensor_type":"t","value":1e16}',
        b'{"device_id":42,"sensor_type":"t","value":1}',
        b'{"device_id":"d","sensor_type":"t","value":true}',
        b'{"device_id":"d","sensor_type":"t","value":1,"timestamp":"1999-12-31T23:59:59Z"}',
        b'{"device_id":"d","sensor_type":"t","value":1,"timestamp":"not a time"}',
    ]
    good = make_stream(99).payloads[1:]  # 98 valid messages, no malformed one
    expected = make_stream(99)
    interleaved = [p for pair in zip(good, bad * 2, strict=False) for p in pair] + good[
        len(bad) * 2 :
    ]
    publish(broker.url, interleaved, publishers=1)
    _assert_exactly_once(database_url, expected.readings, min(len(good), len(bad) * 2) + 1)
    reasons = {
        str(r[0]).split(":")[0] for r in query(database_url, "SELECT reason FROM iot_rejected")
    }
    assert {
        "invalid_json",
        "invalid_utf8",
        "too_large",
        "invalid_device_id",
        "empty_array",
    } <= reasons
    sizes = [int(r[0]) for r in query(database_url, "SELECT length(payload) FROM iot_rejected")]  # type: ignore[call-overload]
    assert max(sizes) <= 256 * 1024
    assert c.stop() == 0
