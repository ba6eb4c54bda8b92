"""Simulated devices: five sensors with plausible, deterministic physics.

Every device has the same sensors (:data:`SENSORS`). Its fixed traits (climate, time zone,
battery) are drawn from the seed when the fleet is made; its readings are a function of time
plus a little state (slow weather, drifting pressure, a draining battery) and noise drawn from
one shared random generator. The same seed and the same sequence of calls give the same
values, whatever the wall clock says: nothing here reads a clock.

* temperature (C): a daily cycle peaking mid-afternoon local time, plus slow "weather"
  (a mean-reverting random walk) and sensor noise;
* humidity (%): inversely related to temperature (warmer air, lower relative humidity);
* pressure (hPa): drifts slowly around the device's base (mean-reverting random walk);
* co2 (ppm): outdoor baseline plus an occupancy bump in local working hours;
* battery (V): drains a little with every transmission (a 2xAA-style 3.0-3.3 V pack).
"""

from __future__ import annotations

import math
import random
from typing import Final

SENSORS: Final[tuple[str, ...]] = ("temperature", "humidity", "pressure", "co2", "battery")
UNITS: Final[tuple[str, ...]] = ("C", "%", "hPa", "ppm", "V")
# Decimal places per sensor, as a real device would report them.
DECIMALS: Final[tuple[int, ...]] = (2, 2, 2, 1, 3)

# Physical bounds every value stays within (the unit tests check them).
RANGES: Final[dict[str, tuple[float, float]]] = {
    "temperature": (-20.0, 50.0),
    "humidity": (5.0, 100.0),
    "pressure": (950.0, 1060.0),
    "co2": (380.0, 2500.0),
    "battery": (2.0, 3.3),
}

_DAY_S: Final = 86_400.0
_TWO_PI: Final = 2.0 * math.pi
_BATTERY_DRAIN_PER_READING: Final = 2e-6  # V; 100k transmissions cost 0.2 V
_BATTERY_EMPTY: Final = 2.0


class Device:
    """One simulated device: fixed traits, slow state, and a reading per sensor and time."""

    __slots__ = (
        "base_co2",
        "base_humidity",
        "base_pressure",
        "base_temp",
        "battery",
        "device_id",
        "index",
        "last_t",
        "pressure",
        "readings_sent",
        "temp_amplitude",
        "tz_offset_s",
        "weather",
    )

    def __init__(self, index: int, device_id: str, traits: random.Random) -> None:
        self.index = index
        self.device_id = device_id
        self.base_temp = traits.uniform(12.0, 24.0)
        self.temp_amplitude = traits.uniform(2.0, 6.0)
        self.tz_offset_s = traits.uniform(-12.0, 12.0) * 3600.0
        self.base_humidity = traits.uniform(40.0, 65.0)
        self.base_pressure = traits.uniform(1000.0, 1025.0)
        self.base_co2 = traits.uniform(400.0, 440.0)
        self.battery = traits.uniform(3.0, 3.3)
        self.pressure = self.base_pressure
        self.weather = 0.0
        self.last_t: float | None = None
        self.readings_sent = 0

    def _advance(self, t: float, noise: random.Random) -> None:
        """Move the slow state (weather, pressure) forward to time ``t`` (seconds)."""
        last = self.last_t
        if last is not None and t > last:
            dt_h = min(t - last, 6 * 3600.0) / 3600.0
            keep = math.exp(-dt_h / 12.0)  # both revert to their means over ~half a day
            spread = math.sqrt(max(1e-9, 1.0 - keep * keep))
            self.weather = self.weather * keep + noise.gauss(0.0, 1.5) * spread
            self.pressure = (
                self.base_pressure
                + (self.pressure - self.base_pressure) * keep
                + noise.gauss(0.0, 4.0) * spread
            )
        if last is None or t > last:
            self.last_t = t

    def local_hour(self, t: float) -> float:
        return ((t + self.tz_offset_s) % _DAY_S) / 3600.0

    def temperature(self, t: float, noise: random.Random) -> float:
        cycle = math.sin(_TWO_PI * (self.local_hour(t) - 9.0) / 24.0)  # peak at 15:00
        return self.base_temp + self.temp_amplitude * cycle + self.weather + noise.gauss(0, 0.1)

    def read(self, sensor: int, t: float, noise: random.Random) -> float:
        """The value of sensor ``sensor`` (an index into :data:`SENSORS`) at time ``t``."""
        self._advance(t, noise)
        self.readings_sent += 1
        if sensor == 0:
            value = self.temperature(t, noise)
        elif sensor == 1:
            temp = self.temperature(t, noise)
            value = self.base_humidity - 2.5 * (temp - self.base_temp) + noise.gauss(0, 0.8)
        elif sensor == 2:
            value = self.pressure + noise.gauss(0.0, 0.05)
        elif sensor == 3:
            hour = self.local_hour(t)
            occupied = math.sin(math.pi * (hour - 8.0) / 10.0) if 8.0 <= hour <= 18.0 else 0.0
            value = self.base_co2 + 450.0 * occupied + noise.gauss(0.0, 8.0)
        else:
            self.battery = max(_BATTERY_EMPTY, self.battery - _BATTERY_DRAIN_PER_READING)
            value = self.battery + noise.gauss(0.0, 0.002)
        low, high = RANGES[SENSORS[sensor]]
        return round(min(high, max(low, value)), DECIMALS[sensor])


def device_id_width(devices: int) -> int:
    """Digits in device ids: ``sim-0042`` for up to 10,000 devices, wider beyond."""
    return max(4, len(str(max(0, devices - 1))))


def make_fleet(devices: int, seed: int, prefix: str = "sim") -> list[Device]:
    """``devices`` devices with traits drawn from ``seed``: device i is the same for any N."""
    if not 1 <= devices <= 1_000_000:
        raise ValueError("devices must be between 1 and 1,000,000")
    traits = random.Random(seed)  # noqa: S311 - a seeded simulation, not cryptography
    width = device_id_width(devices)
    return [Device(i, f"{prefix}-{i:0{width}d}", traits) for i in range(devices)]
