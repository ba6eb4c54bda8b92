"""Capped exponential backoff with jitter."""

from __future__ import annotations

import pytest

from iotcollector.backoff import Backoff


def _upper(low: float, high: float) -> float:
    assert low == high / 2
    return high


def test_doubles_up_to_the_cap_then_stays() -> None:
    backoff = Backoff(0.5, 4.0, uniform=_upper)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.failures == 6


def test_reset_starts_again_from_the_first_delay() -> None:
    backoff = Backoff(0.2, 30.0, uniform=_upper)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.2


def test_jitter_stays_in_the_upper_half() -> None:
    backoff = Backoff(1.0, 8.0)
    for expected in (1.0, 2.0, 4.0, 8.0, 8.0):
        delay = backoff.next_delay()
        assert expected / 2 <= delay <= expected


def test_many_failures_do_not_overflow() -> None:
    backoff = Backoff(0.1, 30.0, uniform=_upper)
    backoff.failures = 10_000
    assert backoff.next_delay() == 30.0


def test_the_cap_wins_over_a_larger_first_delay() -> None:
    backoff = Backoff(0.2, 0.1, uniform=_upper)  # e.g. IOT_MQTT_RECONNECT_MAX_S=0.1
    assert [backoff.next_delay() for _ in range(3)] == [0.1, 0.1, 0.1]


@pytest.mark.parametrize(("first", "cap"), [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0)])
def test_bad_bounds_are_refused(first: float, cap: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(first, cap)
