"""MQTT batches and HTTP writes share one writer: a sustained POST load does not stop MQTT
ingest (real Mosquitto, PostgreSQL and HTTP)."""

from __future__ import annotations

import itertools
import threading
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from support.collector import Collector, publish, scalar

if TYPE_CHECKING:
    from pathlib import Path

    from support.mosquitto import MosquittoServer

pytestmark = pytest.mark.integration

MQTT_MESSAGES = 500


def test_mqtt_is_stored_while_posts_keep_the_writer_busy(
    broker: MosquittoServer, postgres_url: str, tmp_path: Path
) -> None:
    c = Collector(
        mqtt_url=broker.url, database_url=postgres_url, client_id="fair", log_dir=tmp_path
    ).start()
    stop = threading.Event()
    posted = itertools.count()
    errors: list[BaseException] = []

    def post_forever(worker: int) -> None:
        try:
            with httpx.Client(base_url=c.base_url, timeout=10) as client:
                for n in itertools.count():
                    if stop.is_set():
                        return
                    body = {
                        "device_id": f"http-{worker}",
                        "sensor_type": "t",
                        "value": n,
                        "timestamp": 1_700_000_000 + n,
                    }
                    assert client.post("/api/data", json=body).status_code == 201
                    next(posted)
        except BaseException as exc:
            errors.append(exc)

    try:
        c.wait_ready()
        threads = [threading.Thread(target=post_forever, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        time.sleep(1)
        payloads = [
            b'{"device_id":"mqtt","sensor_type":"t","value":%d,"timestamp":%d}'
            % (i, 1_700_000_000 + i)
            for i in range(MQTT_MESSAGES)
        ]
        publish(broker.url, payloads, publishers=2)
        deadline = time.monotonic() + 30
        stored = 0
        while time.monotonic() < deadline and stored < MQTT_MESSAGES:
            stored = scalar(postgres_url, "SELECT count(*) FROM iot_data WHERE device_id = 'mqtt'")
            time.sleep(0.2)
        posts_during = next(posted)
        stop.set()
        for t in threads:
            t.join()
        assert not errors, errors[0]
        assert stored == MQTT_MESSAGES  # all stored while the POSTs went on
        assert posts_during > 20  # the POST load went on meanwhile
        assert c.stop() == 0
    finally:
        stop.set()
        c.ensure_stopped()
