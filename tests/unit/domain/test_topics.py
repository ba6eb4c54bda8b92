"""Per-device data topics: the topic's last level names the only device it may carry."""

from __future__ import annotations

from datetime import UTC, datetime

from iotcollector.domain.reading import Reading
from iotcollector.domain.topics import keep_topic_device

T = datetime(2026, 1, 1, tzinfo=UTC)


def _readings(*devices: str) -> list[Reading]:
    return [Reading(d, "temperature", float(i), "C", T) for i, d in enumerate(devices)]


def test_readings_of_the_topics_device_pass_unchanged() -> None:
    readings = _readings("dev-1", "dev-1")
    assert keep_topic_device("iot/data/dev-1", readings) == (readings, None)


def test_readings_for_other_devices_are_one_rejection_naming_them() -> None:
    readings = _readings("dev-1", "a", "b", "c", "d", "dev-1")
    kept, rejection = keep_topic_device("plant/7/data/dev-1", readings)
    assert kept == [readings[0], readings[5]]
    assert rejection is not None
    assert rejection.code == "device_mismatch"
    assert rejection.index is None  # about the whole message
    assert rejection.detail == (
        "4 of 6 readings are for device 'a', 'b', 'c', …, not for 'dev-1' whose topic "
        "'plant/7/data/dev-1' they were published to"
    )


def test_a_topic_without_a_device_id_level_keeps_nothing() -> None:
    kept, rejection = keep_topic_device("iot/data/bad id!", _readings("bad id!"))
    assert kept == []
    assert rejection is not None
    assert rejection.code == "device_mismatch"
    assert "must be the device id" in rejection.detail
