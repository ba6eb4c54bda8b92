"""Two batches written at once (``concurrent_writes=2``): acknowledged in arrival order only."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from iotcollector.errors import TransientStorageError
from iotcollector.metrics import Metrics
from iotcollector.pipeline.pipeline import BatchLimits, Pipeline
from iotcollector.storage.base import WriteResult

if TYPE_CHECKING:
    from collections.abc import Sequence

    from iotcollector.domain.reading import DeadLetter, Reading, StatusChange


@dataclass
class Call:
    """One ``write_batch`` call, finished by the test: ``commit()`` or ``fail()``."""

    readings: list[float]
    statuses: list[str]
    outcome: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def commit(self) -> None:
        self.outcome.set_result(None)

    def fail(self) -> None:
        self.outcome.set_exception(TransientStorageError("deadlock detected [40P01]", "40P01"))


class SteppedStorage:
    """Each write waits until the test finishes it, in whatever order the test chooses."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.committed: list[float] = []
        self.running = 0
        self.most_running = 0

    @property
    def open_calls(self) -> list[Call]:
        return [c for c in self.calls if not c.outcome.done()]

    async def write_batch(
        self,
        readings: Sequence[Reading],
        dead_letters: Sequence[DeadLetter],
        statuses: Sequence[StatusChange] = (),
    ) -> WriteResult:
        call = Call([r.value for r in readings], [s.device_id for s in statuses])
        self.calls.append(call)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await call.outcome
        finally:
            self.running -= 1
        self.committed += call.readings
        return WriteResult(len(readings), 0, len(dead_letters))


@dataclass
class Msg:
    topic: str
    payload: bytes
    n: int
    replayed: bool = False

    @property
    def size(self) -> int:
        return len(self.payload)


def _reading(i: int) -> Msg:
    payload = b'{"device_id":"d","sensor_type":"t","value":%d,"timestamp":%d}' % (
        i,
        1_700_000_000 + i,
    )
    return Msg("iot/data", payload, i)


class Harness:
    def __init__(self, storage: SteppedStorage, limits: BatchLimits) -> None:
        self.acked: list[int] = []
        self.pressure: list[bool] = []
        self.storage = storage
        self.pipeline: Pipeline[Msg] = Pipeline(
            storage,
            Metrics(CollectorRegistry(), process_metrics=False),
            logging.getLogger("test"),
            on_committed=self._committed,
            on_pressure=self.pressure.append,
            limits=limits,
            max_payload_bytes=65536,
            max_future_skew_s=300,
            status_topic_prefix="iot/status/",
            concurrent_writes=2,
        )

    def _committed(self, msgs: list[Msg]) -> None:
        # Nothing is acknowledged before its own commit.
        assert {float(m.n) for m in msgs if m.topic == "iot/data"} <= set(self.storage.committed)
        self.acked.extend(m.n for m in msgs)

    def submit(self, msg: Msg) -> None:
        self.pipeline.submit([msg])


ONE_PER_BATCH = BatchLimits(max_size=1, max_delay_s=60, retry_min_s=0.001, retry_max_s=0.002)


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_batch_committed_first_waits_for_the_earlier_one() -> None:
    h = Harness(SteppedStorage(), ONE_PER_BATCH)
    task = asyncio.create_task(h.pipeline.run())
    for i in range(3):
        h.submit(_reading(i))
    await _settle()
    first, second = h.storage.calls
    assert (first.readings, second.readings) == ([0.0], [1.0])  # two at once, not the third
    second.commit()
    await _settle()
    assert h.acked == []
    assert h.pipeline.pending == 3  # committed but not acknowledged still counts
    first.commit()
    await _settle()
    assert h.acked == [0, 1]
    assert [c.readings for c in h.storage.open_calls] == [[2.0]]
    h.storage.open_calls[0].commit()
    assert await h.pipeline.close(1)
    assert h.acked == [0, 1, 2]
    assert h.storage.most_running == 2
    await task


