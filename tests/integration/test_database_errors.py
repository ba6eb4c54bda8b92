"""Error semantics that match the words, on real Mosquitto and PostgreSQL.

At start-up, what retrying cannot fix exits non-zero with a clear message: a schema newer than
the code, a failed migration, refused credentials. At run time, a database that refuses every
write (read-only, a missing privilege) stalls ingest: nothing is acknowledged (the broker
keeps the messages), ``/readyz`` answers 503, the change of error kind is logged with its
SQLSTATE, and everything is stored once the database is fixed.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Self

import httpx
import psycopg
import pytest

from support.collector import Collector, publish, scalar, wait_for_count

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from support.mosquitto import MosquittoServer
    from support.postgres import PostgresServer

pytestmark = pytest.mark.integration


@pytest.fixture
def collectors() -> Iterator[list[Collector]]:
    started: list[Collector] = []
    yield started
    for c in started:
        c.ensure_stopped()


def _collector(
    started: list[Collector], broker: MosquittoServer, url: str, tmp_path: Path, **env: str
) -> Collector:
    c = Collector(
        mqtt_url=broker.url, database_url=url, client_id="errors-test", log_dir=tmp_path, env=env
    )
    started.append(c)
    return c.start()


def _admin(server: PostgresServer, sql: str, database: str = "postgres") -> None:
    with psycopg.connect(server.url_for(database), autocommit=True) as conn:
        conn.execute(sql.encode())


def _exits(c: Collector, timeout: float = 30) -> int:
    assert c.proc is not None
    return c.proc.wait(timeout=timeout)


def _reading(i: int) -> bytes:
    return b'{"device_id":"e","sensor_type":"t","value":%d,"timestamp":%d}' % (i, 1_700_000_000 + i)


# --- start-up ----------------------------------------------------------------------------------


def test_a_schema_newer_than_the_code_exits_with_a_clear_message(
    broker: MosquittoServer, postgres_url: str, tmp_path: Path, collectors: list[Collector]
) -> None:
    first = _collector(collectors, broker, postgres_url, tmp_path)
    first.wait_ready()
    assert first.stop() == 0
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version) VALUES ('9999')")
    c = _collector(collectors, broker, postgres_url, tmp_path)
    assert _exits(c) == 1
    assert "CRITICAL" in c.log()
    assert "cannot start: the database schema has migration(s) 9999" in c.log()
    assert "retrying" not in c.log().split("9999", 1)[1]


def test_a_failed_migration_exits_with_a_clear_message(
    broker: MosquittoServer,
    postgres_server: PostgresServer,
    tmp_path: Path,
    collectors: list[Collector],
) -> None:
    postgres_server.create_database("no_create")
    _admin(postgres_server, "DROP ROLE IF EXISTS nocreate")
    _admin(postgres_server, "CREATE ROLE nocreate LOGIN")  # PostgreSQL 15: no CREATE on public
    url = postgres_server.url_for("no_create").replace("postgres@", "nocreate@")
    c = _collector(collectors, broker, url, tmp_path)
    try:
        assert _exits(c) == 1
        log = c.log()
        assert "cannot start: postgresql migration failed [42501]" in log
        assert "fix the database (privileges, schema) and start again" in log
    finally:
        postgres_server.drop_database("no_create")


def test_refused_credentials_exit_with_a_clear_message(
    broker: MosquittoServer, postgres_url: str, tmp_path: Path, collectors: list[Collector]
) -> None:
    url = postgres_url.replace("postgres@", "nobody@")
    c = _collector(collectors, broker, url, tmp_path)
    assert _exits(c) == 1
    log = c.log()
    assert 'role "nobody" does not exist' in log
    assert "check the user, password and database name in IOT_DATABASE_URL" in log
    assert "database not available" not in log


def test_an_unreachable_database_is_still_retried(
    broker: MosquittoServer, tmp_path: Path, collectors: list[Collector]
) -> None:
    c = _collector(collectors, broker, "postgresql://postgres@127.0.0.1:9/none", tmp_path)
    time.sleep(3)
    assert c.proc is not None
    assert c.proc.poll() is None
    assert c.get("/readyz").status_code == 503
    assert "database not available" in c.log()
    assert c.stop() == 0


# --- run time -------------------------------------------------------------------------------


class SteadyPublisher:
    """Publishes numbered readings at a steady rate until stopped."""

    def __init__(self, broker: MosquittoServer) -> None:
        self.broker = broker
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            publish(self.broker.url, [_reading(self.sent + k) for k in range(5)], publishers=1)
            self.sent += 5
            time.sleep(0.1)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _wait_status(c: Collector, status: int, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if c.get("/readyz").status_code == status:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"/readyz not {status} within {timeout} s:\n{c.log()[-3000:]}")


def test_read_only_database_not_ready_within_10s_then_ready_nothing_lost(
    broker: MosquittoServer,
    postgres_server: PostgresServer,
    postgres_url: str,
    tmp_path: Path,
    collectors: list[Collector],
) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    c = _collector(collectors, broker, postgres_url, tmp_path)
    c.wait_ready()
    with SteadyPublisher(broker) as publisher:
        time.sleep(1)
        _admin(postgres_server, f"ALTER DATABASE {database} SET default_transaction_read_only = on")
        _admin(  # the new setting applies to new sessions: end the collector's
            postgres_server,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND application_name = 'iot-collector'",
        )
        not_ready_after = _wait_status(c, 503, timeout=10)
        checks = c.get("/readyz").json()["checks"]
        assert checks["writes"] is False
        # The first failure may be the terminated connection (transient); the read-only
        # error that stalls ingest comes with the retry on a fresh connection.
        deadline = time.monotonic() + 10
        while c.metrics()["iotcollector_ingest_stalled"] != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c.metrics()["iotcollector_ingest_stalled"] == 1
        time.sleep(2)
        _admin(postgres_server, f"ALTER DATABASE {database} RESET default_transaction_read_only")
        _wait_status(c, 200, timeout=20)
        time.sleep(0.5)
    sent = publisher.sent
    assert wait_for_count(postgres_url, "iot_data", sent) == sent
    assert scalar(postgres_url, "SELECT count(*) FROM iot_data") == sent
    log = c.log()
    assert "database writes fail (transient" in log  # the terminated connection
    assert "code 25006" in log  # read-only, the permanent kind
    assert "ingest stalled" in log
    assert "database writes succeed again" in log
    assert c.stop() == 0
    print(f"/readyz 503 {not_ready_after:.1f} s after the database became read-only")


def test_a_write_refused_for_good_stalls_without_puback_until_fixed(
    broker: MosquittoServer, postgres_url: str, tmp_path: Path, collectors: list[Collector]
) -> None:
    env = {"IOT_SHUTDOWN_TIMEOUT_S": "1"}
    c = _collector(collectors, broker, postgres_url, tmp_path, **env)
    c.wait_ready()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'refused by the test' USING ERRCODE = '42501'; END $$"
        )
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON iot_data EXECUTE FUNCTION refuse()")
    publish(broker.url, [_reading(i) for i in range(50)], publishers=1)
    _wait_status(c, 503, timeout=10)
    assert "ingest stalled" in c.log()
    assert "code 42501" in c.log()
    assert c.stop() == 0  # the 50 are not committed: they stay un-acknowledged
    assert "50 messages not committed" in c.log()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP TRIGGER refuse ON iot_data")
    c2 = _collector(collectors, broker, postgres_url, tmp_path)
    c2.wait_ready()
    assert wait_for_count(postgres_url, "iot_data", 50) == 50  # the broker resent all 50
    assert c2.stop() == 0
