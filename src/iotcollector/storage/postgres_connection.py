"""Opening and discarding PostgreSQL connections, errors translated."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import psycopg
from psycopg import AsyncConnection

from iotcollector.errors import PermanentStorageError, TransientStorageError
from iotcollector.storage.postgres_errors import refused_login_sqlstate, translate_error


async def connect(url: str, timeout_s: float) -> AsyncConnection[Any]:
    """An autocommit connection.

    An unreachable or starting server is a transient error; refused credentials (or a
    database that does not exist) are permanent: retrying them cannot succeed.
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await AsyncConnection.connect(
                url,
                autocommit=True,
                # libpq wants whole seconds (and treats 1 as 2).
                connect_timeout=max(2, math.ceil(timeout_s)),
                application_name="iot-collector",
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
            )
    except Exception as exc:
        error = translate_error(exc, "connect")
        refused = refused_login_sqlstate(exc)
        if refused is not None:
            error = PermanentStorageError(str(error), refused)
        elif not isinstance(error, TransientStorageError) and isinstance(
            exc, psycopg.OperationalError
        ):
            error = TransientStorageError(str(error), error.code)
        raise error from exc


async def close_quietly(conn: AsyncConnection[Any] | None) -> None:
    """Close a connection being discarded; its errors do not matter any more."""
    if conn is None or conn.closed:
        return
    try:
        async with asyncio.timeout(2.0):
            await conn.close()
    except Exception:  # noqa: S110 - the connection is being discarded anyway
        pass
