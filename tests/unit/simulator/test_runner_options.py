"""Rates, bounds and validation of the simulator's options."""

from __future__ import annotations

import pytest

from iotcollector.simulator.runner import SimulatorOptions


@pytest.mark.parametrize(
    ("rate", "total", "expected"),
    [
        (None, None, 10.0),  # default: one reading per second per device
        (2.0, None, 20.0),
        (2.0, 5.0, 5.0),  # the total caps the per-device rate
        (None, 5000.0, 5000.0),
        (0.0, None, 0.0),  # unthrottled
        (None, 0.0, 0.0),
        (0.0, 100.0, 100.0),
    ],
)
def test_readings_per_s(rate: float | None, total: float | None, expected: float) -> None:
    options = SimulatorOptions(devices=10, rate=rate, total_rate=total)
    assert options.readings_per_s() == expected


def test_connections() -> None:
    assert SimulatorOptions(devices=10, connections=None).connection_count() == 10
    assert SimulatorOptions(devices=10, connections=4).connection_count() == 4
    assert SimulatorOptions(devices=3, connections=4).connection_count() == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"devices": 0}, "--devices"),
        ({"devices": 100_001}, "--devices"),
        ({"qos": 3}, "--qos"),
        ({"count": 0}, "--count"),
        ({"duration_s": 0.0}, "--duration"),
        ({"malformed": 1.5}, "--malformed"),
        ({"out_of_order": -0.1}, "--out-of-order"),
        ({"batch_size": 0}, "--batch-size"),
        ({"inflight": 70_000}, "--inflight"),
        ({"rate": -1.0}, "rates"),
    ],
)
def test_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulatorOptions(**kwargs).validate()  # type: ignore[arg-type]
