"""Every metric of monitoring/metrics.txt (the rules' and dashboards' contract) is exported."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from support.collector import Collector, publish, wait_for_count
from support.messages import make_stream
from support.mosquitto import ANONYMOUS_LISTENER, MosquittoServer, mosquitto_available

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]

CONTRACT = Path(__file__).resolve().parents[2] / "monitoring" / "metrics.txt"


def _contract() -> dict[str, str]:
    names = {}
    for line in CONTRACT.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            names[fields[0]] = fields[1]
    return names


def _exported_names(text: str) -> set[str]:
    return {
        line.split("{", 1)[0].split(" ", 1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_collector_exports_every_metric_of_the_contract(tmp_path: Path) -> None:
    broker = MosquittoServer(
        listeners=ANONYMOUS_LISTENER + "sys_interval 1\nmax_queued_messages 5\n"
    )
    broker.start()
    c = Collector(
        mqtt_url=broker.url,
        database_url=f"sqlite:///{tmp_path}/iot.db",
        client_id="contract",
        log_dir=tmp_path,
        env={"IOT_RETENTION_DAYS": "30"},
    ).start()
    try:
        c.wait_ready()
        stream = make_stream(300)
        publish(broker.url, stream.payloads, publishers=1)
        wait_for_count(f"sqlite:///{tmp_path}/iot.db", "iot_data", stream.readings)
        # A subscriber that is away, so that the broker drops and says so in $SYS.
        port = str(broker.port)
        away = ["mosquitto_sub", "-p", port, "-i", "away", "-c", "-q", "1", "-t", "x/y", "-W", "1"]
        subprocess.run(away, capture_output=True, check=False)
        for i in range(10):
            subprocess.run(
                ["mosquitto_pub", "-p", port, "-q", "1", "-t", "x/y", "-m", str(i)], check=True
            )
        missing: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            exported = _exported_names(c.get("/metrics").text)
            missing = []
            for name, kind in _contract().items():
                series = {f"{name}_bucket", f"{name}_count"} if kind == "histogram" else {name}
                if not series <= exported:
                    missing.append(name)
            if not missing:
                break
            time.sleep(0.5)
        assert not missing, f"in monitoring/metrics.txt but not exported: {missing}"
        assert c.stop() == 0
    finally:
        c.ensure_stopped()
        broker.cleanup()
