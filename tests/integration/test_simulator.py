"""``iot-collector simulate`` against a real, private Mosquitto (plain and TLS)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from iotcollector.domain.parse import parse_message
from support.certs import CertificateAuthority
from support.mosquitto import (
    PASSWORD_LISTENER,
    TLS_LISTENER,
    MosquittoServer,
    free_port,
    mosquitto_available,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]


class Subscriber:
    """A paho client recording every message on ``iot/#`` (topic, payload, retain)."""

    def __init__(self, port: int, topic: str = "iot/#") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "no SUBACK"

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def data(self) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == "iot/data"]

    def status(self) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return [m for m in self.messages if m[0].startswith("iot/status/")]

    def wait(self, predicate: Callable[[], object], timeout: float = 20) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return bool(predicate())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def broker() -> Iterator[MosquittoServer]:
    server = MosquittoServer(persistence=False)
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def subscriber(broker: MosquittoServer) -> Iterator[Subscriber]:
    sub = Subscriber(broker.port)
    yield sub
    sub.close()


def _args(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "iotcollector", "simulate", "--url", url, *args]


def simulate(url: str, tmp_path: Path, *args: str, timeout: float = 60) -> dict[str, Any]:
    """Run the simulator to its end; return its summary."""
    summary = tmp_path / f"summary-{time.monotonic_ns()}.json"
    result = subprocess.run(
        _args(url, "--summary-json", str(summary), *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert not result.stdout  # nothing noisy without a terminal
    data: dict[str, Any] = json.loads(summary.read_text())
    return data


def _parse(payload: bytes) -> tuple[list[Any], list[Any]]:
    result = parse_message(payload, received_at=datetime.now(UTC))
    return result.readings, result.rejections


@pytest.mark.parametrize(("fmt", "messages"), [("single", 500), ("batch", 50), ("multi", 100)])
def test_each_format_is_valid_and_complete(
    broker: MosquittoServer, subscriber: Subscriber, tmp_path: Path, fmt: str, messages: int
) -> None:
    summary = simulate(
        broker.url,
        tmp_path,
        *("--devices", "25", "--count", "500", "--total-rate", "0"),
        *("--format", fmt, "--batch-size", "10", "--device-prefix", f"fmt-{fmt}"),
    )
    assert summary["published"] == summary["acknowledged"] == messages
    assert summary["readings"] == 500
    assert summary["unacknowledged"] == summary["errors"] == 0
    assert subscriber.wait(lambda: len(subscriber.data()) >= messages)
    readings = []
    for payload in subscriber.data():
        good, bad = _parse(payload)
        assert not bad, payload
        readings.extend(good)
    assert len(readings) == 500
    assert len({(r.device_id, r.sensor_type, r.timestamp) for r in readings}) == 500
    per_device = Counter(r.device_id for r in readings)
    assert len(per_device) == 25
    assert set(per_device.values()) == {20}
    assert {r.sensor_type for r in readings} == {
        "temperature",
        "humidity",
        "pressure",
        "co2",
        "battery",
    }
    # Multiplexed connection: "online" then "offline" published for each device, retained.
    statuses = [(t, p) for t, p, _ in subscriber.status() if f"fmt-{fmt}" in t]
    assert sorted(p for _, p in statuses) == [b"offline"] * 25 + [b"online"] * 25
    late = Subscriber(broker.port, "iot/status/#")
    try:

        def mine() -> list[tuple[bytes, bool]]:
            return [(p, r) for t, p, r in late.status() if f"fmt-{fmt}" in t]

        assert late.wait(lambda: len(mine()) == 25)
        assert set(mine()) == {(b"offline", True)}
    finally:
        late.close()


def test_many_devices(broker: MosquittoServer, subscriber: Subscriber, tmp_path: Path) -> None:
    summary = simulate(
        broker.url,
        tmp_path,
        *("--devices", "100000", "--count", "100000", "--total-rate", "0", "--no-status"),
        *("--connections", "4", "--device-prefix", "many"),
    )
    assert summary["acknowledged"] == 100_000
    assert subscriber.wait(lambda: len(subscriber.data()) >= 100_000, timeout=60)
    devices = {orjson_device(p) for p in subscriber.data()}
    assert len(devices) == 100_000
    assert "many-00000" in devices
    assert "many-99999" in devices


def orjson_device(payload: bytes) -> str:
    value = json.loads(payload)["device_id"]
    assert isinstance(value, str)
    return value


def test_fault_injection_ratios(
    broker: MosquittoServer, subscriber: Subscriber, tmp_path: Path
) -> None:
    n = 4000
    summary = simulate(
        broker.url,
        tmp_path,
        *("--devices", "40", "--count", str(n), "--total-rate", "0", "--no-status"),
        *("--malformed", "0.05", "--duplicates", "0.1", "--out-of-order", "0.1"),
    )
    assert summary["malformed"] / n == pytest.approx(0.05, abs=0.015)
    assert summary["duplicated"] / n == pytest.approx(0.1, abs=0.02)
    assert summary["out_of_order"] / n == pytest.approx(0.1, abs=0.025)
    assert summary["published"] == n + summary["duplicated"] == summary["acknowledged"]
    assert subscriber.wait(lambda: len(subscriber.data()) >= summary["published"])
    received = subscriber.data()
    assert len(received) == summary["published"]
    rejected = 0
    valid: Counter[bytes] = Counter()
    for payload in received:
        if _parse(payload)[1]:
            rejected += 1
        else:
            valid[payload] += 1
    # Malformed payloads may repeat by chance ("[]"): count copies among valid ones exactly.
    valid_copies = sum(c - 1 for c in valid.values())
    assert 0.8 * summary["duplicated"] <= valid_copies <= summary["duplicated"]
    assert summary["malformed"] <= rejected <= summary["malformed"] + summary["duplicated"]
    valid_readings = set()
    backwards = 0
    last: dict[str, datetime] = {}
    for payload in valid:  # distinct valid payloads, in first-arrival order
        (reading,) = _parse(payload)[0]
        valid_readings.add((reading.device_id, reading.sensor_type, reading.timestamp))
        previous = last.get(reading.device_id)
        if previous is not None and reading.timestamp < previous:
            backwards += 1
        last[reading.device_id] = reading.timestamp
    assert len(valid_readings) == len(valid) == summary["readings"] == n - summary["malformed"]
    # Every late message arrives after a newer one of its device (unless it was malformed).
    assert summary["out_of_order"] * 0.85 <= backwards <= summary["out_of_order"]


@pytest.mark.parametrize("qos", ["0", "2"])
def test_other_qos(broker: MosquittoServer, tmp_path: Path, qos: str) -> None:
    summary = simulate(broker.url, tmp_path, "--count", "300", "--total-rate", "0", "--qos", qos)
    assert summary["published"] == 300
    assert summary["acknowledged"] == (0 if qos == "0" else 300)


def test_rate_is_respected(broker: MosquittoServer, tmp_path: Path) -> None:
    summary = simulate(
        broker.url, tmp_path, "--devices", "10", "--rate", "20", "--duration", "2", "--no-status"
    )
    assert summary["stopped_by"] == "duration"
    assert 360 <= summary["published"] <= 410  # 200/s for 2 s


def test_last_will_and_online_with_a_connection_per_device(
    broker: MosquittoServer, subscriber: Subscriber
) -> None:
    proc = subprocess.Popen(
        _args(
            broker.url,
            *("--devices", "5", "--connections", "devices", "--rate", "2", "--duration", "60"),
            *("--device-prefix", "lwt"),
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def online() -> set[str]:
            return {t for t, p, _ in subscriber.status() if p == b"online" and "lwt" in t}

        assert subscriber.wait(lambda: len(online()) == 5), subscriber.status()
        assert online() == {f"iot/status/lwt-000{i}" for i in range(5)}
        assert subscriber.wait(lambda: len(subscriber.data()) >= 10)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

        def offline() -> set[str]:
            return {t for t, p, _ in subscriber.status() if p == b"offline" and "lwt" in t}

        assert subscriber.wait(lambda: len(offline()) == 5, timeout=10), subscriber.status()
    finally:
        proc.kill()
        proc.wait()


def test_churn_reconnects_without_losing_readings(
    broker: MosquittoServer, subscriber: Subscriber, tmp_path: Path
) -> None:
    summary = simulate(
        broker.url,
        tmp_path,
        *("--devices", "10", "--connections", "devices", "--rate", "10", "--duration", "4"),
        *("--churn", "0.3", "--churn-downtime", "0.3", "--device-prefix", "churn", "--seed", "2"),
    )
    assert summary["churned"] >= 3
    assert summary["acknowledged"] == summary["published"]
    assert summary["unacknowledged"] == 0
    assert subscriber.wait(lambda: len(set(subscriber.data())) >= summary["readings"])
    assert len(set(subscriber.data())) == summary["readings"]  # at least once, none lost
    wills = [t for t, p, _ in subscriber.status() if p == b"offline" and "churn" in t]
    assert len(wills) >= summary["churned"]  # each drop fires a will (+ the final offline)


@pytest.mark.parametrize("connections", ["1", "devices"])
def test_mqtt311(
    broker: MosquittoServer, subscriber: Subscriber, tmp_path: Path, connections: str
) -> None:
    """``--protocol 3.1.1``: CONNECT level 4 (a Last Will without properties), PUBLISH without."""
    prefix = f"v311-{connections}"
    summary = simulate(
        broker.url,
        tmp_path,
        *("--protocol", "3.1.1", "--devices", "5", "--count", "100", "--total-rate", "0"),
        *("--connections", connections, "--device-prefix", prefix, "--qos", "2"),
    )
    assert summary["protocol"] == "3.1.1"
    assert summary["published"] == summary["acknowledged"] == 100
    assert summary["errors"] == 0
    assert summary["status_published"] == 10

    def mine() -> list[bytes]:
        return [p for p in subscriber.data() if prefix.encode() in p]

    assert subscriber.wait(lambda: len(mine()) >= 100)
    readings = [r for payload in mine() for r in _parse(payload)[0]]
    assert len({(r.device_id, r.sensor_type, r.timestamp) for r in readings}) == 100
    statuses = sorted(p for t, p, _ in subscriber.status() if prefix in t)
    assert statuses == [b"offline"] * 5 + [b"online"] * 5


def test_mqtt311_last_will_and_protocol_from_the_environment(
    broker: MosquittoServer, subscriber: Subscriber
) -> None:
    """IOT_MQTT_PROTOCOL=3.1.1 is the default of --protocol; the broker fires 3.1.1 wills."""
    proc = subprocess.Popen(
        _args(
            broker.url,
            *("--devices", "3", "--connections", "devices", "--rate", "2", "--duration", "60"),
            *("--device-prefix", "lwt311"),
        ),
        env={**os.environ, "IOT_MQTT_PROTOCOL": "3.1.1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def status(payload: bytes) -> set[str]:
            return {t for t, p, _ in subscriber.status() if p == payload and "lwt311" in t}

        assert subscriber.wait(lambda: len(status(b"online")) == 3), subscriber.status()
        assert subscriber.wait(lambda: any(b"lwt311" in p for p in subscriber.data()))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert subscriber.wait(lambda: len(status(b"offline")) == 3, timeout=10)
    finally:
        proc.kill()
        proc.wait()


def test_mqtt5_is_the_default(broker: MosquittoServer, tmp_path: Path) -> None:
    summary = simulate(broker.url, tmp_path, "--count", "5", "--total-rate", "0")
    assert summary["protocol"] == "5"


def test_sigterm_stops_gracefully_with_the_summary(
    broker: MosquittoServer, subscriber: Subscriber, tmp_path: Path
) -> None:
    summary_path = tmp_path / "summary.json"
    proc = subprocess.Popen(
        _args(broker.url, "--duration", "60", "--rate", "50", "--summary-json", str(summary_path)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # Stopped while publishing: once messages flow, not after a guessed delay.
        assert subscriber.wait(lambda: len(subscriber.data()) >= 20), "nothing published"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(summary_path.read_text())
    assert summary["stopped_by"] == "signal"
    assert summary["published"] >= 20
    # Drained before exit: every message published was acknowledged and reached the broker.
    assert summary["acknowledged"] == summary["published"]
    assert subscriber.wait(lambda: len(subscriber.data()) == summary["published"], timeout=5), (
        len(subscriber.data()),
        summary["published"],
    )
    assert b"stopped by signal" in err


def test_unreachable_broker_fails_fast(tmp_path: Path) -> None:
    result = subprocess.run(
        _args(f"mqtt://127.0.0.1:{free_port()}", "--count", "1"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "refused" in result.stderr.lower() or "connect" in result.stderr.lower()


# -- TLS and credentials ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_broker() -> Iterator[tuple[MosquittoServer, CertificateAuthority]]:
    """Mosquitto on TLS only, requiring a client certificate from our test CA."""
    server = MosquittoServer(listeners=TLS_LISTENER, per_listener_settings=True, persistence=False)
    (server.dir / "ca").mkdir()
    ca = CertificateAuthority(server.dir / "ca")
    ca.issue("broker", server=True)
    server.start()
    yield server, ca
    server.cleanup()


def test_tls_with_a_client_certificate(
    tls_broker: tuple[MosquittoServer, CertificateAuthority], tmp_path: Path
) -> None:
    broker, ca = tls_broker
    device = ca.issue("sim-tls")
    url = f"mqtts://127.0.0.1:{broker.port}"
    summary = simulate(
        url,
        tmp_path,
        *("--count", "50", "--total-rate", "0", "--ca-file", str(ca.cert_path)),
        *("--cert-file", str(device.cert), "--key-file", str(device.key)),
    )
    assert summary["acknowledged"] == 50
    assert summary["status_published"] == 20  # online + offline for 10 devices
    # The same from the IOT_MQTT_* variables; refused without the client certificate.
    env = {
        **os.environ,
        "IOT_MQTT_URL": url,
        "IOT_MQTT_CA_FILE": str(ca.cert_path),
        "IOT_MQTT_CERT_FILE": str(device.cert),
        "IOT_MQTT_KEY_FILE": str(device.key),
    }
    cmd = [sys.executable, "-m", "iotcollector", "simulate", "--count", "5"]
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stderr
    del env["IOT_MQTT_CERT_FILE"], env["IOT_MQTT_KEY_FILE"]
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert refused.returncode == 1
    # A CA that did not sign the broker's certificate: refused too.
    other = CertificateAuthority(tmp_path, "other-ca")
    env["IOT_MQTT_CA_FILE"] = str(other.cert_path)
    untrusted = subprocess.run(
        [*cmd, "--cert-file", str(device.cert), "--key-file", str(device.key)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert untrusted.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr


def test_username_and_password(tmp_path: Path) -> None:
    broker = MosquittoServer(listeners=PASSWORD_LISTENER, persistence=False)
    passwd = broker.dir / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwd), "device", "s3cret"],
        check=True,
        capture_output=True,
    )
    passwd.chmod(0o600)
    broker.start()
    try:
        env = {**os.environ, "IOT_MQTT_USERNAME": "device", "IOT_MQTT_PASSWORD": "s3cret"}
        cmd = _args(broker.url, "--count", "5", "--summary-json", str(tmp_path / "s.json"))
        ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, check=False)
        assert ok.returncode == 0, ok.stderr
        assert json.loads((tmp_path / "s.json").read_text())["acknowledged"] == 5
        env["IOT_MQTT_PASSWORD"] = "wrong"
        bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, check=False)
        assert bad.returncode == 1
        assert "bad user name or password" in bad.stderr or "not authorized" in bad.stderr
        # The same over MQTT 3.1.1, whose return codes are named the same way.
        for password, code in (("wrong", 1), ("s3cret", 0)):
            env["IOT_MQTT_PASSWORD"] = password
            result = subprocess.run(
                [*cmd, "--protocol", "3.1.1"],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert result.returncode == code, result.stderr
            expected = ["bad user name or", "not authorized"] if code else ["over MQTT 3.1.1"]
            assert any(text in result.stderr for text in expected), result.stderr
    finally:
        broker.cleanup()
