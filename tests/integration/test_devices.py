"""Devices people already have, end to end: real Mosquitto, both backends, the real CLI.

Each recipe of docs/devices.md is published as those devices publish it and read back through
the API; a message no rule accepts is dead-lettered, then stored exactly once by a replay
after its rule is added; Sparkplug B births, alias-only data, deaths and a restart.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from support.collector import Collector, publish, wait_for_count
from support.sparkplug import BOOLEAN, DOUBLE, INT64, STRING, UINT32, encode, metric

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from support.mosquitto import MosquittoServer

pytestmark = pytest.mark.integration

RULES = """
mappings:
  - topic: "tele/{device_id}/SENSOR"
    timestamp: "$.Time"
    readings:
      - {sensor_type: temperature, value: "$.AM2301.Temperature", unit: C}
      - {sensor_type: humidity, value: "$.AM2301.Humidity", unit: "%"}
  - topic: "shellies/{device_id}/sensor/{sensor_type}"
    payload: value
  - topic: "{device_id}/sensor/{sensor_type}/state"
    payload: value
  - topic: "zigbee2mqtt/{device_id}"
    readings: auto
    exclude: [linkquality]
    units: {battery: "%"}
  - topic: "spBv1.0/#"
    payload: sparkplug_b
"""
ACME_RULE = """
  - topic: "acme/{device_id}"
    readings:
      - {sensor_type: temperature, value: "$.t", unit: C}
