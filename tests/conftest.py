"""Shared fixtures. ``tests/`` is put on ``sys.path`` so ``support`` imports as a package.

Under ``CI=true`` a test may not skip: a skip there (a missing tool or service: Mosquitto,
PostgreSQL, promtool, terraform, helm, Chromium...) is reported as a failure with its reason,
so that a CI machine without them cannot be green with part of the suite unrun.
"""

from __future__ import annotations

import itertools
import os
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
    from collections.abc import Generator, Iterator

    import pluggy

_database_numbers = itertools.count(1)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _fail_skip_in_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    if report.skipped and _in_ci() and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        report.outcome = "failed"
        report.longrepr = f"CI=true and {report.nodeid} would be skipped: " + reason.removeprefix(
            "Skipped: "
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport() -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    """Under ``CI=true``, a skipped test fails, naming what was missing (the skip's reason)."""
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report() -> Generator[None, pluggy.Result[pytest.CollectReport], None]:
    """The same for a whole module skipped at collection (``importorskip``, module-level skip)."""
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())


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
