"""The PostgreSQL error classifier: transient (retry) versus permanent (isolate)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from iotcollector.errors import PermanentStorageError, TransientStorageError
from iotcollector.storage.postgres_errors import (
    is_row_sqlstate,
    is_transient_error,
    is_transient_sqlstate,
    refused_login_sqlstate,
    translate_error,
)


@pytest.mark.parametrize(
    "sqlstate",
    [
        *("08000", "08006", "08001", "53100", "53200", "53300", "57P01", "57P02", "57P03"),
        *("40001", "40P01", "57014", "55P03", "58030"),
    ],
)
def test_transient_sqlstates(sqlstate: str) -> None:
    assert is_transient_sqlstate(sqlstate)
    assert not is_row_sqlstate(sqlstate)


@pytest.mark.parametrize(
    "sqlstate", ["22001", "22003", "22P02", "23502", "23514", "42P01", "42601", "0A000", "XX000"]
)
def test_permanent_sqlstates(sqlstate: str) -> None:
    assert not is_transient_sqlstate(sqlstate)


@pytest.mark.parametrize(("sqlstate", "row"), [("22001", True), ("23514", True), ("54000", True)])
def test_row_errors_are_data_errors(sqlstate: str, row: bool) -> None:
    assert is_row_sqlstate(sqlstate) is row


@pytest.mark.parametrize("sqlstate", ["42P01", "42501", "0A000", None, ""])
def test_schema_errors_are_not_row_errors(sqlstate: str | None) -> None:
    # A missing table must not send every good reading to the dead-letter table.
    assert not is_row_sqlstate(sqlstate)


def test_no_sqlstate_is_not_transient() -> None:
    assert not is_transient_sqlstate(None)
    assert not is_transient_sqlstate("")


@pytest.mark.parametrize(
    "exc",
    [
        errors.AdminShutdown("terminating connection due to administrator command"),
        errors.CannotConnectNow("the database system is starting up"),
        errors.SerializationFailure("could not serialize access"),
        errors.DeadlockDetected("deadlock detected"),
        errors.TooManyConnections("too many clients"),
        psycopg.OperationalError("connection refused"),  # no SQLSTATE: libpq's own
        psycopg.InterfaceError("the connection is closed"),
        ConnectionResetError("reset"),
        TimeoutError(),
    ],
)
def test_transient_exceptions(exc: BaseException) -> None:
    assert is_transient_error(exc)
    assert isinstance(translate_error(exc, "write"), TransientStorageError)


@pytest.mark.parametrize(
    "exc",
    [
        errors.StringDataRightTruncation("value too long for type character varying(50)"),
        errors.NotNullViolation("null value"),
        errors.UndefinedTable("relation does not exist"),
        errors.SyntaxError("syntax error"),
        psycopg.DataError("bad data"),
        ValueError("not a database error"),
    ],
)
def test_permanent_exceptions(exc: BaseException) -> None:
    assert not is_transient_error(exc)
    assert isinstance(translate_error(exc, "write"), PermanentStorageError)


def test_translated_message_names_the_operation_and_sqlstate() -> None:
    error = translate_error(errors.AdminShutdown("terminating"), "write")
    assert "write" in str(error)
    assert "57P01" in str(error)


def test_storage_errors_pass_through() -> None:
    original = TransientStorageError("already translated")
    assert translate_error(original, "write") is original


@pytest.mark.parametrize(
    ("fatal", "sqlstate"),
    [
        ('password authentication failed for user "iot"', "28P01"),
        ('role "nobody" does not exist', "28000"),
        ('no pg_hba.conf entry for host "10.0.0.1", user "iot", database "iot"', "28000"),
        ('database "nosuchdb" does not exist', "3D000"),
        ('permission denied for database "iot"', "42501"),
        ("the database system is starting up", None),
    ],
)
def test_a_refused_login_is_recognised_by_its_fatal_message(
    fatal: str, sqlstate: str | None
) -> None:
    exc = psycopg.OperationalError(
        f'connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  {fatal}'
    )
    assert refused_login_sqlstate(exc) == sqlstate


def test_an_unreachable_server_is_not_a_refused_login() -> None:
    exc = psycopg.OperationalError("connection failed: Connection refused")
    assert refused_login_sqlstate(exc) is None
