"""One simulated MQTT connection: a bounded in-flight window, status messages, reconnects.

A connection carries one device (``--connections devices``: its Last Will is that device's
``offline``) or many (multiplexed: no will can speak for many devices, so it publishes each
device's ``offline`` itself when it closes cleanly). Writes are gathered and sent once per
event-loop turn; PUBACKs are read by an :class:`asyncio.Protocol` without a task per message.

It speaks MQTT 5 or 3.1.1 (:attr:`Endpoint.protocol`); asked for 5, it falls back to 3.1.1
when the broker's CONNACK says it does not speak 5, as the collector's subscriber does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from iotcollector.backoff import Backoff
from iotcollector.errors import MqttError, MqttRefusedError
from iotcollector.ingest.codec import (
    CONNACK,
    DISCONNECT,
    DISCONNECT_PACKET,
    MQTT5,
    PINGREQ_PACKET,
    PUBACK,
    PacketReader,
    ProtocolError,
    decode_disconnect,
    reason_text,
)
from iotcollector.ingest.handshake import ConnAck, Will, encode_connect, handshake
from iotcollector.simulator.packets import (
    PUBCOMP,
    PUBREC,
    ack_reason,
    encode_publish,
    encode_pubrel,
    set_dup,
    topic_prefix,
)

if TYPE_CHECKING:
    import ssl
    from collections.abc import Sequence

STATUS_TOPIC = "iot/status/{device_id}"
ONLINE = b"online"
OFFLINE = b"offline"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to connect; shared by every connection of a run."""

    host: str
    port: int
    ssl: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 60
    connect_timeout_s: float = 10.0
    reconnect_max_s: float = 5.0
    protocol: int = MQTT5  # MQTT5 (falls back to 3.1.1 if the broker refuses it) or MQTT311


@dataclass(slots=True)
class Counters:
    """Totals of a run (messages, not readings, unless named so)."""

    published: int = 0  # data PUBLISH packets sent (first sends, injected duplicates included)
    acknowledged: int = 0  # data messages the broker acknowledged (PUBACK / PUBCOMP)
    refused: int = 0  # data messages acknowledged with an error reason code
    resent: int = 0  # re-sends of un-acknowledged messages after a reconnect
    status_published: int = 0  # online/offline status messages acknowledged
    errors: int = 0  # unexpected disconnects, failed connects, refused messages
    connects: int = 0
    disconnects: int = 0  # unexpected (not churn, not shutdown)
    churned: int = 0  # deliberate disconnects (--churn)
    last_error: str = ""
    error_kinds: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str, detail: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1
        self.last_error = detail


class _Protocol(asyncio.Protocol):
    """Reads one transport's packets for its :class:`Connection`."""

    def __init__(self, owner: Connection) -> None:
        self.owner = owner
        self.reader = PacketReader()
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[bytes] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports (``up --simulate`` runs on uvloop) implement asyncio.Transport
        # without subclassing it.
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        try:
            for ptype, _flags, body in self.reader.feed(data):
                if ptype == CONNACK:
                    if not self.connack.done():
                        self.connack.set_result(body)
                else:
                    self.owner.on_packet(self, ptype, body)
        except ProtocolError as exc:
            self.owner.counters.error("protocol", str(exc))
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connack.done():
            self.connack.set_exception(MqttError(f"connection closed before CONNACK: {exc}"))
        if not self.lost.done():
            self.lost.set_result(None)
        self.owner.on_lost(self)


