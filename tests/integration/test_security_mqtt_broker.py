"""The production Mosquitto configuration (deploy/mosquitto/), run for real with certificates
freshly issued by scripts/make-certs.py: mutual TLS, identities from certificates, the
dynamic-security plugin's rights (devices registered with scripts/mosquitto-dynsec.py).

Only paths, the port and the log destination of the shipped files are rewritten (and ``user
root`` added when the tests run as root). Basic TLS behaviour of the collector (untrusted broker,
user/password) is covered by test_mqtt_tls_and_credentials.py; this file tests our config.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from support.certs import MAKE_CERTS, CertificateAuthority, make_certs
from support.collector import Collector, query, wait_for_count
from support.mosquitto import MosquittoServer, mosquitto_available

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "deploy" / "mosquitto"
DYNSEC_TOOL = REPO / "scripts" / "mosquitto-dynsec.py"
REGISTERED_DEVICES = ("sensor-1", "sensor-2")
NOT_AUTHORIZED = 0x87


def _reading(device: str, value: float, timestamp: int = 1767225600) -> bytes:
    return (
        f'{{"device_id":"{device}","sensor_type":"temperature","value":{value},'
        f'"timestamp":{timestamp}}}'
    ).encode()


@dataclass
class Pki:
    dir: Path
    ca: Path

    def cert(self, name: str) -> tuple[Path, Path]:
        return self.dir / f"{name}.pem", self.dir / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")

    def make(*args: str) -> None:
        subprocess.run(
            [sys.executable, str(MAKE_CERTS), "--dir", str(directory), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    make("ca")
    make("server", "localhost", "--san", "127.0.0.1")
    for name in ("iot-collector-0", "iot-collector-1"):
        make("collector", name)
    # sensor-3 has a valid certificate but is not registered in the broker's file.
    for name in (*REGISTERED_DEVICES, "sensor-3"):
        make("device", name)
    # Signed by our CA, but expired yesterday.
    now = dt.datetime.now(dt.UTC)
    make_certs.issue(
        directory,
        "sensor-expired",
        not_before=now - dt.timedelta(days=10),
        not_after=now - dt.timedelta(days=1),
    )
    # A valid certificate with a device's name, from a CA the broker does not trust.
    rogue = directory / "rogue"
    rogue.mkdir()
    issued = CertificateAuthority(rogue, "rogue-ca").issue("sensor-1")
    issued.cert.rename(directory / "rogue-sensor-1.pem")
    issued.key.rename(directory / "rogue-sensor-1.key")
    return Pki(directory, directory / "ca.pem")


def production_config(server: MosquittoServer, pki: Pki) -> str:
    """deploy/mosquitto/mosquitto.conf with only paths, port and log destination changed."""
    text = (CONFIG_DIR / "mosquitto.conf").read_text(encoding="utf-8")
    replacements = {
        "/mosquitto/certs/ca.pem": str(pki.ca),
        "/mosquitto/certs/server.pem": str(pki.dir / "localhost.pem"),
        "/mosquitto/certs/server.key": str(pki.dir / "localhost.key"),
        "/mosquitto/config/dynamic-security.json": str(server.dir / "dynamic-security.json"),
        "/mosquitto/data/": f"{server.dir}/data/",
        "listener 8883 0.0.0.0": f"listener {server.port} 127.0.0.1",
        "log_dest stdout": f"log_dest file {server.dir}/mosquitto.log",
    }
    for old, new in replacements.items():
        assert old in text, f"{old!r} is no longer in deploy/mosquitto/mosquitto.conf"
        text = text.replace(old, new)
    if os.geteuid() == 0:
        text += "user root\n"  # the test's temp dirs are private to root
    return text


def _production_broker(pki: Pki, *tool_commands: list[str]) -> MosquittoServer:
    """The shipped files, with the devices registered as an operator would (and any further
    ``scripts/mosquitto-dynsec.py`` commands)."""
    server = MosquittoServer()
    (server.dir / "data").mkdir()
    dynsec = server.dir / "dynamic-security.json"
    dynsec.write_text((CONFIG_DIR / "dynamic-security.json").read_text(encoding="utf-8"))
    for command in (["add-device", *REGISTERED_DEVICES], *tool_commands):
        subprocess.run(
            [sys.executable, str(DYNSEC_TOOL), "--file", str(dynsec), *command],
            check=True,
            capture_output=True,
            timeout=30,
        )
    server.conf.write_text(production_config(server, pki), encoding="utf-8")
    server.start()
    return server


@pytest.fixture(scope="module")
def broker(pki: Pki) -> Iterator[MosquittoServer]:
    server = _production_broker(pki)
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def device_topics_broker(pki: Pki) -> Iterator[MosquittoServer]:
    """Hardened as docs/security.md says: no shared readings topic for devices."""
    server = _production_broker(pki, ["per-device-topics-only"])
    yield server
    server.cleanup()


@dataclass
class Client:
    """A paho MQTT 5 client over TLS that records what the broker answered."""

    port: int
    ca: Path
    cert: tuple[Path, Path] | None
    client_id: str = ""
    connected: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)
    connect_reason: Any = None
    suback: dict[int, list[int]] = field(default_factory=dict)
    puback: dict[int, int] = field(default_factory=dict)
    received: list[tuple[str, bytes]] = field(default_factory=list)
    error: BaseException | None = None
    client: mqtt.Client = field(init=False)

    def __post_init__(self) -> None:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        certfile, keyfile = self.cert or (None, None)
        c.tls_set(
            ca_certs=str(self.ca),
            certfile=str(certfile) if certfile else None,
            keyfile=str(keyfile) if keyfile else None,
        )
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        self.client = c

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connect_reason = reason
        if not reason.is_failure:
            self.connected.set()

    def _on_disconnect(self, *_args: Any) -> None:
        self.closed.set()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: Any, _p: Any) -> None:
        self.suback[mid] = [r.value for r in reasons]

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        self.puback[mid] = reason.value

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.received.append((message.topic, bytes(message.payload)))

    def connect(self, timeout: float = 5) -> bool:
        """Whether the broker accepted the connection (CONNACK success) within ``timeout``."""
        try:
            self.client.connect("localhost", self.port, keepalive=30)
        except OSError as exc:  # ssl.SSLError is an OSError: the handshake was refused
            self.error = exc
            return False
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connected.is_set():
                # TLS 1.3: the server checks the client certificate after the client's side of
                # the handshake completes; a refusal shows up as a closed connection instead.
                return not self.closed.wait(0.3)
            if self.closed.is_set():
                return False
            time.sleep(0.02)
        return False

    def subscribe(self, topic: str) -> list[int]:
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        reasons: list[int] = self._wait(self.suback, mid)
        return reasons

    def publish(self, topic: str, payload: bytes) -> int:
        info = self.client.publish(topic, payload, qos=1)
        reason: int = self._wait(self.puback, info.mid)
        return reason

    @staticmethod
    def _wait(answers: dict[int, Any], mid: int, timeout: float = 5) -> Any:
        deadline = time.monotonic() + timeout
        while mid not in answers:
            assert time.monotonic() < deadline, "no answer from the broker"
            time.sleep(0.01)
        return answers[mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients(broker: MosquittoServer, pki: Pki) -> Iterator[Any]:
    made: list[Client] = []

    def connect(name: str | None, *, expect: bool = True) -> Client:
        client = Client(broker.port, pki.ca, pki.cert(name) if name else None)
        made.append(client)
        ok = client.connect()
        assert ok == expect, f"{name}: connected={ok}, {client.connect_reason} {client.error}"
        return client

    yield connect
    for client in made:
        client.close()


def _collector(
    broker: MosquittoServer, pki: Pki, tmp_path: Path, identity: str, **env: str
) -> Collector:
    cert, key = pki.cert(identity)
    return Collector(
        mqtt_url=f"mqtts://localhost:{broker.port}",
        database_url=f"sqlite:///{tmp_path}/iot.db",
        client_id=identity,
        log_dir=tmp_path,
        env={
            "IOT_MQTT_CA_FILE": str(pki.ca),
            "IOT_MQTT_CERT_FILE": str(cert),
            "IOT_MQTT_KEY_FILE": str(key),
            # Production replicas share the stream: the broker must allow $share/... too.
            "IOT_MQTT_SHARED_GROUP": "collectors",
            **env,
        },
    )


def test_collector_subscribes_and_stores_what_a_device_publishes(
    broker: MosquittoServer, pki: Pki, tmp_path: Path, clients: Any
) -> None:
    collector = _collector(broker, pki, tmp_path, "iot-collector-0").start()
    try:
        collector.wait_ready()
        device = clients("sensor-1")
        assert device.publish("iot/data", _reading("sensor-1", 21.5)) == 0
        db = collector.env["IOT_DATABASE_URL"]
        assert wait_for_count(db, "iot_data", 1, timeout=20) == 1
        assert query(db, "SELECT device_id, value FROM iot_data") == [("sensor-1", 21.5)]
        assert collector.stop() == 0
    finally:
        collector.ensure_stopped()


@pytest.mark.parametrize(
    ("identity", "logged"),
    [
        (None, "peer did not return a certificate"),
        ("rogue-sensor-1", "certificate verify failed"),
        ("sensor-expired", "certificate verify failed"),
    ],
    ids=["no-cert", "other-ca", "expired"],
)
def test_clients_without_a_valid_certificate_are_refused(
    broker: MosquittoServer, clients: Any, identity: str | None, logged: str
) -> None:
    log_file = broker.dir / "mosquitto.log"
    seen = len(log_file.read_bytes())
    clients(identity, expect=False)
    deadline = time.monotonic() + 5
    while logged not in log_file.read_bytes()[seen:].decode(errors="replace"):
        assert time.monotonic() < deadline, log_file.read_text(errors="replace")[-2000:]
        time.sleep(0.05)


def test_acl_devices_publish_only_their_own_topics_and_read_nothing(
    broker: MosquittoServer, pki: Pki, tmp_path: Path, clients: Any
) -> None:
    collector = _collector(broker, pki, tmp_path, "iot-collector-0").start()
    try:
        collector.wait_ready()
        watcher = clients("iot-collector-1")  # a collector identity sees everything delivered
        assert watcher.subscribe("iot/#") == [1]
        assert watcher.subscribe("$share/audit/iot/#") == [1]
        spy = clients("sensor-2")
        # A device may read nothing: neither the whole tree nor the collectors' shared stream.
        # The dynamic-security plugin refuses the SUBSCRIBE itself (SUBACK 0x87).
        for topic in ("iot/#", "iot/data", "iot/status/sensor-2", "$share/other/iot/#", "#"):
            assert spy.subscribe(topic) == [NOT_AUTHORIZED], topic

        device = clients("sensor-1")
        # Another device's status, and any other topic: refused and dropped by the broker.
        assert device.publish("iot/status/sensor-2", b"offline") == NOT_AUTHORIZED
        assert device.publish("iot/status/sensor-2", _reading("sensor-2", 1.0)) == NOT_AUTHORIZED
        assert device.publish("iot/data/sensor-2", _reading("sensor-2", 2.0)) == NOT_AUTHORIZED
        assert device.publish("$SYS/broker/x", b"1") == NOT_AUTHORIZED
        # Its own status and the readings topic: accepted.
        assert device.publish("iot/status/sensor-1", b"online") == 0
        assert device.publish("iot/data", _reading("sensor-1", 3.0)) == 0

        db = collector.env["IOT_DATABASE_URL"]
        assert wait_for_count(db, "iot_data", 1, timeout=20) == 1
        deadline = time.monotonic() + 5
        while len(watcher.received) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # anything denied would have arrived by now
        expected = [("iot/status/sensor-1", b"online"), ("iot/data", _reading("sensor-1", 3.0))]
        assert sorted(watcher.received) == sorted(expected * 2)  # once per subscription
        assert spy.received == []
        assert query(db, "SELECT device_id, value FROM iot_data") == [("sensor-1", 3.0)]
        assert collector.stop() == 0
    finally:
        collector.ensure_stopped()


def test_a_device_cannot_take_over_another_devices_session(
    broker: MosquittoServer, pki: Pki, clients: Any
) -> None:
    """use_username_as_clientid: the client id is the certificate's CN, whatever is sent."""
    victim = clients("sensor-2")
    impostor = Client(broker.port, pki.ca, pki.cert("sensor-1"), client_id="sensor-2")
    try:
        assert impostor.connect()
        # Same client id would have disconnected the victim; the broker renamed the impostor.
        assert not victim.closed.wait(1.0)
        assert impostor.publish("iot/status/sensor-2", b"offline") == NOT_AUTHORIZED
    finally:
        impostor.close()


