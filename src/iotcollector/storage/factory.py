"""Choose the storage backend from ``IOT_DATABASE_URL``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from iotcollector.errors import ConfigError
from iotcollector.redact import redact_url

if TYPE_CHECKING:
    from iotcollector.storage.base import Database


@dataclass(frozen=True, slots=True)
class SqliteTarget:
    path: str


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    url: str


def parse_database_url(url: str) -> SqliteTarget | PostgresTarget:
    """``sqlite:///relative/path``, ``sqlite:////absolute/path``, ``postgresql://…``."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigError(f"IOT_DATABASE_URL: not a URL: {redact_url(url)!r}")
    if scheme in {"postgresql", "postgres"}:
        if not urlsplit(url).hostname and "host=" not in url:
            raise ConfigError("IOT_DATABASE_URL: a PostgreSQL URL needs a host")
        return PostgresTarget(url)
    if scheme == "sqlite":
        if not rest.startswith("/"):
            raise ConfigError(
                "IOT_DATABASE_URL: use sqlite:///relative/path or sqlite:////absolute/path "
                f"(no host), not {redact_url(url)!r}"
            )
        path = unquote(rest[1:].split("?", 1)[0])
        if not path or path == ":memory:" or path.startswith("file::memory:"):
            raise ConfigError(
                "IOT_DATABASE_URL: an in-memory SQLite database cannot be shared with the "
                "storage thread nor survive a restart: give a file path"
            )
        if path.endswith("/"):
            raise ConfigError(f"IOT_DATABASE_URL: {path!r} is a directory, not a file")
        return SqliteTarget(path)
    raise ConfigError(
        f"IOT_DATABASE_URL: unsupported scheme {scheme!r}: use sqlite:/// or postgresql://"
    )


def open_storage(url: str) -> Database:
    """The backend for ``url``, not yet connected: call ``await storage.open()``."""
    target = parse_database_url(url)
    if isinstance(target, SqliteTarget):
        from iotcollector.storage.sqlite import SqliteStorage  # noqa: PLC0415 - lazy backend

        return SqliteStorage(target.path)
    from iotcollector.storage.postgres import PostgresStorage  # noqa: PLC0415 - lazy backend

    return PostgresStorage(target.url)
