"""Device physics: deterministic with a seed, within physical ranges, plausibly related."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from iotcollector.simulator.models import RANGES, SENSORS, device_id_width, make_fleet

DAY_S = 86_400.0
T0 = 1_795_000_000.0  # a fixed instant: nothing in the models reads a clock


def _series(seed: int, device: int, sensor: int, samples: int, step_s: float) -> list[float]:
    fleet = make_fleet(device + 1, seed)
    noise = random.Random(seed)
    return [fleet[device].read(sensor, T0 + i * step_s, noise) for i in range(samples)]


def test_same_seed_same_values() -> None:
    for sensor in range(len(SENSORS)):
        assert _series(7, 3, sensor, 200, 60) == _series(7, 3, sensor, 200, 60)


def test_other_seed_other_values() -> None:
    assert _series(7, 3, 0, 50, 60) != _series(8, 3, 0, 50, 60)


def test_device_traits_do_not_depend_on_fleet_size() -> None:
    small, large = make_fleet(5, seed=1), make_fleet(5000, seed=1)
    for a, b in zip(small, large, strict=False):
        assert (a.base_temp, a.base_pressure, a.battery) == (
            b.base_temp,
            b.base_pressure,
            b.battery,
        )


def test_device_ids_are_valid_and_distinct() -> None:
    fleet = make_fleet(100_000, seed=0)
    assert fleet[42].device_id == "sim-00042"
    assert len({d.device_id for d in fleet}) == 100_000
    assert make_fleet(10, seed=0)[3].device_id == "sim-0003"
    assert device_id_width(1) == 4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_value_within_physical_range(seed: int) -> None:
    fleet = make_fleet(50, seed)
    noise = random.Random(seed)
    for step in range(3 * 24 * 12):  # three days every 5 minutes
        t = T0 + step * 300.0
        for device in fleet[::7]:
            for sensor, name in enumerate(SENSORS):
                low, high = RANGES[name]
                assert low <= device.read(sensor, t, noise) <= high


def test_temperature_has_a_daily_cycle() -> None:
    hourly = _series(3, 0, 0, 24 * 10, 3600.0)  # ten days, hourly
    by_hour = [statistics.mean(hourly[h::24]) for h in range(24)]
    assert max(by_hour) - min(by_hour) > 3.0  # amplitude 2-6 C each way
    # The warmest hour is about 12 hours away from the coldest.
    warm, cold = by_hour.index(max(by_hour)), by_hour.index(min(by_hour))
    assert 9 <= abs(warm - cold) <= 15


def test_humidity_falls_when_temperature_rises() -> None:
    fleet = make_fleet(1, seed=5)
    noise = random.Random(5)
    temps, hums = [], []
    for i in range(24 * 6):
        t = T0 + i * 600.0
        temps.append(fleet[0].read(0, t, noise))
        hums.append(fleet[0].read(1, t, noise))
    assert statistics.correlation(temps, hums) < -0.8


def test_pressure_drifts_slowly() -> None:
    values = _series(2, 0, 2, 24 * 60, 60.0)  # a day, every minute
    steps = [abs(b - a) for a, b in itertools.pairwise(values)]
    assert max(steps) < 2.0  # hPa per minute: no jumps
    assert max(values) - min(values) > 0.3  # but it does move


def test_co2_rises_in_working_hours() -> None:
    fleet = make_fleet(1, seed=4)
    device = fleet[0]
    noise = random.Random(4)
    day = [t for t in (T0 + i * 600.0 for i in range(6 * 48)) if 11 <= device.local_hour(t) <= 15]
    night = [t for t in (T0 + i * 600.0 for i in range(6 * 48)) if device.local_hour(t) < 5]
    assert statistics.mean(device.read(3, t, noise) for t in day) > 600
    assert statistics.mean(device.read(3, t, noise) for t in night) < 480


def test_battery_drains() -> None:
    values = _series(1, 0, 4, 50_000, 10.0)
    assert statistics.mean(values[:1000]) - statistics.mean(values[-1000:]) > 0.05
    assert all(2.0 <= v <= 3.3 for v in values)


def test_fleet_size_limits() -> None:
    with pytest.raises(ValueError, match="devices"):
        make_fleet(0, seed=0)
