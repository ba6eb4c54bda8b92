"""The publisher's side of MQTT 5: CONNECT with a Last Will, PUBLISH, PUBREL; CONNACK fields.

Decoding of the incoming stream and the remaining-length rule come from the collector's own
codec (:mod:`iotcollector.ingest.codec`); this module adds what a device needs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from iotcollector.ingest.codec import ProtocolError, decode_varint, encode_remaining_length

PUBREC = 5
PUBREL = 6
PUBCOMP = 7

_PROP_RECEIVE_MAXIMUM = 0x21
_PROP_MAXIMUM_QOS = 0x24
_PROP_RETAIN_AVAILABLE = 0x25
_PROP_MAXIMUM_PACKET_SIZE = 0x27
_PROP_REASON_STRING = 0x1F


def mqtt_string(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    if len(raw) > 65535:
        raise ValueError("MQTT strings are at most 65535 bytes")
    return struct.pack("!H", len(raw)) + raw


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + encode_remaining_length(len(body)) + body


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def encode_connect(  # noqa: PLR0913 - the CONNECT fields
    client_id: str,
    *,
    keepalive: int,
    clean_start: bool = True,
    will: Will | None = None,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    """MQTT 5 CONNECT; no session kept (Session Expiry 0): a device resends what was unacked."""
    flags = 0x02 if clean_start else 0
    payload = mqtt_string(client_id)
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload += b"\x00" + mqtt_string(will.topic) + mqtt_string(will.payload)
    if username is not None:
        flags |= 0x80
        payload += mqtt_string(username)
    if password is not None:
        flags |= 0x40
        payload += mqtt_string(password)
    variable = mqtt_string("MQTT") + bytes([5, flags]) + struct.pack("!H", keepalive) + b"\x00"
    return _packet(0x10, variable + payload)


def topic_prefix(topic: str) -> bytes:
    """The encoded topic name, computed once per topic and reused for every PUBLISH."""
    return mqtt_string(topic)


def encode_publish(
    topic: bytes, payload: bytes, qos: int, packet_id: int, *, retain: bool = False
) -> bytes:
    """PUBLISH with an already encoded topic (:func:`topic_prefix`) and no properties."""
    if qos:
        body = topic + packet_id.to_bytes(2, "big") + b"\x00" + payload
    else:
        body = topic + b"\x00" + payload
    first = 0x30 | (qos << 1) | (1 if retain else 0)
    return bytes([first]) + encode_remaining_length(len(body)) + body


def encode_pubrel(packet_id: int) -> bytes:
    return b"\x62\x02" + packet_id.to_bytes(2, "big")


def set_dup(packet: bytes) -> bytes:
    """The same PUBLISH marked as a re-delivery attempt."""
    return bytes([packet[0] | 0x08]) + packet[1:]


@dataclass(frozen=True, slots=True)
class ConnAck:
    session_present: bool
    reason_code: int
    receive_maximum: int = 65535
    maximum_qos: int = 2
    retain_available: bool = True
    maximum_packet_size: int | None = None
    reason_string: str | None = None


# CONNACK properties by how their value is encoded (MQTT 5 section 3.2.2.3).
_PROPERTY_KINDS: dict[int, str] = {
    0x11: "u32",  # session expiry interval
    0x12: "str",  # assigned client identifier
    0x13: "u16",  # server keep alive
    0x15: "str",  # authentication method
    0x16: "bin",  # authentication data
    0x1A: "str",  # response information
    0x1C: "str",  # server reference
    0x1F: "str",  # reason string
    0x21: "u16",  # receive maximum
    0x22: "u16",  # topic alias maximum
    0x24: "u8",  # maximum QoS
    0x25: "u8",  # retain available
    0x26: "pair",  # user property
    0x27: "u32",  # maximum packet size
    0x28: "u8",  # wildcard subscription available
    0x29: "u8",  # subscription identifiers available
    0x2A: "u8",  # shared subscription available
}
_FIXED_SIZES = {"u8": 1, "u16": 2, "u32": 4}


def _properties(body: bytes, pos: int) -> dict[int, int | bytes]:
    """Decode a property list at ``pos`` (user properties are skipped)."""
    length, pos = decode_varint(body, pos)
    end = pos + length
    if end > len(body):
        raise ProtocolError("properties longer than the packet")
    props: dict[int, int | bytes] = {}
    while pos < end:
        prop = body[pos]
        pos += 1
        kind = _PROPERTY_KINDS.get(prop)
        if kind is None:
            raise ProtocolError(f"unknown property 0x{prop:02x}")
        if kind in _FIXED_SIZES:
            size = _FIXED_SIZES[kind]
            props[prop] = int.from_bytes(body[pos : pos + size], "big")
            pos += size
            continue
        for _ in range(2 if kind == "pair" else 1):
            n = int.from_bytes(body[pos : pos + 2], "big")
            if kind != "pair":
                props[prop] = body[pos + 2 : pos + 2 + n]
            pos += 2 + n
    if pos != end:
        raise ProtocolError("malformed properties")
    return props


def decode_connack(body: bytes) -> ConnAck:
    """CONNACK with the properties a publisher must respect."""
    if len(body) < 2:
        raise ProtocolError("CONNACK too short")
    props = _properties(body, 2) if len(body) > 2 else {}
    reason = props.get(_PROP_REASON_STRING)
    packet_size = props.get(_PROP_MAXIMUM_PACKET_SIZE)
    return ConnAck(
        session_present=bool(body[0] & 0x01),
        reason_code=body[1],
        receive_maximum=int(props.get(_PROP_RECEIVE_MAXIMUM, 65535)),
        maximum_qos=int(props.get(_PROP_MAXIMUM_QOS, 2)),
        retain_available=bool(props.get(_PROP_RETAIN_AVAILABLE, 1)),
        maximum_packet_size=packet_size if isinstance(packet_size, int) else None,
        reason_string=reason.decode(errors="replace") if isinstance(reason, bytes) else None,
    )


def ack_reason(body: bytes) -> tuple[int, int]:
    """(packet id, reason code) of a PUBACK/PUBREC/PUBCOMP; the reason is 0 when omitted."""
    if len(body) < 2:
        raise ProtocolError("acknowledgement too short")
    return (body[0] << 8) | body[1], body[2] if len(body) > 2 else 0
