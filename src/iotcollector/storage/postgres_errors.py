"""PostgreSQL errors sorted at the boundary: transient (retry later), row (isolate the row),
or permanent, by SQLSTATE; and translated into the project's storage errors."""

from __future__ import annotations

import re

import psycopg

from iotcollector.errors import PermanentStorageError, StorageError, TransientStorageError
from iotcollector.storage.partitions import is_missing_partition

# SQLSTATE classes and codes worth retrying (after reconnecting).
_TRANSIENT_CLASSES = frozenset(
    {
        "08",  # connection exception
        "53",  # insufficient resources (disk full, out of memory, too many connections)
        "58",  # system error (I/O error)
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "40003",  # statement_completion_unknown
        "55P03",  # lock_not_available
        "55006",  # object_in_use
        "57014",  # query_canceled (statement timeout, our own cancel)
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, recovering)
        "57P05",  # idle_session_timeout
        "25P03",  # idle_in_transaction_session_timeout
    }
)
# Classes whose errors depend on the row's data: bisecting isolates the bad rows.
_ROW_ERROR_CLASSES = frozenset(
    {
        "22",  # data exception (value too long, out of range, bad encoding)
        "23",  # integrity constraint violation (not null, check)
        "54",  # program limit exceeded (index row too large)
    }
)


def is_transient_sqlstate(sqlstate: str | None) -> bool:
    """Whether an error with this SQLSTATE may succeed when retried later."""
    if not sqlstate:
        return False
    return sqlstate[:2] in _TRANSIENT_CLASSES or sqlstate in _TRANSIENT_CODES


def is_row_sqlstate(sqlstate: str | None) -> bool:
    """Whether an error with this SQLSTATE is caused by a row's data (isolate the row)."""
    if not sqlstate or is_transient_sqlstate(sqlstate):
        return False
    return sqlstate[:2] in _ROW_ERROR_CLASSES


def is_transient_error(exc: BaseException) -> bool:
    """Classify any error met while talking to PostgreSQL: retry later, or never."""
    if isinstance(exc, psycopg.Error):
        if is_missing_partition(exc):
            return True  # created on demand, then the batch is written again
        if exc.sqlstate:
            return is_transient_sqlstate(exc.sqlstate)
        # No SQLSTATE: raised by libpq/psycopg itself (refused, reset, closed connection).
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    return isinstance(exc, OSError | TimeoutError)


def is_row_error(exc: BaseException) -> bool:
    """Whether ``exc`` is caused by a row's data: bisecting the batch isolates the row."""
    return (
        isinstance(exc, psycopg.Error)
        and is_row_sqlstate(exc.sqlstate)
        and not is_missing_partition(exc)
    )


def error_message(exc: BaseException) -> str:
    """The server's primary message, or the error's own text."""
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    return str(exc) or type(exc).__name__


def translate_error(exc: BaseException, doing: str) -> StorageError:
    """The project's error for ``exc`` (raise it ``from exc``)."""
    if isinstance(exc, StorageError):
        return exc
    kind = TransientStorageError if is_transient_error(exc) else PermanentStorageError
    sqlstate = exc.sqlstate if isinstance(exc, psycopg.Error) else None
    code = f" [{sqlstate}]" if sqlstate else ""
    return kind(f"postgresql {doing} failed{code}: {error_message(exc)}", sqlstate)


# libpq reports a refused login without a SQLSTATE: the server's FATAL message tells why.
_REFUSED_LOGIN = (
    (re.compile(r"password authentication failed"), "28P01"),
    (re.compile(r"no pg_hba\.conf entry"), "28000"),
    (re.compile(r"certificate authentication failed"), "28000"),
    (re.compile(r'role ".*" does not exist'), "28000"),
    (re.compile(r'database ".*" does not exist'), "3D000"),
    (re.compile(r"permission denied for database"), "42501"),
)


def refused_login_sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a login the server refused (credentials, or no such database)."""
    if not isinstance(exc, psycopg.OperationalError):
        return None
    _, fatal, reason = str(exc).partition("FATAL:")
    if not fatal:
        return None
    for pattern, sqlstate in _REFUSED_LOGIN:
        if pattern.search(reason):
            return sqlstate
    return None
