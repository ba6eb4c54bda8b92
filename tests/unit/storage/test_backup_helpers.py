"""Backup helpers without a database: the password goes in PGPASSWORD, never on a command line."""

from __future__ import annotations

import pytest

from iotcollector.storage import backup


def test_password_moves_from_the_url_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "stale")
    conninfo, env = backup._pg_conninfo(
        "postgresql://iot:s3cr%40t-pw@db.internal:5433/iot?sslmode=require"
    )
    assert "s3cr" not in conninfo
    assert "password" not in conninfo
    assert "host=db.internal" in conninfo
    assert "port=5433" in conninfo
    assert "sslmode=require" in conninfo
    assert env["PGPASSWORD"] == "s3cr@t-pw"


def test_no_password_means_no_pgpassword(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "from-the-caller")
    _, env = backup._pg_conninfo("postgresql://iot@db/iot")
    assert "PGPASSWORD" not in env


def test_a_bad_url_is_reported_without_its_text() -> None:
    with pytest.raises(backup.BackupError) as error:
        backup._pg_conninfo("postgresql://iot:pw-hidden@[db/iot")
    assert "pw-hidden" not in str(error.value)


def test_pg_tools_are_found_on_path_or_under_usr_lib_postgresql() -> None:
    try:
        path = backup.find_pg_tool("pg_dump")
    except backup.BackupError as exc:
        assert "postgresql-client" in str(exc)  # noqa: PT017 - the message is the point
    else:
        assert path.endswith("pg_dump")
    with pytest.raises(backup.BackupError, match="not found"):
        backup.find_pg_tool("pg_no_such_tool")
