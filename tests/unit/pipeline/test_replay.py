"""Tests of the dead-letter replay: today's rules, receipt time, marking, dry run, dedup."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
import yaml

from iotcollector.domain.mapping import compile_mappings
from iotcollector.domain.parse import too_large
from iotcollector.errors import StorageError
from iotcollector.pipeline.replay import ParseSettings, Replayer
from iotcollector.storage.base import (
    DeadLetterFilter,
    StoredBirth,
    StoredDeadLetter,
    WriteResult,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from iotcollector.domain.reading import Reading

RECEIVED = datetime(2026, 12, 2, 12, 0, 5, tzinfo=UTC)
RULES = compile_mappings(
    yaml.safe_load(
        """
mappings:
  - topic: "acme/{device_id}"
    readings: [{sensor_type: temperature, value: "$.t", unit: C}]
"""
    )
)


@dataclass
class FakeStore:
    letters: list[StoredDeadLetter]
    stored: set[tuple[str, str, datetime]] = field(default_factory=set)

    async def list_rejected(
        self, where: DeadLetterFilter, *, after: int | None, limit: int, oldest_first: bool = False
    ) -> list[StoredDeadLetter]:
        assert oldest_first
        assert where.pending
        pending = [
            d for d in self.letters if d.replayed_at is None and (after is None or d.id > after)
        ]
        return pending[:limit]

    async def mark_replayed(self, ids: Sequence[int], at: datetime) -> int:
        for letter in self.letters:
            if letter.id in ids:
                letter.replayed_at = at
        return len(ids)

    async def load_births(self, *, before: StoredBirth | None, limit: int) -> list[StoredBirth]:  # noqa: ARG002
        return []

    async def write(self, readings: list[Reading]) -> WriteResult:
        keys = [(r.device_id, r.sensor_type, r.timestamp) for r in readings]
        new = [k for k in keys if k not in self.stored]
        self.stored.update(new)
        return WriteResult(len(new), len(keys) - len(new), 0)


def letter(n: int, topic: str, payload: bytes) -> StoredDeadLetter:
    return StoredDeadLetter(n, RECEIVED, topic, payload, "missing_field: ...", None)


def replayer(store: FakeStore) -> Replayer:
    return Replayer(store, store.write, mappings=RULES, parsing=ParseSettings())


async def test_replay_stores_marks_and_keeps_the_receipt_time() -> None:
    store = FakeStore(
        [
            letter(1, "acme/boiler-7", b'{"t": 21.5}'),
            letter(2, "acme/boiler-8", b"{not json"),
            letter(3, "iot/data", b'{"device_id":"d","sensor_type":"t","value":1}'),
        ]
    )
    where = DeadLetterFilter(pending=True)
    report = await replayer(store).replay(where)
    assert report.as_dict() == {
        "dry_run": False,
        "examined": 3,
        "replayed": 2,
        "readings": 2,
        "stored": 2,
        "duplicates": 0,
        "still_rejected": {"invalid_json": 1},
    }
    assert ("boiler-7", "temperature", RECEIVED) in store.stored  # the receipt time
    assert [d.replayed_at is not None for d in store.letters] == [True, False, True]
    again = await replayer(store).replay(where)
    assert (again.examined, again.stored, again.replayed) == (1, 0, 0)


async def test_dry_run_counts_and_stores_nothing() -> None:
    store = FakeStore([letter(1, "acme/boiler-7", b'{"t": 21.5}')])
    report = await replayer(store).replay(DeadLetterFilter(pending=True), dry_run=True)
    assert (report.examined, report.replayed, report.readings, report.stored) == (1, 1, 1, 0)
    assert store.stored == set()
    assert store.letters[0].replayed_at is None


async def test_a_reading_already_stored_counts_as_duplicate() -> None:
    store = FakeStore([letter(1, "acme/boiler-7", b'{"t": 21.5}')])
    store.stored.add(("boiler-7", "temperature", RECEIVED))
    report = await replayer(store).replay(DeadLetterFilter(pending=True))
    assert (report.stored, report.duplicates, report.replayed) == (0, 1, 1)


async def test_replay_applies_the_collectors_readings_limit() -> None:
    many = (
        b"["
        + b",".join(b'{"device_id":"d","sensor_type":"t%d","value":1}' % i for i in range(20))
        + b"]"
    )
    rule = b'{"t": 1, "u": 2, "v": 3}'
    store = FakeStore([letter(1, "iot/data", many), letter(2, "acme/boiler-7", rule)])
    auto = compile_mappings(
        yaml.safe_load('mappings: [{topic: "acme/{device_id}", readings: auto}]')
    )
    limited = Replayer(store, store.write, mappings=auto, parsing=ParseSettings(max_readings=2))
    report = await limited.replay(DeadLetterFilter(pending=True))
    assert report.still_rejected == {"too_many_readings": 2}  # as live ingest refuses them
    assert store.stored == set()
    raised = Replayer(store, store.write, mappings=auto, parsing=ParseSettings(max_readings=20))
    report = await raised.replay(DeadLetterFilter(pending=True))
    assert (report.replayed, report.stored) == (2, 23)


async def test_a_replay_cut_short_keeps_the_marks_of_what_it_committed() -> None:
    def array(n: int) -> bytes:
        items = (b'{"device_id":"d%d","sensor_type":"t%d","value":1}' % (n, i) for i in range(2500))
        return b"[" + b",".join(items) + b"]"

    store = FakeStore([letter(n, "iot/data", array(n)) for n in range(1, 5)])
    writes = 0

    async def write_then_fail(readings: list[Reading]) -> WriteResult:
        nonlocal writes
        writes += 1
        if writes > 1:
            raise StorageError("database gone")
        return await store.write(readings)

    cut = Replayer(store, write_then_fail, mappings=None, parsing=ParseSettings())
    with pytest.raises(StorageError):
        await cut.replay(DeadLetterFilter(pending=True))
    assert [d.replayed_at is not None for d in store.letters] == [True, True, False, False]
    assert len(store.stored) == 5000
    report = await replayer(store).replay(DeadLetterFilter(pending=True))
    assert (report.examined, report.replayed, report.stored) == (2, 2, 5000)


async def test_a_too_large_dead_letter_holding_a_prefix_is_never_parsed() -> None:
    prefix = b'{"device_id": "d", "sensor_type": "t", "value": 1}' + b" " * 100
    reason = too_large(300_000, 4096, 262_144).reason
    store = FakeStore([StoredDeadLetter(1, RECEIVED, "iot/data", prefix, reason, None)])
    report = await replayer(store).replay(DeadLetterFilter(pending=True))
    assert report.still_rejected == {"too_large": 1}
    assert (report.replayed, store.stored) == (0, set())
