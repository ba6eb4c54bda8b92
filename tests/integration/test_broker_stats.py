"""Broker-side loss made visible: Mosquitto's $SYS counters exported by the collector."""

from __future__ import annotations

import subprocess
import time
from typing import TYPE_CHECKING

import pytest

from support.collector import Collector
from support.mosquitto import ANONYMOUS_LISTENER, MosquittoServer, mosquitto_available

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]


def test_dropped_messages_and_clients_are_exported(tmp_path: Path) -> None:
    # A tiny queue, so that a subscriber that is away makes the broker drop messages.
    broker = MosquittoServer(
        listeners=ANONYMOUS_LISTENER + "sys_interval 1\nmax_queued_messages 5\n"
    )
    broker.start()
    c = Collector(
        mqtt_url=broker.url,
        database_url=f"sqlite:///{tmp_path}/iot.db",
        client_id="stats",
        log_dir=tmp_path,
    ).start()
    try:
        c.wait_ready()
        port = str(broker.port)
        subscribe = ["mosquitto_sub", "-p", port, "-i", "away", "-c", "-q", "1", "-t", "x/y"]
        subprocess.run([*subscribe, "-W", "1"], capture_output=True, check=False)
        for i in range(20):
            subprocess.run(
                ["mosquitto_pub", "-p", port, "-q", "1", "-t", "x/y", "-m", str(i)], check=True
            )
        # $SYS is published once a second: one may come while the messages are still being
        # published and carry part of the drops; wait for the whole count.
        deadline = time.monotonic() + 15
        metrics: dict[str, float] = {}
        while time.monotonic() < deadline:
            metrics = c.metrics()
            if metrics.get("iotcollector_broker_messages_dropped_total", 0) >= 10:
                break
            time.sleep(0.5)
        assert metrics.get("iotcollector_broker_messages_dropped_total", 0) >= 10
        assert metrics.get("iotcollector_broker_clients_connected", 0) >= 1
        assert metrics["iotcollector_mqtt_messages_received_total"] == 0, "$SYS is not data"
        assert c.stop() == 0
    finally:
        c.ensure_stopped()
        broker.cleanup()