"""


def _wait(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def _readings(c: Collector, device_id: str) -> list[dict[str, Any]]:
    body = c.get(f"/api/data?device_id={device_id}&limit=100").json()
    rows: list[dict[str, Any]] = body["data"]
    return sorted(rows, key=lambda r: (r["sensor_type"], r["timestamp"]))


def _summary(c: Collector, device_id: str) -> list[tuple[str, float, str, str]]:
    return [
        (r["sensor_type"], r["value"], r["unit"], r["timestamp"]) for r in _readings(c, device_id)
    ]


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _collector(
    broker: MosquittoServer, database_url: str, tmp_path: Path, rules: str, **env: str
) -> Collector:
    (tmp_path / "rules.yaml").write_text(rules)
    return Collector(
        mqtt_url=broker.url,
        database_url=database_url,
        client_id="devices",
        log_dir=tmp_path,
        env={"IOT_MAPPINGS_FILE": str(tmp_path / "rules.yaml"), **env},
    )


def test_each_recipe_is_stored_right(
    broker: MosquittoServer, database_url: str, tmp_path: Path
) -> None:
    c = _collector(broker, database_url, tmp_path, RULES).start()
    try:
        c.wait_ready()
        then = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        tasmota = (
            f'{{"Time":"{then.replace(tzinfo=None).isoformat()}",'
            '"AM2301":{"Temperature":21.3,"Humidity":45.1},"TempUnit":"C"}'
        )
        publish(broker.url, [tasmota.encode()], publishers=1, topic="tele/tasmota_1A2B3C/SENSOR")
        publish(
            broker.url, [b"21.50"], publishers=1, topic="shellies/shellyht-AB12/sensor/temperature"
        )
        publish(broker.url, [b"45.2"], publishers=1, topic="livingroom/sensor/humidity/state")
        z2m = b'{"battery":97,"humidity":45,"linkquality":120,"temperature":21.3,"voltage":2995}'
        publish(broker.url, [z2m], publishers=1, topic="zigbee2mqtt/kitchen_sensor")
        _wait("recipes stored", lambda: len(_readings(c, "kitchen_sensor")) == 4)
        assert _summary(c, "tasmota_1A2B3C") == [
            ("humidity", 45.1, "%", _iso(then)),
            ("temperature", 21.3, "C", _iso(then)),
        ]
        [(sensor, value, unit, _)] = _summary(c, "shellyht-AB12")
        assert (sensor, value, unit) == ("temperature", 21.5, "C")
        [(sensor, value, unit, _)] = _summary(c, "livingroom")
        assert (sensor, value, unit) == ("humidity", 45.2, "%")
        assert [(s, v, u) for s, v, u, _ in _summary(c, "kitchen_sensor")] == [
            ("battery", 97.0, "%"),
            ("humidity", 45.0, "%"),
            ("temperature", 21.3, "C"),
            ("voltage", 2995.0, "V"),
        ]
        # Hostile payloads on mapped topics: dead-lettered with a reason, the next still lands.
        for payload in (b'{"temperature":"hot"}', b"[" * 3000 + b"]" * 3000, b"x" * 300_000):
            publish(broker.url, [payload], publishers=1, topic="zigbee2mqtt/hostile")
        publish(broker.url, [b"not a number"], publishers=1, topic="shellies/s2/sensor/power")
        publish(broker.url, [b'{"temperature":19}'], publishers=1, topic="zigbee2mqtt/after")
        _wait("after hostile", lambda: len(_readings(c, "after")) == 1)
        reasons = [d["reason"].split(":")[0] for d in c.get("/api/rejected").json()["data"]]
        assert sorted(reasons) == ["invalid_value", "missing_field", "too_deep", "too_large"]
    finally:
        c.stop()


def test_sparkplug_births_alias_data_death_and_restart(
    broker: MosquittoServer, database_url: str, tmp_path: Path
) -> None:
    c = _collector(broker, database_url, tmp_path, RULES).start()
    t0 = int((datetime.now(UTC) - timedelta(minutes=10)).timestamp()) * 1000
    nbirth = encode(
        [
            metric("bdSeq", 0, datatype=INT64),
            metric("Node Control/Rebirth", False, datatype=BOOLEAN),
            metric("Uptime", 12, alias=1, datatype=UINT32),
        ],
        timestamp=t0,
    )
    dbirth = encode(
        [
            metric("Inputs/Temperature", 21.5, alias=10, datatype=DOUBLE, unit="C"),
            metric("Running", True, alias=12, datatype=BOOLEAN),
            metric("Serial", "A-17", alias=13, datatype=STRING),
        ],
        timestamp=t0,
    )

    def ddata(seconds: int, value: float) -> bytes:
        return encode(
            [metric(value=value, alias=10, datatype=DOUBLE, timestamp=t0 + seconds * 1000)],
            timestamp=t0 + seconds * 1000,
        )

    def status() -> str:
        body = c.get("/api/devices/line1:motor-1")
        return str(body.json()["status"]) if body.status_code == 200 else "unknown"

    try:
        c.wait_ready()
        publish(broker.url, [nbirth], publishers=1, topic="spBv1.0/plant/NBIRTH/line1")
        publish(broker.url, [dbirth], publishers=1, topic="spBv1.0/plant/DBIRTH/line1/motor-1")
        publish(
            broker.url, [ddata(1, 22.0)], publishers=1, topic="spBv1.0/plant/DDATA/line1/motor-1"
        )
        _wait("births and data", lambda: len(_readings(c, "line1:motor-1")) == 3)
        at = datetime.fromtimestamp(t0 / 1000, UTC)
        assert _summary(c, "line1") == [("Uptime", 12.0, "", _iso(at))]
        assert _summary(c, "line1:motor-1") == [
            ("Inputs.Temperature", 21.5, "C", _iso(at)),
            ("Inputs.Temperature", 22.0, "C", _iso(at + timedelta(seconds=1))),
            ("Running", 1.0, "", _iso(at)),
        ]
        [dead] = c.get("/api/rejected?reason=unsupported_metric").json()["data"]
        assert "'Serial' (String)" in dead["reason"]
        assert dead["payload_encoding"] == "base64"
        assert status() == "online"
        publish(broker.url, [encode([])], publishers=1, topic="spBv1.0/plant/DDEATH/line1/motor-1")
        _wait("DDEATH -> offline", lambda: status() == "offline")
        assert c.stop() == 0
        c.start()
        c.wait_ready()
        publish(
            broker.url, [ddata(2, 23.0)], publishers=1, topic="spBv1.0/plant/DDATA/line1/motor-1"
        )
        _wait("alias-only data after a restart", lambda: len(_readings(c, "line1:motor-1")) == 4)
        assert ("Inputs.Temperature", 23.0, "C", _iso(at + timedelta(seconds=2))) in _summary(
            c, "line1:motor-1"
        )
        assert c.get("/api/rejected?reason=unknown_alias").json()["data"] == []
    finally:
        c.ensure_stopped()


def _cli(c: Collector, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "iotcollector", "rejected", *args],
        env=c.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_unmatched_then_rule_then_replay_exactly_once(
    broker: MosquittoServer, database_url: str, tmp_path: Path
) -> None:
    env = {"IOT_MQTT_TOPICS": "iot/data,acme/#"}
    c = _collector(broker, database_url, tmp_path, RULES, **env).start()
    try:
        c.wait_ready()
        publish(broker.url, [b'{"t": 21.5}'], publishers=1, topic="acme/boiler-7")
        assert wait_for_count(database_url, "iot_rejected", 1) == 1
        [dead] = c.get("/api/rejected?topic=acme/%23").json()["data"]
        assert dead["reason"].startswith("missing_field:")
        assert dead["payload"] == '{"t": 21.5}'
        assert dead["replayed_at"] is None
        assert c.stop() == 0
        (tmp_path / "rules.yaml").write_text(RULES + ACME_RULE)
        c.start()
        c.wait_ready()
        out = _cli(c, "replay", "--dry-run")
        assert "would replay 1 of 1 pending dead letters: 1 readings" in out
        assert c.get("/api/data?device_id=boiler-7").json()["data"] == []
        out = _cli(c, "replay", "--topic", "acme/#")
        assert "replayed 1 of 1 pending dead letters: 1 readings, 1 stored, 0 duplicates" in out
        out = _cli(c, "replay")
        assert "replayed 0 of 0 pending dead letters: 0 readings, 0 stored" in out
        [reading] = c.get("/api/data?device_id=boiler-7").json()["data"]
        [dead] = c.get("/api/rejected").json()["data"]
        assert (reading["sensor_type"], reading["value"], reading["unit"]) == (
            "temperature",
            21.5,
            "C",
        )
        assert reading["timestamp"] == dead["received_at"]  # the receipt time, not the replay's
        assert dead["replayed_at"] is not None
        assert "replayed" in _cli(c, "list")
        # The API's replay, authenticated like every /api route, finds nothing pending.
        body = httpx.post(
            c.base_url + "/api/rejected/replay", json={"topic": "acme/#"}, timeout=30
        ).json()
        assert (body["examined"], body["stored"]) == (0, 0)
    finally:
        c.ensure_stopped()


def test_rebirth_request_then_replay_of_unknown_aliases(
    broker: MosquittoServer, database_url: str, tmp_path: Path
) -> None:
    import paho.mqtt.client as mqtt  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    from iotcollector.domain.sparkplug import Payload  # noqa: PLC0415

    requests: list[bytes] = []
    node = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="edge-node-line1")
    node.on_message = lambda _c, _u, msg: requests.append(bytes(msg.payload))
    host, port = broker.url.removeprefix("mqtt://").split(":")
    node.connect(host, int(port))
    node.subscribe("spBv1.0/plant/NCMD/line1", qos=0)
    node.loop_start()
    c = _collector(broker, database_url, tmp_path, RULES, IOT_SPARKPLUG_REBIRTH="true").start()
    t0 = int((datetime.now(UTC) - timedelta(minutes=5)).timestamp()) * 1000
    try:
        c.wait_ready()
        ddata = encode([metric(value=7.5, alias=10, datatype=DOUBLE, timestamp=t0)])
        publish(broker.url, [ddata], publishers=1, topic="spBv1.0/plant/DDATA/line1/motor-1")
        _wait("rebirth requested", lambda: bool(requests))
        request: Any = Payload()
        request.ParseFromString(requests[0])
        assert [(m.name, m.boolean_value) for m in request.metrics] == [
            ("Node Control/Rebirth", True)
        ]
        assert wait_for_count(database_url, "iot_rejected", 1) == 1
        [dead] = c.get("/api/rejected?reason=unknown_alias").json()["data"]
        assert "aliases 10 of edge node 'plant/line1'" in dead["reason"]
        # The node answers with its births; the dead letter is then replayable.
        publish(broker.url, [encode([])], publishers=1, topic="spBv1.0/plant/NBIRTH/line1")
        dbirth = encode(
            [metric("Inputs/Temperature", 7.0, alias=10, datatype=DOUBLE)], timestamp=t0 - 1000
        )
        publish(broker.url, [dbirth], publishers=1, topic="spBv1.0/plant/DBIRTH/line1/motor-1")
        _wait("birth stored", lambda: len(_readings(c, "line1:motor-1")) == 1)
        out = _cli(c, "replay", "--reason", "unknown_alias")
        assert "replayed 1 of 1 pending dead letters: 1 readings, 1 stored, 0 duplicates" in out
        at = datetime.fromtimestamp(t0 / 1000, UTC)
        assert ("Inputs.Temperature", 7.5, "", _iso(at)) in _summary(c, "line1:motor-1")
    finally:
        c.ensure_stopped()
        node.loop_stop()
        node.disconnect()
