"""`iot-collector up`: Mosquitto (or amqtt), SQLite, API; Ctrl-C stops in order, losing nothing.

Every test runs `up` in its own directory on free ports (never 1883 or 3000). "Mosquitto
hidden" is IOT_EMBEDDED_MQTT=amqtt: `up` also finds Debian's /usr/sbin/mosquitto, which a
normal user's PATH lacks, so removing it from PATH would not hide it.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import httpx
import orjson
import paho.mqtt.client as mqtt
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from iotcollector.broker import MosquittoBroker
from support.collector import publish, query, scalar, wait_for_count
from support.messages import make_stream
from support.mosquitto import free_port, mosquitto_available, mosquitto_binary

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

needs_mosquitto = pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed")
BROKERS = [pytest.param("mosquitto", marks=needs_mosquitto), "amqtt"]
STOPPED = re.compile(r"simulated devices stopped: ([\d,]+) readings published, ([\d,]+) ackn")


class Up:
    """One `iot-collector up` process in ``workdir``, on free ports, without IOT_* inherited."""

    def __init__(self, workdir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.api_port = free_port()
        self.base = f"http://127.0.0.1:{self.api_port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("IOT_")}
        self.env |= {"IOT_API_PORT": str(self.api_port), **(env or {})}
        self.args = args
        self.log = workdir / "up.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.database = f"sqlite:///{workdir}/data/iot.db"

    def start(self) -> Up:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "iotcollector", "up", *self.args],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"`up` exited {self.proc.returncode}: {self.text()}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"`up` not ready: {self.text()}")

    @property
    def mqtt_port(self) -> int:
        found = re.findall(r"MQTT broker +mqtt://127\.0\.0\.1:(\d+)", self.text())
        assert found, self.text()
        return int(found[-1])

    def sigint(self, timeout: float = 30) -> int:
        """SIGINT: exit 0 within ``timeout``, and no process left behind."""
        assert self.proc is not None
        children = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"`up` running {timeout} s after SIGINT: {self.text()}") from None
        lingering = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert not lingering, lingering
        return code

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def ups() -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:
        up.ensure_stopped()


def _up(ups: list[Up], workdir: Path, *args: str, **env: str) -> Up:
    up = Up(workdir, *args, env=env).start()
    ups.append(up)
    return up


def test_up_without_mosquitto_runs_amqtt_and_says_what_it_cannot_do(
    tmp_path: Path, ups: list[Up]
) -> None:
    mqtt_port = free_port()
    up = _up(ups, tmp_path, IOT_EMBEDDED_MQTT="amqtt", IOT_EMBEDDED_MQTT_PORT=str(mqtt_port))
    up.wait_ready()
    banner = up.text()
    assert f"{up.base}/docs" in banner
    assert f"mqtt://127.0.0.1:{mqtt_port}, topic iot/data" in banner
    assert "amqtt, in this process: MQTT 3.1.1 only, messages in memory" in banner
    assert f"mosquitto_pub -h 127.0.0.1 -p {mqtt_port} -q 1 -t iot/data" in banner
    assert f"iot-collector simulate --url mqtt://127.0.0.1:{mqtt_port}" in banner
    assert "development mode: no API keys; use `serve` with IOT_API_KEYS" in banner
    assert "WITHOUT authentication" not in banner
    stream = make_stream(500)
    publish(f"mqtt://127.0.0.1:{mqtt_port}", stream.payloads, publishers=2)
    assert wait_for_count(up.database, "iot_data", stream.readings) == stream.readings
    assert wait_for_count(up.database, "iot_rejected", stream.rejected) == stream.rejected
    assert up.sigint() == 0
    assert "MQTT 3.1.1" in up.text()


@pytest.mark.parametrize("broker", BROKERS)
def test_up_simulate_sigint_stores_every_acknowledged_reading(
    broker: str, tmp_path: Path, ups: list[Up]
) -> None:
    """Issue 14: `up --simulate 50`, 10 s, SIGINT: stored = what the simulator saw acknowledged."""
    up = _up(
        ups,
        tmp_path,
        "--simulate",
        "50",
        IOT_EMBEDDED_MQTT=broker,
        IOT_EMBEDDED_MQTT_PORT=str(free_port()),
    )
    up.wait_ready()
    deadline = time.monotonic() + 30
    while "simulated devices publish to" not in up.text() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(10)
    assert up.sigint() == 0, up.text()
    text = up.text()
    stopped = STOPPED.search(text)
    assert stopped, text
    published, acknowledged = (int(g.replace(",", "")) for g in stopped.groups())
    assert acknowledged >= 300, text  # 50 devices, about 10 s
    assert acknowledged == published, text
    assert scalar(up.database, "SELECT count(*) FROM iot_data") == acknowledged, text
    assert "Traceback" not in text
    assert ("Mosquitto" if broker == "mosquitto" else "amqtt, in this process") in text


class AckedPublisher:
    """A device in the test process: QoS 1 readings, each with its own timestamp, remembering
    which ones the broker acknowledged (PUBACK), until the broker goes away."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="acked-publisher")
        self.client.on_publish = self._on_publish
        self.client.max_inflight_messages_set(100)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        deadline = time.monotonic() + 10
        while not self.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)
        self._acked_mids: set[int] = set()  # filled by paho's thread: no lock of ours, as
        # paho calls on_publish holding its own lock, which publish() takes too
        self.sent: dict[int, str] = {}  # mid -> timestamp
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_publish(self, _c: object, _u: object, mid: int, *_: object) -> None:
        self._acked_mids.add(mid)

    def _run(self) -> None:
        start = 1_796_000_000_000
        for i in range(50_000):  # below the 65,535 message ids: no id is reused
            if self.stop.is_set() or not self.client.is_connected():
                return
            ts = start + i
            payload = orjson.dumps(
                {"device_id": "acked-1", "sensor_type": "t", "value": i, "timestamp": ts}
            )
            info = self.client.publish("iot/data", payload, qos=1)
            self.sent[info.mid] = str(ts)
            time.sleep(0.002)

    def acknowledged(self) -> set[str]:
        acked = set(self._acked_mids)
        return {ts for mid, ts in dict(self.sent).items() if mid in acked}

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.client.loop_stop()
        self.client.disconnect()


