"""The storage interface every backend implements."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime, timedelta

    from iotcollector.domain.reading import DeadLetter, Reading, StatusChange

# Sparkplug births kept in ``sparkplug_births``, the newest received: as many as the host's
# memory can hold (pipeline.sparkplug_host.MAX_ENTRIES, 500,000 aliases' worth, a device
# counting two); older ones would never be reloaded. Trimmed as query.BirthTrim says.
KEPT_BIRTHS: Final = 250_000


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The outcome of one committed batch.

    ``dead_letters`` counts every row written to ``iot_rejected``: those passed in plus the
    readings the database refused permanently and that were isolated there.
    """

    stored: int
    duplicates: int
    dead_letters: int


class BatchWriter(Protocol):
    """What the pipeline needs: one committed, idempotent write of a batch."""

    async def write_batch(
        self,
        readings: Sequence[Reading],
        dead_letters: Sequence[DeadLetter],
        statuses: Sequence[StatusChange] = (),
    ) -> WriteResult:
        """Store readings (a reading already present counts as duplicate) and dead letters.

        Everything is committed before this returns; the devices registry is updated: a
        device with a stored reading is online, then ``statuses`` are applied in order (an
        ``offline`` from a Last Will, an ``online`` from a device that connected).
        A row the database refuses permanently is isolated into ``iot_rejected`` with its
        reason so the rest of the batch lands.
        """


class Storage(BatchWriter, Protocol):
    """A database that stores readings idempotently and dead letters, in one transaction.

    Errors are translated at this boundary: ``TransientStorageError`` (retry later) or
    ``PermanentStorageError`` (this data can never be written).
    """

    @property
    def concurrent_writes(self) -> int:
        """How many ``write_batch`` calls may run at once, each its own transaction."""

    async def open(self) -> None:
        """Connect. Raises ``TransientStorageError`` while the database is unreachable."""

    async def close(self) -> None:
        """Release connections; safe to call twice."""

    async def migrate(self) -> list[str]:
        """Apply pending versioned migrations; return the versions applied now."""

    async def ping(self) -> None:
        """Raise ``TransientStorageError`` unless the database answers now."""

    async def mark_offline(self, silent_since: datetime) -> int:
        """Mark offline every online device last seen before ``silent_since``; return how many."""

    async def device_counts(self) -> tuple[int, int]:
        """(online, offline) devices in the registry."""

    async def mark_replayed(self, ids: Sequence[int], at: datetime) -> int:
        """Set ``replayed_at`` of these dead letters (those still pending); return how many."""


# -- reading back -----------------------------------------------------------------------------


@dataclass
class StoredReading:
    """One row of ``iot_data`` as the API returns it (orjson serialises it as it is; no
    ``__slots__``: orjson reads a plain dataclass's ``__dict__`` three times as fast)."""

    id: int
    device_id: str
    sensor_type: str
    value: float
    unit: str
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class ReadingFilter:
    """Which readings: every set field must match; ``start`` inclusive, ``end`` exclusive."""

    device_id: str | None = None
    sensor_type: str | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class Position:
    """A keyset position in newest-first order: the next page holds rows strictly after it,
    i.e. with ``(timestamp, id)`` smaller than these."""

    timestamp: datetime
    id: int


@dataclass
class Bucket:
    """Aggregate of one time bucket ``[bucket_start, bucket_start + width)`` that holds at
    least one row; ``avg`` to 15 significant digits (:func:`significant`). The fields are the
    API's, in its order: the route hands these to orjson as they are (no dict per bucket).
    No ``__slots__``: orjson reads a plain dataclass's ``__dict__`` three times as fast."""

    bucket_start: datetime
    count: int
    min: float
    max: float
    avg: float


# Averages of magnitude in [SIGNIFICANT_FLOOR, SIGNIFICANT_CEILING) are rounded; in that
# range the scale 10^(14 - exponent) is a power of ten a double holds exactly (<= 1e22).
SIGNIFICANT_FLOOR = 1e-7
SIGNIFICANT_CEILING = 1e15


