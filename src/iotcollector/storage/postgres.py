"""PostgreSQL storage on psycopg 3 (async): the ingest writer and the API's reader, together.

:class:`~iotcollector.storage.postgres_writer.PostgresWriter` owns the writer and ping
connections; :class:`~iotcollector.storage.postgres_reader.PostgresReader` the read pool and
the queries. Reads start once the writer has migrated the schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from iotcollector.storage.base import KEPT_BIRTHS
from iotcollector.storage.postgres_reader import PostgresReader
from iotcollector.storage.postgres_writer import (
    DEFAULT_PARTITION_INTERVAL,
    LAST_SEEN_RESOLUTION,
    PostgresWriter,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime, timedelta

    from iotcollector.domain.reading import DeadLetter, Reading, StatusChange
    from iotcollector.storage.base import (
        Bucket,
        DeadLetterFilter,
        DeviceRecord,
        Position,
        ReadingFilter,
        StoredBirth,
        StoredDeadLetter,
        StoredReading,
        WriteResult,
    )


class PostgresStorage:
    """The :class:`~iotcollector.storage.base.Database` on PostgreSQL."""

    def __init__(  # noqa: PLR0913 - keyword-only tuning knobs of one backend
        self,
        url: str,
        *,
        connect_timeout_s: float = 5.0,
        operation_timeout_s: float = 30.0,
        read_pool_size: int = 4,
        read_timeout_s: float = 30.0,
        partition_interval: timedelta = DEFAULT_PARTITION_INTERVAL,
        kept_births: int = KEPT_BIRTHS,
        last_seen_resolution: timedelta = LAST_SEEN_RESOLUTION,
    ) -> None:
        self._writer = PostgresWriter(
            url,
            connect_timeout_s=connect_timeout_s,
            operation_timeout_s=operation_timeout_s,
            partition_interval=partition_interval,
            kept_births=kept_births,
            last_seen_resolution=last_seen_resolution,
        )
        self.concurrent_writes = self._writer.concurrent_writes
        self._reader = PostgresReader(
            url,
            connect_timeout_s=connect_timeout_s,
            pool_size=read_pool_size,
            read_timeout_s=read_timeout_s,
        )

    async def open(self) -> None:
        await self._writer.open()

    async def close(self) -> None:
        await self._writer.close()
        await self._reader.close()

    async def migrate(self) -> list[str]:
        applied = await self._writer.migrate()
        self._reader.set_migrated()
        return applied

    async def ping(self) -> None:
        await self._writer.ping()

    async def write_batch(
        self,
        readings: Sequence[Reading],
        dead_letters: Sequence[DeadLetter],
        statuses: Sequence[StatusChange] = (),
    ) -> WriteResult:
        return await self._writer.write_batch(readings, dead_letters, statuses)

    async def mark_offline(self, silent_since: datetime) -> int:
        return await self._writer.mark_offline(silent_since)

    async def device_counts(self) -> tuple[int, int]:
        return await self._reader.device_counts()

    async def mark_replayed(self, ids: Sequence[int], at: datetime) -> int:
        return await self._writer.mark_replayed(ids, at)

    async def list_rejected(
        self, where: DeadLetterFilter, *, after: int | None, limit: int, oldest_first: bool = False
    ) -> list[StoredDeadLetter]:
        return await self._reader.list_rejected(
            where, after=after, limit=limit, oldest_first=oldest_first
        )

    async def load_births(self, *, before: StoredBirth | None, limit: int) -> list[StoredBirth]:
        return await self._reader.load_births(before=before, limit=limit)

    async def read_readings(
        self, where: ReadingFilter, *, before: Position | None, limit: int
    ) -> list[StoredReading]:
        return await self._reader.read_readings(where, before=before, limit=limit)

    async def aggregate(
        self,
        *,
        sensor_type: str,
        device_id: str | None,
        start: datetime,
        end: datetime,
        bucket: timedelta,
    ) -> list[Bucket]:
        return await self._reader.aggregate(
            sensor_type=sensor_type, device_id=device_id, start=start, end=end, bucket=bucket
        )

    async def list_devices(
        self,
        *,
        after: str | None,
        limit: int,
        status: str | None = None,
        online_since: datetime | None = None,
    ) -> list[DeviceRecord]:
        return await self._reader.list_devices(
            after=after, limit=limit, status=status, online_since=online_since
        )

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        return await self._reader.get_device(device_id)
