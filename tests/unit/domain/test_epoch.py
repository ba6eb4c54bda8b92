"""Times as integer microseconds since the Unix epoch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotcollector.domain.epoch import from_epoch_us, to_epoch_us


def test_epoch_is_zero() -> None:
    assert to_epoch_us(datetime(1970, 1, 1, tzinfo=UTC)) == 0


def test_known_value() -> None:
    moment = datetime(2026, 11, 28, 0, 0, 0, 123456, tzinfo=UTC)
    assert to_epoch_us(moment) == 1_795_824_000_123_456
    assert from_epoch_us(1_795_824_000_123_456) == moment


def test_offsets_are_converted_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    assert to_epoch_us(datetime(2026, 1, 1, 1, 0, tzinfo=paris)) == to_epoch_us(
        datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    )


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        to_epoch_us(datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test


def test_result_is_utc() -> None:
    assert from_epoch_us(0).tzinfo is UTC


@given(
    st.datetimes(
        min_value=datetime(1900, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
        max_value=datetime(9999, 12, 30),  # noqa: DTZ001
        timezones=st.just(UTC),
    )
)
def test_round_trip_is_exact(moment: datetime) -> None:
    assert from_epoch_us(to_epoch_us(moment)) == moment
