"""Replay dead letters: parse each again with today's rules and formats, store what is valid.

A dead letter is read exactly as live ingest reads a message on its topic (mapping rules,
Sparkplug B with the kept births, the default formats, per-device topics), with the dead
letter's receipt time as the time of receipt: a reading without its own timestamp gets it,
never the time of the replay. Readings go through the normal writer, so dedup applies: a
second replay stores nothing new. A dead letter whose whole message is now valid is marked
replayed (``replayed_at``) and no longer pending; one still (partly) rejected stays pending
and is counted by its rejection code. Marking follows the commit of its readings: a replay
cut short is simply run again (the readings already stored count as duplicates).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from iotcollector.domain.parse import RejectionCode, holds_a_prefix, parse_message
from iotcollector.domain.presence import parse_status
from iotcollector.domain.reading import Reading, Rejection
from iotcollector.domain.topics import keep_topic_device
from iotcollector.pipeline.mapped import MappedTopics
from iotcollector.pipeline.sparkplug_host import restore_births

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from iotcollector.config import Settings
    from iotcollector.domain.mapping import Mappings
    from iotcollector.storage.base import (
        DeadLetterFilter,
        StoredBirth,
        StoredDeadLetter,
        WriteResult,
    )

_PAGE = 100  # dead letters read at once: up to 100 payloads of IOT_MAX_PAYLOAD_BYTES
_MAX_WRITE = 5000


class DeadLetters(Protocol):
    """What a replay reads and marks in the database."""

    async def list_rejected(
        self, where: DeadLetterFilter, *, after: int | None, limit: int, oldest_first: bool = False
    ) -> list[StoredDeadLetter]: ...

    async def mark_replayed(self, ids: Sequence[int], at: datetime) -> int: ...

    async def load_births(self, *, before: StoredBirth | None, limit: int) -> list[StoredBirth]: ...


@dataclass(slots=True)
class ReplayReport:
    """What a replay did (or, with ``dry_run``, would do)."""

    dry_run: bool
    examined: int = 0
    replayed: int = 0
    readings: int = 0
    stored: int = 0
    duplicates: int = 0
    still_rejected: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "examined": self.examined,
            "replayed": self.replayed,
            "readings": self.readings,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "still_rejected": dict(sorted(self.still_rejected.items())),
        }


@dataclass(frozen=True, slots=True)
class ParseSettings:
    """The live collector's parsing settings, so a replay reads messages as ingest does."""

    max_payload_bytes: int = 256 * 1024
    max_future_skew_s: float = 300.0
    max_readings: int = 10_000
    status_topic_prefix: str | None = None
    device_topics: bool = False

    @classmethod
    def of(cls, settings: Settings) -> ParseSettings:
        return cls(
            max_payload_bytes=settings.max_payload_bytes,
            max_future_skew_s=settings.max_future_skew_s,
            max_readings=settings.max_readings_per_message,
            status_topic_prefix=settings.status_topic_prefix,
            device_topics=settings.mqtt_device_topics,
        )


class Replayer:
    """Replays pending dead letters through ``write`` (the pipeline's, or the storage's)."""

    def __init__(
        self,
        store: DeadLetters,
        write: Callable[[list[Reading]], Awaitable[WriteResult]],
        *,
        mappings: Mappings | None,
        parsing: ParseSettings,
    ) -> None:
        self._store = store
        self._write = write
        self._mappings = mappings
        self._parsing = parsing

    async def replay(self, where: DeadLetterFilter, *, dry_run: bool = False) -> ReplayReport:
        """Replay every pending dead letter ``where`` selects, oldest first."""
        report = ReplayReport(dry_run=dry_run)
        mapped = await self._mapped()
        after: int | None = None
        while True:
            page = await self._store.list_rejected(
                where, after=after, limit=_PAGE, oldest_first=True
            )
            if not page:
                return report
            after = page[-1].id
            readings: list[Reading] = []
            done: list[int] = []
            for letter in page:
                await asyncio.sleep(0)  # one dead letter parsed per event-loop turn: ingest runs
                report.examined += 1
                found, rejections = self._parse(letter, mapped)
                report.readings += len(found)
                if rejections:
                    report.still_rejected[rejections[0].code] += 1
                else:
                    done.append(letter.id)
                if dry_run:
                    continue
                readings += found
                if len(readings) >= _MAX_WRITE:  # held readings bounded, progress kept
                    await self._store_and_mark(readings, done, report)
                    readings, done = [], []
            if dry_run:
                report.replayed += len(done)
            else:
                await self._store_and_mark(readings, done, report)

    async def _store_and_mark(
        self, readings: list[Reading], done: list[int], report: ReplayReport
    ) -> None:
        """Write the readings, then (after their commit) mark the fully valid dead letters."""
        for start in range(0, len(readings), _MAX_WRITE):
            result = await self._write(readings[start : start + _MAX_WRITE])
            report.stored += result.stored
            report.duplicates += result.duplicates
        if done:
            report.replayed += await self._store.mark_replayed(done, datetime.now(UTC))

    async def _mapped(self) -> MappedTopics | None:
        """A fresh host memory from the kept births: a replay never changes the live one."""
        if self._mappings is None:
            return None
        p = self._parsing
        mapped = MappedTopics(
            self._mappings,
            max_payload_bytes=p.max_payload_bytes,
            max_future_skew_s=p.max_future_skew_s,
            max_readings=p.max_readings,
        )
        await restore_births(mapped.sparkplug, self._store)
        return mapped

    def _parse(
        self, letter: StoredDeadLetter, mapped: MappedTopics | None
    ) -> tuple[list[Reading], list[Rejection]]:
        p = self._parsing
        topic, payload, at = letter.topic, letter.payload, letter.received_at
        if holds_a_prefix(letter.reason):
            return [], [Rejection(RejectionCode.TOO_LARGE, "only the payload's first bytes kept")]
        if p.status_topic_prefix and topic.startswith(p.status_topic_prefix):
            status = parse_status(topic, payload[: p.max_payload_bytes], received_at=at)
            return [], [status] if isinstance(status, Rejection) else []
        match = mapped.match(topic) if mapped is not None else None
        if mapped is not None and match is not None:
            outcome = mapped.decode(match, topic, payload, at)
            return outcome.readings, outcome.rejections
        result = parse_message(
            payload,
            received_at=at,
            max_future_skew_s=p.max_future_skew_s,
            max_payload_bytes=p.max_payload_bytes,
            max_readings=p.max_readings,
        )
        if p.device_topics and result.readings:
            kept, foreign = keep_topic_device(topic, result.readings)
            return kept, [*result.rejections, *([foreign] if foreign else [])]
        return result.readings, result.rejections
