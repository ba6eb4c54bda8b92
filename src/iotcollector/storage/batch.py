"""What both backends do with a batch besides SQL: isolating refused rows, the bookkeeping.

A batch the database refuses for one row's data is retried in halves (:class:`Bisection`)
until each refused reading stands alone; it goes to ``iot_rejected`` with its reason and the
rest lands. :func:`settle` then counts what was stored, duplicated and dead-lettered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeAlias

import orjson

from iotcollector.storage.base import WriteResult

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from iotcollector.domain.reading import DeadLetter, Reading

# A row of ``iot_rejected``: received_at, topic, payload, reason.
RejectedRow: TypeAlias = tuple[datetime, str, bytes, str]


class Bisection:
    """The readings a database refuses for their data, isolated by halving.

    The backend writes each :meth:`next_chunk` under a savepoint and reports :meth:`landed`,
    or :meth:`refused` for a data error: a refused chunk is tried again as two halves, a
    refused single reading is kept with its reason. Chunks come in the batch's order.
    """

    def __init__(self, readings: Sequence[Reading]) -> None:
        self._todo: list[Sequence[Reading]] = [readings] if readings else []
        self.stored = 0
        self.rejected: list[tuple[Reading, str]] = []

    def next_chunk(self) -> Sequence[Reading] | None:
        return self._todo.pop() if self._todo else None

    def landed(self, stored: int) -> None:
        self.stored += stored

    def refused(self, chunk: Sequence[Reading], message: str) -> None:
        if len(chunk) == 1:
            self.rejected.append((chunk[0], storage_reason(message)))
            return
        middle = len(chunk) // 2
        self._todo += (chunk[middle:], chunk[:middle])


@dataclass(frozen=True, slots=True)
class Settlement:
    """One batch, written: what the registry learns, what ``iot_rejected`` gets, the counts."""

    accepted: Sequence[Reading]
    rejected: list[RejectedRow]
    result: WriteResult


def settle(
    readings: Sequence[Reading],
    dead_letters: Sequence[DeadLetter],
    *,
    stored: int,
    refused: Sequence[tuple[Reading, str]],
    now: datetime,
) -> Settlement:
    """``readings`` of which ``stored`` were new and ``refused`` were isolated at ``now``."""
    if refused:
        refused_ids = {id(r) for r, _ in refused}
        accepted: Sequence[Reading] = [r for r in readings if id(r) not in refused_ids]
    else:
        accepted = readings
    rejected = [
        (d.received_at, clean_text(d.topic), bytes(d.payload), clean_text(d.reason))
        for d in dead_letters
    ]
    rejected += [(now, "", refused_payload(r), clean_text(reason)) for r, reason in refused]
    result = WriteResult(
        stored=stored,
        duplicates=len(accepted) - stored,
        dead_letters=len(dead_letters) + len(refused),
    )
    return Settlement(accepted, rejected, result)


def refused_payload(reading: Reading) -> bytes:
    """The bytes kept in ``iot_rejected`` for a reading the database refused."""
    return orjson.dumps(
        {
            "device_id": reading.device_id,
            "sensor_type": reading.sensor_type,
            "value": reading.value,
            "unit": reading.unit,
            "timestamp": reading.timestamp,
        }
    )


def storage_reason(message: str) -> str:
    """The dead-letter reason of a reading the database refused."""
    first_line = message.strip().splitlines()[0] if message.strip() else "refused"
    return f"storage: {first_line}"


def clean_text(text: str) -> str:
    """Text any database accepts: no NUL (PostgreSQL refuses it), no lone surrogates."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text.encode("utf-8", "replace").decode("utf-8")


def distinct_devices(readings: Iterable[Reading]) -> list[str]:
    """The batch's device ids, once each, sorted (a fixed lock order across writers)."""
    return sorted({r.device_id for r in readings})
