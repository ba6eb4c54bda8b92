"""Device presence end to end: online on connect, offline by Last Will, offline when silent."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from support.collector import Collector
from support.mosquitto import MosquittoServer, mosquitto_available

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]

DEVICE = str(Path(__file__).resolve().parents[1] / "support" / "device.py")
OFFLINE_AFTER_S = 6


def _device(port: int, device_id: str, interval: float, count: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, DEVICE, str(port), device_id, str(interval), str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _statuses(c: Collector) -> dict[str, str]:
    body = c.get("/api/devices").json()
    return {d["device_id"]: d["status"] for d in body["data"]}


def _wait(what: str, check: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_online_last_will_and_silence(
    broker: MosquittoServer, database_url: str, tmp_path: Path
) -> None:
    c = Collector(
        mqtt_url=broker.url,
        database_url=database_url,
        client_id="presence",
        log_dir=tmp_path,
        env={"IOT_DEVICE_OFFLINE_AFTER_S": str(OFFLINE_AFTER_S)},
    ).start()
    devices: list[subprocess.Popen[str]] = []
    try:
        c.wait_ready()
        devices = [
            _device(broker.port, "dev-killed", 0.1, 3),
            _device(broker.port, "dev-silent", 0.1, 1),
        ]
        _wait(
            "both online",
            lambda: _statuses(c) == {"dev-killed": "online", "dev-silent": "online"},
            timeout=10,
        )
        devices[0].send_signal(signal.SIGKILL)
        devices[0].wait()
        took = _wait(
            "Last Will marks dev-killed offline",
            lambda: _statuses(c).get("dev-killed") == "offline",
            timeout=OFFLINE_AFTER_S,
        )
        assert took < OFFLINE_AFTER_S - 1, "offline by the Last Will, not by the timeout"
        assert _statuses(c)["dev-silent"] == "online"
        _wait(
            "silence marks dev-silent offline",
            lambda: _statuses(c).get("dev-silent") == "offline",
            timeout=OFFLINE_AFTER_S + 5,
        )
        _wait(
            "gauges follow",
            lambda: (
                c.metrics().get("iotcollector_devices_offline") == 2
                and c.metrics().get("iotcollector_devices_online") == 0
            ),
            timeout=5,
        )
        assert c.get("/api/devices?status=offline").json()["data"][0]["device_id"] == "dev-killed"
        assert c.stop() == 0
    finally:
        for d in devices:
            d.kill()
            d.wait()
        c.ensure_stopped()
