"""``serve`` refuses to start without API keys unless IOT_API_AUTH=disabled says so."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from support.collector import Collector
from support.mosquitto import free_port

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOT_")}
    env.update(
        IOT_DATABASE_URL=f"sqlite:///{tmp_path}/iot.db",
        IOT_MQTT_URL=f"mqtt://127.0.0.1:{free_port()}",
        IOT_API_PORT=str(free_port()),
        **extra,
    )
    return env


def test_serve_without_keys_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "iotcollector", "serve"],
        env=_env(tmp_path),
        capture_output=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    message = result.stderr.decode()
    assert "IOT_API_KEYS" in message
    assert "IOT_API_AUTH=disabled" in message


def test_serve_with_auth_disabled_warns_and_serves_openly(tmp_path: Path) -> None:
    collector = Collector(
        mqtt_url=f"mqtt://127.0.0.1:{free_port()}",  # no broker: HTTP still serves
        database_url=f"sqlite:///{tmp_path}/iot.db",
        client_id="auth-disabled",
        log_dir=tmp_path,
        env={"IOT_API_AUTH": "disabled", "IOT_API_KEYS": ""},
    )
    collector.start()
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and status != 200:
            try:
                status = httpx.get(collector.base_url + "/api/devices", timeout=2).status_code
            except httpx.HTTPError:
                status = None
            if status != 200:
                time.sleep(0.1)
        assert status == 200, collector.log()
        assert "WITHOUT authentication" in collector.log()
    finally:
        collector.ensure_stopped()
