"""The publisher's MQTT 5 and 3.1.1 packets."""

from __future__ import annotations

import pytest

from iotcollector.ingest.codec import (
    MQTT5,
    MQTT311,
    UNSUPPORTED_VERSION_CODES,
    PacketReader,
    ProtocolError,
    decode_publish,
    decode_varint,
    reason_text,
)
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


def _device_connect(version: int = MQTT5) -> bytes:
    """A device's CONNECT: its Last Will and credentials."""
    return encode_connect(
        "sim-0001",
        keepalive=60,
        will=Will("iot/status/sim-0001", b"offline"),
        username="u",
        password="p",
        version=version,
    )


def test_connect_with_will_and_credentials() -> None:
    packet = _device_connect()
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


# -- MQTT 3.1.1 ---------------------------------------------------------------------------------


def test_mqtt311_connect_with_will_has_no_properties() -> None:
    [(ptype, _flags, body)] = PacketReader().feed(_device_connect(MQTT311))
    assert ptype == 1
    # Level 4, flags (user name, password, will retained QoS 1, clean session), keep alive 60,
    # then straight to the payload: no properties, no will properties.
    assert (
        body[:10] == b"\x00\x04MQTT\x04" + bytes([0xC0 | 0x20 | 0x08 | 0x04 | 0x02]) + b"\x00\x3c"
    )
    assert body[10:] == (
        b"\x00\x08sim-0001" + b"\x00\x13iot/status/sim-0001" + b"\x00\x07offline\x00\x01u\x00\x01p"
    )


def test_mqtt5_connect_with_a_will_has_empty_will_properties() -> None:
    packet = encode_connect("d", keepalive=10, will=Will("t", b"x", qos=0, retain=False))
    assert packet == b"\x10\x15\x00\x04MQTT\x05\x06\x00\x0a\x00\x00\x01d\x00\x00\x01t\x00\x01x"


def test_a_password_needs_a_user_name_in_mqtt311_only() -> None:
    v5 = encode_connect("d", keepalive=10, password="p")
    assert v5[9] == 0x42  # password + clean start
    assert v5.endswith(b"\x00\x01p")
    v311 = encode_connect("d", keepalive=10, password="p", version=MQTT311)
    assert v311 == b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x0a\x00\x01d"


def test_mqtt311_publish_has_no_properties() -> None:
    topic = topic_prefix("iot/data")
    packet = encode_publish(topic, b"{}", 1, 513, version=MQTT311)
    [(ptype, flags, body)] = PacketReader().feed(packet)
    assert (ptype, flags) == (3, 0x02)
    assert body == b"\x00\x08iot/data\x02\x01{}"
    assert decode_publish(flags, body, MQTT311) == ("iot/data", b"{}", 513)
    qos0 = encode_publish(topic, b"on", 0, 0, retain=True, version=MQTT311)
    assert qos0 == b"\x31\x0c\x00\x08iot/dataon"
    assert set_dup(packet)[0] == 0x3A


def test_mqtt311_connack_has_no_receive_maximum_and_translated_codes() -> None:
    ok = decode_connack(b"\x01\x00", MQTT311)
    assert (ok.session_present, ok.reason_code, ok.receive_maximum) == (True, 0, 65535)
    assert ok.maximum_qos == 2
    assert ok.reason_string is None
    refused = {code: decode_connack(bytes([0, code]), MQTT311).reason_code for code in range(1, 7)}
    assert refused == {1: 0x84, 2: 0x85, 3: 0x88, 4: 0x86, 5: 0x87, 6: 0x80}
    assert reason_text(refused[4]) == "bad user name or password"
    with pytest.raises(ProtocolError):
        decode_connack(b"\x00", MQTT311)
    # A 3.1.1-only broker answers an MQTT 5 CONNECT with its 2-byte CONNACK, return code 1.
    assert decode_connack(b"\x00\x01").reason_code in UNSUPPORTED_VERSION_CODES


def test_mqtt311_acks_are_two_bytes() -> None:
    assert ack_reason(b"\x00\x07") == (7, 0)  # PUBACK, PUBREC, PUBCOMP alike
    assert encode_pubrel(7) == b"\x62\x02\x00\x07"  # the same in both versions
