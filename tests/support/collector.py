"""Run ``iot-collector serve`` as a subprocess; publish with a real MQTT client; read the DB."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import httpx
import paho.mqtt.client as mqtt
import psutil
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from support.mosquitto import free_port

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path


class Collector:
    """One collector process with its own API port and log file."""

    def __init__(
        self,
        *,
        mqtt_url: str,
        database_url: str,
        client_id: str,
        log_dir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.client_id = client_id
        self.log_path = log_dir / f"collector-{client_id}-{self.port}.log"
        self.env = {
            **os.environ,
            "IOT_MQTT_URL": mqtt_url,
            "IOT_DATABASE_URL": database_url,
            "IOT_MQTT_CLIENT_ID": client_id,
            "IOT_API_HOST": "127.0.0.1",
            "IOT_API_PORT": str(self.port),
            "IOT_API_AUTH": "disabled",
            "IOT_LOG_LEVEL": "INFO",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Collector:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "iotcollector", "serve"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.base_url + path, timeout=5)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited {self.proc.returncode}:\n{self.log()}")
            try:
                if self.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"collector not ready after {timeout}s:\n{self.log()[-3000:]}")

    def metrics(self) -> dict[str, float]:
        """Samples by name (label values joined in braces), e.g. ``..._total{reason=x}``."""
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(self.get("/metrics").text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return out

    def rss(self) -> int:
        assert self.proc is not None
        value = int(psutil.Process(self.proc.pid).memory_info().rss)
        self.peak_rss = max(self.peak_rss, value)
        return value

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _publish_all(  # noqa: PLR0917 - a private helper for the threads below
    host: str, port: int, client_id: str, topic: str, chunk: Sequence[bytes], rate: float | None
) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    infos = []
    started = time.monotonic()
    for n, payload in enumerate(chunk):
        infos.append(client.publish(topic, payload, qos=1))
        if rate:
            ahead = n / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    for info in infos:
        info.wait_for_publish(timeout=120)
    unacked = sum(1 for info in infos if not info.is_published())
    client.disconnect()
    client.loop_stop()
    if unacked:
        raise AssertionError(f"the broker did not acknowledge {unacked} messages")


def publish(
    mqtt_url: str,
    payloads: Sequence[bytes],
    *,
    publishers: int = 4,
    topic: str = "iot/data",
    rate_per_s: float | None = None,
) -> None:
    """Publish every payload with QoS 1 and return once the broker acknowledged each."""
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    errors: list[BaseException] = []
    rate = rate_per_s / publishers if rate_per_s else None

    def worker(index: int, chunk: Sequence[bytes]) -> None:
        client_id = f"test-pub-{os.getpid()}-{index}-{time.monotonic_ns()}"
        try:
            _publish_all(host, int(port), client_id, topic, chunk, rate)
        except BaseException as exc:
            errors.append(exc)

    chunks = [payloads[i::publishers] for i in range(publishers)]
    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(chunks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def query(database_url: str, sql: str) -> list[tuple[object, ...]]:
    """Run one read-only query against the collector's database."""
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30) as conn:
            return conn.execute(sql).fetchall()
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def scalar(database_url: str, sql: str) -> int:
    """The integer result of a one-value query."""
    value = query(database_url, sql)[0][0]
    assert isinstance(value, int)
    return value


def wait_for_count(database_url: str, table: str, expected: int, timeout: float = 60) -> int:
    """Wait until ``table`` holds ``expected`` rows; return the last count seen."""
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        try:
            count = scalar(database_url, f"SELECT count(*) FROM {table}")
        except (sqlite3.Error, psycopg.Error):
            count = -1
        if count >= expected:
            return count
        time.sleep(0.2)
    return count
