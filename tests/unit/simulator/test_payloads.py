"""Payload shapes are what the collector's parser accepts, and malformed ones are refused."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import orjson
import pytest

from iotcollector.domain.parse import parse_message
from iotcollector.simulator.payloads import (
    MALFORMED_KINDS,
    TimestampFormatter,
    encode_multi,
    encode_single,
    malformed_payload,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _parse(payload: bytes) -> tuple[int, int]:
    result = parse_message(payload, received_at=NOW)
    return len(result.readings), len(result.rejections)


def test_timestamp_formatter_is_iso_utc_with_microseconds() -> None:
    fmt = TimestampFormatter()
    ts = int(datetime(2026, 11, 28, 0, 0, 1, 123456, tzinfo=UTC).timestamp() * 1_000_000)
    assert fmt(ts) == "2026-11-28T00:00:01.123456Z"
    assert fmt(ts + 1_000_000) == "2026-11-28T00:00:02.123456Z"
    assert datetime.fromisoformat(fmt(ts)) == datetime(2026, 11, 28, 0, 0, 1, 123456, tzinfo=UTC)


def test_single_and_multi_parse() -> None:
    single = encode_single("sim-0001", 0, 21.57, "2026-11-28T11:59:00.000001Z")
    assert orjson.loads(single)["sensor_type"] == "temperature"
    assert _parse(single) == (1, 0)
    multi = encode_multi("sim-0001", [21.5, 50.25, 1013.2, 415.0, 3.012], "2026-11-28T11:59:00Z")
    body = orjson.loads(multi)
    assert body["deviceId"] == "sim-0001"
    assert body["temperature"] == "21.50"
    result = parse_message(multi, received_at=NOW)
    assert {(r.sensor_type, r.unit) for r in result.readings} == {
        ("temperature", "C"),
        ("humidity", "%"),
        ("pressure", "hPa"),
        ("co2", "ppm"),
        ("battery", "V"),
    }


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_every_malformed_kind_is_rejected_whole(kind: str) -> None:
    rng = random.Random(1)
    for _ in range(20):
        payload = malformed_payload(kind, "sim-0001", "2026-11-28T11:59:00Z", rng)
        readings, rejections = _parse(payload)
        assert readings == 0, payload
        assert rejections >= 1, payload


def test_unknown_malformed_kind() -> None:
    with pytest.raises(ValueError, match="unknown"):
        malformed_payload("nope", "d", "2026-11-28T11:59:00Z", random.Random(0))
