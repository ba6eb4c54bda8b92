"""The publisher's MQTT 5 packets."""

from __future__ import annotations

import pytest

from iotcollector.ingest.codec import PacketReader, ProtocolError, decode_varint
from iotcollector.simulator.packets import (
    Will,
    ack_reason,
    decode_connack,
    encode_connect,
    encode_publish,
    encode_pubrel,
    set_dup,
    topic_prefix,
)


def test_connect_with_will_and_credentials() -> None:
    packet = encode_connect(
        "sim-0001",
        keepalive=60,
        will=Will("iot/status/sim-0001", b"offline"),
        username="u",
        password="p",
    )
    assert packet[0] == 0x10
    length, pos = decode_varint(packet, 1)
    body = packet[pos:]
    assert len(body) == length
    assert body[:7] == b"\x00\x04MQTT\x05"
    flags = body[7]
    assert flags & 0x02  # clean start
    assert flags & 0x04  # will
    assert (flags >> 3) & 0x03 == 1  # will QoS 1
    assert flags & 0x20  # will retained
    assert flags & 0xC0 == 0xC0  # user name and password
    assert b"iot/status/sim-0001" in body
    assert body.endswith(b"\x00\x01u\x00\x01p")


def test_publish_round_trips_through_the_reader() -> None:
    topic = topic_prefix("iot/data")
    packets = encode_publish(topic, b"{}", 1, 513) + encode_publish(topic, b"x" * 300, 0, 0)
    (ptype1, flags1, body1), (ptype2, flags2, body2) = PacketReader().feed(packets)
    assert (ptype1, flags1) == (3, 0x02)
    assert body1 == b"\x00\x08iot/data\x02\x01\x00{}"
    assert (ptype2, flags2) == (3, 0)
    assert body2.endswith(b"x" * 300)
    assert set_dup(packets)[0] == 0x3A
    assert encode_publish(topic, b"on", 1, 1, retain=True)[0] == 0x33


def test_connack_properties() -> None:
    props = b"\x21\x00\x14" + b"\x24\x01" + b"\x22\x00\x0a" + b"\x1f\x00\x02hi"
    ack = decode_connack(b"\x00\x00" + bytes([len(props)]) + props)
    assert (ack.receive_maximum, ack.maximum_qos, ack.reason_string) == (20, 1, "hi")
    assert decode_connack(b"\x01\x87").session_present
    with pytest.raises(ProtocolError):
        decode_connack(b"\x00")


def test_acks() -> None:
    assert ack_reason(b"\x01\x02") == (258, 0)
    assert ack_reason(b"\x01\x02\x10\x00") == (258, 0x10)
    assert encode_pubrel(258) == b"\x62\x02\x01\x02"
