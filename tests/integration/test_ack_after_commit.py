"""PUBACK goes out only after the commit: checked on a real broker with a blocked database."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import CollectorRegistry

from iotcollector.ingest.subscriber import Delivery, MqttSubscriber
from iotcollector.metrics import Metrics
from iotcollector.pipeline.pipeline import BatchLimits, Pipeline
from iotcollector.storage.base import WriteResult
from support.mosquitto import MosquittoServer, mosquitto_available

if TYPE_CHECKING:
    from collections.abc import Sequence

    from iotcollector.domain.reading import DeadLetter, Reading, StatusChange

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]

CLIENT_ID = "ack-test"


class GatedStorage:
    """A storage whose commit waits for the test to open the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.written: list[Reading] = []

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def migrate(self) -> list[str]:
        return []

    async def ping(self) -> None:
        return None

    async def write_batch(
        self,
        readings: Sequence[Reading],
        dead_letters: Sequence[DeadLetter],
        statuses: Sequence[StatusChange] = (),
    ) -> WriteResult:
        await self.gate.wait()
        self.written.extend(readings)
        assert not statuses
        return WriteResult(len(readings), 0, len(dead_letters))


_MARKER = b"marker"


def _publish(port: int, count: int) -> None:
    _publish_payloads(
        port,
        [
            f'{{"device_id":"d","sensor_type":"t","value":{i},"timestamp":{1_700_000_000 + i}}}'
            for i in range(count)
        ],
    )


def _publish_payloads(port: int, payloads: Sequence[str | bytes]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ack-test-pub")
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish("iot/data", payload, qos=1) for payload in payloads]
    for info in infos:
        info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def _redelivered(port: int) -> int:
    """Resume the collector's session with another client; count what the broker resends.

    Exact, without a time window: the session must be resumed (else there is nothing to count),
    and a marker published once connected arrives after every redelivery of the session.
    """
    received: list[bytes] = []
    connected = threading.Event()
    marker_seen = threading.Event()
    session_present: list[bool] = []

    def on_connect(_c: object, _u: object, flags: mqtt.ConnectFlags, *_: object) -> None:
        session_present.append(flags.session_present)
        connected.set()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.payload == _MARKER:
            marker_seen.set()
        else:
            received.append(bytes(msg.payload))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=CLIENT_ID, protocol=mqtt.MQTTv5)
    client.on_connect = on_connect
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 60
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    try:
        assert connected.wait(10), "no CONNACK"
        assert session_present == [True], "the collector's session was not kept"
        _publish_payloads(port, [_MARKER])
        assert marker_seen.wait(10), "the marker published after the reconnect never arrived"
    finally:
        client.disconnect()
        client.loop_stop()
    return len(received)


def _stack(
    broker: MosquittoServer, storage: GatedStorage
) -> tuple[MqttSubscriber, Pipeline[Delivery]]:
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    log = logging.getLogger("test")
    holder: dict[str, MqttSubscriber] = {}
    pipeline: Pipeline[Delivery] = Pipeline(
        storage,
        metrics,
        log,
        on_committed=lambda tokens: holder["sub"].ack(tokens),  # noqa: PLW0108 - late binding
        on_pressure=lambda _full: None,
        limits=BatchLimits(max_size=1000, max_delay_s=0.01),
        max_payload_bytes=65536,
        max_future_skew_s=300,
    )
    sub = MqttSubscriber(
        host="127.0.0.1",
        port=broker.port,
        client_id=CLIENT_ID,
        subscriptions=["iot/data"],
        on_message=pipeline.submit,
        on_connected=lambda _c: None,
        logger=log,
    )
    holder["sub"] = sub
    return sub, pipeline


async def _run_until_pending(
    broker: MosquittoServer, storage: GatedStorage, count: int
) -> tuple[MqttSubscriber, Pipeline[Delivery], list[asyncio.Task[None]]]:
    sub, pipeline = _stack(broker, storage)
    tasks = [asyncio.create_task(sub.run()), asyncio.create_task(pipeline.run())]
    for _ in range(200):
        if sub.connected:
            break
        await asyncio.sleep(0.02)
    await asyncio.to_thread(_publish, broker.port, count)
    for _ in range(200):
        if pipeline.pending == count:
            break
        await asyncio.sleep(0.02)
    assert pipeline.pending == count
    return sub, pipeline, tasks


async def _crash(sub: MqttSubscriber, tasks: list[asyncio.Task[None]]) -> None:
    """Drop the connection without DISCONNECT, as a killed process would."""
    proto = sub._proto
    assert proto is not None
    assert proto.transport is not None
    sub._stopping = True
    proto.transport.abort()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_no_puback_before_commit(broker: MosquittoServer) -> None:
    storage = GatedStorage()
    sub, _pipeline, tasks = await _run_until_pending(broker, storage, 10)
    await asyncio.sleep(0.3)
    await _crash(sub, tasks)
    assert storage.written == []
    assert await asyncio.to_thread(_redelivered, broker.port) == 10


async def test_puback_after_commit(broker: MosquittoServer) -> None:
    storage = GatedStorage()
    sub, pipeline, tasks = await _run_until_pending(broker, storage, 10)
    storage.gate.set()
    for _ in range(200):
        if pipeline.pending == 0:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    await _crash(sub, tasks)
    assert len(storage.written) == 10
    assert await asyncio.to_thread(_redelivered, broker.port) == 0
