"""A deterministic stream of MQTT payloads mixing every accepted form and some bad ones."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

MALFORMED: tuple[bytes, ...] = (
    b"{not json",
    b"\xff\xfe\x00garbage",
    b'{"device_id":"d1","sensor_type":"t","value":"NaN"}',
    b'{"device_id":"' + b"x" * 51 + b'","sensor_type":"t","value":1}',
    b"[]",
    b'{"device_id":"d1","sensor_type":"t","value":1e400}',
    b'{"device_id":"d1; DROP TABLE iot_data;--","sensor_type":"t","value":1}',
    b'{"device_id":"d1","sensor_type":"t","value":[1]}',
    b"[" * 5000 + b"]" * 5000,
    b'"just a string"',
)


@dataclass
class Stream:
    payloads: list[bytes]
    readings: int
    rejected: int


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_stream(count: int, *, devices: int = 50, start: datetime | None = None) -> Stream:
    """``count`` messages: singles, arrays (one with a bad item), multi-sensor, 1% malformed.

    Every valid reading has a distinct (device_id, sensor_type, timestamp).
    """
    base = start or datetime.now(UTC) - timedelta(hours=1)
    payloads: list[bytes] = []
    readings = rejected = 0
    for i in range(count):
        ts = base + timedelta(milliseconds=i)
        device = f"dev-{i % devices:04d}"
        kind = i % 100
        if kind == 0:
            payloads.append(MALFORMED[(i // 100) % len(MALFORMED)])
            rejected += 1
        elif kind < 60:
            payloads.append(
                orjson.dumps(
                    {
                        "device_id": device,
                        "sensor_type": "temperature",
                        "value": round(20 + (i % 1000) / 100, 2),
                        "unit": "C",
                        "timestamp": _iso(ts),
                    }
                )
            )
            readings += 1
        elif kind < 80:
            items: list[dict[str, object]] = [
                {
                    "device_id": device,
                    "sensor_type": f"s{k}",
                    "value": i + k,
                    "timestamp": int(ts.timestamp() * 1000),
                }
                for k in range(5)
            ]
            if kind == 60:
                items[2]["value"] = "abc"
                rejected += 1
                readings -= 1
            readings += 5
            payloads.append(orjson.dumps(items))
        else:
            payloads.append(
                orjson.dumps(
                    {
                        "deviceId": device,
                        "temperature": f"{20 + i % 7}.5",
                        "humidity": 40 + i % 30,
                        "timestamp": _iso(ts),
                    }
                )
            )
            readings += 2
    return Stream(payloads, readings, rejected)