def _publish_readings(device: Client, count: int) -> None:
    for i in range(count):
        assert device.publish("iot/data", _reading("sensor-1", i, 1767225600 + i)) == 0


def test_a_device_cannot_join_the_collectors_shared_subscription(
    broker: MosquittoServer, pki: Pki, tmp_path: Path, clients: Any
) -> None:
    """The dynamic-security plugin refuses the SUBSCRIBE: nothing is diverted to the device."""
    collector = _collector(broker, pki, tmp_path, "iot-collector-0").start()
    try:
        collector.wait_ready()
        spy = clients("sensor-2")
        for topic in ("$share/collectors/iot/data", "$share/collectors/iot/#", "iot/data", "#"):
            assert spy.subscribe(topic) == [NOT_AUTHORIZED], topic
        _publish_readings(clients("sensor-1"), 20)
        db = collector.env["IOT_DATABASE_URL"]
        assert wait_for_count(db, "iot_data", 20, timeout=20) == 20
        assert spy.received == []
        assert collector.stop() == 0
    finally:
        collector.ensure_stopped()


def test_an_unregistered_identity_may_do_nothing(
    broker: MosquittoServer, pki: Pki, tmp_path: Path, clients: Any
) -> None:
    """A valid certificate whose CN is not in the broker's file: no fallback grants it anything."""
    collector = _collector(broker, pki, tmp_path, "iot-collector-0").start()
    try:
        collector.wait_ready()
        stranger = clients("sensor-3")
        assert stranger.subscribe("$share/collectors/iot/data") == [NOT_AUTHORIZED]
        assert stranger.publish("iot/data", _reading("sensor-3", 1.0)) == NOT_AUTHORIZED
        assert stranger.publish("iot/status/sensor-3", b"online") == NOT_AUTHORIZED
        _publish_readings(clients("sensor-1"), 5)
        db = collector.env["IOT_DATABASE_URL"]
        assert wait_for_count(db, "iot_data", 5, timeout=20) == 5
        assert query(db, "SELECT DISTINCT device_id FROM iot_data") == [("sensor-1",)]
        assert collector.stop() == 0
    finally:
        collector.ensure_stopped()


