"""Shared fixtures. ``tests/`` is put on ``sys.path`` so ``support`` imports as a package."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from support.mosquitto import MosquittoServer, mosquitto_available  # noqa: E402
from support.postgres import PostgresServer, postgres_available  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator

_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL for the whole session (never the shared one on 5432)."""
    if not postgres_available():
        pytest.skip("PostgreSQL 15 binaries not found (set IOT_TEST_PG_BIN)")
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session server for one test."""
    name = f"test_{next(_database_numbers)}"
    url = postgres_server.create_database(name)
    yield url
    if postgres_server.running:
        postgres_server.drop_database(name)


@pytest.fixture
def broker() -> Iterator[MosquittoServer]:
    """A private Mosquitto (persistence on, deliberate queue limits) for one test."""
    if not mosquitto_available():
        pytest.skip("mosquitto is not installed")
    server = MosquittoServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test runs once on SQLite (a file in tmp_path) and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/iot.db"
    url: str = request.getfixturevalue("postgres_url")
    return url
