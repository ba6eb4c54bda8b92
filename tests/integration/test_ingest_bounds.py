"""The subscriber's in-flight bounds, exact, on a real broker that floods (no Receive Maximum).

The database is blocked (a gated storage): the collector must stop reading at exactly
``max_inflight`` messages, or once ``max_inflight_bytes`` of payloads are held (plus at most one
message), and a payload above ``max_payload_bytes`` is held as its first bytes only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Self

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry

from iotcollector.ingest.subscriber import OVERSIZE_PREFIX_BYTES, Delivery, MqttSubscriber
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


class GatedStorage:
    """Commits wait for the test to open the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.readings: list[Reading] = []
        self.dead: list[DeadLetter] = []

    async def write_batch(
        self,
        readings: Sequence[Reading],
        dead_letters: Sequence[DeadLetter],
        statuses: Sequence[StatusChange] = (),
    ) -> WriteResult:
        await self.gate.wait()
        self.readings.extend(readings)
        self.dead.extend(dead_letters)
        return WriteResult(len(readings), 0, len(dead_letters) + len(statuses))


def _publish(port: int, payloads: list[bytes]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bounds-pub")
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish("iot/data", p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(30)
    client.disconnect()
    client.loop_stop()


def _reading(i: int, pad: int = 0) -> bytes:
    padding = f',"note":"{"x" * pad}"' if pad else ""
    return (
        f'{{"device_id":"d","sensor_type":"t","value":{i},"timestamp":{1_700_000_000 + i}'
        f"{padding}}}"
    ).encode()


class Stack:
    def __init__(
        self,
        broker: MosquittoServer,
        storage: GatedStorage,
        *,
        max_inflight: int = 20_000,
        max_inflight_bytes: int = 32 * 1024 * 1024,
        max_payload_bytes: int = 65536,
        receive_maximum: int = 65535,
    ) -> None:
        log = logging.getLogger("test")
        self.delivered: list[Delivery] = []
        self.pipeline: Pipeline[Delivery] = Pipeline(
            storage,
            Metrics(CollectorRegistry(), process_metrics=False),
            log,
            on_committed=self._ack,
            on_pressure=lambda _full: None,
            limits=BatchLimits(max_size=1000, max_delay_s=0.01, max_pending=10**6),
            max_payload_bytes=max_payload_bytes,
            max_future_skew_s=300,
        )
        self.sub = MqttSubscriber(
            host="127.0.0.1",
            port=broker.port,
            client_id="bounds-test",
            subscriptions=["iot/data"],
            on_message=self._on_message,
            on_connected=lambda _c: None,
            logger=log,
            max_inflight=max_inflight,
            max_inflight_bytes=max_inflight_bytes,
            max_payload_bytes=max_payload_bytes,
            receive_maximum=receive_maximum,
        )

    def _ack(self, tokens: list[Delivery]) -> None:
        self.sub.ack(tokens)

    def _on_message(self, deliveries: list[Delivery]) -> None:
        self.delivered.extend(deliveries)
        self.pipeline.submit(deliveries)

    async def __aenter__(self) -> Self:
        self.tasks = [asyncio.create_task(self.sub.run()), asyncio.create_task(self.pipeline.run())]
        for _ in range(250):
            if self.sub.connected:
                return self
            await asyncio.sleep(0.02)
        raise AssertionError("not connected")

    async def __aexit__(self, *_exc: object) -> None:
        await self.pipeline.close(5)
        await self.sub.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _settle(check: object, seconds: float = 10) -> None:
    assert callable(check)
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)


async def test_the_message_bound_is_exact_and_reading_resumes_after_commit(
    broker: MosquittoServer,
) -> None:
    storage = GatedStorage()
    async with Stack(broker, storage, max_inflight=50, receive_maximum=65535) as stack:
        await asyncio.to_thread(_publish, broker.port, [_reading(i) for i in range(2000)])
        await _settle(lambda: len(stack.delivered) >= 50)
        await asyncio.sleep(0.5)  # the broker has sent everything; nothing more is taken
        assert stack.sub.inflight[0] == 50
        assert len(stack.delivered) == 50
        assert stack.sub.full
        storage.gate.set()
        await _settle(lambda: len(storage.readings) == 2000)
        assert len(storage.readings) == 2000
        assert stack.sub.inflight == (0, 0)


async def test_the_byte_bound_holds_within_one_message(broker: MosquittoServer) -> None:
    storage = GatedStorage()
    bound = 1024 * 1024
    async with Stack(broker, storage, max_inflight_bytes=bound) as stack:
        payloads = [_reading(i, pad=60_000) for i in range(60)]  # ~3.6 MB in all
        await asyncio.to_thread(_publish, broker.port, payloads)
        await _settle(lambda: stack.sub.full)
        await asyncio.sleep(0.5)
        held = stack.sub.inflight[1]
        assert bound <= held <= bound + len(payloads[0])
        assert held == sum(len(d.payload) for d in stack.delivered)
        storage.gate.set()
        await _settle(lambda: len(storage.readings) == 60)
        assert len(storage.readings) == 60


async def test_an_oversize_payload_is_held_as_its_first_bytes_and_dead_lettered(
    broker: MosquittoServer,
) -> None:
    storage = GatedStorage()
    big = b"[" + b"1," * (5 * 1024 * 1024) + b"1]"
    async with Stack(broker, storage, max_payload_bytes=256 * 1024) as stack:
        await asyncio.to_thread(_publish, broker.port, [big, _reading(1)])
        await _settle(lambda: len(stack.delivered) == 2)
        first = stack.delivered[0]
        assert (first.size, len(first.payload)) == (len(big), OVERSIZE_PREFIX_BYTES)
        assert stack.sub.inflight == (2, OVERSIZE_PREFIX_BYTES + len(_reading(1)))
        storage.gate.set()
        await _settle(lambda: len(storage.dead) == 1)
    [dead] = storage.dead
    assert dead.payload == big[:OVERSIZE_PREFIX_BYTES]
    assert dead.reason.startswith(f"too_large: payload is {len(big):,} bytes")
    assert len(storage.readings) == 1
