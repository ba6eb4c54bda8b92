"""The collector's own PostgreSQL role and its rotated password, on a real PostgreSQL.

deploy/helm/iot-collector/files/postgresql/database-roles.sql makes iot_migrator and
iot_collector (no superuser, no role or database creation). The collector reads its password
through libpq's ``passfile`` (the mounted Secret that the External Secrets Operator rewrites
after each Secrets Manager rotation): every new connection reads the file, so a rotated password
is picked up without a restart. Here: scram-sha-256 authentication, the password changed in
PostgreSQL, the collector's sessions ended (as a failover or network cut would), readings
published while the file still holds the old password, then the file rewritten: every reading
arrives, from the same process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import psycopg
import pytest
from deploy_helpers import CHART

from support.collector import Collector, publish, scalar, wait_for_count
from support.messages import make_stream
from support.mosquitto import ANONYMOUS_LISTENER, MosquittoServer, mosquitto_available
from support.postgres import PostgresServer, postgres_available

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
    pytest.mark.skipif(not postgres_available(), reason="PostgreSQL 15 binaries not found"),
]

ROLES_SQL = CHART / "files" / "postgresql" / "database-roles.sql"
HBA = """local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """A private PostgreSQL that checks passwords (the shared test server trusts everyone)."""
    pg = PostgresServer()
    try:
        pg.start()
        hba = pg.data_dir / "pg_hba.conf"
        hba.write_text(HBA, encoding="utf-8")
        if os.geteuid() == 0:
            shutil.chown(hba, user="postgres")
        pg.restart()
        yield pg
    finally:
        pg.cleanup()


def _psql(server: PostgresServer, *args: str, env: dict[str, str] | None = None) -> str:
    psql = server.bin_dir / "psql"
    result = subprocess.run(
        [str(psql), "-X", "-q", "-d", server.url, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _apply_roles(server: PostgresServer, collector: str, migrator: str) -> None:
    """As the chart's Job runs it: the first passwords in the environment, not in argv."""
    env = {"COLLECTOR_PASSWORD": collector, "MIGRATOR_PASSWORD": migrator}
    _psql(server, "-f", str(ROLES_SQL), env=env)


def _url(server: PostgresServer, user: str, password: str) -> str:
    return f"postgresql://{user}:{password}@127.0.0.1:{server.port}/{server.database}"


def _pgpass(path: Path, server: PostgresServer, user: str, password: str) -> None:
    """Write the file as the kubelet updates a Secret volume: a new file, then a rename."""
    tmp = path.with_suffix(".new")
    tmp.write_text(f"127.0.0.1:{server.port}:{server.database}:{user}:{password}\n")
    tmp.chmod(0o600)
    tmp.replace(path)


@pytest.fixture(scope="module")
def migrated(server: PostgresServer) -> PostgresServer:
    _apply_roles(server, "collector-initial", "migrator-initial")
    env = {**os.environ, "IOT_DATABASE_URL": _url(server, "iot_migrator", "migrator-initial")}
    result = subprocess.run(
        [sys.executable, "-m", "iotcollector", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return server


def test_roles_are_idempotent_and_keep_rotated_passwords(migrated: PostgresServer) -> None:
    _apply_roles(migrated, "collector-other", "migrator-other")
    with psycopg.connect(_url(migrated, "iot_collector", "collector-initial")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("iot_owner",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(_url(migrated, "iot_collector", "collector-other")).close()


def test_collector_role_is_not_an_administrator(migrated: PostgresServer) -> None:
    with psycopg.connect(
        _url(migrated, "iot_collector", "collector-initial"), autocommit=True
    ) as conn:
        assert (
            scalar(
                migrated.url,
                "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'iot_%'"
                " AND (rolsuper OR rolcreaterole OR rolcreatedb)",
            )
            == 0
        )
        for statement in (
            "CREATE ROLE intruder",
            "CREATE DATABASE other",
            "SELECT rolpassword FROM pg_authid",
            "ALTER SYSTEM SET max_connections = 10",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        # It owns the iot objects (through iot_owner): partitions and retention need it.
        assert conn.execute("SELECT count(*) FROM iot_data").fetchone() == (0,)


def test_rotated_password_is_picked_up_without_a_restart(
    migrated: PostgresServer, tmp_path: Path
) -> None:
    passfile = tmp_path / "pgpass"
    _pgpass(passfile, migrated, "iot_collector", "collector-initial")
    broker = MosquittoServer(listeners=ANONYMOUS_LISTENER)
    broker.start()
    host = f"127.0.0.1:{migrated.port}/{migrated.database}"
    url = f"postgresql://iot_collector@{host}?passfile={passfile}"
    collector = Collector(
        mqtt_url=broker.url, database_url=url, client_id="rotation", log_dir=tmp_path
    ).start()
    try:
        collector.wait_ready()
        pid = collector.proc.pid if collector.proc else None
        first = make_stream(200)
        second = make_stream(300, start=datetime.now(UTC) - timedelta(hours=2))
        publish(broker.url, first.payloads, publishers=1)
        assert wait_for_count(migrated.url, "iot_data", first.readings) == first.readings

        # Secrets Manager rotates: the role's password changes, the file is not rewritten yet;
        # the collector's sessions end (failover, network cut) and it must log in again.
        _psql(migrated, "-c", "ALTER ROLE iot_collector PASSWORD 'collector-rotated'")
        _psql(
            migrated,
            "-c",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE usename = 'iot_collector'",
        )
        publish(broker.url, second.payloads, publishers=1)
        deadline = time.monotonic() + 30
        while "password authentication failed" not in collector.log():
            assert time.monotonic() < deadline, collector.log()[-3000:]
            time.sleep(0.2)
        assert scalar(migrated.url, "SELECT count(*) FROM iot_data") == first.readings

        # The External Secrets Operator refreshes the Secret; the kubelet rewrites the file.
        _pgpass(passfile, migrated, "iot_collector", "collector-rotated")
        total = first.readings + second.readings
        assert wait_for_count(migrated.url, "iot_data", total, timeout=90) == total
        assert collector.proc is not None
        assert collector.proc.pid == pid
        assert collector.proc.poll() is None, "the collector restarted"
        assert collector.stop() == 0
    finally:
        collector.ensure_stopped()
        broker.stop()
