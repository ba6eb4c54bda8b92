"""The command line without a command, and the warnings it gives before starting."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from iotcollector.cli import main

if TYPE_CHECKING:
    import pytest


def test_no_command_prints_the_short_help_with_up_first(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: iot-collector")
    commands = re.findall(r"^    (\w+) ", out, re.MULTILINE)
    assert commands[0] == "up"
    assert {"serve", "simulate", "backup", "restore", "migrate"} <= set(commands)


def test_a_misspelt_variable_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("IOT_"):
            monkeypatch.delenv(name)
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
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("IOT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("IOT_API_HOST", "0.0.0.0")  # refused before anything binds
    assert main(["up"]) == 2
    err = capsys.readouterr().err
    assert "IOT_API_HOST=0.0.0.0 serves /api/* to other machines: set IOT_API_KEYS" in err
    assert not (Path(tmp_path) / "data").exists()  # no broker, no database started
