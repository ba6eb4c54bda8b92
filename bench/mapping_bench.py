"""Micro-benchmark of mapped topics: microseconds per message, parsing only (no I/O).

Run: .venv/bin/python -m bench.mapping_bench

Compares the default format with the recipes of docs/devices.md: what loading rules costs a
message on a topic no rule matches, a Zigbee2MQTT-like object (``readings: auto``), a Tasmota
message (JSONPath), a bare value, and Sparkplug B alias-only DDATA of 10 metrics.
"""

from __future__ import annotations

import sys
import timeit
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from iotcollector.domain.mapping import apply_rule, compile_mappings
from iotcollector.domain.parse import parse_message
from iotcollector.pipeline.sparkplug_host import SparkplugHost
from support.sparkplug import DOUBLE, encode, metric

if TYPE_CHECKING:
    from collections.abc import Callable

RECEIVED_AT = datetime(2026, 12, 2, 12, 0, 5, tzinfo=UTC)
RULES = compile_mappings(
    yaml.safe_load(
        """
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
    timestamp: "$.last_seen"
    readings: auto
    exclude: [linkquality]
  - topic: "spBv1.0/#"
    payload: sparkplug_b
"""
    )
)
SINGLE = orjson.dumps(
    {
        "device_id": "sim-0042",
        "sensor_type": "temperature",
        "value": 21.57,
        "unit": "C",
        "timestamp": "2026-12-02T12:00:00.123Z",
    }
)
ZIGBEE = (
    b'{"battery":97,"humidity":45.2,"linkquality":120,"pressure":1013.1,"temperature":21.3,'
    b'"voltage":2995,"update":{"state":"idle"},"last_seen":"2026-12-02T12:00:00.123Z"}'
)
TASMOTA = (
    b'{"Time":"2026-12-02T12:00:00","AM2301":{"Temperature":21.3,"Humidity":45.1},"TempUnit":"C"}'
)
NAMES = [f"Inputs/Metric {i}" for i in range(10)]
T0 = 1796212800000


def _mapped(topic: str, payload: bytes) -> Callable[[], object]:
    def run() -> object:
        match = RULES.match(topic)
        assert match is not None
        return apply_rule(match, payload, received_at=RECEIVED_AT)

    return run


def _sparkplug() -> Callable[[], object]:
    host = SparkplugHost()
    host.receive(
        "spBv1.0/g/DBIRTH/n1/d1",
        encode([metric(n, 1.0, alias=a, datatype=DOUBLE) for a, n in enumerate(NAMES)]),
        received_at=RECEIVED_AT,
    )
    ddata = encode(
        [metric(value=20.0 + a, alias=a, datatype=DOUBLE, timestamp=T0) for a in range(10)]
    )

    def run() -> object:
        out = host.receive("spBv1.0/g/DDATA/n1/d1", ddata, received_at=RECEIVED_AT)
        assert len(out.readings) == 10, out.rejections
        return out

    return run


def _default(with_rules: bool) -> Callable[[], object]:
    def run() -> object:
        if with_rules:
            assert RULES.match("iot/data") is None
        return parse_message(SINGLE, received_at=RECEIVED_AT)

    return run


def main() -> None:
    cases: list[tuple[str, Callable[[], object], int, int]] = [
        ("default single reading, no rules", _default(with_rules=False), 100_000, 1),
        ("default single reading, 5 rules loaded", _default(with_rules=True), 100_000, 1),
        ("Zigbee2MQTT auto (5 sensors)", _mapped("zigbee2mqtt/kitchen", ZIGBEE), 50_000, 5),
        ("Tasmota JSONPath (2 sensors)", _mapped("tele/tasmota_1/SENSOR", TASMOTA), 50_000, 2),
        ("Shelly bare value", _mapped("shellies/s1/sensor/temperature", b"21.50"), 100_000, 1),
        ("Sparkplug B DDATA (10 metrics)", _sparkplug(), 20_000, 10),
    ]
    for name, run, number, readings in cases:
        run()
        us = min(timeit.repeat(run, number=number, repeat=5)) / number * 1e6
        print(f"{name:40s} {us:8.3f} us/message, {us / readings:.3f} us/reading")


if __name__ == "__main__":
    main()
