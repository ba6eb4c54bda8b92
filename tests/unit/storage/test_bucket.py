"""Averages of aggregates are given to 15 significant digits."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from iotcollector.storage.base import SIGNIFICANT_CEILING, SIGNIFICANT_FLOOR, significant


def test_averages_are_given_to_15_significant_digits() -> None:
    assert significant(52.426899999999996) == 52.4269
    assert significant((0.1 + 0.2) / 2) == 0.15
    assert significant(1e-300) == 1e-300
    assert significant(-123456789.12345678) == -123456789.123457
    assert significant(0.0) == 0.0
    assert significant(1e300) == 1e300
    assert significant(123456789012345.67) == 123456789012346.0


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_at_most_15_significant_digits_and_close(value: float) -> None:
    rounded = significant(value)
    if not SIGNIFICANT_FLOOR <= abs(value) < SIGNIFICANT_CEILING:
        assert rounded == value
        return
    digits = repr(abs(rounded)).split("e")[0].replace(".", "").strip("0")
    assert len(digits) <= 15, (value, rounded)
    assert math.isclose(rounded, value, rel_tol=1e-14)
