"""Capped exponential backoff with jitter: how long to wait before the next attempt."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

# 2**16 times the first delay is past any cap; the exponent stops growing there.
_MAX_DOUBLINGS = 16


class Backoff:
    """Delays that double from ``first_s`` up to ``max_s`` (the cap wins over a larger first
    delay), each drawn from its upper half.

    The jitter (a delay in ``[d/2, d]``) keeps replicas and devices that failed together from
    retrying in step. ``uniform`` draws it (``random.uniform`` unless given).
    """

    def __init__(
        self,
        first_s: float,
        max_s: float,
        *,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if first_s <= 0 or max_s <= 0:
            raise ValueError(f"backoff delays must be positive, not {first_s} and {max_s}")
        self._first = first_s
        self._max = max_s
        self._uniform = uniform
        self.failures = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        delay = min(self._max, self._first * 2 ** min(self.failures, _MAX_DOUBLINGS))
        self.failures += 1
        return self._uniform(delay / 2, delay)

    def reset(self) -> None:
        """An attempt succeeded: the next failure waits ``first_s`` again."""
        self.failures = 0
