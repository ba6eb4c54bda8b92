"""Times as exact integer microseconds since the Unix epoch (SQLite's columns, API cursors)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND: Final = timedelta(microseconds=1)


def to_epoch_us(moment: datetime) -> int:
    """Exact integer microseconds since the Unix epoch; ``moment`` must be timezone-aware."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: a timezone is required")
    return (moment - EPOCH) // MICROSECOND


def from_epoch_us(micros: int) -> datetime:
    """The UTC datetime ``micros`` microseconds after the Unix epoch."""
    return EPOCH + timedelta(microseconds=micros)
