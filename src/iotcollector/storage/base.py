"""The storage interface every backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from iotcollector.domain.reading import DeadLetter, Reading


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The outcome of one committed batch.

    ``dead_letters`` counts every row written to ``iot_rejected``: those passed in plus the
    readings the database refused permanently and that were isolated there.
    """

    stored: int
    duplicates: int
    dead_letters: int


class Storage(Protocol):
    """A database that stores readings idempotently and dead letters, in one transaction.

    Errors are translated at this boundary: ``TransientStorageError`` (retry later) or
    ``PermanentStorageError`` (this data can never be written).
    """

    async def open(self) -> None:
        """Connect. Raises ``TransientStorageError`` while the database is unreachable."""

    async def close(self) -> None:
        """Release connections; safe to call twice."""

    async def migrate(self) -> list[str]:
        """Apply pending versioned migrations; return the versions applied now."""

    async def ping(self) -> None:
        """Raise ``TransientStorageError`` unless the database answers now."""

    async def write_batch(
        self, readings: Sequence[Reading], dead_letters: Sequence[DeadLetter]
    ) -> WriteResult:
        """Store readings (a reading already present counts as duplicate) and dead letters.

        Everything is committed before this returns; the devices registry is updated.
        A row the database refuses permanently is isolated into ``iot_rejected`` with its
        reason so the rest of the batch lands.
        """
