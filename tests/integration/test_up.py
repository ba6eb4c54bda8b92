"""`iot-collector up`: embedded broker, SQLite, API; Ctrl-C stops everything with exit 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx
import psutil
import pytest

from support.collector import publish, wait_for_count
from support.messages import make_stream
from support.mosquitto import free_port

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


def _wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"`up` exited {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"`up` not ready: {log.read_text()}")


def _start_up(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], int, int, Path]:
    """`iot-collector up` on free ports in ``tmp_path``, without IOT_* from the environment."""
    mqtt_port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOT_")}
    env |= {"IOT_EMBEDDED_MQTT_PORT": str(mqtt_port), "IOT_API_PORT": str(api_port)}
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "iotcollector", "up", *args],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, mqtt_port, api_port, log


def _sigint_exits_cleanly(proc: subprocess.Popen[bytes], log: Path) -> None:
    """SIGINT: exit 0 within 15 s, and no process left behind."""
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"`up` still running 15 s after SIGINT: {log.read_text()}") from None
    assert code == 0, log.read_text()
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_up_runs_embedded_broker_and_stops_on_sigint(tmp_path: Path) -> None:
    proc, mqtt_port, api_port, log = _start_up(tmp_path)
    try:
        base = f"http://127.0.0.1:{api_port}"
        _wait_ready(base, proc, log)
        banner = log.read_text()
        assert f"{base}/docs" in banner
        assert f"mqtt://127.0.0.1:{mqtt_port} (embedded)" in banner
        assert "simulated devices" not in banner
        stream = make_stream(500)
        publish(f"mqtt://127.0.0.1:{mqtt_port}", stream.payloads, publishers=2)
        db = f"sqlite:///{tmp_path}/data/iot.db"
        assert wait_for_count(db, "iot_data", stream.readings) == stream.readings
        assert wait_for_count(db, "iot_rejected", stream.rejected) == stream.rejected
        _sigint_exits_cleanly(proc, log)
        assert "MQTT 3.1.1" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_up_simulate_20_devices_readings_through_the_api(tmp_path: Path) -> None:
    """Issue 8, acceptance 1: `up --simulate 20`, readings from 20 devices, Ctrl-C, exit 0."""
    proc, _, api_port, log = _start_up(tmp_path, "--simulate", "20")
    try:
        base = f"http://127.0.0.1:{api_port}"
        _wait_ready(base, proc, log)
        assert "20 simulated devices publish a reading per second each" in log.read_text()
        expected = {f"sim-{i:04d}" for i in range(20)}
        deadline = time.monotonic() + 30
        online: set[str] = set()
        while time.monotonic() < deadline:
            devices = httpx.get(f"{base}/api/devices", params={"limit": 100}, timeout=5).json()
            online = {d["device_id"] for d in devices["data"] if d["status"] == "online"}
            if online == expected:
                break
            time.sleep(0.5)
        assert online == expected, log.read_text()
        # Presence ("online") arrives before a device's first reading: wait for one.
        data: list[dict[str, object]] = []
        while not data and time.monotonic() < deadline + 10:
            data = httpx.get(
                f"{base}/api/data", params={"device_id": "sim-0007", "limit": 10}, timeout=5
            ).json()["data"]
            time.sleep(0.2)
        assert data, log.read_text()
        assert {r["device_id"] for r in data} == {"sim-0007"}
        assert {r["sensor_type"] for r in data} <= {
            "temperature",
            "humidity",
            "pressure",
            "co2",
            "battery",
        }
        _sigint_exits_cleanly(proc, log)
        text = log.read_text()
        assert "simulated devices stopped" in text
        assert "Traceback" not in text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
