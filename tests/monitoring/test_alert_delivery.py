"""An alert fired by the local stack's Prometheus reaches a receiver through its Alertmanager.

Real Prometheus and Alertmanager binaries (Debian's prometheus and prometheus-alertmanager) on
free ports of 127.0.0.1, with the repository's configuration: monitoring/prometheus/prometheus.yml
(its alerting section pointed at our Alertmanager, its collector target at a port where nothing
listens, so ``up == 0``), the real rules, and monitoring/alertmanager/alertmanager.yml with a
webhook to a tiny HTTP receiver in this test as its ``default`` receiver. Only the timings are
shortened: 1 s scrape/evaluation, IoTCollectorDown's ``for`` 2 s, the route's group_wait 1 s.
About 10 s.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
DEADLINE_S = 90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Receiver(ThreadingHTTPServer):
    """Collects Alertmanager's webhook notifications."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.notifications.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _start(cmd: list[str], log: Path, port: int) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"{cmd[0]} did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        else:
            return proc


def test_shipped_prometheus_config_sends_alerts_to_the_stack_alertmanager() -> None:
    config = yaml.safe_load((MONITORING / "prometheus" / "prometheus.yml").read_text())
    (manager,) = config["alerting"]["alertmanagers"]
    assert manager["static_configs"] == [{"targets": ["alertmanager:9093"]}]


@pytest.mark.skipif(
    PROMETHEUS is None or ALERTMANAGER is None,
    reason="prometheus and prometheus-alertmanager (Debian) are needed: scripts/setup.sh",
)
def test_collector_down_alert_reaches_the_receiver(receiver: _Receiver, tmp_path: Path) -> None:
    assert PROMETHEUS is not None
    assert ALERTMANAGER is not None
    am_port, prom_port, dead_port = _free_port(), _free_port(), _free_port()

    manager = yaml.safe_load((MONITORING / "alertmanager" / "alertmanager.yml").read_text())
    (default,) = [r for r in manager["receivers"] if r["name"] == manager["route"]["receiver"]]
    default["webhook_configs"] = [
        {"url": f"http://127.0.0.1:{receiver.server_address[1]}/alerts", "send_resolved": False}
    ]
    manager["route"]["group_wait"] = "1s"
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(manager))

    rules_dir = tmp_path / "rules"
    shutil.copytree(MONITORING / "prometheus" / "rules", rules_dir)
    rules_file = rules_dir / "iot-collector.yml"
    rules = yaml.safe_load(rules_file.read_text())
    down = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "IoTCollectorDown"]
    assert len(down) == 1
    down[0]["for"] = "2s"
    rules_file.write_text(yaml.safe_dump(rules))

    config = yaml.safe_load((MONITORING / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="500ms", evaluation_interval="1s")
    config["alerting"]["alertmanagers"][0]["static_configs"] = [
        {"targets": [f"127.0.0.1:{am_port}"]}
    ]
    config["rule_files"] = [str(rules_dir / "*.yml")]
    (collector,) = [j for j in config["scrape_configs"] if j["job_name"] == "iot-collector"]
    collector["static_configs"] = [{"targets": [f"127.0.0.1:{dead_port}"]}]
    config["scrape_configs"] = [collector]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))

    am = _start(
        [
            ALERTMANAGER,
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
        tmp_path / "alertmanager.log",
        am_port,
    )
    try:
        prom = _start(
            [
                PROMETHEUS,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            tmp_path / "prometheus.log",
            prom_port,
        )
        try:
            deadline = time.monotonic() + DEADLINE_S
            while not receiver.notifications and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            prom.terminate()
            prom.wait(timeout=30)
    finally:
        am.terminate()
        am.wait(timeout=30)

    assert receiver.notifications, (
        "no notification within the deadline\n"
        + (tmp_path / "alertmanager.log").read_text(errors="replace")[-3000:]
    )
    (alert,) = receiver.notifications[0]["alerts"]
    assert alert["status"] == "firing"
    assert alert["labels"]["alertname"] == "IoTCollectorDown"
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["instance"] == f"127.0.0.1:{dead_port}"
    assert alert["annotations"]["runbook_url"].endswith("/collector-down.md")