@needs_mosquitto
def test_up_kill_9_then_up_again_loses_no_acknowledged_reading(
    tmp_path: Path, ups: list[Up]
) -> None:
    """`kill -9` of the `up` process while a device publishes: its Mosquitto child stops cleanly
    (it saves its database), the next `up` reuses the port and delivers what was held."""
    port = str(free_port())
    up = _up(ups, tmp_path, IOT_EMBEDDED_MQTT="mosquitto", IOT_EMBEDDED_MQTT_PORT=port)
    up.wait_ready()
    publisher = AckedPublisher(int(port))
    publisher.thread.start()
    deadline = time.monotonic() + 30
    while len(publisher.acknowledged()) < 1000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert up.proc is not None
    mosquitto = psutil.Process(up.proc.pid).children()
    up.proc.kill()
    up.proc.wait()
    psutil.wait_procs(mosquitto, timeout=15)
    assert not [p for p in mosquitto if p.is_running()], "Mosquitto outlived `up`"
    publisher.close()
    acknowledged = publisher.acknowledged()
    assert len(acknowledged) >= 1000
    again = _up(ups, tmp_path, IOT_EMBEDDED_MQTT="mosquitto", IOT_EMBEDDED_MQTT_PORT=port)
    again.wait_ready()
    assert wait_for_count(again.database, "iot_data", len(acknowledged)) >= len(acknowledged)
    again.sigint()
    rows = query(again.database, "SELECT timestamp FROM iot_data WHERE device_id = 'acked-1'")
    stored = [str(int(str(r[0])) // 1000) for r in rows]  # SQLite keeps epoch microseconds
    assert len(stored) == len(set(stored))  # once each
    missing = acknowledged - set(stored)
    assert not missing, f"{len(missing)} acknowledged readings lost, e.g. {sorted(missing)[:5]}"


@needs_mosquitto
def test_up_stops_a_mosquitto_left_running_on_its_data(tmp_path: Path, ups: list[Up]) -> None:
    """Where the parent-death signal did not act: the next `up` stops the old broker (SIGTERM,
    so it saves its queue) instead of failing on its port."""
    port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    binary = mosquitto_binary()
    assert binary is not None
    config = MosquittoBroker(binary, "127.0.0.1", port, data, logging.getLogger("t"))
    config.config_file.write_text(config.config())
    left = subprocess.Popen(
        [binary, "-c", str(config.config_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not (data / "mosquitto.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        up = _up(ups, tmp_path, IOT_EMBEDDED_MQTT="mosquitto", IOT_EMBEDDED_MQTT_PORT=str(port))
        up.wait_ready()
        assert left.wait(timeout=5) == 0  # stopped cleanly, by SIGTERM
        assert f"stopping the Mosquitto (pid {left.pid})" in up.text()
        assert up.mqtt_port == port
        assert up.sigint() == 0
    finally:
        if left.poll() is None:
            left.kill()
            left.wait()


@needs_mosquitto
def test_a_second_up_on_the_same_data_leaves_the_running_one_alone(
    tmp_path: Path, ups: list[Up]
) -> None:
    first = _up(ups, tmp_path, IOT_EMBEDDED_MQTT="mosquitto")
    first.wait_ready()
    assert first.proc is not None
    [broker] = psutil.Process(first.proc.pid).children()
    second = _up(ups, tmp_path, IOT_EMBEDDED_MQTT="mosquitto")
    assert second.proc is not None
    assert second.proc.wait(timeout=30) == 2
    assert f"another `iot-collector up` (pid {first.proc.pid}) is running on" in first.text()
    assert broker.is_running()
    assert "stopping the Mosquitto" not in first.text()
    assert first.sigint() == 0


@needs_mosquitto
def test_up_mosquitto_accepts_mqtt_5_clients(tmp_path: Path, ups: list[Up]) -> None:
    port = free_port()
    up = _up(ups, tmp_path, IOT_EMBEDDED_MQTT_PORT=str(port))
    up.wait_ready()
    assert "Mosquitto (" in up.text()
    reading = '{"device_id":"v5-cli","sensor_type":"temperature","value":21.5}'
    argv = ["mosquitto_pub", "-V", "5", "-h", "127.0.0.1", "-p", str(port), "-q", "1"]
    subprocess.run(
        [*argv, "-t", "iot/data", "-m", reading],
        check=True,
        timeout=10,
    )
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="v5-paho", protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    info = client.publish(
        "iot/data", b'{"device_id":"v5-paho","sensor_type":"humidity","value":50}', qos=1
    )
    info.wait_for_publish(timeout=10)
    client.loop_stop()
    client.disconnect()
    assert info.is_published()
    assert wait_for_count(up.database, "iot_data", 2) == 2
    devices = {r[0] for r in query(up.database, "SELECT device_id FROM iot_data")}
    assert devices == {"v5-cli", "v5-paho"}
    assert up.sigint() == 0


@pytest.mark.parametrize("command", ["up", "serve"])
def test_taken_api_port_is_one_line_naming_iot_api_port(tmp_path: Path, command: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOT_")}
        env |= {
            "IOT_API_PORT": str(port),
            "IOT_EMBEDDED_MQTT_PORT": str(free_port()),
            "IOT_API_AUTH": "disabled",
        }
        done = subprocess.run(
            [sys.executable, "-m", "iotcollector", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 2
    err = done.stderr.decode()
    assert len(err.strip().splitlines()) == 1, err
    assert "IOT_API_PORT" in err
    assert f"127.0.0.1:{port}" in err
    assert "Traceback" not in err
    assert b"is up" not in done.stdout  # no banner before the ports are bound


@pytest.mark.parametrize("broker", BROKERS)
def test_up_broker_port_is_the_same_across_starts(
    broker: str, tmp_path: Path, ups: list[Up]
) -> None:
    """Without IOT_EMBEDDED_MQTT_PORT the port of the last start (in ./data/) is reused."""
    remembered = free_port()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "broker.port").write_text(f"{remembered}\n")
    ports = []
    for _ in range(2):
        up = _up(ups, tmp_path, IOT_EMBEDDED_MQTT=broker)
        up.wait_ready()
        ports.append(up.mqtt_port)
        assert up.sigint() == 0
    assert ports == [remembered, remembered]


def test_up_simulate_20_devices_readings_through_the_api(tmp_path: Path, ups: list[Up]) -> None:
    """Issue 8, acceptance 1: `up --simulate 20`, readings from 20 devices, Ctrl-C, exit 0."""
    up = _up(ups, tmp_path, "--simulate", "20", IOT_EMBEDDED_MQTT_PORT=str(free_port()))
    up.wait_ready()
    base = up.base
    assert "20 simulated devices publish a reading per second each" in up.text()
    expected = {f"sim-{i:04d}" for i in range(20)}
    deadline = time.monotonic() + 30
    online: set[str] = set()
    while time.monotonic() < deadline:
        devices = httpx.get(f"{base}/api/devices", params={"limit": 100}, timeout=5).json()
        online = {d["device_id"] for d in devices["data"] if d["status"] == "online"}
        if online == expected:
            break
        time.sleep(0.5)
    assert online == expected, up.text()
    # Presence ("online") arrives before a device's first reading: wait for one.
    data: list[dict[str, object]] = []
    while not data and time.monotonic() < deadline + 10:
        data = httpx.get(
            f"{base}/api/data", params={"device_id": "sim-0007", "limit": 10}, timeout=5
        ).json()["data"]
        time.sleep(0.2)
    assert data, up.text()
    assert {r["device_id"] for r in data} == {"sim-0007"}
    assert {r["sensor_type"] for r in data} <= {
        "temperature",
        "humidity",
        "pressure",
        "co2",
        "battery",
    }
    assert up.sigint() == 0
    text = up.text()
    assert "simulated devices stopped" in text
    assert "Traceback" not in text
