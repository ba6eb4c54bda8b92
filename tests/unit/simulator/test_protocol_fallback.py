"""The simulator against a fake in-process broker: MQTT 3.1.1, and the fallback from MQTT 5."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Self

import orjson
import pytest

from iotcollector.errors import MqttError
from iotcollector.ingest.codec import MQTT5, MQTT311, PacketReader, decode_publish
from iotcollector.simulator.alongside import SimulatedDevices, data_topic, options_for
from iotcollector.simulator.connection import Endpoint
from iotcollector.simulator.runner import Simulation, SimulatorOptions

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class FakeBroker:
    """Accepts CONNECT at the levels it speaks (refusing others as a 3.1.1 broker does),
    acknowledges QoS 1 PUBLISH, records what it received."""

    def __init__(self, *, speaks: frozenset[int], refuse_with: int = 0) -> None:
        self.speaks = speaks
        self.refuse_with = refuse_with
        self.connects: list[int] = []  # protocol level of each CONNECT
        self.publishes: list[tuple[int, str, bytes]] = []  # level, topic, payload
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        packets = PacketReader()
        level = 0
        try:
            while data := await reader.read(65536):
                for ptype, flags, body in packets.feed(data):
                    if ptype == 1:
                        level = body[6]
                        self.connects.append(level)
                        if level not in self.speaks:
                            writer.write(b"\x20\x02\x00\x01")  # 3.1.1: unacceptable version
                            await writer.drain()
                            return
                        code = bytes([self.refuse_with])
                        props = b"\x00" if level == MQTT5 else b""
                        writer.write(b"\x20" + bytes([2 + len(props)]) + b"\x00" + code + props)
                        if self.refuse_with:
                            await writer.drain()
                            return
                    elif ptype == 3:
                        topic, payload, packet_id = decode_publish(flags, body, level)
                        self.publishes.append((level, topic, payload))
                        if packet_id is not None:
                            writer.write(b"\x40\x02" + packet_id.to_bytes(2, "big"))
                    elif ptype == 14:
                        return
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def __aenter__(self) -> Self:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def mqtt311_broker() -> AsyncIterator[FakeBroker]:
    async with FakeBroker(speaks=frozenset({MQTT311})) as broker:
        yield broker


def _options(**kwargs: object) -> SimulatorOptions:
    defaults: dict[str, object] = {
        "devices": 4,
        "count": 12,
        "rate": 0.0,
        "connections": 2,
        "drain_s": 2.0,
    }
    return SimulatorOptions(**(defaults | kwargs))  # type: ignore[arg-type]


async def test_mqtt5_falls_back_to_311_once_per_run(mqtt311_broker: FakeBroker) -> None:
    endpoint = Endpoint("127.0.0.1", mqtt311_broker.port, protocol=MQTT5)
    summary = await Simulation(_options(), endpoint).run()
    assert summary.protocol == "3.1.1"
    assert (summary.published, summary.acknowledged, summary.errors) == (12, 12, 0)
    # The first connection is refused in MQTT 5 and retries in 3.1.1; the second starts there.
    assert mqtt311_broker.connects == [MQTT5, MQTT311, MQTT311]
    data = [p for level, t, p in mqtt311_broker.publishes if t == "iot/data"]
    assert len(data) == 12
    assert all(level == MQTT311 for level, _, _ in mqtt311_broker.publishes)
    assert {orjson.loads(p)["device_id"] for p in data} == {f"sim-000{i}" for i in range(4)}
    statuses = sorted(p for _, t, p in mqtt311_broker.publishes if t.startswith("iot/status/"))
    assert statuses == [b"offline"] * 4 + [b"online"] * 4


async def test_mqtt311_with_a_will_per_device(mqtt311_broker: FakeBroker) -> None:
    endpoint = Endpoint("127.0.0.1", mqtt311_broker.port, protocol=MQTT311)
    summary = await Simulation(_options(connections=None), endpoint).run()
    assert (summary.protocol, summary.acknowledged) == ("3.1.1", 12)
    assert mqtt311_broker.connects == [MQTT311] * 4


async def test_mqtt5_broker_keeps_mqtt5() -> None:
    async with FakeBroker(speaks=frozenset({MQTT5, MQTT311})) as broker:
        endpoint = Endpoint("127.0.0.1", broker.port)
        summary = await Simulation(_options(), endpoint).run()
    assert summary.protocol == "5"
    assert broker.connects == [MQTT5, MQTT5]


async def test_a_mqtt311_refusal_is_named() -> None:
    async with FakeBroker(speaks=frozenset({MQTT311}), refuse_with=0x05) as broker:
        endpoint = Endpoint("127.0.0.1", broker.port)
        with pytest.raises(MqttError, match="not authorized"):
            await Simulation(_options(), endpoint).run()


async def test_a_broker_speaking_neither_is_refused() -> None:
    async with FakeBroker(speaks=frozenset()) as broker:
        endpoint = Endpoint("127.0.0.1", broker.port)
        with pytest.raises(MqttError, match="unsupported protocol version"):
            await Simulation(_options(), endpoint).run()
        assert broker.connects == [MQTT5, MQTT311]


# -- up --simulate N ----------------------------------------------------------------------------


def test_up_simulation_options() -> None:
    options = options_for(20)
    assert (options.devices, options.readings_per_s(), options.fmt.value) == (20, 20.0, "single")
    assert options.duration_s is None
    assert options.count is None
    assert data_topic("iot/data") == "iot/data"
    assert data_topic("devices/+/data") == "devices/{device_id}/data"
    assert data_topic("iot/#") == "iot/data"


async def test_simulated_devices_wait_for_ready_and_stop(mqtt311_broker: FakeBroker) -> None:
    endpoint = Endpoint("127.0.0.1", mqtt311_broker.port, protocol=MQTT311)
    devices = SimulatedDevices(options_for(3), endpoint, _logger())
    ready = False
    task = asyncio.create_task(devices.run(lambda: ready))
    await asyncio.sleep(0.3)
    assert mqtt311_broker.connects == []  # not before the service is ready
    ready = True
    for _ in range(100):
        if len(mqtt311_broker.publishes) >= 6:
            break
        await asyncio.sleep(0.05)
    devices.stop()
    await asyncio.wait_for(task, 5)
    assert devices.summary is not None
    assert devices.summary.stopped_by == "service stopped"
    assert devices.summary.acknowledged == devices.summary.published > 0


async def test_simulated_devices_stop_while_waiting() -> None:
    devices = SimulatedDevices(options_for(1), Endpoint("127.0.0.1", 9), _logger())
    task = asyncio.create_task(devices.run(lambda: False))
    await asyncio.sleep(0.05)
    devices.stop()
    await asyncio.wait_for(task, 1)
    assert devices.summary is None


def _logger() -> logging.Logger:
    return logging.getLogger("test.simulator")
