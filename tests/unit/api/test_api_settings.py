"""The API's settings: keys from IOT_API_KEYS and IOT_API_KEYS_FILE, auth mode, body limit."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from iotcollector.config import ApiAuth, Settings, load_settings
from iotcollector.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

KEY = "k" * 16


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file from the working directory
    for name in ("IOT_API_KEYS", "IOT_API_KEYS_FILE", "IOT_API_AUTH", "IOT_MAX_BODY_BYTES"):
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    s = Settings()
    assert s.api_key_values == ()
    assert s.api_auth is ApiAuth.ENABLED
    assert s.max_body_bytes == 1024 * 1024


def test_keys_from_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# rotated 2026-11\n\n  {'f' * 20}  \n{KEY}\n")
    monkeypatch.setenv("IOT_API_KEYS", f" {KEY} ,{'e' * 17},")
    monkeypatch.setenv("IOT_API_KEYS_FILE", str(keys_file))
    s = load_settings()
    assert s.api_key_values == (KEY, "e" * 17, "f" * 20)
    assert KEY not in repr(s)
    assert "e" * 17 not in repr(s)


@pytest.mark.parametrize(
    ("keys", "problem"),
    [("tiny-key", "shorter than 16"), (f"{KEY} x{KEY}", "without spaces"), ("é" * 16, "ASCII")],
)
def test_bad_keys_are_refused_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch, keys: str, problem: str
) -> None:
    monkeypatch.setenv("IOT_API_KEYS", keys)
    with pytest.raises(ConfigError, match=problem) as caught:
        load_settings()
    assert "IOT_API_KEYS" in str(caught.value)
    for key in keys.split(","):
        assert key not in str(caught.value)


def test_unreadable_or_bad_keys_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IOT_API_KEYS_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="IOT_API_KEYS_FILE: cannot read"):
        load_settings()
    bad = tmp_path / "bad"
    bad.write_text("tiny\n")
    monkeypatch.setenv("IOT_API_KEYS_FILE", str(bad))
    with pytest.raises(ConfigError, match="line 1 is shorter") as caught:
        load_settings()
    assert "tiny" not in str(caught.value)


def test_auth_mode_and_body_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOT_API_AUTH", "disabled")
    monkeypatch.setenv("IOT_MAX_BODY_BYTES", "2048")
    s = load_settings()
    assert s.api_auth is ApiAuth.DISABLED
    assert s.max_body_bytes == 2048
    monkeypatch.setenv("IOT_API_AUTH", "off")
    with pytest.raises(ConfigError, match="IOT_API_AUTH"):
        load_settings()
