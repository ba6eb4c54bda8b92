"""The batcher: flush by size and age, ack after commit, retry, backpressure, drain."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from iotcollector.domain.parse import parse_message
from iotcollector.domain.reading import Reading
from iotcollector.errors import PermanentStorageError, StorageError, TransientStorageError
from iotcollector.metrics import Metrics
from iotcollector.pipeline import pipeline as pipeline_module
from iotcollector.pipeline.pipeline import OFFLOAD_BYTES, BatchLimits, Pipeline
from iotcollector.storage.base import WriteResult

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pytest

    from iotcollector.domain.reading import DeadLetter, ParseResult, StatusChange


class FakeStorage:
    def __init__(self, failures: int = 0, errors: Sequence[StorageError] = ()) -> None:
        self.failures = failures
        self.errors = list(errors)
        self.batches: list[tuple[int, int]] = []
        self.statuses: list[tuple[str, str]] = []
        self.stored: list[Reading] = []
        self.dead: list[DeadLetter] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.seen: set[tuple[str, str, object]] = set()
        self.write_delay_s = 0.0

    async def write_batch(
        self,
        readings: Sequence[Reading],
        dead_letters: Sequence[DeadLetter],
        statuses: Sequence[StatusChange] = (),
    ) -> WriteResult:
        await self.gate.wait()
        if self.write_delay_s:
            await asyncio.sleep(self.write_delay_s)
        if self.errors:
            raise self.errors.pop(0)
        if self.failures:
            self.failures -= 1
            raise TransientStorageError("connection refused")
        self.batches.append((len(readings), len(dead_letters)))
        self.stored += readings
        self.dead += dead_letters
        self.statuses.extend((s.device_id, s.status) for s in statuses)
        keys = {(r.device_id, r.sensor_type, r.timestamp) for r in readings}
        new = keys - self.seen
        self.seen |= keys
        return WriteResult(len(new), len(readings) - len(new), len(dead_letters))


@dataclass
class Msg:
    topic: str
    payload: bytes
    n: int
    replayed: bool = False
    sent: int | None = None  # the size as sent, when payload is only its first bytes

    @property
    def size(self) -> int:
        return len(self.payload) if self.sent is None else self.sent


def _msg(i: int) -> bytes:
    return b'{"device_id":"d","sensor_type":"t","value":%d,"timestamp":%d}' % (i, 1_700_000_000 + i)


def _submit(h: Harness, payload: bytes, n: int) -> None:
    h.pipeline.submit([Msg("iot/data", payload, n)])


class Harness:
    def __init__(
        self, storage: FakeStorage, limits: BatchLimits, *, device_topics: bool = False
    ) -> None:
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry, process_metrics=False)
        self.acked: list[int] = []
        self.pressure: list[bool] = []
        self.pipeline: Pipeline[Msg] = Pipeline(
            storage,
            self.metrics,
            logging.getLogger("test"),
            on_committed=lambda msgs: self.acked.extend(m.n for m in msgs),
            on_pressure=self.pressure.append,
            limits=limits,
            max_payload_bytes=65536,
            max_future_skew_s=300,
            status_topic_prefix="iot/status/",
            device_topics=device_topics,
        )

    def value(self, name: str, **labels: str) -> float:
        got = self.registry.get_sample_value(name, labels)
        return 0.0 if got is None else got


async def test_flushes_by_size_and_acks_in_order() -> None:
    storage = FakeStorage()
    h = Harness(storage, BatchLimits(max_size=10, max_delay_s=60))
    task = asyncio.create_task(h.pipeline.run())
    for i in range(25):
        _submit(h, _msg(i), i)
    await asyncio.sleep(0.05)
    assert storage.batches == [(10, 0), (10, 0)]
    assert h.acked == list(range(20))
    assert await h.pipeline.close(1)
    assert h.acked == list(range(25))
    await task


async def test_flushes_by_age() -> None:
    storage = FakeStorage()
    h = Harness(storage, BatchLimits(max_size=1000, max_delay_s=0.02))
    task = asyncio.create_task(h.pipeline.run())
    _submit(h, _msg(1), 1)
    await asyncio.sleep(0.1)
    assert h.acked == [1]
    await h.pipeline.close(1)
    await task


async def test_no_ack_before_commit_and_retry_transient_errors() -> None:
    storage = FakeStorage(failures=3)
    h = Harness(storage, BatchLimits(max_size=5, max_delay_s=0.01, retry_min_s=0.01))
    task = asyncio.create_task(h.pipeline.run())
    for i in range(5):
        _submit(h, _msg(i), i)
    await asyncio.sleep(0.005)
    assert h.acked == []
    assert await h.pipeline.close(5)
    assert h.acked == [0, 1, 2, 3, 4]
    assert h.value("iotcollector_db_errors_total", kind="transient") == 3
    assert h.value("iotcollector_readings_stored_total") == 5
    await task


async def test_each_change_of_error_kind_is_logged_and_a_permanent_one_stalls_ingest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors: list[StorageError] = [
        TransientStorageError("connection refused", None),
        TransientStorageError("terminated [57P01]", "57P01"),
        TransientStorageError("terminated [57P01]", "57P01"),
        PermanentStorageError("read-only [25006]", "25006"),
        PermanentStorageError("read-only [25006]", "25006"),
    ]
    storage = FakeStorage(errors=errors)
    h = Harness(storage, BatchLimits(max_size=5, max_delay_s=0.01, retry_min_s=0.01))
    stalled: list[float] = []
    task = asyncio.create_task(h.pipeline.run())
    with caplog.at_level(logging.INFO, logger="test"):
        _submit(h, _msg(1), 1)
        while storage.errors:
            stalled.append(h.value("iotcollector_ingest_stalled"))
            assert h.pipeline.writes_failing or len(storage.errors) == len(errors)
            assert h.acked == []
            await asyncio.sleep(0.005)
        assert await h.pipeline.close(5)
    assert h.acked == [1]
    assert not h.pipeline.writes_failing
    assert stalled[-1] == 1
    assert h.value("iotcollector_ingest_stalled") == 0
    assert h.value("iotcollector_db_errors_total", kind="permanent") == 2
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "WARNING", "CRITICAL", "INFO"]
    assert "transient error" in lines[0][1]
    assert "transient error, code 57P01" in lines[1][1]
    assert lines[2][1].startswith("ingest stalled: the database refuses every write")
    assert "permanent error, code 25006" in lines[2][1]
    assert "after 5 failed attempts" in lines[3][1]
    await task


async def test_bad_messages_become_dead_letters_and_are_acked() -> None:
    storage = FakeStorage()
    h = Harness(storage, BatchLimits(max_size=100, max_delay_s=0.01))
    task = asyncio.create_task(h.pipeline.run())
    _submit(h, b"{oops", 1)
    _submit(h, b'[{"device_id":"d","sensor_type":"t","value":"x"}]', 2)
    _submit(h, _msg(3), 3)
    assert await h.pipeline.close(1)
    assert storage.batches == [(1, 2)]
    assert h.acked == [1, 2, 3]
    assert h.value("iotcollector_readings_rejected_total", reason="invalid_json") == 1
    assert h.value("iotcollector_readings_rejected_total", reason="invalid_value") == 1
    assert h.value("iotcollector_readings_rejected_total", reason="storage") == 0
    await task


async def test_one_dead_letter_per_message_good_items_stored_each_bad_item_counted() -> None:
    storage = FakeStorage()
    h = Harness(storage, BatchLimits(max_size=100, max_delay_s=0.01))
    task = asyncio.create_task(h.pipeline.run())
    payload = b"[" + _msg(1) + b",{},{},42," + _msg(2) + b"]"
    _submit(h, payload, 1)
    assert await h.pipeline.close(1)
    assert storage.batches == [(2, 1)]
    [dead] = storage.dead
    assert dead.payload == payload
    assert dead.reason.startswith("missing_field: 3 items rejected (missing_field 2, wrong_type 1)")
    assert h.value("iotcollector_readings_rejected_total", reason="missing_field") == 2
    assert h.value("iotcollector_readings_rejected_total", reason="wrong_type") == 1
    await task


async def test_a_message_over_the_readings_limit_is_one_dead_letter() -> None:
    storage = FakeStorage()
    h = Harness(storage, BatchLimits(max_size=100, max_delay_s=0.01))
    task = asyncio.create_task(h.pipeline.run())
    payload = b"[" + b",".join([b"{}"] * 20_000) + b"]"
    _submit(h, payload, 1)
    assert await h.pipeline.close(1)
    assert storage.batches == [(0, 1)]
    assert storage.dead[0].reason.startswith("too_many_readings: message holds 20,000 array items")
    assert h.value("iotcollector_readings_rejected_total", reason="too_many_readings") == 1
    assert h.value("iotcollector_readings_rejected_total", reason="missing_field") == 0
    await task


async def test_replayed_and_empty_messages_are_acked_not_stored() -> None:
    storage = FakeStorage()
    h = Harness(storage, BatchLimits(max_size=100, max_delay_s=0.01))
    task = asyncio.create_task(h.pipeline.run())
    h.pipeline.submit([Msg("iot/data", _msg(1), 1, replayed=True), Msg("iot/data", b"", 2)])
    _submit(h, _msg(3), 3)
    assert await h.pipeline.close(1)
    assert [r.value for r in storage.stored] == [3.0]
    assert storage.dead == []
    assert h.acked == [1, 2, 3]
    await task


async def test_a_message_kept_only_in_part_is_too_large_with_its_size() -> None:
    storage = FakeStorage()
    h = Harness(storage, BatchLimits(max_size=100, max_delay_s=0.01))
    task = asyncio.create_task(h.pipeline.run())
    h.pipeline.submit([Msg("iot/data", b"x" * 4096, 1, sent=10 * 1024 * 1024)])
    assert await h.pipeline.close(1)
    assert h.acked == [1]
    [dead] = storage.dead
    assert dead.payload == b"x" * 4096
    assert dead.reason == (
        "too_large: payload is 10,485,760 bytes, more than the limit of 65,536 "
        "(its first 4,096 bytes are kept)"
    )
    await task


async def test_a_chunk_of_messages_is_one_queue_item_and_acked_together() -> None:
    storage = FakeStorage()
    h = Harness(storage, BatchLimits(max_size=3, max_delay_s=60))
    task = asyncio.create_task(h.pipeline.run())
    h.pipeline.submit([Msg("iot/data", _msg(i), i) for i in range(5)])
    assert h.pipeline.pending == 5
    await asyncio.sleep(0.05)
    assert storage.batches == [(5, 0)]
    assert h.acked == [0, 1, 2, 3, 4]
    assert h.value("iotcollector_mqtt_messages_received_total") == 5
    assert await h.pipeline.close(1)
    await task


async def test_redelivery_counts_duplicates() -> None:
    storage = FakeStorage()
    h = Harness(storage, BatchLimits(max_size=100, max_delay_s=0.01))
    task = asyncio.create_task(h.pipeline.run())
    _submit(h, _msg(1), 1)
    _submit(h, _msg(1), 2)
    assert await h.pipeline.close(1)
    assert h.value("iotcollector_readings_stored_total") == 1
    assert h.value("iotcollector_readings_duplicate_total") == 1
    await task


async def test_backpressure_pauses_then_resumes_at_half() -> None:
    storage = FakeStorage()
    storage.gate.clear()
    h = Harness(storage, BatchLimits(max_size=4, max_delay_s=0.001, max_pending=8))
    task = asyncio.create_task(h.pipeline.run())
    for i in range(8):
        _submit(h, _msg(i), i)
    assert h.pressure == [True]
    assert h.value("iotcollector_pipeline_queue_depth") == 8
    storage.gate.set()
    assert await h.pipeline.close(1)
    assert h.pressure == [True, False]
    await task


async def test_backlogged_while_more_than_a_full_batch_waits() -> None:
    storage = FakeStorage()
    storage.gate.clear()
    h = Harness(storage, BatchLimits(max_size=4, max_delay_s=60))
    task = asyncio.create_task(h.pipeline.run())
    for i in range(3):
        _submit(h, _msg(i), i)
    assert not h.pipeline.backlogged
    _submit(h, _msg(3), 3)
    assert h.pipeline.backlogged
    await asyncio.sleep(0.01)  # the full batch is taken (its write waits at the gate)
    assert not h.pipeline.backlogged
    storage.gate.set()
    assert await h.pipeline.close(1)
    await task


async def test_close_gives_up_at_the_deadline_without_acking() -> None:
    storage = FakeStorage(failures=10**6)
    h = Harness(storage, BatchLimits(max_size=5, max_delay_s=0.001, retry_min_s=0.01))
    task = asyncio.create_task(h.pipeline.run())
    _submit(h, _msg(1), 1)
    assert not await h.pipeline.close(0.2)
    await asyncio.wait_for(task, 2)
    assert h.acked == []


async def test_direct_write_returns_after_commit_with_its_own_counts() -> None:
    storage = FakeStorage()
    h = Harness(storage, BatchLimits(max_size=100, max_delay_s=0.01))
    task = asyncio.create_task(h.pipeline.run())
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    readings = [Reading("d", "t", 1.0, "", ts), Reading("d", "t", 1.0, "", ts)]
    result = await h.pipeline.write(readings)
    assert (result.stored, result.duplicates) == (1, 1)
    assert storage.batches == [(2, 0)]
    assert await h.pipeline.close(1)
    await task


async def test_sustained_http_writes_do_not_starve_mqtt_batches() -> None:
    storage = FakeStorage()
    storage.write_delay_s = 0.002
    h = Harness(storage, BatchLimits(max_size=100, max_delay_s=0.01, max_direct=64))
    task = asyncio.create_task(h.pipeline.run())
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    stop = asyncio.Event()
    posts = 0

    async def client() -> None:  # one HTTP client, always another write waiting
        nonlocal posts
        while not stop.is_set():
            await h.pipeline.write([Reading("http", "t", float(posts), "", ts)])
            posts += 1

    clients = [asyncio.create_task(client()) for _ in range(8)]
    await asyncio.sleep(0.05)
    for i in range(20):
        _submit(h, _msg(i), i)
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.1)
    acked_under_load = list(h.acked)
    stop.set()
    await asyncio.gather(*clients)
    assert acked_under_load == list(range(20))  # every MQTT message committed under the load
    assert posts > 50  # and the HTTP writes kept going meanwhile
    assert await h.pipeline.close(1)
    await task


async def test_status_messages_become_status_changes_not_readings() -> None:
    storage = FakeStorage()
    h = Harness(storage, BatchLimits(max_size=100, max_delay_s=0.01))
    task = asyncio.create_task(h.pipeline.run())
    h.pipeline.submit(
        [
            Msg("iot/status/dev-1", b"online", 1),
            Msg("iot/status/dev-2", b"offline", 2),
            Msg("iot/status/dev-3", b"", 3),
            Msg("iot/status/dev-4", b"sleeping", 4),
            Msg("iot/status/bad id!", b"online", 5),
            Msg("iot/data", _msg(6), 6),
        ]
    )
    assert await h.pipeline.close(1)
    assert storage.statuses == [("dev-1", "online"), ("dev-2", "offline")]
    assert storage.batches == [(1, 2)]
    assert h.acked == [1, 2, 3, 4, 5, 6]
    assert h.value("iotcollector_readings_rejected_total", reason="invalid_status") == 1
    assert h.value("iotcollector_readings_rejected_total", reason="invalid_device_id") == 1
    await task


async def test_per_device_topics_refuse_readings_for_another_device() -> None:
    storage = FakeStorage()
    h = Harness(storage, BatchLimits(max_size=100, max_delay_s=0.01), device_topics=True)
    task = asyncio.create_task(h.pipeline.run())
    mixed = (
        b'[{"device_id":"dev-1","sensor_type":"t","value":1,"timestamp":1700000000},'
        b'{"device_id":"dev-2","sensor_type":"t","value":2,"timestamp":1700000000}]'
    )
    own = b'{"device_id":"dev-1","sensor_type":"t","value":3,"timestamp":1700000001}'
    h.pipeline.submit(
        [
            Msg("iot/data/dev-1", mixed, 1),
            Msg("iot/data/dev-1", own, 2),
            Msg("iot/data/dev-9", own, 3),
            Msg("iot/data/bad id!", own, 4),
            Msg("iot/status/dev-1", b"online", 5),
        ]
    )
    assert await h.pipeline.close(1)
    assert sorted(r.value for r in storage.stored) == [1, 3]
    assert {r.device_id for r in storage.stored} == {"dev-1"}
    assert [(d.topic, d.payload) for d in storage.dead] == [
        ("iot/data/dev-1", mixed),
        ("iot/data/dev-9", own),
        ("iot/data/bad id!", own),
    ]
    assert "1 of 2 readings are for device 'dev-2', not for 'dev-1'" in storage.dead[0].reason
    assert storage.dead[0].reason.startswith("device_mismatch")
    assert storage.statuses == [("dev-1", "online")]
    assert h.acked == [1, 2, 3, 4, 5]
    assert h.value("iotcollector_readings_rejected_total", reason="device_mismatch") == 3
    await task


async def test_without_per_device_topics_the_topic_does_not_matter() -> None:
    storage = FakeStorage()
    h = Harness(storage, BatchLimits(max_size=100, max_delay_s=0.01))
    task = asyncio.create_task(h.pipeline.run())
    h.pipeline.submit([Msg("iot/data/dev-9", _msg(1), 1)])
    assert await h.pipeline.close(1)
    assert [r.device_id for r in storage.stored] == ["d"]
    assert storage.dead == []
    await task


def _large_array(first: int, count: int, *, bad: int = 0) -> bytes:
    """An array of ``count`` valid readings (timestamps from ``first``) and ``bad`` ``{}``."""
    items = [_msg(first + i) for i in range(count)] + [b"{}"] * bad
    return b"[" + b",".join(items) + b"]"


async def test_large_payloads_are_parsed_off_the_loop_and_acked_in_order() -> None:
    storage = FakeStorage()
    h = Harness(storage, BatchLimits(max_size=100_000, max_delay_s=0.01))
    task = asyncio.create_task(h.pipeline.run())
    large = _large_array(1000, 200, bad=9_000)
    assert len(large) >= OFFLOAD_BYTES
    h.pipeline.submit([Msg("iot/data", _msg(1), 1), Msg("iot/data", large, 2)])
    _submit(h, _msg(3), 3)
    _submit(h, _large_array(5000, 300), 4)
    _submit(h, _msg(5), 5)
    assert await h.pipeline.close(5)
    await task
    assert h.acked == [1, 2, 3, 4, 5]  # the order of arrival, whatever parsed where
    assert len(storage.stored) == 1 + 200 + 1 + 300 + 1
    assert len(storage.dead) == 1  # one dead letter for the 9,000 bad items of message 2
    assert storage.dead[0].reason.startswith("missing_field: 9000 items rejected")
    assert h.value("iotcollector_readings_rejected_total", reason="missing_field") == 9000


async def test_only_large_payloads_leave_the_event_loop_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: dict[int, int] = {}

    def recording(payload: bytes, **kwargs: Any) -> ParseResult:
        threads[len(payload)] = threading.get_ident()
        return parse_message(payload, **kwargs)

    monkeypatch.setattr(pipeline_module, "parse_message", recording)
    storage = FakeStorage()
    h = Harness(storage, BatchLimits(max_size=100_000, max_delay_s=0.01))
    task = asyncio.create_task(h.pipeline.run())
    small, large = _msg(1), _large_array(0, 1, bad=10_000 - 1)
    h.pipeline.submit([Msg("iot/data", small, 1), Msg("iot/data", large, 2)])
    assert await h.pipeline.close(10)
    await task
    assert threads[len(small)] == threading.get_ident()
    assert threads[len(large)] != threading.get_ident()
    assert h.acked == [1, 2]
