"""A real Prometheus with our config and rules, scraping a running collector under load."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from support.collector import Collector, publish
from support.messages import make_stream
from support.mosquitto import MosquittoServer, free_port, mosquitto_available

PROMETHEUS = shutil.which("prometheus")
MONITORING = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus"
# The message-rate panel of the "MQTT message rate" dashboard, with a fixed range.
MESSAGE_RATE = 'sum(rate(iotcollector_mqtt_messages_received_total{job="iot-collector"}[15s]))'

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (Debian package)"),
]


class Prometheus:
    """Our prometheus.yml and rules, with the target pointed at the test collector."""

    def __init__(self, directory: Path, target: str) -> None:
        self.port = free_port()
        config: dict[str, Any] = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
        config["global"] |= {"scrape_interval": "1s", "scrape_timeout": "1s"}
        config["global"]["evaluation_interval"] = "1s"
        config["rule_files"] = [str(MONITORING / "rules" / "*.yml")]
        [job] = [j for j in config["scrape_configs"] if j["job_name"] == "iot-collector"]
        job["static_configs"] = [{"targets": [target]}]
        job["scrape_timeout"] = "1s"
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        assert PROMETHEUS is not None
        self._log = (directory / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(
            f"http://127.0.0.1:{self.port}/api/v1/{path}", params=params, timeout=5
        )
        response.raise_for_status()
        return response.json()["data"]

    def wait_for(self, what: str, check: Any, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = check()
            except httpx.HTTPError:
                last = None
            if last:
                return last
            time.sleep(1)
        raise AssertionError(f"{what}: not seen within {timeout} s (last: {last})")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)
        self._log.close()


def test_prometheus_scrapes_rates_and_fires_mqtt_disconnected(
    broker: MosquittoServer, tmp_path: Path
) -> None:
    c = Collector(
        mqtt_url=broker.url,
        database_url=f"sqlite:///{tmp_path}/iot.db",
        client_id="prom-test",
        log_dir=tmp_path,
        env={"IOT_MQTT_RECONNECT_MAX_S": "2"},
    ).start()
    prom = Prometheus(tmp_path, f"127.0.0.1:{c.port}")
    try:
        c.wait_ready()
        stream = make_stream(30_000)
        load = threading.Thread(
            target=publish, args=(broker.url, stream.payloads), kwargs={"rate_per_s": 1500}
        )
        load.start()
        up = prom.wait_for(
            "target up",
            lambda: [
                r
                for r in prom.api("query", query='up{job="iot-collector"}')["result"]
                if r["value"][1] == "1"
            ],
            timeout=30,
        )
        assert up
        rate = prom.wait_for(
            "positive message rate",
            lambda: [
                r
                for r in prom.api("query", query=MESSAGE_RATE)["result"]
                if float(r["value"][1]) > 0
            ],
            timeout=30,
        )
        assert float(rate[0]["value"][1]) > 0
        load.join()
        broker.stop()
        firing = prom.wait_for(
            "IoTCollectorMQTTDisconnected firing",
            lambda: [
                a
                for a in prom.api("alerts")["alerts"]
                if a["labels"]["alertname"] == "IoTCollectorMQTTDisconnected"
                and a["state"] == "firing"
            ],
            timeout=100,
        )
        assert firing[0]["labels"]["severity"] == "critical"
        assert c.stop() == 0
    finally:
        prom.stop()
        c.ensure_stopped()
