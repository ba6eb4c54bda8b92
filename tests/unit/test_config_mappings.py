"""IOT_MAPPINGS_FILE at start-up: read, compiled, subscribed; a bad rule exits 2 naming it."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import pytest

from iotcollector.cli import load_mappings, main
from iotcollector.config import Settings
from iotcollector.service import Service

if TYPE_CHECKING:
    from pathlib import Path

GOOD = """
mappings:
  - topic: "zigbee2mqtt/{device_id}"
    readings: auto
  - topic: "spBv1.0/#"
    payload: sparkplug_b
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("IOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(str(tmp_path))


def test_rules_are_subscribed_with_the_topics(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "rules.yaml").write_text(GOOD)
    monkeypatch.setenv("IOT_MAPPINGS_FILE", str(tmp_path / "rules.yaml"))
    monkeypatch.setenv("IOT_MQTT_SHARED_GROUP", "g")
    settings = Settings()
    mappings = load_mappings(settings)
    assert mappings is not None
    assert settings.subscriptions_with(mappings.filters) == (
        "$share/g/iot/data",
        "$share/g/iot/status/+",
        "$share/g/zigbee2mqtt/+",
        "$share/g/spBv1.0/#",
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            GOOD + '  - topic: "tele/{device_id}/SENSOR"\n    readings: [{sensor_type: t}]\n',
            "rule 2 (topic 'tele/{device_id}/SENSOR'): readings[0].value: missing",
        ),
        ("mappings: [", "is not valid YAML"),
        ("other: 1", "the file must hold one key, mappings"),
    ],
)
def test_a_bad_file_exits_2_naming_rule_and_field(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    says: str,
) -> None:
    (tmp_path / "rules.yaml").write_text(text)
    monkeypatch.setenv("IOT_MAPPINGS_FILE", str(tmp_path / "rules.yaml"))
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "IOT_MAPPINGS_FILE" in err
    assert says in err


def test_a_missing_file_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IOT_MAPPINGS_FILE", str(tmp_path / "absent.yaml"))
    assert main(["serve"]) == 2


@pytest.mark.parametrize(("group", "warned"), [("g", True), (None, False)])
def test_sparkplug_rule_under_a_shared_group_is_warned_about(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    group: str | None,
    warned: bool,
) -> None:
    (tmp_path / "rules.yaml").write_text(GOOD)
    monkeypatch.setenv("IOT_MAPPINGS_FILE", str(tmp_path / "rules.yaml"))
    monkeypatch.setenv("IOT_DATABASE_URL", f"sqlite:///{tmp_path}/iot.db")
    if group is not None:
        monkeypatch.setenv("IOT_MQTT_SHARED_GROUP", group)
    settings = Settings()
    service = Service(settings, logging.getLogger("test.service"), mappings=load_mappings(settings))
    with caplog.at_level(logging.WARNING):
        service._warn_sparkplug_shared()
    said = [r.getMessage() for r in caplog.records if "Sparkplug B rule" in r.getMessage()]
    assert bool(said) is warned
