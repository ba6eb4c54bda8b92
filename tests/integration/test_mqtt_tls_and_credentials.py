"""The collector over TLS with a client certificate, and with a user name and password."""

from __future__ import annotations

import subprocess
import time
from typing import TYPE_CHECKING

import pytest

from support.certs import CertificateAuthority
from support.collector import Collector, scalar, wait_for_count
from support.mosquitto import PASSWORD_LISTENER, TLS_LISTENER, MosquittoServer, mosquitto_available

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]

READING = b'{"device_id":"tls-1","sensor_type":"temperature","value":21.5,"timestamp":1795830000}'


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[MosquittoServer, CertificateAuthority]]:
    server = MosquittoServer(listeners=TLS_LISTENER, per_listener_settings=True)
    (server.dir / "ca").mkdir()
    ca = CertificateAuthority(server.dir / "ca")
    ca.issue("broker", server=True)
    server.start()
    yield server, ca
    server.cleanup()


def _pub_tls(port: int, ca: Path, cert: Path, key: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-q",
            "1",
            "-t",
            "iot/data",
            "-m",
            READING.decode(),
            "--cafile",
            str(ca),
            "--cert",
            str(cert),
            "--key",
            str(key),
        ],
        capture_output=True,
        timeout=20,
        check=False,
    )


def test_collector_with_client_certificate_stores_readings(
    tls_broker: tuple[MosquittoServer, CertificateAuthority], tmp_path: Path
) -> None:
    broker, ca = tls_broker
    collector_id = ca.issue("collector-1")
    device = ca.issue("tls-1")
    db = f"sqlite:///{tmp_path}/iot.db"
    c = Collector(
        mqtt_url=f"mqtts://127.0.0.1:{broker.port}",
        database_url=db,
        client_id="collector-1",
        log_dir=tmp_path,
        env={
            "IOT_MQTT_CA_FILE": str(ca.cert_path),
            "IOT_MQTT_CERT_FILE": str(collector_id.cert),
            "IOT_MQTT_KEY_FILE": str(collector_id.key),
        },
    ).start()
    try:
        c.wait_ready()
        assert _pub_tls(broker.port, ca.cert_path, device.cert, device.key).returncode == 0
        assert wait_for_count(db, "iot_data", 1, timeout=20) == 1
        assert c.stop() == 0
    finally:
        c.ensure_stopped()


def test_collector_refuses_a_broker_its_ca_does_not_trust(
    tls_broker: tuple[MosquittoServer, CertificateAuthority], tmp_path: Path
) -> None:
    broker, ca = tls_broker
    other = CertificateAuthority(tmp_path, "other-ca")
    collector_id = ca.issue("collector-2")
    c = Collector(
        mqtt_url=f"mqtts://127.0.0.1:{broker.port}",
        database_url=f"sqlite:///{tmp_path}/iot.db",
        client_id="collector-2",
        log_dir=tmp_path,
        env={
            "IOT_MQTT_CA_FILE": str(other.cert_path),
            "IOT_MQTT_CERT_FILE": str(collector_id.cert),
            "IOT_MQTT_KEY_FILE": str(collector_id.key),
        },
    ).start()
    try:
        deadline = time.monotonic() + 15
        while "CERTIFICATE_VERIFY_FAILED" not in c.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "CERTIFICATE_VERIFY_FAILED" in c.log()
        assert c.get("/readyz").status_code == 503
        assert c.stop() == 0
    finally:
        c.ensure_stopped()


@pytest.mark.parametrize("kind", ["other-ca", "expired"])
def test_broker_refuses_bad_device_certificates(
    tls_broker: tuple[MosquittoServer, CertificateAuthority], tmp_path: Path, kind: str
) -> None:
    broker, ca = tls_broker
    if kind == "other-ca":
        bad = CertificateAuthority(tmp_path, "rogue-ca").issue("tls-1")
    else:
        bad = ca.issue("tls-expired", expired=True)
    assert _pub_tls(broker.port, ca.cert_path, bad.cert, bad.key).returncode != 0


def test_collector_with_user_name_and_password(tmp_path: Path) -> None:
    broker = MosquittoServer(listeners=PASSWORD_LISTENER, per_listener_settings=True)
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(broker.dir / "passwd"), "collector", "s3cret"],
        check=True,
        capture_output=True,
    )
    broker.start()
    db = f"sqlite:///{tmp_path}/iot.db"
    env = {"IOT_MQTT_USERNAME": "collector", "IOT_MQTT_PASSWORD": "s3cret"}
    wrong = Collector(
        mqtt_url=broker.url,
        database_url=db,
        client_id="c-wrong",
        log_dir=tmp_path,
        env={**env, "IOT_MQTT_PASSWORD": "wrong"},
    ).start()
    good = Collector(
        mqtt_url=broker.url, database_url=db, client_id="c-good", log_dir=tmp_path, env=env
    ).start()
    try:
        good.wait_ready()
        subprocess.run(
            [
                "mosquitto_pub",
                "-p",
                str(broker.port),
                "-q",
                "1",
                "-t",
                "iot/data",
                "-u",
                "collector",
                "-P",
                "s3cret",
                "-m",
                READING.decode(),
            ],
            check=True,
            capture_output=True,
            timeout=20,
        )
        assert wait_for_count(db, "iot_data", 1, timeout=20) == 1
        assert wrong.proc is not None
        assert wrong.proc.wait(timeout=20) == 1  # refused credentials at start-up: exit 1
        log = wrong.log()
        assert "cannot start: broker refused" in log, log
        assert "not authorized" in log or "bad user name or password" in log
        assert "s3cret" not in wrong.log() + good.log()
        assert scalar(db, "SELECT count(*) FROM iot_data") == 1
        assert good.stop() == 0
    finally:
        good.ensure_stopped()
        wrong.ensure_stopped()
        broker.cleanup()
