"""Bounded queue → batches → committed writes → acknowledgements, in arrival order.

Messages are parsed as they are submitted (a few µs each) and queued with their
acknowledgement tokens, one queue item per chunk read from the socket. A payload of
:data:`OFFLOAD_BYTES` or more in our own formats is parsed in one worker thread instead: a
message of 10,000 invalid items costs ~50 ms of Python, which on the event loop would hold up
every HTTP answer and read for that long, while a thread yields the interpreter to the loop
every few milliseconds. Its queue item is written only once parsed, and items are written in
order, so acknowledgements keep the order of arrival. Batches are flushed by size or age, and
only after the commit are their tokens handed to ``on_committed`` (which sends the PUBACKs).

With a storage that takes ``concurrent_writes`` > 1 (PostgreSQL: 2), that many batches are
written at once, each its own transaction: the next batch is formed and written while the
previous one commits. Tokens are still handed over in arrival order: a batch committed before
an earlier one waits for it. A batch with status changes (presence, Sparkplug births) is
written alone, after every earlier batch and before any later one, since their order decides
a device's status and the births kept.

Transient database errors are retried with capped exponential backoff and jitter, for as long
as it takes: the queue is bounded by ``max_pending`` messages and ``max_pending_rows`` rows,
and ``on_pressure(True)`` asks the source to stop reading until it has drained to half.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from iotcollector.backoff import Backoff
from iotcollector.domain.parse import dead_letter_reason, parse_message, too_large
from iotcollector.domain.presence import parse_status
from iotcollector.domain.reading import DeadLetter, Reading, Rejection, StatusChange
from iotcollector.domain.topics import keep_topic_device
from iotcollector.errors import (
    IotCollectorError,
    PermanentStorageError,
    StorageError,
)

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Coroutine, Sequence

    from iotcollector.metrics import Metrics
    from iotcollector.pipeline.mapped import MappedTopics
    from iotcollector.storage.base import BatchWriter, WriteResult


class Incoming(Protocol):
    """A received message: what the pipeline reads of the source's acknowledgement token.

    ``payload`` may be only the first bytes of a payload of ``size`` bytes (too large to
    keep). ``replayed``: the source says this is not new data (a retained message sent again);
    it is acknowledged, not stored. So is an empty payload (the clearing of a retained one).
    """

    @property
    def topic(self) -> str: ...

    @property
    def payload(self) -> bytes: ...

    @property
    def size(self) -> int: ...

    @property
    def replayed(self) -> bool: ...


T = TypeVar("T", bound=Incoming)


# Payloads of at least this many bytes are parsed in the worker thread (at worst ~1.7 µs of
# parsing per byte: 3-byte invalid items at ~5 µs each; bench/hostile.py).
OFFLOAD_BYTES = 8 * 1024


@dataclass(slots=True)
class _Item(Generic[T]):
    readings: list[Reading]
    dead_letters: list[DeadLetter]
    statuses: list[StatusChange]
    tokens: list[T]
    queued_at: float
    parsing: int = 0  # messages of this item still being parsed in the worker thread


@dataclass(eq=False, slots=True)
class _Flight(Generic[T]):
    """An MQTT batch taken from the queue: written, then acknowledged in arrival order."""

    tokens: list[T]
    readings: list[Reading]
    dead_letters: list[DeadLetter]
    statuses: list[StatusChange]
    rows: int
    committed: bool = False

    @property
    def alone(self) -> bool:
        """Status changes: written after the earlier batches, before the later ones."""
        return bool(self.statuses)


@dataclass(frozen=True, slots=True)
class BatchLimits:
    max_size: int = 2000
    max_delay_s: float = 0.05
    max_pending: int = 20_000
    max_pending_rows: int = 100_000
    max_direct: int = 64
    retry_min_s: float = 0.1
    retry_max_s: float = 5.0


class Pipeline(Generic[T]):
    """Turns submitted messages into committed batches; acknowledges only after commit."""

    def __init__(  # noqa: PLR0913 - collaborators and limits, all explicit
        self,
        storage: BatchWriter,
        metrics: Metrics,
        logger: logging.Logger,
        *,
        on_committed: Callable[[list[T]], object],
        on_pressure: Callable[[bool], None],
        limits: BatchLimits,
        max_payload_bytes: int,
        max_readings_per_message: int = 10_000,
        max_future_skew_s: float,
        status_topic_prefix: str | None = None,
        device_topics: bool = False,
        mapped: MappedTopics | None = None,
        concurrent_writes: int = 1,
    ) -> None:
        self._storage = storage
        self._concurrency = max(1, concurrent_writes)
        self._metrics = metrics
        self._log = logger
        self._on_committed = on_committed
        self._on_pressure = on_pressure
        self._limits = limits
        self._max_payload = max_payload_bytes
        self._max_readings = max_readings_per_message
        self._skew = max_future_skew_s
        self._status_prefix = status_topic_prefix
        self._device_topics = device_topics
        self._mapped = mapped
        self._parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iot-parse")
        self._items: deque[_Item[T]] = deque()
        self._direct: deque[tuple[list[Reading], asyncio.Future[WriteResult]]] = deque()
        # MQTT batches being written or committed and waiting for an earlier one, in order.
        self._flights: deque[_Flight[T]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._crash: BaseException | None = None
        self._status_items = 0  # queued items with status changes
        self._rows = 0
        self._queued = 0
        self._writing = 0
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._closing = False
        self._abandon = False
        self._paused = False
        # The current run of failed writes: (transient|permanent, SQLSTATE), and its length.
        self._failing: tuple[str, str | None] | None = None
        self._failures = 0
        self.last_commit = time.monotonic()
        metrics.pipeline_queue_capacity.set(limits.max_pending)
        metrics.pipeline_queue_depth.set_function(lambda: self.pending)

    @property
    def writes_failing(self) -> bool:
        """The last write failed (and none succeeded since)."""
        return self._failing is not None

    @property
    def paused(self) -> bool:
        """The pipeline asked the source to stop reading (too many queued rows or messages)."""
        return self._paused

    @property
    def backlogged(self) -> bool:
        """More than a full batch waits to be written: messages come faster than commits."""
        return self._paused or self._rows >= self._limits.max_size

    @property
    def pending(self) -> int:
        """Messages (and HTTP writes) submitted and not yet committed."""
        return self._queued + self._writing + len(self._direct)

    def submit(self, messages: Sequence[T]) -> None:
        """Parse messages read together and queue them; never raises for bad input."""
        if self._closing or not messages:
            return
        now = datetime.now(UTC)
        m = self._metrics
        m.mqtt_messages_received.value += len(messages)
        item: _Item[T] = _Item([], [], [], list(messages), time.monotonic())
        offload: list[T] = []
        for msg in messages:
            if msg.replayed or not msg.size:
                continue
            if self._offloadable(msg):
                offload.append(msg)
                continue
            rejections = self._parse(msg, now, item.readings, item.statuses)
            if rejections:
                self._dead_letter(item, msg, now, rejections)
        was_empty = not self._items
        self._items.append(item)
        self._queued += len(messages)
        self._rows += len(item.readings) + len(item.dead_letters) + len(item.statuses)
        self._status_items += bool(item.statuses)
        for msg in offload:
            item.parsing += 1
            self._parser.submit(self._parse_default, msg, now).add_done_callback(
                functools.partial(self._parsed_soon, asyncio.get_running_loop(), item, msg, now)
            )
        self._after_queueing(was_empty=was_empty)

    def _after_queueing(self, *, was_empty: bool) -> None:
        limits = self._limits
        if was_empty or self._rows >= limits.max_size:
            self._wakeup.set()
        if not self._paused and (
            self.pending >= limits.max_pending or self._rows >= limits.max_pending_rows
        ):
            self._paused = True
            self._on_pressure(True)

    def _dead_letter(
        self, item: _Item[T], msg: T, now: datetime, rejections: list[Rejection]
    ) -> None:
        counts: dict[str, int] = {}
        for rej in rejections:
            counts[rej.code] = counts.get(rej.code, 0) + 1
        for code, count in counts.items():
            self._metrics.readings_rejected.labels(reason=code).inc(count)
        reason = dead_letter_reason(rejections)
        item.dead_letters.append(
            DeadLetter(now, msg.topic, msg.payload[: self._max_payload], reason)
        )

    def _offloadable(self, msg: T) -> bool:
        """A large payload that only our own formats parse (pure: no status, no rule state)."""
        if len(msg.payload) < OFFLOAD_BYTES or msg.size > self._max_payload:
            return False
        prefix = self._status_prefix
        if prefix and msg.topic.startswith(prefix):
            return False
        mapped = self._mapped
        return mapped is None or mapped.match(msg.topic) is None

    def _parsed_soon(
        self,
        loop: asyncio.AbstractEventLoop,
        item: _Item[T],
        msg: T,
        now: datetime,
        done: Future[tuple[list[Reading], list[Rejection]]],
    ) -> None:
        """In the worker thread: hand the result to the event loop."""
        loop.call_soon_threadsafe(self._parsed, item, msg, now, done)

    def _parsed(
        self,
        item: _Item[T],
        msg: T,
        now: datetime,
        done: Future[tuple[list[Reading], list[Rejection]]],
    ) -> None:
        """On the event loop: a message parsed in the worker thread joins its queue item."""
        try:
            readings, rejections = done.result()
        except Exception as exc:  # a bug in parsing must not stall the queue: dead-letter it
            self._log.exception("parsing a message failed")
            readings, rejections = [], [Rejection("internal_error", str(exc)[:200])]
        item.readings.extend(readings)
        added = len(readings)
        if rejections:
            self._dead_letter(item, msg, now, rejections)
            added += 1
        item.parsing -= 1
        self._rows += added
        first = bool(self._items) and self._items[0] is item
        self._after_queueing(was_empty=item.parsing == 0 and first)

    def _parse_default(self, msg: T, now: datetime) -> tuple[list[Reading], list[Rejection]]:
        """Our own formats (and the device-topic check): pure, so it may run in a thread."""
        result = parse_message(
            msg.payload,
            received_at=now,
            max_future_skew_s=self._skew,
            max_payload_bytes=self._max_payload,
            max_readings=self._max_readings,
            size=msg.size,
        )
        if self._device_topics and result.readings:
            kept, foreign = keep_topic_device(msg.topic, result.readings)
            return kept, [*result.rejections] if foreign is None else [*result.rejections, foreign]
        return result.readings, result.rejections

    def _parse(
        self, msg: T, now: datetime, readings: list[Reading], statuses: list[StatusChange]
    ) -> list[Rejection]:
        """Add the message's readings (or status change); return its rejections."""
        prefix = self._status_prefix
        if prefix and msg.topic.startswith(prefix):
            status = parse_status(msg.topic, msg.payload[: self._max_payload], received_at=now)
            if isinstance(status, StatusChange):
                statuses.append(status)
                return []
            return [status] if isinstance(status, Rejection) else []
        if msg.size > self._max_payload:
            return [too_large(msg.size, len(msg.payload), self._max_payload)]
        mapped = self._mapped
        if mapped is not None and (match := mapped.match(msg.topic)) is not None:
            outcome = mapped.decode(match, msg.topic, msg.payload, now)
            readings.extend(outcome.readings)
            statuses.extend(outcome.statuses)
            return outcome.rejections
        parsed, rejections = self._parse_default(msg, now)
        readings.extend(parsed)
        return rejections

    async def write(self, readings: list[Reading]) -> WriteResult:
        """Write one HTTP request's readings through the same writer; return after commit.

        Raises ``PipelineBusyError`` when too many requests already wait.
        """
        if self._closing:
            raise PipelineBusyError("the collector is shutting down")
        if len(self._direct) >= self._limits.max_direct:
            raise PipelineBusyError("too many write requests are waiting for the database")
        future: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._direct.append((readings, future))
        self._wakeup.set()
        return await asyncio.shield(future)

    async def run(self) -> None:
        """Write batches until closed and drained (or abandoned at the shutdown deadline).

        Up to ``concurrent_writes`` writes at once (MQTT batches and HTTP writes), at most that
        many MQTT batches not yet acknowledged. Fair: when an HTTP write waits and an MQTT
        batch is due (full or old enough), they take turns, so neither a steady stream of
        POSTs nor a backlog of MQTT messages starves the other.
        """
        direct_last = False
        try:
            while not self._abandon:
                if self._crash is not None:
                    raise self._crash
                can_write = len(self._tasks) < self._concurrency
                can_batch = can_write and self._may_start_batch()
                due = can_batch and self._batch_due()
                if can_write and self._direct and not (due and direct_last):
                    direct_last = True
                    self._start(self._write_direct(*self._direct.popleft()))
                    continue
                if due:
                    direct_last = False
                    self._start(self._write_batch(self._next_batch()))
                    continue
                if self._closing and not (self._items or self._direct or self._tasks):
                    return
                self._wakeup.clear()
                wait = (
                    self._limits.max_delay_s - (time.monotonic() - self._items[0].queued_at)
                    if can_batch and self._items and not self._items[0].parsing
                    else None  # woken when the first item is parsed or a write ends
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wakeup.wait()
        finally:
            # Abandoned or cancelled: the writes still running are not acknowledged.
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _may_start_batch(self) -> bool:
        """Room for another MQTT batch, and neither it nor the one before is to be alone."""
        flights = self._flights
        if not flights:
            return True
        return (
            len(flights) < self._concurrency
            and not flights[-1].alone
            and not (self._status_items and self._next_batch_alone())
        )

    def _next_batch_alone(self) -> bool:
        """Whether the batch :meth:`_next_batch` would take now has status changes."""
        rows, first = 0, True
        for item in self._items:
            if item.parsing or (not first and rows >= self._limits.max_size):
                return False
            if item.statuses:
                return True
            rows += len(item.readings) + len(item.dead_letters)
            first = False
        return False

    def _start(self, write: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(write)
        self._tasks.add(task)
        task.add_done_callback(self._write_ended)

    def _write_ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._crash = self._crash or exc  # a bug: run() raises it
        self._wakeup.set()

    def _batch_due(self) -> bool:
        """An MQTT batch is to be written now: full, old enough, or we are closing."""
        if not self._items or self._items[0].parsing:
            return False
        limits = self._limits
        return (
            self._closing
            or self._rows >= limits.max_size
            or time.monotonic() - self._items[0].queued_at >= limits.max_delay_s
        )

    async def _write_direct(
        self, readings: list[Reading], future: asyncio.Future[WriteResult]
    ) -> None:
        self._writing += 1
        try:
            result = await self._write_with_retry(readings, [])
        except _AbandonedError:
            if not future.done():
                future.set_exception(PipelineBusyError("the collector is shutting down"))
            return
        finally:
            self._writing -= 1
        self._record(result, readings, len(readings), 0)
        if not future.done():
            future.set_result(result)
        if not self.pending:
            self._drained.set()

    def _next_batch(self) -> _Flight[T]:
        """Take the next MQTT batch from the queue, in order, as the newest flight."""
        flight: _Flight[T] = _Flight([], [], [], [], 0)
        while (
            self._items
            and not self._items[0].parsing
            and (not flight.tokens or flight.rows < self._limits.max_size)
        ):
            item = self._items.popleft()
            flight.tokens.extend(item.tokens)
            flight.readings.extend(item.readings)
            flight.dead_letters.extend(item.dead_letters)
            flight.statuses.extend(item.statuses)
            self._status_items -= bool(item.statuses)
            flight.rows += len(item.readings) + len(item.dead_letters) + len(item.statuses)
        self._rows -= flight.rows
        self._queued -= len(flight.tokens)
        self._writing += len(flight.tokens)
        self._flights.append(flight)
        return flight

    async def _write_batch(self, flight: _Flight[T]) -> None:
        """Write one batch; then acknowledge every committed batch no earlier one holds up."""
        try:
            result = await self._write_with_retry(
                flight.readings, flight.dead_letters, flight.statuses
            )
        except _AbandonedError:
            return
        self._record(result, flight.readings, flight.rows, len(flight.dead_letters))
        flight.committed = True
        while self._flights and self._flights[0].committed:
            done = self._flights.popleft()
            self._writing -= len(done.tokens)
            self._on_committed(done.tokens)
        limits = self._limits
        if (
            self._paused
            and self.pending <= limits.max_pending // 2
            and self._rows <= limits.max_pending_rows // 2
        ):
            self._paused = False
            self._on_pressure(False)
        if not self.pending:
            self._drained.set()

    def _record(
        self, result: WriteResult, readings: list[Reading], rows: int, parse_rejections: int
    ) -> None:
        m = self._metrics
        m.readings_stored.inc(result.stored)
        m.readings_duplicate.inc(result.duplicates)
        isolated = result.dead_letters - parse_rejections
        if isolated > 0:
            m.readings_rejected.labels(reason="storage").inc(isolated)
        m.batch_size.observe(rows)
        m.ingest_lag.observe_ages(datetime.now(UTC), [r.timestamp for r in readings])

    async def _write_with_retry(
        self,
        readings: list[Reading],
        dead: list[DeadLetter],
        statuses: list[StatusChange] | None = None,
    ) -> WriteResult:
        backoff = Backoff(self._limits.retry_min_s, self._limits.retry_max_s)
        while True:
            attempt = backoff.failures
            started = time.perf_counter()
            try:
                result = await self._storage.write_batch(readings, dead, statuses or ())
            except StorageError as exc:
                self._write_failed(exc, attempt, len(readings))
                if self._abandon:
                    raise _AbandonedError from exc
                await asyncio.sleep(backoff.next_delay())
                if self._abandon:
                    raise _AbandonedError from exc
                continue
            self._metrics.db_write_duration.observe(time.perf_counter() - started)
            self.last_commit = time.monotonic()
            if self._failing is not None:
                self._log.info(
                    "database writes succeed again after %d failed attempts (last error: %s)",
                    self._failures,
                    _kind_text(self._failing),
                )
                self._failing = None
                self._failures = 0
                self._metrics.ingest_stalled.set(0)
            return result

    def _write_failed(self, exc: StorageError, attempt: int, readings: int) -> None:
        """Count the error; log it when its kind (transient/permanent, code) changes.

        A permanent error here fails the whole batch (one bad row is isolated by the storage):
        retrying waits for someone to fix the database, and meanwhile ingest is stalled.
        """
        permanent = isinstance(exc, PermanentStorageError)
        kind = ("permanent" if permanent else "transient", exc.code)
        self._metrics.db_errors.labels(kind=kind[0]).inc()
        self._metrics.ingest_stalled.set(1 if permanent else 0)
        self._failures += 1
        if kind != self._failing:
            self._failing = kind
            if permanent:
                self._log.critical(
                    "ingest stalled: the database refuses every write (%s): %s. Nothing is "
                    "acknowledged, the broker keeps the messages; retrying every %.0f s. "
                    "Runbook: docs/runbooks/database-permanent-errors.md",
                    _kind_text(kind),
                    exc,
                    self._limits.retry_max_s,
                )
            else:
                self._log.warning(
                    "database writes fail (%s), retrying with backoff: %s", _kind_text(kind), exc
                )
        elif attempt and attempt % 20 == 0:
            self._log.warning(
                "batch of %d readings still not written after %d attempts (%s): %s",
                readings,
                attempt + 1,
                _kind_text(kind),
                exc,
            )

    async def close(self, timeout_s: float) -> bool:
        """Stop taking messages, commit what is queued; True if all of it was committed."""
        self._closing = True
        self._wakeup.set()
        if self.pending:
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._drained.wait()
        drained = not self.pending
        self._parser.shutdown(wait=False)
        if not drained:
            self._abandon = True
            self._wakeup.set()
            self._log.warning(
                "shutdown: %d messages not committed; they stay un-acknowledged at the broker",
                self.pending,
            )
        return drained


def _kind_text(kind: tuple[str, str | None]) -> str:
    return f"{kind[0]} error, code {kind[1]}" if kind[1] else f"{kind[0]} error"


class PipelineBusyError(IotCollectorError):
    """The pipeline cannot take this write now (shutting down, or too many waiting)."""


class _AbandonedError(Exception):
    """The shutdown deadline passed while a batch could not be written."""
