"""Device presence end to end: online on connect, offline by Last Will, offline when silent."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

from support.collector import Collector
from support.mosquitto import MosquittoServer, mosquitto_available

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]

OFFLINE_AFTER_S = 6


def _simulated_device(url: str, prefix: str, rate: float) -> subprocess.Popen[bytes]:
    """One simulated device (``<prefix>-0000``) on its own connection, with its Last Will."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iotcollector",
            "simulate",
            "--url",
            url,
            "--devices",
            "1",
            "--device-prefix",
            prefix,
            "--connections",
            "devices",
            "--rate",
            str(rate),
            "--duration",
            "300",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


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
    devices: list[subprocess.Popen[bytes]] = []
    try:
        c.wait_ready()
        # dev-killed publishes every 0.2 s; dev-silent once, then stays connected and quiet.
        devices = [
            _simulated_device(broker.url, "killed", 5),
            _simulated_device(broker.url, "silent", 0.001),
        ]
        _wait(
            "both online",
            lambda: _statuses(c) == {"killed-0000": "online", "silent-0000": "online"},
            timeout=15,
        )
        devices[0].send_signal(signal.SIGKILL)
        devices[0].wait()
        took = _wait(
            "Last Will marks dev-killed offline",
            lambda: _statuses(c).get("killed-0000") == "offline",
            timeout=OFFLINE_AFTER_S,
        )
        assert took < OFFLINE_AFTER_S - 1, "offline by the Last Will, not by the timeout"
        assert _statuses(c)["silent-0000"] == "online"
        _wait(
            "silence marks dev-silent offline",
            lambda: _statuses(c).get("silent-0000") == "offline",
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
        offline = c.get("/api/devices?status=offline").json()["data"]
        assert [d["device_id"] for d in offline] == ["killed-0000", "silent-0000"]
        assert c.stop() == 0
    finally:
        for d in devices:
            d.kill()
            d.wait()
        c.ensure_stopped()
