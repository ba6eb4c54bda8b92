"""The publisher's MQTT 5 and 3.1.1 packets."""

from __future__ import annotations

from iotcollector.ingest.codec import (
    MQTT311,
    PacketReader,
    decode_publish,
)
from iotcollector.simulator.packets import (
    ack_reason,
    encode_publish,
    encode_pubrel,
    set_dup,
    topic_prefix,
)


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


def test_acks() -> None:
    assert ack_reason(b"\x01\x02") == (258, 0)
    assert ack_reason(b"\x01\x02\x10\x00") == (258, 0x10)
    assert encode_pubrel(258) == b"\x62\x02\x01\x02"


# -- MQTT 3.1.1 ---------------------------------------------------------------------------------


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


def test_mqtt311_acks_are_two_bytes() -> None:
    assert ack_reason(b"\x00\x07") == (7, 0)  # PUBACK, PUBREC, PUBCOMP alike
    assert encode_pubrel(7) == b"\x62\x02\x00\x07"  # the same in both versions
