"""The subscriber's connection logic against a scripted broker on a fake transport.

Pause and resume, keep alive (the client's and the broker's Server Keep Alive), reconnects
with their acknowledgement rule, the fallback to MQTT 3.1.1 and refusals. End to end, with
Mosquitto, the same paths are covered by tests/integration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, cast

import pytest

from iotcollector.errors import MqttRefusedError
from iotcollector.ingest import codec
from iotcollector.ingest.subscriber import Delivery, MqttSubscriber
from iotcollector.simulator.packets import encode_publish, topic_prefix

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable


_PINGRESP = b"\xd0\x00"


class FakeTransport:
    """A transport whose peer is :class:`ScriptedBroker`; it records pauses and writes."""

    def __init__(self, broker: ScriptedBroker, proto: asyncio.Protocol) -> None:
        self.broker = broker
        self.proto = proto
        self.reading = True
        self.closing = False
        self.aborted = False
        self.reader = codec.PacketReader()
        self.level = 0
        self.pubacks: list[int] = []
        self.writes_with_pubacks = 0
        self.pings = 0
        self.held: list[bytes] = []  # sent by the broker while reading was paused

    def write(self, data: bytes) -> None:
        if not self.closing:
            self.broker.received(self, data)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True
        held, self.held = self.held, []
        for data in held:
            self.send(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.lose(None)

    def abort(self) -> None:
        self.aborted = True
        self.lose(None)

    def lose(self, exc: Exception | None) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.proto.connection_lost, exc)

    def send(self, data: bytes) -> None:
        """Bytes from the broker: delivered on a later loop turn, or held while paused."""
        if self.reading:
            asyncio.get_running_loop().call_soon(self.proto.data_received, data)
        else:
            self.held.append(data)


class ScriptedBroker:
    """Answers CONNECT with scripted CONNACKs, grants every SUBSCRIBE, answers PINGREQ unless
    ``silent``, and records what the client sent on each connection."""

    def __init__(self, connacks: list[bytes] | None = None) -> None:
        self.connacks = connacks or []
        self.connections: list[FakeTransport] = []
        self.silent = False
        self.hold_connack = False  # keep CONNACKs in ``unanswered`` until the test sends them
        self.unanswered: list[tuple[FakeTransport, bytes]] = []

    async def connect(
        self, factory: Callable[[], asyncio.Protocol]
    ) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
        proto = factory()
        transport = FakeTransport(self, proto)
        self.connections.append(transport)
        proto.connection_made(cast("asyncio.BaseTransport", transport))
        return cast("asyncio.BaseTransport", transport), proto

    @property
    def current(self) -> FakeTransport:
        return self.connections[-1]

    def received(self, conn: FakeTransport, data: bytes) -> None:
        for ptype, _flags, body in conn.reader.feed(data):
            if ptype == codec.CONNECT:
                conn.level = body[6]
                default = b"\x00\x00\x00" if conn.level == codec.MQTT5 else b"\x00\x00"
                connack = self.connacks.pop(0) if self.connacks else default
                packet = b"\x20" + bytes([len(connack)]) + connack
                if self.hold_connack:
                    self.unanswered.append((conn, packet))
                else:
                    conn.send(packet)
            elif ptype == codec.SUBSCRIBE:
                pos = 3 if conn.level == codec.MQTT5 else 2
                granted = b""
                while pos < len(body):
                    length = int.from_bytes(body[pos : pos + 2], "big")
                    pos += 2 + length
                    granted += bytes([min(body[pos], 1)])
                    pos += 1
                props = b"\x00" if conn.level == codec.MQTT5 else b""
                suback = body[:2] + props + granted
                conn.send(b"\x90" + bytes([len(suback)]) + suback)
            elif ptype == codec.PUBACK:
                conn.pubacks.append(int.from_bytes(body[:2], "big"))
            elif ptype == codec.PINGREQ:
                conn.pings += 1
                if not self.silent:
                    conn.send(_PINGRESP)
        if data[:1] == b"\x40":
            conn.writes_with_pubacks += 1

    def publish(self, packet_id: int, payload: bytes = b"{}") -> None:
        conn = self.current
        conn.send(
            encode_publish(topic_prefix("iot/data"), payload, 1, packet_id, version=conn.level)
        )


class Client:
    """A subscriber running against a :class:`ScriptedBroker`, with what it reported."""

    def __init__(
        self, broker: ScriptedBroker, *, keepalive_s: int = 30, protocol_version: int = codec.MQTT5
    ) -> None:
        self.deliveries: list[Delivery] = []
        self.states: list[bool] = []
        self.subscriber = MqttSubscriber(
            host="broker.test",
            port=1883,
            client_id="collector-test",
            subscriptions=["iot/data"],
            on_message=self.deliveries.extend,
            on_connected=self.states.append,
            logger=logging.getLogger("test.subscriber"),
            reconnect_min_s=0.01,
            reconnect_max_s=0.05,
            connector=broker.connect,
            keepalive_s=keepalive_s,
            protocol_version=protocol_version,
        )


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(client: Client) -> AsyncIterator[MqttSubscriber]:
    task = asyncio.create_task(client.subscriber.run())
    try:
        await until(lambda: client.subscriber.connected)
        yield client.subscriber
    finally:
        await client.subscriber.stop()
        await asyncio.wait_for(task, 5)


async def test_acknowledges_only_when_asked_all_in_one_write() -> None:
    broker = ScriptedBroker()
    client = Client(broker)
    async with running(client) as sub:
        for packet_id in (1, 2, 3):
            broker.publish(packet_id)
        await until(lambda: len(client.deliveries) == 3)
        await asyncio.sleep(0.05)
        assert broker.current.pubacks == []
        assert sub.ack(client.deliveries) == 3
        assert broker.current.pubacks == [1, 2, 3]
        assert broker.current.writes_with_pubacks == 1


async def test_pause_and_resume_reading() -> None:
    broker = ScriptedBroker()
    client = Client(broker)
    async with running(client) as sub:
        assert broker.current.reading
        sub.pause_reading()
        assert not broker.current.reading
        broker.publish(1)
        await asyncio.sleep(0.05)
        assert client.deliveries == []
        sub.resume_reading()
        assert broker.current.reading
        await until(lambda: len(client.deliveries) == 1)


async def test_paused_before_connecting_reads_the_handshake_then_pauses() -> None:
    broker = ScriptedBroker()
    client = Client(broker)
    client.subscriber.pause_reading()
    async with running(client):
        # CONNACK and SUBACK were read (it is connected), and only then did reading stop.
        assert client.states == [True]
        assert not broker.current.reading


async def test_paused_during_the_handshake_still_reads_connack_and_suback() -> None:
    broker = ScriptedBroker()
    broker.hold_connack = True
    client = Client(broker)
    task = asyncio.create_task(client.subscriber.run())
    try:
        await until(lambda: bool(broker.unanswered))
        client.subscriber.pause_reading()  # the pipeline is full while we connect
        conn, connack = broker.unanswered.pop()
        conn.send(connack)
        await until(lambda: client.subscriber.connected)
        assert not conn.reading
    finally:
        await client.subscriber.stop()
        await asyncio.wait_for(task, 5)


async def test_reconnects_and_does_not_ack_on_the_new_connection() -> None:
    broker = ScriptedBroker()
    client = Client(broker)
    async with running(client) as sub:
        broker.publish(7)
        await until(lambda: len(client.deliveries) == 1)
        sub.pause_reading()
        first = broker.current
        first.lose(ConnectionResetError("reset by peer"))
        await until(lambda: len(broker.connections) == 2 and sub.connected)
        assert client.states == [True, False, True]
        # Committed after its connection dropped: the broker redelivers it, no PUBACK now.
        assert sub.ack(client.deliveries) == 0
        assert broker.current.pubacks == []
        # Still paused on the new connection, after its handshake.
        assert not broker.current.reading
        assert broker.current.level == codec.MQTT5


async def test_pings_when_idle() -> None:
    broker = ScriptedBroker()
    async with running(Client(broker, keepalive_s=1)):
        await until(lambda: broker.current.pings >= 2, timeout_s=4)
        assert len(broker.connections) == 1


async def test_honours_the_server_keep_alive() -> None:
    # Asked for 60 s, the broker imposes 1 s (MQTT-3.2.2-21): PINGREQ within about a second.
    broker = ScriptedBroker([b"\x00\x00\x03\x13\x00\x01"])
    async with running(Client(broker, keepalive_s=60)):
        await until(lambda: broker.current.pings >= 1, timeout_s=3)


async def test_a_server_keep_alive_of_zero_means_no_pings() -> None:
    broker = ScriptedBroker([b"\x00\x00\x03\x13\x00\x00"])
    async with running(Client(broker, keepalive_s=1)):
        await asyncio.sleep(2.5)
        assert broker.current.pings == 0
        assert len(broker.connections) == 1


async def test_a_silent_broker_is_dropped_and_reconnected() -> None:
    broker = ScriptedBroker()
    broker.silent = True
    async with running(Client(broker, keepalive_s=1)):
        await until(lambda: len(broker.connections) == 2, timeout_s=5)
        assert broker.connections[0].aborted


async def test_a_paused_subscriber_does_not_count_silence() -> None:
    broker = ScriptedBroker()
    broker.silent = True
    async with running(Client(broker, keepalive_s=1)) as sub:
        sub.pause_reading()
        await asyncio.sleep(2.5)
        assert len(broker.connections) == 1
        assert not broker.current.aborted


async def test_falls_back_to_mqtt311_and_stays_there() -> None:
    broker = ScriptedBroker([b"\x00\x01"])  # a 3.1.1-only broker refusing level 5
    async with running(Client(broker)) as sub:
        assert [c.level for c in broker.connections] == [codec.MQTT5, codec.MQTT311]
        broker.current.lose(None)
        await until(lambda: len(broker.connections) == 3 and sub.connected)
        assert broker.current.level == codec.MQTT311


async def test_refused_credentials_at_start_up_are_raised_not_retried() -> None:
    broker = ScriptedBroker([b"\x00\x04"])  # 3.1.1's "bad user name or password"
    client = Client(broker, protocol_version=codec.MQTT311)
    with pytest.raises(MqttRefusedError, match="bad user name or password") as refused:
        await asyncio.wait_for(client.subscriber.run(), 5)
    assert refused.value.code == 0x86
    assert len(broker.connections) == 1


async def test_a_refusal_that_may_pass_is_logged_in_words_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = ScriptedBroker([b"\x00\x03"])  # 3.1.1's "server unavailable"
    client = Client(broker, protocol_version=codec.MQTT311)
    with caplog.at_level(logging.WARNING, "test.subscriber"):
        async with running(client):
            assert len(broker.connections) == 2
    assert "server unavailable" in caplog.text
    assert "reason code" not in caplog.text
