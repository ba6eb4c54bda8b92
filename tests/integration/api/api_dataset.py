"""The API tests' data set, helpers and module-scoped fixtures (import the fixtures).

A running ``iot-collector serve`` per backend with a known data set, shared by a module:
25,000 readings: 5 devices x 2 sensors x 2,500 instants one second apart (ten readings per
instant, so pagination must break timestamp ties by id). The first 20,000 arrive over MQTT
(arrays of 100), the last 5,000 over HTTP (POSTs of 1,000).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import orjson
import pytest

from support.collector import Collector, publish, wait_for_count
from support.mosquitto import MosquittoServer, mosquitto_available

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from support.postgres import PostgresServer

_database_numbers = itertools.count(1)

API_KEY = "integration-key-0123456789"
SECOND_KEY = "second-key-abcdefghijklmnop"
FILE_KEY = "file-key-zyxwvutsrqponmlk"
DEVICES = tuple(f"api-dev-{n}" for n in range(5))
SENSORS = ("humidity", "temperature")
INSTANTS = 2500
MQTT_READINGS = 20_000
OFFLINE_AFTER_S = 2


@dataclass(frozen=True)
class Expected:
    device_id: str
    sensor_type: str
    value: float
    unit: str
    timestamp: datetime


@dataclass
class Api:
    collector: Collector
    client: httpx.Client
    database_url: str
    broker: MosquittoServer
    readings: list[Expected]
    start: datetime

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return self.client.get(path, **kwargs)  # type: ignore[arg-type]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def make_readings(start: datetime) -> list[Expected]:
    readings = []
    for i in range(INSTANTS * len(DEVICES) * len(SENSORS)):
        instant, combo = divmod(i, len(DEVICES) * len(SENSORS))
        device = DEVICES[combo // len(SENSORS)]
        sensor = SENSORS[combo % len(SENSORS)]
        value = round(20 + 10 * math.sin(i / 7), 3)
        unit = "%" if sensor == "humidity" else "C"
        readings.append(Expected(device, sensor, value, unit, start + timedelta(seconds=instant)))
    return readings


def as_json(r: Expected) -> dict[str, object]:
    return {
        "device_id": r.device_id,
        "sensor_type": r.sensor_type,
        "value": r.value,
        "unit": r.unit,
        "timestamp": iso(r.timestamp),
    }


@pytest.fixture(scope="module", name="api_broker")
def _api_broker() -> Iterator[MosquittoServer]:
    if not mosquitto_available():
        pytest.skip("mosquitto is not installed")
    server = MosquittoServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(scope="module", name="api_database_url", params=["sqlite", "postgres"])
def _api_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('api-sqlite')}/iot.db"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"api_{next(_database_numbers)}"
    url = server.create_database(name)
    yield url
    if server.running:
        server.drop_database(name)


def start_collector(
    broker: MosquittoServer, database_url: str, log_dir: Path, **env: str
) -> Collector:
    keys_file = log_dir / "api-keys.txt"
    keys_file.write_text(f"# test keys\n{FILE_KEY}\n")
    collector = Collector(
        mqtt_url=broker.url,
        database_url=database_url,
        client_id=f"api-test-{log_dir.name}",
        log_dir=log_dir,
        env={
            "IOT_API_KEYS": f"{API_KEY},{SECOND_KEY}",
            "IOT_API_KEYS_FILE": str(keys_file),
            "IOT_API_AUTH": "enabled",
            "IOT_DEVICE_OFFLINE_AFTER_S": str(OFFLINE_AFTER_S),
            "IOT_BATCH_MAX_DELAY_MS": "10",
            **env,
        },
    )
    collector.start()
    collector.wait_ready()
    return collector


@pytest.fixture(scope="module", name="api")
def _api(
    api_broker: MosquittoServer, api_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    log_dir = tmp_path_factory.mktemp("api-collector")
    collector = start_collector(api_broker, api_database_url, log_dir)
    client = httpx.Client(
        base_url=collector.base_url,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    )
    try:
        start = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
        readings = make_readings(start)
        by_mqtt, by_http = readings[:MQTT_READINGS], readings[MQTT_READINGS:]
        payloads = [
            orjson.dumps([as_json(r) for r in by_mqtt[i : i + 100]])
            for i in range(0, len(by_mqtt), 100)
        ]
        publish(api_broker.url, payloads, publishers=2)
        for i in range(0, len(by_http), 1000):
            response = client.post("/api/data", json=[as_json(r) for r in by_http[i : i + 1000]])
            assert response.status_code == 201, response.text
            assert response.json() == {"stored": 1000, "duplicates": 0}
        got = wait_for_count(api_database_url, "iot_data", len(readings), timeout=60)
        assert got == len(readings)
        yield Api(collector, client, api_database_url, api_broker, readings, start)
    finally:
        client.close()
        collector.ensure_stopped()