async def test_a_transient_failure_of_the_earlier_batch_is_retried_before_any_ack() -> None:
    h = Harness(SteppedStorage(), ONE_PER_BATCH)
    task = asyncio.create_task(h.pipeline.run())
    for i in range(4):
        h.submit(_reading(i))
    await _settle()
    first, second = h.storage.calls
    second.commit()
    first.fail()
    await asyncio.sleep(0.02)
    assert h.acked == []
    # Retried while the later batch waits: no third batch meanwhile (two not acknowledged).
    (retry,) = h.storage.open_calls
    assert retry.readings == [0.0]
    assert h.pipeline.writes_failing
    retry.commit()
    await _settle()
    assert h.acked == [0, 1]
    for call in h.storage.open_calls:
        call.commit()
    await _settle()
    for call in h.storage.open_calls:
        call.commit()
    assert await h.pipeline.close(1)
    assert h.acked == [0, 1, 2, 3]
    assert sorted(h.storage.committed) == [0.0, 1.0, 2.0, 3.0]
    await task


async def test_a_batch_with_status_changes_is_written_alone() -> None:
    h = Harness(SteppedStorage(), ONE_PER_BATCH)
    task = asyncio.create_task(h.pipeline.run())
    h.submit(_reading(0))
    h.submit(Msg("iot/status/d", b"offline", 1))
    h.submit(_reading(2))
    await _settle()
    assert [c.readings for c in h.storage.calls] == [[0.0]]  # the status waits for it
    h.storage.calls[0].commit()
    await _settle()
    assert [c.statuses for c in h.storage.open_calls] == [["d"]]  # and nothing beside it
    h.storage.open_calls[0].commit()
    await _settle()
    assert [c.readings for c in h.storage.open_calls] == [[2.0]]
    h.storage.open_calls[0].commit()
    assert await h.pipeline.close(1)
    assert h.acked == [0, 1, 2]
    assert h.storage.most_running == 1
    await task


async def test_backpressure_is_released_by_acknowledgements_not_commits() -> None:
    limits = BatchLimits(max_size=1, max_delay_s=60, max_pending=4, max_pending_rows=1000)
    h = Harness(SteppedStorage(), limits)
    task = asyncio.create_task(h.pipeline.run())
    for i in range(4):
        h.submit(_reading(i))
    await _settle()
    assert h.pressure == [True]
    first, second = h.storage.calls
    second.commit()
    await _settle()
    assert h.pressure == [True]  # committed, not acknowledged: still pending
    first.commit()
    await _settle()
    assert h.pressure == [True, False]
    for call in h.storage.open_calls:
        call.commit()
    assert await h.pipeline.close(1)
    assert h.acked == [0, 1, 2, 3]
    await task


async def test_close_abandons_a_committed_batch_held_up_by_a_failing_one() -> None:
    h = Harness(SteppedStorage(), ONE_PER_BATCH)
    task = asyncio.create_task(h.pipeline.run())
    h.submit(_reading(0))
    h.submit(_reading(1))
    await _settle()
    h.storage.calls[1].commit()

    async def keep_failing() -> None:
        while True:
            for call in h.storage.open_calls:
                call.fail()
            await asyncio.sleep(0.001)

    failing = asyncio.create_task(keep_failing())
    assert not await h.pipeline.close(0.1)
    await asyncio.wait_for(task, 2)
    failing.cancel()
    assert h.acked == []
    assert h.pipeline.pending == 2


async def test_a_bug_in_a_write_stops_the_pipeline() -> None:
    h = Harness(SteppedStorage(), ONE_PER_BATCH)
    task = asyncio.create_task(h.pipeline.run())
    h.submit(_reading(0))
    h.submit(_reading(1))
    await _settle()
    h.storage.calls[1].commit()
    h.storage.calls[0].outcome.set_exception(RuntimeError("bug"))
    try:
        await asyncio.wait_for(task, 2)
    except RuntimeError as exc:
        assert str(exc) == "bug"  # noqa: PT017 - the run task's own exception
    else:
        raise AssertionError("run() should raise the write's bug")
    assert h.acked == []
