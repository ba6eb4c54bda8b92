"""Payload bytes in the three accepted shapes (README, "Messages"), and malformed ones."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import TYPE_CHECKING, Final

import orjson

from iotcollector.simulator.models import DECIMALS, SENSORS, UNITS

if TYPE_CHECKING:
    import random
    from collections.abc import Sequence


class Format(StrEnum):
    SINGLE = "single"  # one reading per message
    BATCH = "batch"  # a JSON array of a device's readings
    MULTI = "multi"  # one device's sensors at once: {"deviceId":..., "temperature":"27.41"}


class TimestampFormatter:
    """Epoch microseconds → ``2026-11-28T00:00:00.123456Z``, caching the per-second prefix."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, ts_us: int) -> str:
        second, micros = divmod(ts_us, 1_000_000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{micros:06d}Z"


def reading_object(device_id: str, sensor: int, value: float, timestamp: str) -> dict[str, object]:
    return {
        "device_id": device_id,
        "sensor_type": SENSORS[sensor],
        "value": value,
        "unit": UNITS[sensor],
        "timestamp": timestamp,
    }


def encode_single(device_id: str, sensor: int, value: float, timestamp: str) -> bytes:
    return orjson.dumps(reading_object(device_id, sensor, value, timestamp))


def encode_batch(items: Sequence[dict[str, object]]) -> bytes:
    return orjson.dumps(items)


def encode_multi(device_id: str, values: Sequence[float], timestamp: str) -> bytes:
    """The older devices' form: numeric strings, as in the README's example."""
    body: dict[str, object] = {"deviceId": device_id}
    for sensor, value in enumerate(values):
        body[SENSORS[sensor]] = f"{value:.{DECIMALS[sensor]}f}"
    body["timestamp"] = timestamp
    return orjson.dumps(body)


# Each malformed kind is rejected whole by the collector's parser (no reading survives):
# tests/unit/simulator/test_payloads.py checks every one against parse_message.
MALFORMED_KINDS: Final[tuple[str, ...]] = (
    "truncated_json",
    "not_utf8",
    "non_numeric_value",
    "nan_value",
    "missing_sensor_type",
    "bad_device_id",
    "timestamp_before_2000",
    "empty_array",
    "wrong_type",
)


def malformed_payload(kind: str, device_id: str, timestamp: str, rng: random.Random) -> bytes:
    """A payload of the given kind that looks like what a buggy device would send."""
    good = reading_object(device_id, 0, round(rng.uniform(15, 25), 2), timestamp)
    if kind == "truncated_json":
        raw = orjson.dumps(good)
        return raw[: rng.randint(1, len(raw) - 2)]
    if kind == "not_utf8":
        return b'{"device_id":"\xff\xfe' + device_id.encode() + b'"}'
    if kind == "non_numeric_value":
        good["value"] = "warm"
    elif kind == "nan_value":
        good["value"] = "NaN"
    elif kind == "missing_sensor_type":
        del good["sensor_type"]
    elif kind == "bad_device_id":
        good["device_id"] = device_id + " !"
    elif kind == "timestamp_before_2000":
        good["timestamp"] = "1999-12-31T23:59:59Z"
    elif kind == "empty_array":
        return b"[]"
    elif kind == "wrong_type":
        return orjson.dumps(device_id)
    else:
        raise ValueError(f"unknown malformed kind {kind!r}")
    return orjson.dumps(good)