def significant(value: float) -> float:
    """An average to 15 significant digits: 52.4269, not the sum's rounding noise
    52.426899999999996 (a double holds 15-17; the readings themselves are kept unchanged).

    Scaled to a 15-digit integer, rounded half to even, scaled back: IEEE arithmetic and the
    C library's ``log10``/``pow``, so PostgreSQL's SQL (:data:`SIGNIFICANT_SQL`) gives the
    very same double (tested). A tenth of the cost of printing and parsing ``%.15g`` (which
    PostgreSQL's ``::numeric`` cast does, at 1 µs a row); the last digit of a near-tie may
    differ from it. Magnitudes outside ``[1e-7, 1e15)`` are returned as they are."""
    if not SIGNIFICANT_FLOOR <= abs(value) < SIGNIFICANT_CEILING:
        return value
    scale = 10.0 ** (14 - math.floor(math.log10(abs(value))))
    return round(value * scale) / scale


# significant(x) in SQL, for a float8 expression x (repeated: PostgreSQL has no local names).
SIGNIFICANT_SQL = (
    f"CASE WHEN abs({{x}}) >= {SIGNIFICANT_FLOOR!r} AND abs({{x}}) < {SIGNIFICANT_CEILING!r} "
    "THEN round({x} * 10::float8 ^ (14 - floor(log(abs({x}))))) "
    "/ 10::float8 ^ (14 - floor(log(abs({x})))) "
    "ELSE {x} END"
)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device of the registry; ``sensor_types`` sorted, from the readings stored."""

    device_id: str
    first_seen: datetime
    last_seen: datetime
    sensor_types: tuple[str, ...]
    status: str

    def is_online(self, online_since: datetime) -> bool:
        """Online: not announced offline, and heard from at or after ``online_since``."""
        return self.status == "online" and self.last_seen >= online_since


@dataclass(slots=True)
class StoredDeadLetter:
    """One row of ``iot_rejected``; ``replayed_at`` is ``None`` while it is pending."""

    id: int
    received_at: datetime
    topic: str
    payload: bytes
    reason: str
    replayed_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters: every set field must match.

    ``reason`` is a rejection code (the text before the first ``:`` of the reason); ``topic``
    is a topic, or a prefix when it ends with ``#`` (``zigbee2mqtt/#``); ``start`` inclusive
    and ``end`` exclusive bound ``received_at``; ``pending`` leaves out replayed ones.
    """

    reason: str | None = None
    topic: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    pending: bool = False


@dataclass(frozen=True, slots=True)
class StoredBirth:
    """A Sparkplug B birth certificate kept in ``sparkplug_births`` (``device`` is '' for an
    NBIRTH); ``received_at, node_key, device`` order the births newest first."""

    topic: str
    payload: bytes
    received_at: datetime
    node_key: str
    device: str


class ReadingQueries(Protocol):
    """Read access for the HTTP API. Reads never wait for the writer.

    Every method raises ``TransientStorageError`` while the database is unreachable or not yet
    migrated, and ``PermanentStorageError`` for a query the database refuses.
    """

    async def read_readings(
        self, where: ReadingFilter, *, before: Position | None, limit: int
    ) -> list[StoredReading]:
        """Up to ``limit`` readings, newest first (``timestamp`` then ``id``, descending),
        strictly after ``before`` in that order."""

    async def aggregate(
        self,
        *,
        sensor_type: str,
        device_id: str | None,
        start: datetime,
        end: datetime,
        bucket: timedelta,
    ) -> list[Bucket]:
        """Count, min, max, avg per bucket of width ``bucket`` (aligned to the Unix epoch) over
        ``[start, end)``, oldest bucket first; buckets without rows are absent."""

    async def list_devices(
        self,
        *,
        after: str | None,
        limit: int,
        status: str | None = None,
        online_since: datetime | None = None,
    ) -> list[DeviceRecord]:
        """Up to ``limit`` devices ordered by id, ids greater than ``after``; with ``status``
        only those online (or not) in the sense of :meth:`DeviceRecord.is_online`."""

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        """The device, or ``None`` if it never sent a reading."""

    async def list_rejected(
        self, where: DeadLetterFilter, *, after: int | None, limit: int, oldest_first: bool = False
    ) -> list[StoredDeadLetter]:
        """Up to ``limit`` dead letters by id, newest first (or oldest first), strictly after
        the id ``after`` in that order."""

    async def load_births(self, *, before: StoredBirth | None, limit: int) -> list[StoredBirth]:
        """Up to ``limit`` kept Sparkplug births, newest received first, strictly after
        ``before`` in that order (see :func:`~iotcollector.storage.query.births_query`)."""


class Database(Storage, ReadingQueries, Protocol):
    """What a backend implements: the writer's interface and the API's read queries."""
