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


def test_up_runs_embedded_broker_and_stops_on_sigint(tmp_path: Path) -> None:
    mqtt_port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOT_")}
    env |= {"IOT_EMBEDDED_MQTT_PORT": str(mqtt_port), "IOT_API_PORT": str(api_port)}
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "iotcollector", "up"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{api_port}"
        _wait_ready(base, proc, log)
        banner = log.read_text()
        assert f"{base}/docs" in banner
        assert f"mqtt://127.0.0.1:{mqtt_port} (embedded)" in banner
        stream = make_stream(500)
        publish(f"mqtt://127.0.0.1:{mqtt_port}", stream.payloads, publishers=2)
        db = f"sqlite:///{tmp_path}/data/iot.db"
        assert wait_for_count(db, "iot_data", stream.readings) == stream.readings
        assert wait_for_count(db, "iot_rejected", stream.rejected) == stream.rejected
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert "MQTT 3.1.1" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
