"""Partition arithmetic and the error that asks for a partition to be created."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from iotcollector.storage.partitions import align_down


def test_align_down_to_the_epoch_grid() -> None:
    moment = datetime(2026, 12, 2, 13, 45, 12, 345, tzinfo=UTC)
    assert align_down(moment, timedelta(days=1)) == datetime(2026, 12, 2, tzinfo=UTC)
    assert align_down(moment, timedelta(hours=6)) == datetime(2026, 12, 2, 12, tzinfo=UTC)
    assert align_down(moment, timedelta(hours=1)) == datetime(2026, 12, 2, 13, tzinfo=UTC)
    before_1970 = datetime(1969, 12, 31, 23, 30, tzinfo=UTC)
    assert align_down(before_1970, timedelta(days=1)) == datetime(1969, 12, 31, tzinfo=UTC)
