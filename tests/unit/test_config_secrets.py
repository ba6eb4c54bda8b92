"""Secrets from ``*_FILE`` variables (Docker/Kubernetes secrets), and never echoed."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from iotcollector.config import load_settings
from iotcollector.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

PASSWORD = "mqtt-Pa55word-7f3a"
DB_URL = "postgresql://iot:db-Pa55word-91c2@db.internal:5432/iot"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("IOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(str(tmp_path))


def test_secrets_read_from_files_without_the_trailing_newline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "mqtt").write_text(PASSWORD + "\n")
    (tmp_path / "db").write_text(DB_URL)
    monkeypatch.setenv("IOT_MQTT_PASSWORD_FILE", str(tmp_path / "mqtt"))
    monkeypatch.setenv("IOT_DATABASE_URL_FILE", str(tmp_path / "db"))
    s = load_settings()
    assert s.mqtt_password is not None
    assert s.mqtt_password.get_secret_value() == PASSWORD
    assert s.database_url.get_secret_value() == DB_URL
    assert PASSWORD not in repr(s)
    assert "db-Pa55word" not in repr(s)
    assert PASSWORD not in str(s.model_dump())


def test_a_password_file_keeps_inner_spaces_and_only_one_newline_goes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "mqtt").write_text(" a b \n\n")
    monkeypatch.setenv("IOT_MQTT_PASSWORD_FILE", str(tmp_path / "mqtt"))
    s = load_settings()
    assert s.mqtt_password is not None
    assert s.mqtt_password.get_secret_value() == " a b \n"


@pytest.mark.parametrize("variable", ["IOT_MQTT_PASSWORD_FILE", "IOT_DATABASE_URL_FILE"])
def test_a_missing_file_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    monkeypatch.setenv(variable, str(tmp_path / "absent"))
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert variable in message
    assert "absent" in message
    assert "FileNotFoundError" in message


def test_an_unreadable_or_empty_file_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IOT_MQTT_PASSWORD_FILE", str(tmp_path))  # a directory
    with pytest.raises(ConfigError, match="IOT_MQTT_PASSWORD_FILE: cannot read"):
        load_settings()
    (tmp_path / "empty").write_text("\n")
    monkeypatch.setenv("IOT_MQTT_PASSWORD_FILE", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"IOT_MQTT_PASSWORD_FILE: .* is empty"):
        load_settings()


def test_a_variable_and_its_file_together_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "db").write_text(DB_URL)
    monkeypatch.setenv("IOT_DATABASE_URL_FILE", str(tmp_path / "db"))
    monkeypatch.setenv("IOT_DATABASE_URL", "sqlite:///./x.db")
    with pytest.raises(ConfigError, match="IOT_DATABASE_URL or IOT_DATABASE_URL_FILE, not both"):
        load_settings()


def test_a_bad_url_in_the_file_is_reported_without_its_content(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "db").write_text("mysql://root:hunter2-secret@db/iot")
    monkeypatch.setenv("IOT_DATABASE_URL_FILE", str(tmp_path / "db"))
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "IOT_DATABASE_URL" in str(error.value)
    assert "hunter2" not in str(error.value)


def test_retention_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.retention_days, s.retention_interval_s) == (None, 300.0)
    monkeypatch.setenv("IOT_RETENTION_DAYS", "30")
    monkeypatch.setenv("IOT_RETENTION_INTERVAL_S", "2.5")
    s = load_settings()
    assert (s.retention_days, s.retention_interval_s) == (30, 2.5)
    monkeypatch.setenv("IOT_RETENTION_DAYS", "0")
    with pytest.raises(ConfigError, match="IOT_RETENTION_DAYS"):
        load_settings()