def test_device_subscriptions_take_nothing_from_the_collectors(
    broker: MosquittoServer, pki: Pki, tmp_path: Path, clients: Any
) -> None:
    """Outside the collectors' group, a device's subscriptions cost the collectors nothing."""
    collector = _collector(broker, pki, tmp_path, "iot-collector-0").start()
    try:
        collector.wait_ready()
        spy = clients("sensor-2")
        for topic in ("iot/#", "$share/guess/iot/data", "$share/iot-collector/iot/data"):
            spy.subscribe(topic)
        _publish_readings(clients("sensor-1"), 20)
        db = collector.env["IOT_DATABASE_URL"]
        assert wait_for_count(db, "iot_data", 20, timeout=20) == 20
        assert spy.received == []
        assert collector.stop() == 0
    finally:
        collector.ensure_stopped()


def test_per_device_topics_bind_readings_to_the_certificate(
    device_topics_broker: MosquittoServer, pki: Pki, tmp_path: Path
) -> None:
    """A stolen sensor-1 certificate can no longer write readings in sensor-2's name."""
    collector = _collector(
        device_topics_broker,
        pki,
        tmp_path,
        "iot-collector-0",
        IOT_MQTT_TOPICS="iot/data/+",
        IOT_MQTT_DEVICE_TOPICS="true",
    ).start()
    device = Client(device_topics_broker.port, pki.ca, pki.cert("sensor-1"))
    try:
        collector.wait_ready()
        assert device.connect()
        # The broker: only its own topic.
        assert device.publish("iot/data", _reading("sensor-1", 1.0)) == NOT_AUTHORIZED
        assert device.publish("iot/data/sensor-2", _reading("sensor-2", 2.0)) == NOT_AUTHORIZED
        # The collector: on its own topic, only its own readings.
        assert device.publish("iot/data/sensor-1", _reading("sensor-2", 3.0)) == 0
        assert device.publish("iot/data/sensor-1", _reading("sensor-1", 4.0)) == 0
        db = collector.env["IOT_DATABASE_URL"]
        assert wait_for_count(db, "iot_rejected", 1, timeout=20) == 1
        assert wait_for_count(db, "iot_data", 1, timeout=20) == 1
        assert query(db, "SELECT device_id, value FROM iot_data") == [("sensor-1", 4.0)]
        [(topic, payload, reason)] = query(db, "SELECT topic, payload, reason FROM iot_rejected")
        assert isinstance(payload, bytes)
        assert (topic, payload) == ("iot/data/sensor-1", _reading("sensor-2", 3.0))
        assert str(reason).startswith("device_mismatch: 1 of 1 readings are for device 'sensor-2'")
        metrics = collector.metrics()
        assert metrics["iotcollector_readings_rejected_total{reason=device_mismatch}"] == 1
        assert collector.stop() == 0
    finally:
        device.close()
        collector.ensure_stopped()
