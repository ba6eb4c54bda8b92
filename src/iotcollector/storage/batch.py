"""Pure helpers shared by the storage backends: time encoding, refused rows, device lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from collections.abc import Iterable

    from iotcollector.domain.reading import Reading

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_epoch_us(moment: datetime) -> int:
    """Exact integer microseconds since the Unix epoch; ``moment`` must be timezone-aware."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: a timezone is required")
    return (moment - EPOCH) // _MICROSECOND


def from_epoch_us(micros: int) -> datetime:
    """The UTC datetime ``micros`` microseconds after the Unix epoch."""
    return EPOCH + timedelta(microseconds=micros)


def refused_payload(reading: Reading) -> bytes:
    """The bytes kept in ``iot_rejected`` for a reading the database refused."""
    return orjson.dumps(reading)


def storage_reason(message: str) -> str:
    """The dead-letter reason of a reading the database refused."""
    first_line = message.strip().splitlines()[0] if message.strip() else "refused"
    return f"storage: {first_line}"


def clean_text(text: str) -> str:
    """Text any database accepts: no NUL (PostgreSQL refuses it), no lone surrogates."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text.encode("utf-8", "replace").decode("utf-8")


def distinct_devices(readings: Iterable[Reading]) -> list[str]:
    """The batch's device ids, once each, sorted (a fixed lock order across writers)."""
    return sorted({r.device_id for r in readings})