class Connection:
    """A device's (or a group of devices') MQTT connection with a bounded in-flight window."""

    def __init__(  # noqa: PLR0913 - explicit collaborators and limits
        self,
        client_id: str,
        endpoint: Endpoint,
        device_ids: Sequence[str],
        counters: Counters,
        *,
        qos: int,
        window: int,
        status: bool,
    ) -> None:
        self.client_id = client_id
        self.endpoint = endpoint
        self.device_ids = list(device_ids)
        self.counters = counters
        self.qos = qos
        self.max_window = max(1, window)
        self.window = self.max_window
        self.status = status
        self.per_device = len(self.device_ids) == 1
        self.version = endpoint.protocol  # MQTT 3.1.1 once the broker has refused MQTT 5
        self.keepalive_s = endpoint.keepalive_s  # or the broker's Server Keep Alive
        self._proto: _Protocol | None = None
        self._connected = False
        self._closing = False
        self._inflight: dict[int, tuple[bytes, bool]] = {}  # packet id → (packet, is data)
        self._pending: deque[tuple[bytes, bytes]] = deque()  # data: topic, payload
        self._statuses: deque[tuple[bytes, bytes]] = deque()  # online/offline to send first
        self._next_id = 0
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._change: asyncio.Future[None] | None = None
        self._holding = False  # churn: send statuses, hold data until the reconnect
        self._reconnect: asyncio.Task[None] | None = None
        self.last_write = time.monotonic()
        self._status_topics = {
            d: topic_prefix(STATUS_TOPIC.format(device_id=d)) for d in self.device_ids
        }

    # -- state -----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def outstanding(self) -> int:
        """Messages not yet acknowledged: in flight plus waiting to be sent."""
        return len(self._inflight) + len(self._pending) + len(self._statuses)

    @property
    def has_space(self) -> bool:
        return self.outstanding < self.window

    async def wait_space(self) -> None:
        while not self.has_space:
            await self._wait()

    async def _wait(self) -> None:
        """Sleep until the next acknowledgement, send or disconnect on this connection."""
        if self._change is None or self._change.done():
            self._change = asyncio.get_running_loop().create_future()
        await self._change

    def _changed(self) -> None:
        if self._change is not None and not self._change.done():
            self._change.set_result(None)

    # -- connecting --------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect (or reconnect), publish ``online``, re-send what was not acknowledged."""
        proto, ack = await self._handshake()
        assert proto.transport is not None
        if self.qos > ack.maximum_qos:
            proto.transport.close()
            raise MqttRefusedError(f"the broker supports QoS up to {ack.maximum_qos} only")
        self._proto = proto
        self._connected = True
        self.counters.connects += 1
        self.window = max(1, min(self.max_window, ack.receive_maximum))
        for packet, _data in self._inflight.values():
            self._write(set_dup(packet))
            self.counters.resent += 1
        self._holding = False
        if self.status:
            self._statuses.extend((self._status_topics[d], ONLINE) for d in self.device_ids)
        self._pump()

    async def _handshake(self) -> tuple[_Protocol, ConnAck]:
        """Connect in :attr:`version` (falling back to 3.1.1 for good if the broker does not
        speak 5); return the accepted connection and its CONNACK."""
        ep = self.endpoint
        loop = asyncio.get_running_loop()
        will = (
            Will(STATUS_TOPIC.format(device_id=self.device_ids[0]), OFFLINE)
            if self.per_device and self.status
            else None
        )

        async def open_connection(_version: int) -> _Protocol:
            _, proto = await loop.create_connection(
                lambda: _Protocol(self),
                ep.host,
                ep.port,
                ssl=ep.ssl,
                server_hostname=ep.host if ep.ssl else None,
            )
            return proto

        def connect_packet(version: int) -> bytes:
            return encode_connect(
                self.client_id,
                keepalive=ep.keepalive_s,
                will=will,
                username=ep.username,
                password=ep.password,
                version=version,
            )

        try:
            async with asyncio.timeout(ep.connect_timeout_s):
                proto, ack, self.version, self.keepalive_s = await handshake(
                    open_connection,
                    connect_packet,
                    client_id=self.client_id,
                    version=self.version,
                    keepalive_s=ep.keepalive_s,
                )
                return proto, ack
        except TimeoutError:
            raise MqttError(
                f"{ep.host}:{ep.port}: no CONNACK within {ep.connect_timeout_s}s"
            ) from None
        except OSError as exc:
            raise MqttError(f"{ep.host}:{ep.port}: {exc}") from exc

    async def run_reconnect(self) -> None:
        """Reconnect with capped exponential backoff and jitter until it works or we close."""
        backoff = Backoff(0.2, self.endpoint.reconnect_max_s)
        while not self._closing:
            await asyncio.sleep(backoff.next_delay())
            try:
                await self.connect()
            except MqttRefusedError as exc:
                self.counters.error("refused", str(exc))
            except MqttError as exc:
                self.counters.error("connect", str(exc))
            else:
                return

    def on_lost(self, proto: _Protocol) -> None:
        if proto is not self._proto:
            return
        self._proto = None
        self._connected = False
        self._out.clear()
        self._changed()
        if self._closing:
            return
        self.counters.disconnects += 1
        self.counters.error("disconnect", f"{self.client_id}: connection lost")
        self._reconnect = asyncio.get_running_loop().create_task(self.run_reconnect())

    # -- publishing --------------------------------------------------------------------------

    def publish(self, topic: bytes, payload: bytes) -> None:
        """Queue one data message; the caller checks :attr:`has_space` first."""
        if (
            self._connected
            and len(self._inflight) < self.window
            and not self._pending
            and not self._holding
        ):
            self._send(topic, payload, data=True, retain=False)
        else:
            self._pending.append((topic, payload))

    def _send(self, topic: bytes, payload: bytes, *, data: bool, retain: bool) -> None:
        qos = self.qos if data else 1
        if qos == 0:
            self._write(encode_publish(topic, payload, 0, 0, retain=retain, version=self.version))
            self.counters.published += 1
            return
        packet_id = self._next_id
        inflight = self._inflight
        while True:
            packet_id = packet_id % 65535 + 1
            if packet_id not in inflight:
                break
        self._next_id = packet_id
        packet = encode_publish(topic, payload, qos, packet_id, retain=retain, version=self.version)
        inflight[packet_id] = (packet, data)
        if data:
            self.counters.published += 1
        self._write(packet)

    def _pump(self) -> None:
        if self._connected:
            inflight, window = self._inflight, self.window
            statuses = self._statuses
            while statuses and len(inflight) < window:
                topic, payload = statuses.popleft()
                self._send(topic, payload, data=False, retain=True)
            pending = self._pending
            while pending and not self._holding and len(inflight) < window:
                topic, payload = pending.popleft()
                self._send(topic, payload, data=True, retain=False)
        self._changed()

    def _write(self, packet: bytes) -> None:
        self._out.append(packet)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        proto = self._proto
        if self._out and proto is not None and proto.transport is not None:
            proto.transport.write(b"".join(self._out))
            self.last_write = time.monotonic()
        self._out.clear()

    def ping_if_idle(self, now: float) -> None:
        if self._connected and self.keepalive_s and now - self.last_write > self.keepalive_s / 2:
            self._write(PINGREQ_PACKET)

    # -- acknowledgements --------------------------------------------------------------------

    def on_packet(self, proto: _Protocol, ptype: int, body: bytes) -> None:
        if proto is not self._proto:
            return
        if ptype in {PUBACK, PUBCOMP}:
            packet_id, reason = ack_reason(body)
            entry = self._inflight.pop(packet_id, None)
            if entry is not None:
                if reason >= 0x80:
                    if entry[1]:
                        self.counters.refused += 1
                    self.counters.error("refused_message", f"broker: {reason_text(reason)}")
                elif entry[1]:
                    self.counters.acknowledged += 1
                else:
                    self.counters.status_published += 1
            self._pump()
        elif ptype == PUBREC:
            packet_id, reason = ack_reason(body)
            if reason >= 0x80:
                self.on_packet(proto, PUBCOMP, body)
            else:
                self._write(encode_pubrel(packet_id))
        elif ptype == DISCONNECT:
            reason = decode_disconnect(body)
            self.counters.error("broker_disconnect", f"broker: {reason_text(reason)}")

    # -- closing -----------------------------------------------------------------------------

    async def close(self, *, drain_s: float, final: bool = True) -> None:
        """Bounded: wait for acks, publish each device's ``offline``, then DISCONNECT.

        ``final`` waits for every queued data message too; otherwise (churn) data is held
        for after the reconnect and only what is in flight is waited for.
        """
        if self._reconnect is not None and not self._reconnect.done():
            self._reconnect.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect
        self._holding = not final
        if final and not self._connected and self.outstanding:
            # Down (a churn or a broker restart) with messages queued: one bounded attempt.
            with contextlib.suppress(MqttError, TimeoutError):
                async with asyncio.timeout(drain_s):
                    await self.connect()
        if self._connected:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_s):
                    while self._connected and (
                        self._inflight or self._statuses or (final and self._pending)
                    ):
                        await self._wait()
                    if self.status:
                        self._statuses.extend(
                            (self._status_topics[d], OFFLINE) for d in self.device_ids
                        )
                        self._pump()
                    while self._connected and (self._inflight or self._statuses):
                        await self._wait()
        self._closing = True
        proto = self._proto
        if proto is not None and proto.transport is not None:
            self._flush()
            proto.transport.write(DISCONNECT_PACKET)
            proto.transport.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await proto.lost
        self._connected = False

    def drop(self) -> None:
        """Lose the connection abruptly, as a device losing power or network would."""
        proto = self._proto
        self._proto = None
        self._connected = False
        self._out.clear()
        if proto is not None and proto.transport is not None:
            proto.transport.abort()

    async def churn(self, downtime_s: float, drain_s: float) -> None:
        """Disconnect and come back after ``downtime_s``.

        A device's own connection drops abruptly (the broker publishes its Last Will); a
        multiplexed connection has no will for its devices, so it says ``offline`` for each
        and disconnects cleanly. Un-acknowledged messages are re-sent after the reconnect.
        """
        if not self._connected or self._closing:
            return
        self.counters.churned += 1
        if self.per_device:
            self.drop()
        else:
            await self.close(drain_s=drain_s, final=False)
        await asyncio.sleep(downtime_s)
        self._closing = False
        try:
            await self.connect()
        except MqttError as exc:
            self.counters.error("connect", str(exc))
            self._reconnect = asyncio.get_running_loop().create_task(self.run_reconnect())
