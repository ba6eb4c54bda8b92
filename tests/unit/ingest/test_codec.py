"""The MQTT 5 codec: round trips, split streams, malformed input."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotcollector.ingest import codec

if TYPE_CHECKING:
    from collections.abc import Iterator


def _publish_packet(
    topic: str, payload: bytes, packet_id: int | None, *, props: bytes = b""
) -> bytes:
    qos = 1 if packet_id is not None else 0
    body = len(topic.encode()).to_bytes(2, "big") + topic.encode()
    if packet_id is not None:
        body += packet_id.to_bytes(2, "big")
    body += codec.encode_remaining_length(len(props)) + props + payload
    return bytes([0x30 | (qos << 1)]) + codec.encode_remaining_length(len(body)) + body


@pytest.mark.parametrize(
    ("length", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16383, b"\xff\x7f"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (268_435_455, b"\xff\xff\xff\x7f"),
    ],
)
def test_remaining_length_matches_the_spec_examples(length: int, encoded: bytes) -> None:
    assert codec.encode_remaining_length(length) == encoded
    assert codec.decode_varint(encoded, 0) == (length, len(encoded))


def test_remaining_length_out_of_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        codec.encode_remaining_length(268_435_456)


def test_subscribe_asks_qos1_for_every_filter() -> None:
    packet = codec.encode_subscribe(7, [("$share/g/iot/data", 1), ("iot/#", 1)])
    assert packet[0] == 0x82
    assert b"\x00\x11$share/g/iot/data\x01" in packet
    assert packet.endswith(b"\x00\x05iot/#\x01")


def test_pubacks_are_one_buffer() -> None:
    assert codec.encode_pubacks([1, 258]) == b"\x40\x02\x00\x01\x40\x02\x01\x02"


def test_publish_with_properties_decodes() -> None:
    raw = _publish_packet("iot/data", b"{}", 42, props=b"\x01\x01")
    reader = codec.PacketReader()
    [(ptype, flags, body)] = reader.feed(raw)
    assert ptype == codec.PUBLISH
    assert codec.decode_publish(flags, body) == ("iot/data", b"{}", 42)


def test_suback_and_reason_texts() -> None:
    assert codec.decode_suback(b"\x00\x01\x00\x01\x87") == (1, [1, 0x87])
    assert codec.reason_text(0x87) == "not authorized"
    assert codec.reason_text(0xFE) == "reason code 0xfe"


def test_malformed_remaining_length_is_a_protocol_error() -> None:
    with pytest.raises(codec.ProtocolError):
        codec.PacketReader().feed(b"\x30\xff\xff\xff\xff\x01")


def test_truncated_publish_is_a_protocol_error() -> None:
    with pytest.raises(codec.ProtocolError):
        codec.decode_publish(0x02, b"\x00\x05ab")


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(
        st.tuples(st.text(min_size=1, max_size=30), st.binary(max_size=300), st.integers(1, 65535)),
        min_size=1,
        max_size=20,
    ),
    cuts=st.lists(st.integers(1, 50), max_size=40),
)
def test_stream_split_anywhere_yields_the_same_packets(
    messages: list[tuple[str, bytes, int]], cuts: list[int]
) -> None:
    stream = b"".join(_publish_packet(t, p, pid) for t, p, pid in messages)
    reader = codec.PacketReader()
    got = []
    pos = 0
    for cut in [*cuts, len(stream)]:
        got.extend(reader.feed(stream[pos : pos + cut]))
        pos += cut
    got.extend(reader.feed(stream[pos:]))
    assert [codec.decode_publish(f, b) for _, f, b in got] == messages


def test_mqtt311_subscribe_and_publish_have_no_properties() -> None:
    assert codec.encode_subscribe(1, [("a", 1)], codec.MQTT311) == b"\x82\x06\x00\x01\x00\x01a\x01"
    body = b"\x00\x01a\x00\x07payload"
    assert codec.decode_publish(0x02, body, codec.MQTT311) == ("a", b"payload", 7)
    assert codec.decode_suback(b"\x00\x01\x01", codec.MQTT311) == (1, [1])


def test_encode_string_is_length_prefixed() -> None:
    assert codec.encode_string("ab") == b"\x00\x02ab"
    assert codec.encode_string(b"\xff") == b"\x00\x01\xff"
    with pytest.raises(ValueError, match="65535"):
        codec.encode_string(b"x" * 65536)


def test_subscribe_carries_retain_handling_under_mqtt5_only() -> None:
    filters = [("iot/data", 1), ("$SYS/#", 0)]
    handling = [codec.RETAIN_SEND_IF_NEW_SUBSCRIPTION, codec.RETAIN_SEND_AT_SUBSCRIBE]
    packet = codec.encode_subscribe(1, filters, retain_handling=handling)
    assert b"\x00\x08iot/data\x11" in packet  # QoS 1, Retain Handling 1
    assert packet.endswith(b"\x00\x06$SYS/#\x00")
    legacy = codec.encode_subscribe(1, filters, codec.MQTT311, retain_handling=handling)
    assert b"\x00\x08iot/data\x01" in legacy


def test_incoming_publish_keeps_a_prefix_its_size_and_the_retain_flag() -> None:
    raw = _publish_packet("iot/data", b"0123456789", 9)
    [(_, flags, body)] = codec.PacketReader().feed(raw)
    whole = codec.decode_incoming(flags, body)
    assert (whole.payload, whole.size, whole.retain) == (b"0123456789", 10, False)
    cut = codec.decode_incoming(flags | 0x01, body, keep=4)
    assert (cut.topic, cut.payload, cut.packet_id, cut.size, cut.retain) == (
        "iot/data",
        b"0123",
        9,
        10,
        True,
    )


def test_reader_pops_only_as_many_packets_as_asked_and_keeps_the_rest() -> None:
    reader = codec.PacketReader()
    reader.push(b"".join(_publish_packet("t", b"x" * 10, i) for i in range(1, 6)))
    assert len(reader.pop(1 << 20, max_packets=2)) == 2
    assert len(reader.pop(1)) == 1  # the byte budget stops after the packet that reaches it
    assert reader.has_packet()
    assert len(reader.pop(1 << 20)) == 2
    assert not reader.has_packet()
    reader.push(_publish_packet("t", b"x", 7)[:-1])
    assert not reader.has_packet()
    assert reader.pop(1 << 20) == []


@pytest.mark.parametrize("version", [codec.MQTT5, codec.MQTT311])
def test_qos0_publish_round_trips(version: int) -> None:
    packet = codec.encode_publish_qos0("spBv1.0/g/NCMD/n1", b"\x00\x01payload", version)
    [(ptype, flags, body)] = codec.PacketReader().feed(packet)
    assert (ptype, flags) == (codec.PUBLISH, 0)
    assert codec.decode_publish(flags, body, version) == (
        "spBv1.0/g/NCMD/n1",
        b"\x00\x01payload",
        None,
    )


_MAX_PUBLISH = 256 * 1024 + 128 * 1024
_PREFIX = 4096


def _publish_head(
    topic: str, payload_size: int, packet_id: int | None, version: int, props: bytes = b""
) -> bytes:
    """The fixed and variable header of a PUBLISH whose payload follows separately."""
    body = codec.encode_string(topic)
    if packet_id is not None:
        body += packet_id.to_bytes(2, "big")
    if version == codec.MQTT5:
        body += codec.encode_remaining_length(len(props)) + props
    first = 0x30 | (0x02 if packet_id is not None else 0)
    return bytes([first]) + codec.encode_remaining_length(len(body) + payload_size) + body


def _payload_chunks(size: int, chunk: int) -> Iterator[bytes]:
    """``size`` bytes of payload (byte n is n % 251) in chunks, never built whole."""
    pattern = bytes(range(251)) * (chunk // 251 + 2)
    sent = 0
    while sent < size:
        n = min(chunk, size - sent)
        yield pattern[sent % 251 : sent % 251 + n]
        sent += n


def _expected_prefix() -> bytes:
    return b"".join(_payload_chunks(_PREFIX, _PREFIX))


@pytest.mark.parametrize("version", [codec.MQTT5, codec.MQTT311])
def test_a_huge_publish_streams_through_a_bounded_reader(version: int) -> None:
    size = 64 * 1024 * 1024
    props = b"\x01\x01" if version == codec.MQTT5 else b""
    head = _publish_head("iot/data", size, 77, version, props)
    after = _publish_head("iot/next", 2, 78, version) + b"{}"
    reader = codec.PacketReader(version, _MAX_PUBLISH, _PREFIX)
    got: list[tuple[int, int, bytes]] = []
    chunks = [head, *_payload_chunks(size, 64 * 1024)]
    chunks[-1] += after  # the next packet starts in the huge one's last chunk
    most = 0
    for data in chunks:
        reader.push(data)
        most = max(most, reader.buffered)
        got.extend(reader.pop(16 * 1024, 100))
        most = max(most, reader.buffered)
    assert most <= _MAX_PUBLISH + 64 * 1024
    assert not reader.has_packet()
    assert reader.buffered == 0
    [(ptype, flags, body), (ptype2, flags2, body2)] = got
    assert ptype == ptype2 == codec.PUBLISH
    assert len(body) == len(head) - 5 + _PREFIX  # 1 + 4 bytes of fixed header
    big = codec.decode_incoming(flags, body, version, 256 * 1024)
    assert (big.topic, big.packet_id, big.size) == ("iot/data", 77, size)
    assert big.payload == _expected_prefix()
    nxt = codec.decode_incoming(flags2, body2, version, 256 * 1024)
    assert (nxt.topic, nxt.payload, nxt.packet_id, nxt.size) == ("iot/next", b"{}", 78, 2)


@pytest.mark.parametrize("version", [codec.MQTT5, codec.MQTT311])
@pytest.mark.parametrize("packet_id", [None, 9])
def test_a_huge_publish_split_anywhere_in_its_head(version: int, packet_id: int | None) -> None:
    size = 1024 * 1024
    max_publish = 64 * 1024
    props = b"\x26\x00\x01k\x00\x01v" * 3 if version == codec.MQTT5 else b""
    head = _publish_head("iot/" + "t" * 200, size, packet_id, version, props)
    prefix = _expected_prefix()
    stream_start = head + prefix + bytes(100)
    for cut in range(1, len(stream_start)):
        reader = codec.PacketReader(version, max_publish, _PREFIX)
        got = reader.feed(stream_start[:cut]) + reader.feed(stream_start[cut:])
        got += reader.feed(bytes(size - len(prefix) - 100))
        got += reader.feed(b"\xc0\x00")  # PINGREQ
        assert reader.buffered == 0
        [(_, flags, body), (ptype, _, ping)] = got
        incoming = codec.decode_incoming(flags, body, version, 4096)
        assert (incoming.topic, incoming.packet_id, incoming.size) == (
            "iot/" + "t" * 200,
            packet_id,
            size,
        )
        assert incoming.payload == prefix
        assert (ptype, ping) == (codec.PINGREQ, b"")


def test_a_publish_is_cut_only_when_its_body_is_over_the_bound() -> None:
    payload = bytes(_MAX_PUBLISH)
    raw = _publish_packet("a", payload, 1)
    reader = codec.PacketReader(codec.MQTT5, _MAX_PUBLISH + 6, _PREFIX)
    [(_, flags, body)] = reader.feed(raw[:5000]) + reader.feed(raw[5000:])
    assert codec.decode_incoming(flags, body, codec.MQTT5).payload == payload
    reader = codec.PacketReader(codec.MQTT5, _MAX_PUBLISH + 5, _PREFIX)
    [(_, flags, body)] = reader.feed(raw[:5000]) + reader.feed(raw[5000:])
    incoming = codec.decode_incoming(flags, body, codec.MQTT5)
    assert (incoming.size, len(incoming.payload)) == (len(payload), _PREFIX)


def test_an_oversized_publish_with_a_header_over_the_bound_is_read_whole() -> None:
    props = b"\x26" + codec.encode_string("k") + codec.encode_string(b"v" * 60_000)
    raw = _publish_packet("a", bytes(100_000), 1, props=props)
    reader = codec.PacketReader(codec.MQTT5, 60_000, _PREFIX)
    got = reader.feed(raw[:10]) + reader.feed(raw[10:30_000]) + reader.feed(raw[30_000:])
    [(ptype, flags, body)] = got  # not a protocol error: the broker would resend it for ever
    assert ptype == codec.PUBLISH
    incoming = codec.decode_incoming(flags, body, codec.MQTT5, 4096)
    assert (incoming.topic, incoming.packet_id, incoming.size) == ("a", 1, 100_000)
    assert reader.buffered == 0
