"""Configured secrets (API keys, MQTT password, database password) never appear in the logs,
in /metrics or in HTTP answers of a running collector, on the happy path and on error paths
(wrong MQTT password, database unreachable), with secrets given directly and through *_FILE."""

from __future__ import annotations

import subprocess
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from support.collector import Collector, wait_for_count
from support.mosquitto import PASSWORD_LISTENER, MosquittoServer, free_port, mosquitto_available

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from support.postgres import PostgresServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]

API_KEY = "api-key-Zq7xW2pL9mN4vB8c"
API_KEY_FROM_ENV = "api-key-env-Hk3Tr6Yu1Io0Pa5s"
MQTT_PASSWORD = "mqtt-pw-Qe4Rt7Yu2Io9"
WRONG_MQTT_PASSWORD = "mqtt-wrong-Lk8Jh5Gf3Ds1"
DB_PASSWORD = "db-pw-Mn6Bv3Cx9Za2"
SECRETS = (API_KEY, API_KEY_FROM_ENV, MQTT_PASSWORD, WRONG_MQTT_PASSWORD, DB_PASSWORD)
READING = b'{"device_id":"secret-test","sensor_type":"temperature","value":1.5}'


@pytest.fixture
def broker() -> Iterator[MosquittoServer]:
    server = MosquittoServer(listeners=PASSWORD_LISTENER, per_listener_settings=True)
    passwd = str(server.dir / "passwd")
    for create, user in ((["-c"], "collector"), ([], "device")):
        subprocess.run(
            ["mosquitto_passwd", "-b", *create, passwd, user, MQTT_PASSWORD],
            check=True,
            capture_output=True,
        )
    server.start()
    yield server
    server.cleanup()


def _secret_file(tmp_path: Path, name: str, value: str) -> str:
    path = tmp_path / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def _exercise_http(c: Collector) -> str:
    """Every kind of answer: open routes, no key, a near-miss key, a valid key."""
    seen = []
    for path, headers in (
        ("/metrics", {}),
        ("/readyz", {}),
        ("/api/devices", {}),
        ("/api/devices", {"Authorization": f"Bearer {API_KEY[:-1]}X"}),
        ("/api/data", {"Authorization": f"Bearer {API_KEY}"}),
        ("/api/devices", {"Authorization": f"Bearer {API_KEY_FROM_ENV}"}),
    ):
        response = httpx.get(c.base_url + path, headers=headers, timeout=10)
        seen.append(f"{response.status_code} {response.headers} {response.text}")
    response = httpx.post(
        c.base_url + "/api/data",
        headers={"Authorization": f"Bearer {API_KEY}"},
        content=b'{"device_id":"x","sensor_type":"t","value":"not a number"}',
        timeout=10,
    )
    seen.append(f"{response.status_code} {response.text}")  # 422: names the item, not the key
    return "\n".join(seen)


def _wait_for(c: Collector, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while text not in c.log():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{c.log()[-3000:]}"
        time.sleep(0.1)


def test_secrets_never_appear_in_logs_metrics_or_answers(
    broker: MosquittoServer, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    # PostgreSQL here trusts 127.0.0.1: the password in the URL is carried but not needed.
    name = "secrets_test"
    reachable = postgres_server.create_database(name).replace(
        "postgresql://postgres@", f"postgresql://postgres:{DB_PASSWORD}@"
    )
    unreachable = f"postgresql://iot:{DB_PASSWORD}@127.0.0.1:{free_port()}/iot"
    common = {
        "IOT_API_AUTH": "enabled",
        "IOT_API_KEYS": API_KEY_FROM_ENV,
        "IOT_API_KEYS_FILE": _secret_file(tmp_path, "api-keys", API_KEY),
        "IOT_MQTT_USERNAME": "collector",
        "IOT_LOG_LEVEL": "DEBUG",
    }

    def start(name: str, *, db_url: str, mqtt_password: str) -> Collector:
        env = {
            **common,
            "IOT_DATABASE_URL": "",
            "IOT_DATABASE_URL_FILE": _secret_file(tmp_path, f"{name}-db", db_url),
            "IOT_MQTT_PASSWORD_FILE": _secret_file(tmp_path, f"{name}-mqtt", mqtt_password),
        }
        collector = Collector(
            mqtt_url=broker.url, database_url="", client_id=name, log_dir=tmp_path, env=env
        )
        # The helper sets IOT_DATABASE_URL; a *_FILE excludes its variable.
        del collector.env["IOT_DATABASE_URL"]
        return collector.start()

    ok = start("ok", db_url=reachable, mqtt_password=MQTT_PASSWORD)
    db_down = start("db-down", db_url=unreachable, mqtt_password=MQTT_PASSWORD)
    wrong_mqtt = start("wrong-mqtt", db_url=reachable, mqtt_password=WRONG_MQTT_PASSWORD)
    collectors = (ok, db_down, wrong_mqtt)
    try:
        ok.wait_ready()
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
                "device",
                "-P",
                MQTT_PASSWORD,
                "-m",
                READING.decode(),
            ],
            check=True,
            capture_output=True,
            timeout=20,
        )
        assert wait_for_count(postgres_server.url_for(name), "iot_data", 1, timeout=20) == 1
        _wait_for(db_down, "database not available")
        _wait_for(wrong_mqtt, "not authori")
        answers = "\n".join(_exercise_http(c) for c in collectors)
        metrics = "\n".join(httpx.get(c.base_url + "/metrics", timeout=10).text for c in collectors)
        for c in collectors:
            assert c.stop() == 0
        logs = "\n".join(c.log() for c in collectors)
    finally:
        for c in collectors:
            c.ensure_stopped()
    assert "database not available" in logs
    assert _leaks(logs) == [], logs[-5000:]
    assert _leaks(metrics) == []
    assert _leaks(answers) == [], _leaks(answers)
