"""Choose the storage backend from ``IOT_DATABASE_URL``."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

# The URL is parsed (and validated, once) by the settings; the storage modules use the result.
from iotcollector.config import PostgresTarget, SqliteTarget, parse_database_url

if TYPE_CHECKING:
    from iotcollector.storage.base import Database

__all__ = ["PostgresTarget", "SqliteTarget", "open_storage", "parse_database_url"]


def open_storage(
    url: str,
    *,
    partition_interval: timedelta = timedelta(days=1),
    device_offline_after: timedelta = timedelta(minutes=5),
) -> Database:
    """The backend for ``url``, not yet connected: call ``await storage.open()``.

    ``partition_interval``: the width of PostgreSQL's time partitions (SQLite has none).
    ``device_offline_after``: PostgreSQL refreshes a steady sender's ``last_seen`` once a
    second, or ten times within that time if it is shorter (SQLite at every batch).
    """
    target = parse_database_url(url)
    if isinstance(target, SqliteTarget):
        from iotcollector.storage.sqlite import SqliteStorage  # noqa: PLC0415 - lazy backend

        return SqliteStorage(target.path)
    from iotcollector.storage.postgres import PostgresStorage  # noqa: PLC0415 - lazy backend

    return PostgresStorage(
        target.url,
        partition_interval=partition_interval,
        last_seen_resolution=min(timedelta(seconds=1), device_offline_after / 10),
    )
