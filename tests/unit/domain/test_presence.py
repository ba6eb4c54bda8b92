"""Presence messages on iot/status/<device_id>."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from iotcollector.domain.presence import parse_status
from iotcollector.domain.reading import Rejection, StatusChange

NOW = datetime(2026, 11, 28, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "status"),
    [(b"online", "online"), (b"OFFLINE", "offline"), (b' "online"\n', "online")],
)
def test_online_and_offline(payload: bytes, status: str) -> None:
    assert parse_status("iot/status/sim-0001", payload, received_at=NOW) == StatusChange(
        "sim-0001", status, NOW
    )


def test_an_empty_retained_message_clears_nothing() -> None:
    assert parse_status("iot/status/sim-0001", b"", received_at=NOW) is None


@pytest.mark.parametrize(
    ("topic", "payload", "code"),
    [
        ("iot/status/sim-0001", b"asleep", "invalid_status"),
        ("iot/status/sim-0001", b"\xff\xfe", "invalid_status"),
        ("iot/status/" + "x" * 51, b"online", "invalid_device_id"),
        ("iot/status/a b", b"online", "invalid_device_id"),
    ],
)
def test_bad_status_messages_are_rejections(topic: str, payload: bytes, code: str) -> None:
    result = parse_status(topic, payload, received_at=NOW)
    assert isinstance(result, Rejection)
    assert result.code == code
    assert result.detail
