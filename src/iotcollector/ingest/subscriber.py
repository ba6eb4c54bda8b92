"""The collector's MQTT subscriber: QoS 1, persistent session, batched acks, backpressure.

Messages are handed to ``on_message`` as they arrive (a list per slice of what was read from
the socket) and acknowledged only when the pipeline calls :meth:`MqttSubscriber.ack` after
their commit. Acknowledgements of one batch go out in one write.

Bounds, all enforced here, packet by packet: at most ``max_inflight`` messages handed over
and not yet passed to :meth:`ack` (exact), and at most ``max_inflight_bytes`` of their
payloads (exceeded by at most one message). At either bound the rest of what was read stays
buffered, unparsed, and the socket is no longer read: the broker keeps the messages. A
payload above ``max_payload_bytes`` is not kept: only its first
:data:`OVERSIZE_PREFIX_BYTES` (for the dead letter) and its size. At most
:data:`SLICE_BYTES` of payloads are handed over per event-loop turn, so that parsing them
never holds the loop for long. When the pipeline has too much work of its own it calls
:meth:`pause_reading`.

Retained messages: data and status subscriptions ask for MQTT 5 Retain Handling 1 (the
broker sends retained messages only when the subscription is new: on a new session, or for a
topic filter added since, not when a resumed session subscribes again), so under MQTT 5 a
message with RETAIN set is stored. Under MQTT 3.1.1, where the broker sends retained messages
at every SUBSCRIBE, the rule is approximated from the RETAIN flag: on a resumed session a
message with RETAIN set is marked ``replayed`` (acknowledged, not stored), even on a filter
added since the session began.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, cast

import msgspec

from iotcollector.backoff import Backoff
from iotcollector.errors import MqttError, MqttRefusedError
from iotcollector.ingest import codec
from iotcollector.ingest.handshake import encode_connect, handshake, protocol_name

if TYPE_CHECKING:
    import logging
    import ssl
    from collections.abc import Awaitable, Callable, Sequence

    # Opens a connection for a protocol factory: ``loop.create_connection`` to the broker.
    Connector = Callable[
        [Callable[[], asyncio.Protocol]], Awaitable[tuple[asyncio.BaseTransport, asyncio.Protocol]]
    ]

SESSION_EXPIRY_S = 7 * 24 * 3600
# MQTT 5 reason codes that retrying with the same configuration cannot change: client id not
# valid, bad user name or password, not authorized, banned, bad authentication method, topic
# filter invalid, shared / wildcard subscriptions not supported.
REFUSED_FOR_GOOD = frozenset({0x85, 0x86, 0x87, 0x8A, 0x8C, 0x8F, 0x9E, 0xA2})
# What is kept of a payload above max_payload_bytes: enough to recognise it in a dead letter.
OVERSIZE_PREFIX_BYTES = 4096
# Room for a PUBLISH's topic (at most 65,537 bytes), packet id and properties: a packet whose
# body is longer than max_payload_bytes plus this is not buffered whole (see PacketReader).
PUBLISH_HEADER_ROOM = 128 * 1024
_HANDSHAKE_TIMEOUT_S = 10.0
# Payload bytes handed to on_message per event-loop turn (then at least one message): about
# 100 single readings, or one big message; `python -m bench.hostile` measures the worst turn.
SLICE_BYTES = 16 * 1024


class Delivery(msgspec.Struct, gc=False):
    """One message as received; ``connection`` tells which connection must acknowledge it.

    ``payload`` is the whole payload, or its first :data:`OVERSIZE_PREFIX_BYTES` when ``size``
    (as sent) is above the subscriber's ``max_payload_bytes``. ``replayed``: a retained
    message the broker sent again because a resumed session subscribed (not new data).
    """

    topic: str
    payload: bytes
    packet_id: int | None
    connection: int
    size: int
    replayed: bool = False


class _Protocol(asyncio.Protocol):
    def __init__(
        self, owner: MqttSubscriber, generation: int, version: int, max_payload: int
    ) -> None:
        self._owner = owner
        self._generation = generation
        self._version = version
        self.reader = codec.PacketReader(
            version, max_payload + PUBLISH_HEADER_ROOM, OVERSIZE_PREFIX_BYTES
        )
        self.session_present = False
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.connack: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.suback: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self.last_read = time.monotonic()
        self.last_write = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast("asyncio.Transport", transport)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.last_write = time.monotonic()

    def data_received(self, data: bytes) -> None:
        self.last_read = time.monotonic()
        self.reader.push(data)
        self._owner.take(self)

    def take(self, max_messages: int, max_bytes: int, max_payload: int) -> list[Delivery]:
        """Parse buffered packets: at most ``max_messages`` PUBLISH, until ``max_bytes``."""
        deliveries: list[Delivery] = []
        version = self._version
        try:
            for ptype, flags, body in self.reader.pop(max_bytes, max_messages):
                if ptype != codec.PUBLISH:
                    self.handle(ptype, body)
                    continue
                incoming = codec.decode_incoming(flags, body, version, max_payload)
                payload = incoming.payload
                if incoming.size > max_payload:
                    payload = payload[:OVERSIZE_PREFIX_BYTES]
                deliveries.append(
                    Delivery(
                        incoming.topic,
                        payload,
                        incoming.packet_id,
                        self._generation,
                        incoming.size,
                        # MQTT 5 (Retain Handling 1): RETAIN is set only on what a new
                        # subscription is sent (a topic or rule added), so it is new data.
                        incoming.retain and self.session_present and version != codec.MQTT5,
                    )
                )
        except codec.ProtocolError as exc:
            self._owner.log.error("protocol error from the broker, reconnecting: %s", exc)  # noqa: TRY400
            if self.transport is not None:
                self.transport.abort()
        return deliveries

    def handle(self, ptype: int, body: bytes) -> None:
        if ptype == codec.CONNACK:
            if not self.connack.done():
                self.connack.set_result(body)
        elif ptype == codec.SUBACK:
            _, codes = codec.decode_suback(body, self._version)
            if not self.suback.done():
                self.suback.set_result(codes)
        elif ptype == codec.DISCONNECT:
            reason = codec.decode_disconnect(body)
            self._owner.log.warning("broker disconnected us: %s", codec.reason_text(reason))
        elif ptype != codec.PINGRESP:
            self._owner.log.debug("ignoring MQTT packet type %d", ptype)

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in (self.connack, self.suback):
            if not fut.done():
                fut.set_exception(MqttError(f"connection lost: {exc or 'closed by the broker'}"))
                fut.exception()  # retrieved here: nobody may be awaiting it any more
        if not self.closed.done():
            self.closed.set_result(None)


class MqttSubscriber:
    """Keeps one persistent-session MQTT connection up and subscribed, until stopped."""

    def __init__(  # noqa: PLR0913 - every argument is one plain setting
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        subscriptions: Sequence[str],
        optional_subscriptions: Sequence[str] = (),
        on_message: Callable[[list[Delivery]], None],
        on_connected: Callable[[bool], None],
        logger: logging.Logger,
        ssl_context: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
        keepalive_s: int = 30,
        receive_maximum: int = 65535,
        max_inflight: int = 20_000,
        max_inflight_bytes: int = 32 * 1024 * 1024,
        max_payload_bytes: int = 256 * 1024,
        reconnect_min_s: float = 0.2,
        reconnect_max_s: float = 30.0,
        protocol_version: int = codec.MQTT5,
        connector: Connector | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._client_id = client_id
        self._subscriptions = list(subscriptions)
        self._optional = list(optional_subscriptions)
        self._optional_refused_logged = False
        self._on_message = on_message
        self._on_connected = on_connected
        self.log = logger
        self._ssl = ssl_context
        self._username = username
        self._password = password
        self._keepalive = keepalive_s
        self._keepalive_now = keepalive_s  # this connection's: the broker may impose its own
        self._receive_maximum = receive_maximum
        self._max_inflight = max_inflight
        self._max_inflight_bytes = max_inflight_bytes
        self._max_payload = max_payload_bytes
        self._inflight = 0
        self._inflight_bytes = 0
        self._take_scheduled = False
        self._backoff = Backoff(reconnect_min_s, reconnect_max_s)
        self._connector = connector
        self._generation = 0
        self._version = protocol_version
        self._proto: _Protocol | None = None
        self._handshaking = False
        self._paused = False
        self._stopping = False
        self._connected = False
        self.connections = 0
        self._subscribed_once = False

    @property
    def connected(self) -> bool:
        """Connected, with every subscription acknowledged by the broker."""
        return self._connected

    @property
    def inflight(self) -> tuple[int, int]:
        """(messages, payload bytes) handed to ``on_message`` and not yet passed to ``ack``."""
        return self._inflight, self._inflight_bytes

    @property
    def full(self) -> bool:
        """At the in-flight bound (messages or bytes): the socket is not read."""
        return self._inflight >= self._max_inflight or (
            self._inflight_bytes >= self._max_inflight_bytes
        )

    def take(self, proto: _Protocol) -> None:
        """Hand buffered messages over, within the bounds and one slice per loop turn."""
        if proto is not self._proto:
            return
        self._take_scheduled = False
        room = self._max_inflight - self._inflight
        room_bytes = self._max_inflight_bytes - self._inflight_bytes
        if room > 0 and room_bytes > 0:
            deliveries = proto.take(room, min(room_bytes, SLICE_BYTES), self._max_payload)
            if deliveries:
                self._inflight += len(deliveries)
                self._inflight_bytes += sum(len(d.payload) for d in deliveries)
                self._on_message(deliveries)
        if not self.full and not self._take_scheduled and proto.reader.has_packet():
            self._take_scheduled = True
            asyncio.get_running_loop().call_soon(self.take, proto)
        self._apply_pause()

    def ack(self, deliveries: Sequence[Delivery]) -> int:
        """Release messages the pipeline is done with (committed, or not to be stored) and
        acknowledge those of the current connection in one write; return how many PUBACKs
        were sent.

        Messages that arrived on an earlier connection are not acknowledged: the broker
        redelivers them on the new one and the database discards the duplicates.
        """
        was_full = self.full
        gen = self._generation
        self._inflight -= len(deliveries)
        self._inflight_bytes -= sum([len(d.payload) for d in deliveries])
        ids = [d.packet_id for d in deliveries if d.connection == gen and d.packet_id is not None]
        proto = self._proto
        if proto is None:
            return 0
        if ids:
            proto.write(codec.encode_pubacks(ids))
        if was_full and not self.full and not self._take_scheduled:
            self._take_scheduled = True
            asyncio.get_running_loop().call_soon(self.take, proto)
        return len(ids)

    def publish(self, topic: str, payload: bytes) -> bool:
        """Send a QoS 0 message on the current connection; False when not connected."""
        proto = self._proto
        if proto is None or not self._connected:
            return False
        proto.write(codec.encode_publish_qos0(topic, payload, self._version))
        return True

    def pause_reading(self) -> None:
        self._paused = True
        self._apply_pause()

    def resume_reading(self) -> None:
        self._paused = False
        self._apply_pause()

    @property
    def _reading_paused(self) -> bool:
        """Whether the socket is deliberately not read (the keep-alive check allows for it)."""
        return (self._paused and not self._handshaking) or self.full or self._take_scheduled

    def _apply_pause(self) -> None:
        proto = self._proto
        if proto is None or proto.transport is None or proto.transport.is_closing():
            return
        if self._reading_paused:
            proto.transport.pause_reading()
        else:
            proto.transport.resume_reading()
            proto.last_read = time.monotonic()

    async def run(self) -> None:
        """Connect, subscribe, and reconnect with capped exponential backoff, until stop().

        Raises ``MqttRefusedError`` when the broker refuses the very first connection or
        subscription for a reason retrying cannot fix (credentials, authorisation, a topic
        filter it does not accept): the configuration is wrong. Later, refusals are retried
        (a broker restarting with its ACLs, credentials being rotated).
        """
        while not self._stopping:
            try:
                await self._connect_once()
                self._backoff.reset()
                await self._serve_connection()
            except MqttRefusedError as exc:
                if not self._subscribed_once and exc.code in REFUSED_FOR_GOOD:
                    raise
                self.log.warning("MQTT connection to %s:%d failed: %s", self._host, self._port, exc)
            except (OSError, MqttError, TimeoutError) as exc:
                if not self._stopping:
                    reason = str(exc) or f"no answer within {_HANDSHAKE_TIMEOUT_S:.0f} s"
                    self.log.warning(
                        "MQTT connection to %s:%d failed: %s", self._host, self._port, reason
                    )
            finally:
                self._set_connected(False)
                await self._close_transport()
            if self._stopping:
                break
            await asyncio.sleep(self._backoff.next_delay())

    async def _open(self, factory: Callable[[], asyncio.Protocol]) -> asyncio.Protocol:
        if self._connector is not None:
            _, proto = await self._connector(factory)
            return proto
        _, proto = await asyncio.get_running_loop().create_connection(
            factory,
            self._host,
            self._port,
            ssl=self._ssl,
            server_hostname=self._host if self._ssl else None,
        )
        return proto

    async def _connect_once(self) -> None:
        self._generation += 1
        generation = self._generation
        self._handshaking = True

        async def open_connection(version: int) -> _Protocol:
            proto = await self._open(
                lambda: _Protocol(self, generation, version, self._max_payload)
            )
            self._proto = cast("_Protocol", proto)
            self._take_scheduled = False
            return self._proto

        def connect_packet(version: int) -> bytes:
            return encode_connect(
                self._client_id,
                clean_session=False,
                keepalive=self._keepalive,
                session_expiry_s=SESSION_EXPIRY_S,
                receive_maximum=self._receive_maximum,
                username=self._username,
                password=self._password,
                version=version,
            )

        async with asyncio.timeout(_HANDSHAKE_TIMEOUT_S):
            proto, ack, version, self._keepalive_now = await handshake(
                open_connection,
                connect_packet,
                client_id=self._client_id,
                version=self._version,
                keepalive_s=self._keepalive,
            )
            proto.session_present = ack.session_present
            if version != self._version:
                self.log.warning("the broker does not speak MQTT 5: speaking MQTT 3.1.1")
                self._version = version
            self.connections += 1
            self.log.info(
                "connected to MQTT broker %s:%d as %s (MQTT %s, session %s, keep alive %d s)",
                self._host,
                self._port,
                self._client_id,
                protocol_name(version),
                "resumed" if ack.session_present else "new",
                self._keepalive_now,
            )
            filters = [(t, 1) for t in self._subscriptions] + [(t, 0) for t in self._optional]
            retain = [codec.RETAIN_SEND_IF_NEW_SUBSCRIPTION] * len(self._subscriptions)
            retain += [codec.RETAIN_SEND_AT_SUBSCRIBE] * len(self._optional)
            proto.write(codec.encode_subscribe(1, filters, version, retain_handling=retain))
            codes = await proto.suback
        required = codes[: len(self._subscriptions)]
        refused = [t for t, c in zip(self._subscriptions, required, strict=False) if c >= 0x80]
        if refused or len(codes) != len(filters):
            reasons = ", ".join(
                f"{t}: {codec.reason_text(c)}"
                for t, c in zip(self._subscriptions, required, strict=False)
                if c >= 0x80
            )
            raise MqttRefusedError(
                f"broker refused subscriptions ({reasons or 'count mismatch'})",
                next((c for c in required if c >= 0x80), None),
            )
        optional_refused = [
            t for t, c in zip(self._optional, codes[len(required) :], strict=True) if c >= 0x80
        ]
        if optional_refused and not self._optional_refused_logged:
            self._optional_refused_logged = True
            self.log.info("the broker does not offer %s", ", ".join(optional_refused))
        self._handshaking = False
        self._subscribed_once = True
        self._apply_pause()
        self._set_connected(True)

    async def _serve_connection(self) -> None:
        proto = self._proto
        assert proto is not None
        keepalive = self._keepalive_now
        if not keepalive:  # 0: no keep alive at all, neither PINGREQ nor a silence limit
            await proto.closed
        interval = max(1.0, keepalive / 2)
        while not proto.closed.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proto.closed), timeout=interval)
                break
            now = time.monotonic()
            if not self._reading_paused and now - proto.last_read > keepalive * 1.5:
                self.log.warning(
                    "no answer from the MQTT broker for %.0f s, reconnecting", now - proto.last_read
                )
                if proto.transport is not None:
                    proto.transport.abort()
                break
            if now - proto.last_write >= interval:
                proto.write(codec.PINGREQ_PACKET)
        if not self._stopping:
            self.log.warning("lost the connection to the MQTT broker")

    def _set_connected(self, value: bool) -> None:
        if value != self._connected:
            self._connected = value
            self._on_connected(value)

    async def _close_transport(self) -> None:
        proto = self._proto
        self._handshaking = False
        if proto is None or proto.transport is None:
            return
        proto.transport.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(proto.closed), timeout=2)
        if not proto.closed.done():
            proto.transport.abort()

    async def stop(self) -> None:
        """Send DISCONNECT (the session persists) and close the connection."""
        self._stopping = True
        proto = self._proto
        if proto is not None:
            proto.write(codec.DISCONNECT_PACKET)
        await self._close_transport()
