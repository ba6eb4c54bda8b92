"""scripts/mosquitto-dynsec.py edits the shipped dynamic-security file as documented."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "deploy" / "mosquitto" / "dynamic-security.json"


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dynsec", REPO / "scripts/mosquitto-dynsec.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _tool()


def _members(config: dict[str, Any], group: str) -> list[str]:
    [found] = [g for g in config["groups"] if g["groupname"] == group]
    return [c["username"] for c in found["clients"]]


def test_add_and_remove_identities(tmp_path: Path) -> None:
    path = tmp_path / "dynsec.json"
    path.write_text(SHIPPED.read_text())
    assert tool.main(["--file", str(path), "add-device", "sensor-7", "sensor-8"]) == 0
    assert tool.main(["--file", str(path), "add-collector", "iot-collector-3"]) == 0
    config = json.loads(path.read_text())
    assert _members(config, "devices") == ["sensor-7", "sensor-8"]
    assert "iot-collector-3" in _members(config, "collectors")
    [role] = [r for r in config["roles"] if r["rolename"] == "device:sensor-7"]
    assert {a["topic"] for a in role["acls"]} == {"iot/data/sensor-7", "iot/status/sensor-7"}

    assert tool.main(["--file", str(path), "remove", "sensor-7"]) == 0
    config = json.loads(path.read_text())
    assert _members(config, "devices") == ["sensor-8"]
    assert all(r["rolename"] != "device:sensor-7" for r in config["roles"])
    assert all(c["username"] != "sensor-7" for c in config["clients"])


def test_per_device_topics_only_drops_the_shared_readings_topic(tmp_path: Path) -> None:
    path = tmp_path / "dynsec.json"
    path.write_text(SHIPPED.read_text())
    assert tool.main(["--file", str(path), "per-device-topics-only"]) == 0
    [role] = [r for r in json.loads(path.read_text())["roles"] if r["rolename"] == "device"]
    assert all(a["topic"] != "iot/data" for a in role["acls"])


@pytest.mark.parametrize(
    ("command", "cn"),
    [
        ("add-device", "sensor/1"),
        ("add-device", "sensor+#"),
        ("add-collector", "sensor-1"),
        ("add-collector", "iot-collector-0"),  # already there
        ("remove", "unknown"),
    ],
)
def test_bad_identities_are_refused(tmp_path: Path, command: str, cn: str) -> None:
    path = tmp_path / "dynsec.json"
    path.write_text(SHIPPED.read_text())
    with pytest.raises(SystemExit):
        tool.main(["--file", str(path), command, cn])
    assert path.read_text() == SHIPPED.read_text()
