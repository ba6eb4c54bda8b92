"""The publisher's side of MQTT 5 and 3.1.1: PUBLISH, PUBREL, acknowledgements, CONNACK fields.

CONNECT (with a Last Will), the remaining-length rule and the decoding of the incoming stream
come from the collector's own codec (:mod:`iotcollector.ingest.codec`); this module adds what
a device needs on top. A ``version`` is the CONNECT protocol level: ``MQTT5`` (5) or
``MQTT311`` (4); 3.1.1 packets carry no properties and its acknowledgements no reason code.
"""

from __future__ import annotations

from dataclasses import dataclass

from iotcollector.ingest.codec import (
    MQTT5,
    ProtocolError,
    Will,
    connack_reason,
    decode_varint,
    encode_connect,
    encode_remaining_length,
)
from iotcollector.ingest.codec import encode_string as mqtt_string

__all__ = [
    "PUBCOMP",
    "PUBREC",
    "PUBREL",
    "ConnAck",
    "Will",
    "ack_reason",
    "decode_connack",
    "encode_connect",
    "encode_publish",
    "encode_pubrel",
    "mqtt_string",
    "set_dup",
    "topic_prefix",
]

PUBREC = 5
PUBREL = 6
PUBCOMP = 7

_PROP_RECEIVE_MAXIMUM = 0x21
_PROP_MAXIMUM_QOS = 0x24
_PROP_RETAIN_AVAILABLE = 0x25
_PROP_MAXIMUM_PACKET_SIZE = 0x27
_PROP_REASON_STRING = 0x1F


def topic_prefix(topic: str) -> bytes:
    """The encoded topic name, computed once per topic and reused for every PUBLISH."""
    return mqtt_string(topic)


def encode_publish(  # noqa: PLR0913 - the PUBLISH fields
    topic: bytes,
    payload: bytes,
    qos: int,
    packet_id: int,
    *,
    retain: bool = False,
    version: int = MQTT5,
) -> bytes:
    """PUBLISH with an already encoded topic (:func:`topic_prefix`) and no properties."""
    props = b"\x00" if version == MQTT5 else b""
    if qos:
        body = topic + packet_id.to_bytes(2, "big") + props + payload
    else:
        body = topic + props + payload
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


def decode_connack(body: bytes, version: int = MQTT5) -> ConnAck:
    """CONNACK with the properties a publisher must respect.

    The reason code is MQTT 5's (a 3.1.1 return code is translated, see
    :func:`~iotcollector.ingest.codec.connack_reason`); 3.1.1 has no properties, so no
    Receive Maximum: the publisher's own window applies.
    """
    if len(body) < 2:
        raise ProtocolError("CONNACK too short")
    if version != MQTT5:
        return ConnAck(bool(body[0] & 0x01), connack_reason(body[1], version))
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
