"""Configured secrets (API keys, MQTT password, database password) never appear in the logs,
in /metrics or in HTTP answers of a running collector, on the happy path and on error paths
(wrong MQTT password, database unreachable), with secrets given directly and through *_FILE."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from support.collector import Collector, wait_for_count
from support.mosquitto import PASSWORD_LISTENER, MosquittoServer, free_port, mosquitto_available

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
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
        # Refused credentials are final: that collector exits 1 by itself (its log is checked).
        assert wrong_mqtt.proc is not None
        assert wrong_mqtt.proc.wait(timeout=30) == 1
        answering = (ok, db_down)
        answers = "\n".join(_exercise_http(c) for c in answering)
        metrics = "\n".join(httpx.get(c.base_url + "/metrics", timeout=10).text for c in answering)
        for c in answering:
            assert c.stop() == 0
        logs = "\n".join(c.log() for c in collectors)
    finally:
        for c in collectors:
            c.ensure_stopped()
    assert "database not available" in logs
    assert _leaks(logs) == [], logs[-5000:]
    assert _leaks(metrics) == []
    assert _leaks(answers) == [], _leaks(answers)


# Each a value of its own, so a leak names its source. The bare '%' is not percent-encoding:
# libpq refuses the URL and psycopg's message quotes the token.
PERCENT_PASSWORD = "S3CRET%ZZPW-pct"
QUERY_PASSWORD = "S3CRETQ-query"
FILE_QUERY_PASSWORD = "S3CRETF-file-query"
USERINFO_PASSWORD = "S3CRETU-userinfo"
UP_QUERY_PASSWORD = "S3CRETUP-up-query"
MQTT_ENV_PASSWORD = "mqtt-env-Tg5Yh8Uj2Ik4"
MQTT_FILE_PASSWORD = "mqtt-file-Rf4Ed7Ws1Qa3"
ALL_SECRETS = (
    PERCENT_PASSWORD,
    "S3CRET%ZZPW",
    QUERY_PASSWORD,
    FILE_QUERY_PASSWORD,
    USERINFO_PASSWORD,
    UP_QUERY_PASSWORD,
    MQTT_ENV_PASSWORD,
    MQTT_FILE_PASSWORD,
    API_KEY,
    API_KEY_FROM_ENV,
)


def _run_cli(tmp_path: Path, name: str, env: dict[str, str], *args: str) -> str:
    """Run one short command (backup) to its end; its whole output."""
    result = subprocess.run(
        [sys.executable, "-m", "iotcollector", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0, f"{name} should have failed"
    return result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_secret_in_any_log_line_from_any_source(
    postgres_server: PostgresServer, tmp_path: Path, log_format: str
) -> None:
    """serve (database down, refused, reachable; MQTT refused and accepted) and up, with
    secrets in the URL's userinfo, its query string, *_FILE and the environment."""
    broker = MosquittoServer(listeners=PASSWORD_LISTENER, per_listener_settings=True)
    passwd = str(broker.dir / "passwd")
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", passwd, "collector", MQTT_ENV_PASSWORD],
        check=True,
        capture_output=True,
    )
    broker.start()
    pg_port = postgres_server.url.rsplit(":", 1)[1].split("/")[0]
    database = postgres_server.create_database(f"secrets_{log_format}")
    dbname = database.rsplit("/", 1)[1]
    down = free_port()
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("IOT_") or k == "IOT_TEST_PG_BIN"
    } | {"IOT_LOG_FORMAT": log_format, "IOT_LOG_LEVEL": "DEBUG", "IOT_MQTT_USERNAME": "collector"}
    scenarios = {
        # Bare '%' in the password: every connect attempt fails while parsing the URL.
        "percent": {
            "IOT_DATABASE_URL": f"postgresql://postgres:{PERCENT_PASSWORD}@127.0.0.1:{pg_port}/x",
            "IOT_MQTT_PASSWORD": MQTT_ENV_PASSWORD,
            "IOT_API_KEYS": API_KEY_FROM_ENV,
        },
        # Database down (retries), password in the query string of a URL from a file.
        "down": {
            "IOT_DATABASE_URL_FILE": _secret_file(
                tmp_path,
                "down-db",
                f"postgresql://postgres@127.0.0.1:{down}/x?password={FILE_QUERY_PASSWORD}",
            ),
            "IOT_MQTT_PASSWORD": MQTT_ENV_PASSWORD,
            "IOT_API_KEYS_FILE": _secret_file(tmp_path, "keys", API_KEY),
        },
        # The MQTT password from a file is wrong: the broker refuses, the collector retries.
        "refused": {
            "IOT_DATABASE_URL_FILE": _secret_file(
                tmp_path, "refused-db", f"{database}?password={FILE_QUERY_PASSWORD}"
            ),
            "IOT_MQTT_PASSWORD_FILE": _secret_file(tmp_path, "refused-mqtt", MQTT_FILE_PASSWORD),
            "IOT_API_KEYS_FILE": _secret_file(tmp_path, "keys", API_KEY),
        },
        # Everything reachable (the test server trusts 127.0.0.1: the password is carried).
        "ok": {
            "IOT_DATABASE_URL": database.replace(
                "postgresql://postgres@", f"postgresql://postgres:{USERINFO_PASSWORD}@"
            )
            + f"?password={QUERY_PASSWORD}",
            "IOT_MQTT_PASSWORD": MQTT_ENV_PASSWORD,
            "IOT_API_KEYS": f"{API_KEY_FROM_ENV},{API_KEY}",
        },
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    ports: dict[str, int] = {}
    try:
        for name, extra in scenarios.items():
            ports[name] = free_port()
            env = base | extra | {"IOT_MQTT_URL": broker.url, "IOT_MQTT_CLIENT_ID": name}
            procs[name] = _start(tmp_path, name, env | {"IOT_API_PORT": str(ports[name])})
        # `up` with the user's PostgreSQL (password in the query string) and broker.
        ports["up"] = free_port()
        up_env = base | {
            "IOT_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{pg_port}/{dbname}"
            f"?password={UP_QUERY_PASSWORD}",
            "IOT_MQTT_URL": broker.url,
            "IOT_MQTT_PASSWORD": MQTT_ENV_PASSWORD,
            "IOT_MQTT_CLIENT_ID": "up",
            "IOT_API_PORT": str(ports["up"]),
        }
        procs["up"] = _start(tmp_path, "up", up_env)
        for name in ("ok", "up"):
            _wait_ready_url(f"http://127.0.0.1:{ports[name]}", tmp_path / f"{name}.log")
        # The unparsable URL is a permanent error: the collector says so and exits. The
        # unreachable database is retried: at least two attempts, so the retry lines are in.
        _wait_logged(tmp_path / "percent.log", "invalid percent-encoded token")
        _wait_logged(tmp_path / "down.log", "database not available", times=2)
        _wait_logged(tmp_path / "refused.log", "not authori")
        # Refused credentials are final too: that collector exits 1 after saying so.
        assert procs["refused"].wait(timeout=30) == 1
        for name, proc in procs.items():
            if proc.poll() is None:  # the unparsable URL and the refused one have exited
                httpx.get(f"http://127.0.0.1:{ports[name]}/api/data", timeout=10)
    finally:
        _stop_all(procs.values())
        broker.cleanup()
    output = {name: (tmp_path / f"{name}.log").read_text(errors="replace") for name in procs}
    backup_out = _run_cli(
        tmp_path, "backup", base | scenarios["percent"], "backup", "--output", "b.dump"
    )
    output["backup"] = backup_out
    assert "invalid percent-encoded token" in output["percent"]
    assert "database not available" in output["down"]
    assert "password=***" in output["up"]
    for name, text in output.items():
        leaked = [s for s in ALL_SECRETS if s in text]
        assert leaked == [], f"{name} leaked {leaked}:\n{text[-3000:]}"


def _start(tmp_path: Path, name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = "up" if name == "up" else "serve"
    with (tmp_path / f"{name}.log").open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "iotcollector", command],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop_all(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    for proc in running:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_logged(log: Path, text: str, times: int = 1) -> None:
    deadline = time.monotonic() + 30
    while log.read_text(errors="replace").count(text) < times:
        assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
        time.sleep(0.2)


def _wait_ready_url(base: str, log: Path) -> None:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready: {log.read_text(errors='replace')[-3000:]}")
