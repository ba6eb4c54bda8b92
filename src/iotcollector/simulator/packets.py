"""The publisher's side of MQTT 5 and 3.1.1: PUBLISH, PUBREL, acknowledgements.

CONNECT (with a Last Will) and CONNACK come from the handshake the collector uses too
(:mod:`iotcollector.ingest.handshake`), the remaining-length rule and the decoding of the
incoming stream from its codec (:mod:`iotcollector.ingest.codec`); this module adds what a
device needs on top. A ``version`` is the CONNECT protocol level: ``MQTT5`` (5) or
``MQTT311`` (4); 3.1.1 packets carry no properties and its acknowledgements no reason code.
"""

from __future__ import annotations

from iotcollector.ingest.codec import MQTT5, ProtocolError, encode_remaining_length
from iotcollector.ingest.codec import encode_string as mqtt_string

__all__ = [
    "PUBCOMP",
    "PUBREC",
    "PUBREL",
    "ack_reason",
    "encode_publish",
    "encode_pubrel",
    "mqtt_string",
    "set_dup",
    "topic_prefix",
]

PUBREC = 5
PUBREL = 6
PUBCOMP = 7


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


def ack_reason(body: bytes) -> tuple[int, int]:
    """(packet id, reason code) of a PUBACK/PUBREC/PUBCOMP; the reason is 0 when omitted."""
    if len(body) < 2:
        raise ProtocolError("acknowledgement too short")
    return (body[0] << 8) | body[1], body[2] if len(body) > 2 else 0
