"""The README's configuration table and the settings agree: every IOT_* setting is documented,
nothing documented is unknown, and each documented default is the real one."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from iotcollector.config import Settings, load_settings

README = Path(__file__).resolve().parents[2] / "README.md"
_HEADER = "| variable | default | meaning |"


def _table() -> dict[str, str]:
    """Documented variable -> its default cell's text for that variable."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(_HEADER) + 2
    rows: dict[str, str] = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        name_cell, default_cell = (cell.strip() for cell in line.strip("|").split("|")[:2])
        names = re.findall(r"`(IOT_\w+)`", name_cell)
        literals = re.findall(r"`([^`]*)`", default_cell)
        if not literals:
            defaults = [default_cell] * len(names)  # "(none)", "(off)", "(... when installed)"
        elif len(literals) == len(names):
            defaults = literals
        else:
            defaults = [literals[0]] * len(names)
        rows.update(zip(names, defaults, strict=True))
    return rows


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("IOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(str(tmp_path))


def test_every_setting_is_in_the_readme_table_and_nothing_else() -> None:
    settings = {f"IOT_{name.upper()}" for name in Settings.model_fields}
    documented = set(_table())
    assert sorted(settings - documented) == []
    assert sorted(documented - settings) == []


def test_documented_defaults_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = load_settings()
    checked = 0
    for variable, documented in _table().items():
        field = variable.removeprefix("IOT_").lower()
        actual = getattr(defaults, field)
        if documented.startswith("("):  # no default value: (none), (off), (chosen at run time)
            assert actual in (None, ()), f"{variable}: README says {documented}, default {actual}"
            continue
        if "<" in documented:  # a pattern such as iot-collector-<hostname>
            continue
        monkeypatch.setenv(variable, documented)
        assert getattr(load_settings(), field) == actual, f"{variable}: README says {documented}"
        monkeypatch.delenv(variable)
        checked += 1
    assert checked > 30
