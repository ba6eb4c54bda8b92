"""The deterministic stream of messages: which device sends what, with which faults.

Readings are dealt to devices round robin (message ``m`` belongs to device ``m % N``); a
device reports its sensors in turn (single), ``batch_size`` consecutive readings in one JSON
array (batch), or all its sensors at once (multi). Faults are decided by a second random
generator, so switching them on does not change the values of the readings.

Timestamps are epoch microseconds from ``clock`` (wall clock by default; a virtual clock from
``start`` makes the whole stream, bytes included, a function of the seed). Within a device they
strictly increase in generation order, so every valid reading has a distinct
``(device_id, sensor_type, timestamp)``. Out-of-order injection holds a message back and sends
it right after the device's next message, so its timestamps go backwards on the wire.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from iotcollector.simulator.models import SENSORS, Device, make_fleet
from iotcollector.simulator.payloads import (
    MALFORMED_KINDS,
    Format,
    TimestampFormatter,
    encode_batch,
    encode_multi,
    encode_single,
    malformed_payload,
    reading_object,
)

if TYPE_CHECKING:
    from collections.abc import Callable

_FAULT_SEED_SALT = 0x5EED_FA17


@dataclass(frozen=True, slots=True)
class StreamConfig:
    devices: int = 10
    fmt: Format = Format.SINGLE
    batch_size: int = 10
    seed: int = 0
    prefix: str = "sim"
    readings_per_s: float = 0.0  # overall; 0 = as fast as possible (spacing is then 1 µs)
    start_us: int | None = None  # virtual clock start; None = wall clock
    malformed: float = 0.0
    duplicates: float = 0.0
    out_of_order: float = 0.0

    @property
    def readings_per_message(self) -> int:
        if self.fmt is Format.SINGLE:
            return 1
        if self.fmt is Format.BATCH:
            return self.batch_size
        return len(SENSORS)


@dataclass(slots=True)
class Outgoing:
    """One data message to publish."""

    device: int  # index into the fleet
    payload: bytes
    readings: int  # valid readings it carries (0 when malformed)
    malformed: bool = False  # deliberately invalid (--malformed)
    duplicate: bool = False  # an identical re-send of the message before it
    late: bool = False  # held back: older than a message already sent by its device


class MessageStream:
    """Produces messages in order; ``next_messages`` returns 0 to 3 of them per call."""

    def __init__(self, config: StreamConfig, clock: Callable[[], float] = time.time) -> None:
        if config.batch_size < 1:
            raise ValueError("batch size must be at least 1")
        self.config = config
        self.fleet: list[Device] = make_fleet(config.devices, config.seed, config.prefix)
        self._noise = random.Random(config.seed)  # noqa: S311 - a seeded simulation
        self._faults = random.Random(config.seed ^ _FAULT_SEED_SALT)  # noqa: S311
        self._clock = clock
        self._fmt_ts = TimestampFormatter()
        self._per_message = config.readings_per_message
        # Seconds between two readings of one device (0 when unthrottled).
        rate = config.readings_per_s
        self._device_period_us = int(config.devices / rate * 1e6) if rate > 0 else 0
        self._virtual_step_us = (
            1e6 * self._per_message / (rate if rate > 0 else 1000.0)
            if config.start_us is not None
            else 0.0
        )
        self._last_us = [0] * config.devices
        self._next_sensor = [0] * config.devices
        self._held: dict[int, Outgoing] = {}
        self.generated = 0  # messages generated (without injected duplicates)

    @property
    def held(self) -> int:
        return len(self._held)

    def _now_us(self) -> int:
        if self.config.start_us is not None:
            return self.config.start_us + int(self.generated * self._virtual_step_us)
        return int(self._clock() * 1e6)

    def _stamp(self, device: int, candidate_us: int) -> int:
        last = self._last_us[device]
        ts = candidate_us if candidate_us > last else last + 1
        self._last_us[device] = ts
        return ts

    def _make(self, index: int) -> tuple[bytes, int, int]:
        """Payload, valid readings and last timestamp (µs) of message ``index``."""
        cfg = self.config
        device = self.fleet[index % cfg.devices]
        d = device.index
        now = self._now_us()
        noise = self._noise
        if cfg.fmt is Format.SINGLE:
            sensor = self._next_sensor[d]
            self._next_sensor[d] = (sensor + 1) % len(SENSORS)
            ts = self._stamp(d, now)
            value = device.read(sensor, ts / 1e6, noise)
            return encode_single(device.device_id, sensor, value, self._fmt_ts(ts)), 1, ts
        if cfg.fmt is Format.MULTI:
            ts = self._stamp(d, now)
            t = ts / 1e6
            values = [device.read(s, t, noise) for s in range(len(SENSORS))]
            return encode_multi(device.device_id, values, self._fmt_ts(ts)), len(SENSORS), ts
        items = []
        period = self._device_period_us
        n = cfg.batch_size
        ts = 0
        for j in range(n):
            sensor = self._next_sensor[d]
            self._next_sensor[d] = (sensor + 1) % len(SENSORS)
            ts = self._stamp(d, now - (n - 1 - j) * period)
            value = device.read(sensor, ts / 1e6, noise)
            items.append(reading_object(device.device_id, sensor, value, self._fmt_ts(ts)))
        return encode_batch(items), n, ts

    def next_messages(self) -> list[Outgoing]:
        """The next message of the stream with its injected faults (possibly none yet)."""
        cfg = self.config
        index = self.generated
        device = index % cfg.devices
        payload, readings, last_ts = self._make(index)
        self.generated += 1
        faults = self._faults
        if cfg.malformed and faults.random() < cfg.malformed:
            kind = MALFORMED_KINDS[faults.randrange(len(MALFORMED_KINDS))]
            payload = malformed_payload(
                kind, self.fleet[device].device_id, self._fmt_ts(last_ts), faults
            )
            readings = 0
        message = Outgoing(device, payload, readings, malformed=readings == 0)
        out: list[Outgoing] = []
        if cfg.out_of_order and device not in self._held and faults.random() < cfg.out_of_order:
            message.late = True
            self._held[device] = message
        else:
            out.append(message)
            held = self._held.pop(device, None)
            if held is not None:
                out.append(held)
        if cfg.duplicates and out and faults.random() < cfg.duplicates:
            first = out[0]
            out.insert(1, Outgoing(first.device, first.payload, 0, first.malformed, duplicate=True))
        return out

    def flush_held(self) -> list[Outgoing]:
        """Messages still held back (at the end of a run): send them now, late."""
        held = list(self._held.values())
        self._held.clear()
        for message in held:
            message.late = False  # nothing newer from its device went out before it
        return held
