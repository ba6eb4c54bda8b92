"""What both backends do with a batch: bisection, settlement, refused rows, clean text."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from iotcollector.domain.reading import DeadLetter, Reading
from iotcollector.storage.base import WriteResult
from iotcollector.storage.batch import (
    Bisection,
    clean_text,
    distinct_devices,
    refused_payload,
    settle,
    storage_reason,
)

TS = datetime(2026, 1, 1, tzinfo=UTC)


def _readings(count: int) -> list[Reading]:
    return [Reading(f"d{i}", "t", float(i), "", TS) for i in range(count)]


def _bisect(readings: list[Reading], bad: set[int]) -> tuple[Bisection, list[int]]:
    """Drive a bisection as a backend does: a chunk holding a bad reading is refused."""
    bisection = Bisection(readings)
    tried: list[int] = []
    while (chunk := bisection.next_chunk()) is not None:
        tried.append(len(chunk))
        if any(int(r.value) in bad for r in chunk):
            bisection.refused(chunk, f"bad row\nDETAIL: {len(chunk)}")
        else:
            bisection.landed(len(chunk))
    return bisection, tried


def test_bisection_isolates_each_bad_reading_and_lands_the_rest() -> None:
    readings = _readings(10)
    bisection, tried = _bisect(readings, {3, 7})
    assert bisection.stored == 8
    assert bisection.rejected == [
        (readings[3], "storage: bad row"),
        (readings[7], "storage: bad row"),
    ]
    assert tried[0] == 10


def test_bisection_tries_chunks_in_batch_order() -> None:
    readings = _readings(8)
    bisection = Bisection(readings)
    first = bisection.next_chunk()
    assert first is not None
    bisection.refused(first, "x")
    assert bisection.next_chunk() == readings[:4]
    assert bisection.next_chunk() == readings[4:]
    assert bisection.next_chunk() is None


def test_bisection_of_nothing_tries_nothing() -> None:
    assert Bisection([]).next_chunk() is None


def test_bisection_when_every_reading_is_bad() -> None:
    readings = _readings(5)
    bisection, _ = _bisect(readings, set(range(5)))
    assert bisection.stored == 0
    assert [r for r, _ in bisection.rejected] == readings


def test_settle_counts_stored_duplicates_and_dead_letters() -> None:
    readings = _readings(4)
    dead = DeadLetter(topic="iot/\x00data", payload=b"{", reason="invalid_json", received_at=TS)
    now = datetime(2026, 1, 2, tzinfo=UTC)
    done = settle(readings, [dead], stored=2, refused=[(readings[1], "storage: x\x00")], now=now)
    assert done.accepted == [readings[0], readings[2], readings[3]]
    assert done.result == WriteResult(stored=2, duplicates=1, dead_letters=2)
    assert done.rejected == [
        (TS, "iot/\ufffddata", b"{", "invalid_json"),
        (now, "", refused_payload(readings[1]), "storage: x\ufffd"),
    ]


def test_settle_without_refusals_accepts_the_batch_as_is() -> None:
    readings = _readings(3)
    done = settle(readings, [], stored=3, refused=[], now=TS)
    assert done.accepted is readings
    assert done.rejected == []
    assert done.result == WriteResult(stored=3, duplicates=0, dead_letters=0)


def test_refused_payload_is_the_reading_as_json() -> None:
    reading = Reading("dev", "temperature", 21.5, "C", datetime(2026, 1, 1, tzinfo=UTC))
    assert orjson.loads(refused_payload(reading)) == {
        "device_id": "dev",
        "sensor_type": "temperature",
        "value": 21.5,
        "unit": "C",
        "timestamp": "2026-01-01T00:00:00+00:00",
    }


def test_storage_reason() -> None:
    assert storage_reason("value too long\nDETAIL: x") == "storage: value too long"
    assert storage_reason("") == "storage: refused"


def test_clean_text() -> None:
    assert clean_text("a\x00b") == "a\ufffdb"
    assert clean_text("caf\udce9") == "caf?"
    assert clean_text("ok") == "ok"


def test_distinct_devices_sorted_once() -> None:
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    readings = [Reading(d, "t", 1.0, "", ts) for d in ("b", "a", "b", "c", "a")]
    assert distinct_devices(readings) == ["a", "b", "c"]
