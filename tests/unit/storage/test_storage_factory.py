"""IOT_DATABASE_URL parsing and backend choice."""

from __future__ import annotations

import pytest

from iotcollector.errors import ConfigError
from iotcollector.storage.factory import (
    PostgresTarget,
    SqliteTarget,
    open_storage,
    parse_database_url,
)
from iotcollector.storage.postgres import PostgresStorage
from iotcollector.storage.sqlite import SqliteStorage


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///./data/iot.db", "./data/iot.db"),
        ("sqlite:///data/iot.db", "data/iot.db"),
        ("sqlite:////var/lib/iot/iot.db", "/var/lib/iot/iot.db"),
        ("SQLITE:///iot.db", "iot.db"),
        ("sqlite:///dir%20with%20space/iot.db", "dir with space/iot.db"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    assert parse_database_url(url) == SqliteTarget(path)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://iot@db:5432/iot",
        "postgres://iot:secret@127.0.0.1/iot?sslmode=require",
    ],
)
def test_postgres_urls(url: str) -> None:
    assert parse_database_url(url) == PostgresTarget(url)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite://", "sqlite:///relative"),
        ("sqlite:///", "in-memory"),
        ("sqlite://host/iot.db", "no host"),
        ("sqlite:///data/", "directory"),
        ("mysql://db/iot", "unsupported scheme"),
        ("iot.db", "not a URL"),
        ("postgresql:///iot", "needs a host"),
    ],
)
def test_refused_urls(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_database_url(url)


def test_errors_never_show_a_password() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_database_url("bogus")
    assert "IOT_DATABASE_URL" in str(caught.value)


def test_open_storage_picks_the_backend() -> None:
    assert isinstance(open_storage("sqlite:///x/iot.db"), SqliteStorage)
    assert isinstance(open_storage("postgresql://u@127.0.0.1:1/db"), PostgresStorage)
