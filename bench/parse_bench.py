"""Micro-benchmark of parse_message: microseconds per message for the three wire formats.

Run: .venv/bin/python bench/parse_bench.py
"""

from __future__ import annotations

import timeit
from datetime import UTC, datetime

import orjson

from iotcollector.domain.parse import parse_message

RECEIVED_AT = datetime(2026, 11, 28, 0, 5, tzinfo=UTC)

SINGLE = orjson.dumps(
    {
        "device_id": "sim-0042",
        "sensor_type": "temperature",
        "value": 21.57,
        "unit": "C",
        "timestamp": "2026-11-28T00:00:00.123Z",
    }
)
SINGLE_NO_TS = orjson.dumps(
    {"device_id": "sim-0042", "sensor_type": "temperature", "value": 21.57, "unit": "C"}
)
ARRAY_100 = orjson.dumps(
    [
        {
            "device_id": f"sim-{i:04d}",
            "sensor_type": "temperature",
            "value": 20.0 + i / 100,
            "unit": "C",
            "timestamp": 1_764_288_000_123 + i,
        }
        for i in range(100)
    ]
)
MULTI = orjson.dumps(
    {
        "deviceId": "sensor-local",
        "temperature": "27.41",
        "humidity": "51.02",
        "timestamp": "2026-11-28T00:00:00Z",
    }
)
INVALID = b'{"device_id":"bad id!","sensor_type":"temperature","value":1}'


def per_message_us(payload: bytes, number: int) -> float:
    def run() -> object:
        return parse_message(payload, received_at=RECEIVED_AT)

    result = parse_message(payload, received_at=RECEIVED_AT)
    assert result.readings or payload == INVALID, result.rejections
    best = min(timeit.repeat(run, number=number, repeat=5))
    return best / number * 1e6


def main() -> None:
    cases = [
        ("single reading (ISO timestamp)", SINGLE, 200_000, 1),
        ("single reading (no timestamp)", SINGLE_NO_TS, 200_000, 1),
        ("array of 100 (epoch ms)", ARRAY_100, 2_000, 100),
        ("multi-sensor (2 sensors)", MULTI, 200_000, 2),
        ("invalid device_id (rejection)", INVALID, 200_000, 0),
    ]
    for name, payload, number, readings in cases:
        us = per_message_us(payload, number)
        per = f", {us / readings:.3f} us/reading" if readings > 1 else ""
        print(f"{name:34s} {us:8.3f} us/message{per}")


if __name__ == "__main__":
    main()
