"""MQTT 5 packets the collector's subscriber needs: pure encoding and decoding, no I/O.

Only what a QoS 1 subscriber uses is here: SUBSCRIBE/SUBACK, PUBLISH (in), PUBACK (out),
PINGREQ/PINGRESP, DISCONNECT; CONNECT/CONNACK are in :mod:`iotcollector.ingest.handshake`,
shared with the simulator (:mod:`iotcollector.simulator.packets` adds the rest of a
publisher's side). MQTT 5 because a persistent session needs the Session Expiry Interval and
the broker's in-flight window is the client's Receive Maximum (with MQTT 3.1.1 Mosquitto caps it at
``max_inflight_messages``, 20 by default). MQTT 3.1.1 (protocol level 4) is spoken too, for
brokers without MQTT 5 (e.g. the embedded amqtt).
docs/architecture.md says why the collector speaks MQTT itself instead of through a client
library (batched PUBACKs, socket-level backpressure).
"""

from __future__ import annotations

import struct

import msgspec

CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
SUBSCRIBE = 8
SUBACK = 9
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14

MAX_REMAINING_LENGTH = 268_435_455
PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"
_PUBACK_WORD = 0x4002_0000  # a PUBACK (0x40, remaining length 2) with packet id 0

REASONS = {
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8B: "server shutting down",
    0x8D: "keep alive timeout",
    0x8E: "session taken over",
    0x8F: "topic filter invalid",
    0x91: "packet identifier in use",
    0x93: "receive maximum exceeded",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x9E: "shared subscriptions not supported",
    0x9F: "connection rate exceeded",
}

MQTT5 = 5
MQTT311 = 4


def reason_text(code: int) -> str:
    return REASONS.get(code, f"reason code 0x{code:02x}")


class ProtocolError(ValueError):
    """The peer sent bytes that are not valid MQTT 5."""


