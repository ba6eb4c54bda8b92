"""What the API routes are given: collaborators and limits, passed in (nothing global)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from iotcollector.api.auth import ApiKeys

if TYPE_CHECKING:
    from collections.abc import Callable

    from iotcollector.domain.reading import Reading
    from iotcollector.storage.base import DeadLetterFilter, ReadingQueries, WriteResult


class ReadingWriter(Protocol):
    """The ingest pipeline's writer: returns after commit; raises an ``IotCollectorError``
    when it cannot take the write now (busy, shutting down)."""

    async def write(self, readings: list[Reading]) -> WriteResult: ...


class DeadLetterReplay(Protocol):
    """Replays the pending dead letters ``where`` selects; returns the report's counts."""

    async def __call__(self, where: DeadLetterFilter, *, dry_run: bool) -> dict[str, object]: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ApiContext:
    queries: ReadingQueries
    writer: ReadingWriter
    keys: ApiKeys = field(default_factory=lambda: ApiKeys(()))
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("iotcollector.api"))
    device_offline_after_s: float = 300.0
    max_body_bytes: int = 1024 * 1024
    max_future_skew_s: float = 300.0
    # The same bound as for an MQTT message (IOT_MAX_READINGS_PER_MESSAGE): 422 beyond.
    max_readings_per_message: int = 10_000
    # A POST body not received whole within this time: 408.
    body_timeout_s: float = 30.0
    # A write not committed within this time answers 503 + Retry-After; it may still commit
    # later, which is safe: a retried write counts its readings as duplicates.
    write_timeout_s: float = 10.0
    csv_page_rows: int = 5000
    clock: Callable[[], datetime] = utc_now
    replay: DeadLetterReplay | None = None
    # Where devices publish (GET /api/info): the broker URL, credentials masked, and filters.
    mqtt_broker: str = ""
    mqtt_topics: tuple[str, ...] = ()
