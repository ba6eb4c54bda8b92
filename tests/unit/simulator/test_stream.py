"""The message stream: formats, determinism, unique timestamps and fault ratios."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from iotcollector.domain.parse import parse_message
from iotcollector.simulator.payloads import Format
from iotcollector.simulator.stream import MessageStream, Outgoing, StreamConfig

START_US = int(datetime(2026, 11, 28, tzinfo=UTC).timestamp() * 1_000_000)
RECEIVED = datetime(2026, 11, 29, tzinfo=UTC)


def _take(stream: MessageStream, messages: int) -> list[Outgoing]:
    out: list[Outgoing] = []
    for _ in range(messages):
        out.extend(stream.next_messages())
    out.extend(stream.flush_held())
    return out


def _config(**kwargs: object) -> StreamConfig:
    base: dict[str, object] = {
        "devices": 7,
        "seed": 3,
        "readings_per_s": 70.0,
        "start_us": START_US,
    }
    base.update(kwargs)
    return StreamConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fmt", "per_message"), [(Format.SINGLE, 1), (Format.BATCH, 10), (Format.MULTI, 5)]
)
def test_every_format_parses_to_distinct_readings(fmt: Format, per_message: int) -> None:
    stream = MessageStream(_config(fmt=fmt))
    keys: set[tuple[str, str, datetime]] = set()
    for message in _take(stream, 200):
        result = parse_message(message.payload, received_at=RECEIVED)
        assert not result.rejections
        assert len(result.readings) == message.readings == per_message
        keys.update((r.device_id, r.sensor_type, r.timestamp) for r in result.readings)
    assert len(keys) == 200 * per_message


def test_readings_are_dealt_round_robin_to_devices() -> None:
    stream = MessageStream(_config())
    devices = [
        parse_message(m.payload, received_at=RECEIVED).readings[0].device_id
        for m in _take(stream, 70)
    ]
    assert {devices.count(d) for d in set(devices)} == {10}
    assert len(set(devices)) == 7


def test_virtual_clock_makes_bytes_a_function_of_the_seed() -> None:
    first = [m.payload for m in _take(MessageStream(_config(malformed=0.1, duplicates=0.1)), 300)]
    again = [m.payload for m in _take(MessageStream(_config(malformed=0.1, duplicates=0.1)), 300)]
    other = [m.payload for m in _take(MessageStream(_config(seed=4)), 300)]
    assert first == again
    assert first != other


def test_wall_clock_timestamps_strictly_increase_per_device() -> None:
    stream = MessageStream(StreamConfig(devices=2, seed=1), clock=lambda: 1_795_000_000.0)
    stamps = [
        parse_message(m.payload, received_at=datetime(2026, 11, 28, tzinfo=UTC)).readings[0]
        for m in _take(stream, 10)
    ]
    per_device = [r.timestamp for r in stamps if r.device_id == "sim-0000"]
    assert per_device == sorted(set(per_device))


def test_faults_do_not_change_the_values() -> None:
    clean = _take(MessageStream(_config()), 100)
    faulty = _take(MessageStream(_config(duplicates=0.3)), 100)
    assert [m.payload for m in faulty if not m.duplicate] == [m.payload for m in clean]


def test_fault_ratios() -> None:
    n = 20_000
    stream = MessageStream(_config(devices=50, malformed=0.05, duplicates=0.1, out_of_order=0.08))
    out = _take(stream, n)
    originals = [m for m in out if not m.duplicate]
    assert len(originals) == n
    malformed = sum(m.malformed for m in originals)
    duplicates = sum(m.duplicate for m in out)
    late = sum(m.late for m in originals)
    assert malformed / n == pytest.approx(0.05, abs=0.01)
    assert duplicates / n == pytest.approx(0.1, abs=0.015)
    # A device with a message held back cannot hold another: slightly under 8 %.
    assert 0.06 < late / n < 0.085
    for message in originals:
        result = parse_message(message.payload, received_at=RECEIVED)
        assert bool(result.rejections) == message.malformed


def test_late_messages_carry_older_timestamps_than_the_one_before() -> None:
    stream = MessageStream(_config(devices=1, out_of_order=0.3))
    previous = None
    backwards = 0
    for message in _take(stream, 500):
        ts = parse_message(message.payload, received_at=RECEIVED).readings[0].timestamp
        if previous is not None and ts < previous:
            backwards += 1
            assert message.late
        previous = ts
    assert backwards > 50


def test_batch_size_validated() -> None:
    with pytest.raises(ValueError, match="batch"):
        MessageStream(_config(batch_size=0))