def encode_remaining_length(length: int) -> bytes:
    if not 0 <= length <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {length} out of range")
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | 0x80 if length else byte)
        if not length:
            return bytes(out)


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode a variable byte integer at ``pos``; return (value, position after it)."""
    value = 0
    mult = 1
    for _ in range(4):
        if pos >= len(data):
            raise ProtocolError("truncated variable byte integer")
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) * mult
        if not byte & 0x80:
            return value, pos
        mult *= 128
    raise ProtocolError("malformed variable byte integer")


def _skip_properties(data: bytes, pos: int) -> int:
    length, pos = decode_varint(data, pos)
    if pos + length > len(data):
        raise ProtocolError("properties longer than the packet")
    return pos + length


def encode_string(value: str | bytes) -> bytes:
    """An MQTT UTF-8 string or binary data: two length bytes, then the bytes."""
    raw = value.encode() if isinstance(value, str) else value
    if len(raw) > 65535:
        raise ValueError("MQTT strings are at most 65535 bytes")
    return struct.pack("!H", len(raw)) + raw


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + encode_remaining_length(len(body)) + body


# MQTT 5 subscription option Retain Handling (bits 4-5): which retained messages the broker
# sends when the subscription is made.
RETAIN_SEND_AT_SUBSCRIBE = 0
RETAIN_SEND_IF_NEW_SUBSCRIPTION = 1
RETAIN_NEVER_SEND = 2


def encode_subscribe(
    packet_id: int,
    filters: list[tuple[str, int]],
    version: int = MQTT5,
    *,
    retain_handling: list[int] | None = None,
) -> bytes:
    """SUBSCRIBE; under MQTT 5, ``retain_handling`` gives each filter's Retain Handling.

    MQTT 3.1.1 has no subscription options: its broker sends retained messages at every
    SUBSCRIBE, with the RETAIN flag set (the subscriber decides what to do with them).
    """
    body = struct.pack("!H", packet_id) + (b"\x00" if version == MQTT5 else b"")
    handling = retain_handling or [RETAIN_SEND_AT_SUBSCRIBE] * len(filters)
    for (topic, qos), retain in zip(filters, handling, strict=True):
        options = qos | (retain << 4 if version == MQTT5 else 0)
        body += encode_string(topic) + bytes([options])
    return _packet((SUBSCRIBE << 4) | 0x02, body)


def encode_publish_qos0(topic: str, payload: bytes, version: int = MQTT5) -> bytes:
    """A QoS 0 PUBLISH without properties (the collector's only outgoing messages: requests)."""
    props = b"\x00" if version == MQTT5 else b""
    return _packet(PUBLISH << 4, encode_string(topic) + props + payload)


def encode_pubacks(packet_ids: list[int]) -> bytes:
    """PUBACKs for many messages in one buffer: written with one send().

    Each PUBACK is the 4 bytes 0x40 0x02 and the packet id: one big-endian 32-bit word.
    """
    return struct.pack(f">{len(packet_ids)}I", *map(_PUBACK_WORD.__or__, packet_ids))


def decode_publish(flags: int, body: bytes, version: int = MQTT5) -> tuple[str, bytes, int | None]:
    """Return (topic, payload, packet id or None for QoS 0) of an incoming PUBLISH."""
    incoming = decode_incoming(flags, body, version)
    return incoming.topic, incoming.payload, incoming.packet_id


class TruncatedBody(bytes):
    """The head of a PUBLISH body whose other bytes were discarded as they arrived.

    The head is the variable header and the first bytes of the payload; ``length`` is the
    body's length as sent.
    """

    length: int


class IncomingPublish(msgspec.Struct, gc=False):
    """An incoming PUBLISH: ``payload`` is at most ``keep`` bytes of the ``size`` sent.

    A ``msgspec.Struct`` (made in C, not tracked by the cyclic GC): made once per message.
    """

    topic: str
    payload: bytes
    packet_id: int | None
    size: int
    retain: bool


def decode_incoming(
    flags: int, body: bytes, version: int = MQTT5, keep: int | None = None
) -> IncomingPublish:
    """Decode an incoming PUBLISH, copying at most ``keep`` bytes of its payload."""
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise ProtocolError("PUBLISH with QoS 3")
    if len(body) < 2:
        raise ProtocolError("PUBLISH too short")
    tlen = (body[0] << 8) | body[1]
    pos = 2 + tlen
    if qos:
        if len(body) < pos + 2:
            raise ProtocolError("PUBLISH too short for its packet id")
        packet_id: int | None = (body[pos] << 8) | body[pos + 1]
        pos += 2
    else:
        packet_id = None
    if version == MQTT5:
        if len(body) <= pos:
            raise ProtocolError("PUBLISH without its properties length")
        pos = pos + 1 if body[pos] == 0 else _skip_properties(body, pos)
    elif len(body) < pos:
        raise ProtocolError("PUBLISH topic longer than the packet")
    try:
        topic = body[2 : 2 + tlen].decode()
    except UnicodeDecodeError:
        raise ProtocolError("PUBLISH topic is not UTF-8") from None
    size = len(body) - pos
    if type(body) is TruncatedBody:
        size += body.length - len(body)
    payload = body[pos:] if keep is None or size <= keep else body[pos : pos + keep]
    return IncomingPublish(topic, payload, packet_id, size, bool(flags & 0x01))


def decode_suback(body: bytes, version: int = MQTT5) -> tuple[int, list[int]]:
    """Return (packet_id, granted QoS or a reason code >= 0x80 per filter)."""
    if len(body) < 3:
        raise ProtocolError("SUBACK too short")
    pos = _skip_properties(body, 2) if version == MQTT5 else 2
    return int.from_bytes(body[:2], "big"), list(body[pos:])


def decode_disconnect(body: bytes) -> int:
    """Return the reason code of a DISCONNECT the broker sent (0 when absent)."""
    return body[0] if body else 0


def _publish_header_length(buf: bytearray, start: int, flags: int, version: int) -> int | None:
    """Length of the PUBLISH variable header at ``start``; None while not all buffered."""
    if len(buf) < start + 2:
        return None
    pos = start + 2 + ((buf[start] << 8) | buf[start + 1]) + (2 if flags & 0x06 else 0)
    if version != MQTT5:
        return pos - start
    try:
        length, after = decode_varint(bytes(buf[pos : pos + 4]), 0)
    except ProtocolError:
        if len(buf) < pos + 4:
            return None
        raise
    return pos + after + length - start


class PacketReader:
    """Splits a byte stream into (packet type, flags, body) packets.

    ``feed`` returns every complete packet; ``push`` then ``pop`` let a reader take only as
    many packets as it has room for and leave the rest buffered (unparsed) for later.

    A PUBLISH whose body is longer than ``max_publish`` is not held whole: once its variable
    header and ``prefix`` bytes of its payload are buffered they are kept, and the rest of
    its bytes are discarded as they arrive. It comes out, once complete, with a
    :class:`TruncatedBody` (its length as sent). So the reader holds at most about
    ``max_publish`` bytes plus one read, whatever the packets' size.
    """

    def __init__(
        self, version: int = MQTT5, max_publish: int = MAX_REMAINING_LENGTH, prefix: int = 4096
    ) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._version = version
        self._max_publish = max_publish
        self._prefix = prefix
        # The truncated PUBLISH being discarded, and how many of its bytes are still to come.
        self._pending: tuple[int, int, bytes] | None = None
        self._skip = 0

    @property
    def buffered(self) -> int:
        """Bytes held: the buffer and the head of a truncated PUBLISH."""
        return len(self._buf) + (len(self._pending[2]) if self._pending else 0)

    def has_packet(self) -> bool:
        """Whether a complete packet is buffered."""
        if self._pending is not None:
            return not self._skip
        buf = self._buf
        end = len(buf)
        length = 0
        mult = 1
        i = self._pos + 1
        while i < end:
            byte = buf[i]
            i += 1
            length += (byte & 0x7F) * mult
            if not byte & 0x80:
                return i + length <= end
            mult *= 128
        return False

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        self.push(data)
        return self.pop(MAX_REMAINING_LENGTH)

    def push(self, data: bytes) -> None:
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return
            data = data[self._skip :]
            self._skip = 0
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def pop(self, max_bytes: int, max_packets: int = 1 << 30) -> list[tuple[int, int, bytes]]:
        """Complete packets until ``max_packets``, or once their bodies reach ``max_bytes``."""
        packets = self._complete_truncated() if self._pending is not None else []
        taken = 0
        buf = self._buf
        pos = self._pos
        end = len(buf)
        oversize: tuple[int, int] | None = None
        with memoryview(buf) as view:
            while end - pos >= 2 and taken < max_bytes and len(packets) < max_packets:
                length = 0
                mult = 1
                i = pos + 1
                complete = False
                while i < end:
                    byte = view[i]
                    i += 1
                    length += (byte & 0x7F) * mult
                    if not byte & 0x80:
                        complete = True
                        break
                    mult *= 128
                    if mult > 128**3:
                        raise ProtocolError("malformed remaining length")
                if not complete or i + length > end:
                    if complete and length > self._max_publish and view[pos] >> 4 == PUBLISH:
                        oversize = (i, length)
                    break
                first = view[pos]
                packets.append((first >> 4, first & 0x0F, view[i : i + length].tobytes()))
                taken += length
                pos = i + length
        if oversize is not None:
            pos = self._truncate(pos, *oversize)
        if pos == end:
            buf.clear()
            pos = 0
        self._pos = pos
        return packets

    def _complete_truncated(self) -> list[tuple[int, int, bytes]]:
        """The truncated PUBLISH once all its bytes arrived, else nothing (the buffer is empty
        until then)."""
        pending = self._pending
        if pending is None or self._skip:
            return []
        self._pending = None
        return [pending]

    def _truncate(self, pos: int, start: int, length: int) -> int:
        """Keep the head of the oversized PUBLISH at ``pos`` (body at ``start``), once it is
        buffered, and discard the rest of its bytes: return the position after them."""
        buf = self._buf
        flags = buf[pos] & 0x0F
        header = _publish_header_length(buf, start, flags, self._version)
        if header is None:
            return pos
        keep = header + self._prefix
        if header > length:
            raise ProtocolError(f"PUBLISH of {length} bytes with a {header}-byte header")
        if keep > self._max_publish or len(buf) - start < keep:
            # Headers too long to keep apart (tens of KB of user properties) are no reason to
            # refuse the message, which the broker would send again for ever: it is read
            # whole, as every packet was, within the broker's own packet limit.
            return pos
        body = TruncatedBody(buf[start : start + keep])
        body.length = length
        self._pending = (PUBLISH, flags, body)
        self._skip = length - (len(buf) - start)
        return len(buf)
