"""The command line without a command, and the warnings it gives before starting."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import pytest

from iotcollector.cli import main

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No IOT_* variable from the caller's environment; a fresh working directory."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("IOT_"):
            monkeypatch.delenv(name)
    return tmp_path


def test_no_command_prints_the_short_help_with_up_first(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: iot-collector")
    commands = re.findall(r"^    (\w+) ", out, re.MULTILINE)
    assert commands[0] == "up"
    assert {"serve", "simulate", "backup", "restore", "migrate"} <= set(commands)


@pytest.mark.usefixtures("clean_env")
def test_a_misspelt_variable_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IOT_API_PROT", "3001")
    monkeypatch.setenv("IOT_DATABASE_URL", "sqlite:///:memory:")
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        "iot-collector: warning: IOT_API_PROT is not a setting and is ignored: "
        "did you mean IOT_API_PORT?"
    )
    assert err[1].startswith("iot-collector: invalid configuration: IOT_DATABASE_URL:")


def test_up_without_keys_refuses_an_api_host_other_machines_reach(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IOT_API_HOST", "0.0.0.0")  # refused before anything binds
    assert main(["up"]) == 2
    err = capsys.readouterr().err
    assert "IOT_API_HOST=0.0.0.0 serves /api/* to other machines: set IOT_API_KEYS" in err
    assert not (clean_env / "data").exists()  # no broker, no database started
