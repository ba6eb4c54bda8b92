"""Averages of aggregates are given to 15 significant digits."""

from __future__ import annotations

from iotcollector.storage.base import significant


def test_averages_are_given_to_15_significant_digits() -> None:
    assert significant(52.426899999999996) == 52.4269
    assert significant((0.1 + 0.2) / 2) == 0.15
    assert significant(1e-300) == 1e-300
    assert significant(-123456789.12345678) == -123456789.123457
