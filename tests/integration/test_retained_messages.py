"""Retained messages are new data once, not at every start (real Mosquitto and PostgreSQL).

A retained reading without a timestamp gets the time of receipt: stored again at each start,
it would be a new row each time. The collector subscribes with MQTT 5 Retain Handling 1 (sent
only to a new subscription) and, under MQTT 3.1.1, ignores RETAIN-flagged messages on a resumed
session. Clearing a retained message (an empty retained publish) is not a dead letter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from support.collector import Collector, publish, scalar, wait_for_count

if TYPE_CHECKING:
    from pathlib import Path

    from support.mosquitto import MosquittoServer

pytestmark = pytest.mark.integration

RETAINED = b'{"device_id":"r","sensor_type":"t","value":2}'


def _publish_retained(broker: MosquittoServer, payload: bytes, topic: str = "iot/data") -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="retained-pub")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_retained_reading_then_three_restarts_is_one_row(
    broker: MosquittoServer, postgres_url: str, tmp_path: Path, protocol: str
) -> None:
    _publish_retained(broker, RETAINED)
    collector = Collector(
        mqtt_url=broker.url,
        database_url=postgres_url,
        client_id=f"retained-{protocol}",
        log_dir=tmp_path,
        env={"IOT_MQTT_PROTOCOL": protocol},
    )
    try:
        for start in range(4):
            collector.start().wait_ready()
            # A marker published after the (re)subscription: once it is stored, anything the
            # broker sent at subscribe time has been processed too.
            marker = b'{"device_id":"m","sensor_type":"t","value":%d}' % start
            publish(broker.url, [marker], publishers=1)
            assert wait_for_count(postgres_url, "iot_data", start + 2, timeout=30) == start + 2
            assert collector.stop() == 0
        assert scalar(postgres_url, "SELECT count(*) FROM iot_data WHERE device_id = 'r'") == 1
        assert "session resumed" in collector.log()
        _publish_retained(broker, b"")  # clear it: neither a reading nor a dead letter
        collector.start().wait_ready()
        publish(broker.url, [b'{"device_id":"m","sensor_type":"t","value":9}'], publishers=1)
        assert wait_for_count(postgres_url, "iot_data", 6, timeout=30) == 6
        assert collector.stop() == 0
        assert scalar(postgres_url, "SELECT count(*) FROM iot_rejected") == 0
    finally:
        collector.ensure_stopped()


def test_mqtt5_a_topic_added_on_a_resumed_session_stores_its_retained_reading(
    broker: MosquittoServer, postgres_url: str, tmp_path: Path
) -> None:
    _publish_retained(broker, RETAINED, topic="iot/more")
    before, after = (
        Collector(
            mqtt_url=broker.url,
            database_url=postgres_url,
            client_id="retained-added",
            log_dir=tmp_path,
            env={"IOT_MQTT_TOPICS": topics},
        )
        for topics in ("iot/data", "iot/data,iot/more")
    )
    try:
        before.start().wait_ready()
        assert before.stop() == 0
        after.start().wait_ready()  # the session resumes; iot/more is a new subscription
        publish(broker.url, [b'{"device_id":"m","sensor_type":"t","value":1}'], publishers=1)
        assert wait_for_count(postgres_url, "iot_data", 2, timeout=30) == 2
        assert "session resumed" in after.log()
        assert scalar(postgres_url, "SELECT count(*) FROM iot_data WHERE device_id = 'r'") == 1
        assert after.stop() == 0
    finally:
        before.ensure_stopped()
        after.ensure_stopped()
