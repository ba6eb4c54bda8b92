"""Choosing and configuring the broker `up` runs (the process itself: tests/integration/test_up)."""

from __future__ import annotations

import logging
import os
import stat
from typing import TYPE_CHECKING

import pytest

from iotcollector import broker as broker_module
from iotcollector.broker import AmqttBroker, MosquittoBroker, find_mosquitto
from iotcollector.cli import _embedded_broker
from iotcollector.config import Settings
from iotcollector.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path


def _binary(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "mosquitto"
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_mosquitto_on_path_first(tmp_path: Path) -> None:
    on_path = _binary(tmp_path / "bin")
    _binary(tmp_path / "sbin")
    found = find_mosquitto(str(tmp_path / "bin"), (str(tmp_path / "sbin"),))
    assert found == str(on_path)


def test_mosquitto_in_sbin_when_not_on_path(tmp_path: Path) -> None:
    """Debian's /usr/sbin/mosquitto: not on a normal user's PATH, still found."""
    in_sbin = _binary(tmp_path / "sbin")
    found = find_mosquitto(str(tmp_path / "bin"), (str(tmp_path / "sbin"),))
    assert found == str(in_sbin)


def test_no_mosquitto(tmp_path: Path) -> None:
    assert find_mosquitto(str(tmp_path / "bin"), (str(tmp_path / "sbin"),)) is None


def test_mosquitto_config_is_local_persistent_and_unlimited(tmp_path: Path) -> None:
    broker = MosquittoBroker(
        "/usr/sbin/mosquitto", "127.0.0.1", 41883, tmp_path, logging.getLogger("t")
    )
    lines = set(broker.config().splitlines())
    assert "listener 41883 127.0.0.1" in lines
    assert f"persistence_location {tmp_path.resolve()}/" in lines
    assert {"persistence true", "autosave_interval 1"} <= lines
    assert {"max_queued_messages 0", "max_queued_bytes 0"} <= lines
    assert "max_packet_size 1048576" in lines  # one publish cannot cost the collector more
    assert ("user root" in lines) == (os.geteuid() == 0)
    assert not [line for line in lines if line.startswith("protocol")]  # 5, 3.1.1 and 3.1
    assert broker.protocol == "5"
    assert "MQTT 5 and 3.1.1" in broker.description


def test_amqtt_says_what_it_cannot_do() -> None:
    broker = AmqttBroker("127.0.0.1", 41883)
    assert broker.protocol == "3.1.1"
    assert "3.1.1 only" in broker.description
    assert "in memory" in broker.description
    assert broker.url == "mqtt://127.0.0.1:41883"


def test_asking_for_mosquitto_without_the_binary_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(broker_module, "find_mosquitto", lambda: None)
    settings = Settings(embedded_mqtt="mosquitto", embedded_mqtt_port=41883)
    with pytest.raises(ConfigError, match="IOT_EMBEDDED_MQTT=mosquitto, but no mosquitto binary"):
        _embedded_broker(settings, logging.getLogger("t"))


def test_without_mosquitto_up_runs_amqtt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_module, "find_mosquitto", lambda: None)
    settings = Settings(embedded_mqtt_port=0)  # any free port
    assert isinstance(_embedded_broker(settings, logging.getLogger("t")), AmqttBroker)
