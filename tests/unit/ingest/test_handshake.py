"""The MQTT client handshake: CONNECT, CONNACK, the fallback to 3.1.1, the keep alive."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from iotcollector.errors import MqttRefusedError
from iotcollector.ingest.codec import (
    MQTT5,
    MQTT311,
    PacketReader,
    ProtocolError,
    decode_varint,
    reason_text,
)
from iotcollector.ingest.handshake import (
    UNSUPPORTED_VERSION_CODES,
    Handshaking,
    Will,
    connack_reason,
    decode_connack,
    encode_connect,
    handshake,
    protocol_name,
    protocol_version,
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


def test_mqtt311_connect_without_properties() -> None:
    packet = encode_connect(
        "c",
        clean_session=False,
        keepalive=30,
        session_expiry_s=60,
        receive_maximum=10,
        version=MQTT311,
    )
    assert packet == b"\x10\x0d\x00\x04MQTT\x04\x00\x00\x1e\x00\x01c"


def test_connack_of_a_subscriber() -> None:
    ack = decode_connack(b"\x01\x00\x00")
    assert (ack.session_present, ack.reason_code, ack.server_keep_alive) == (True, 0, None)


def test_connack_server_keep_alive() -> None:
    ack = decode_connack(b"\x00\x00\x03\x13\x00\x05")
    assert ack.server_keep_alive == 5
    assert decode_connack(b"\x00\x00\x03\x13\x00\x00").server_keep_alive == 0


def test_refusal_in_words_for_both_versions() -> None:
    assert decode_connack(b"\x00\x05", MQTT311).refusal() == "not authorized"
    assert decode_connack(b"\x00\x87").refusal() == "not authorized"
    props = b"\x1f\x00\x04nope"
    refused = decode_connack(b"\x00\x86" + bytes([len(props)]) + props)
    assert refused.refusal() == "bad user name or password (nope)"


def test_protocol_names() -> None:
    assert protocol_version("5") == MQTT5
    assert protocol_version("3.1.1") == MQTT311
    assert protocol_name(MQTT311) == "3.1.1"
    assert protocol_name(MQTT5) == "5"
    with pytest.raises(ValueError, match=r"5 or 3\.1\.1"):
        protocol_version("3.1")


# -- the handshake itself, against a scripted broker --------------------------------------------


class _Transport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


class _Connection:
    """What the handshake sees of a connection: its transport and the CONNACK future."""

    def __init__(self, version: int, connack: bytes) -> None:
        self.version = version
        self.transport = _Transport()
        self.connack: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.connack.set_result(connack)


class _Broker:
    """Answers each CONNECT with the next scripted CONNACK body."""

    def __init__(self, *connacks: bytes) -> None:
        self._connacks = list(connacks)
        self.connections: list[_Connection] = []

    async def open(self, version: int) -> Handshaking:
        conn = _Connection(version, self._connacks.pop(0))
        self.connections.append(conn)
        return cast("Handshaking", conn)

    def levels(self) -> list[int]:
        """The protocol level of each CONNECT received."""
        out = []
        for conn in self.connections:
            [(ptype, _flags, body)] = PacketReader().feed(conn.transport.written)
            assert ptype == 1
            out.append(body[6])
        return out


async def _shake(
    broker: _Broker, *, version: int = MQTT5, keepalive_s: int = 30
) -> tuple[object, int, int]:
    proto, ack, got_version, keepalive = await handshake(
        broker.open,
        lambda v: encode_connect("c", keepalive=keepalive_s, version=v),
        client_id="c",
        version=version,
        keepalive_s=keepalive_s,
    )
    assert ack.reason_code == 0
    return proto, got_version, keepalive


async def test_mqtt5_accepted_keeps_the_clients_keep_alive() -> None:
    broker = _Broker(b"\x00\x00\x00")
    proto, version, keepalive = await _shake(broker)
    assert (version, keepalive) == (MQTT5, 30)
    assert proto is broker.connections[0]
    assert broker.levels() == [MQTT5]


async def test_server_keep_alive_replaces_the_clients() -> None:
    broker = _Broker(b"\x00\x00\x03\x13\x00\x07")
    _, _, keepalive = await _shake(broker, keepalive_s=60)
    assert keepalive == 7


async def test_falls_back_to_mqtt311_on_a_new_connection() -> None:
    # A 3.1.1-only broker answers an MQTT 5 CONNECT with return code 1.
    broker = _Broker(b"\x00\x01", b"\x00\x00")
    proto, version, keepalive = await _shake(broker)
    assert version == MQTT311
    assert keepalive == 30
    assert broker.levels() == [MQTT5, MQTT311]
    assert broker.connections[0].transport.closed
    assert proto is broker.connections[1]
    assert not broker.connections[1].transport.closed


async def test_mqtt311_refusal_is_named_and_closes() -> None:
    broker = _Broker(b"\x00\x05")
    with pytest.raises(MqttRefusedError, match="broker refused 'c': not authorized"):
        await _shake(broker, version=MQTT311)
    assert broker.connections[0].transport.closed


async def test_a_broker_speaking_neither_version_is_refused() -> None:
    broker = _Broker(b"\x00\x84", b"\x00\x01")
    with pytest.raises(MqttRefusedError, match="unsupported protocol version"):
        await _shake(broker)
    assert broker.levels() == [MQTT5, MQTT311]


async def test_mqtt5_refusal_with_its_reason_string() -> None:
    props = b"\x1f\x00\x03bad"
    broker = _Broker(b"\x00\x86" + bytes([len(props)]) + props)
    with pytest.raises(MqttRefusedError, match=r"bad user name or password \(bad\)"):
        await _shake(broker)


# -- CONNECT and CONNACK encoding ---------------------------------------------------------------


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


def test_connack_properties() -> None:
    props = b"\x21\x00\x14" + b"\x24\x01" + b"\x22\x00\x0a" + b"\x1f\x00\x02hi"
    ack = decode_connack(b"\x00\x00" + bytes([len(props)]) + props)
    assert (ack.receive_maximum, ack.maximum_qos, ack.reason_string) == (20, 1, "hi")
    assert decode_connack(b"\x01\x87").session_present
    with pytest.raises(ProtocolError):
        decode_connack(b"\x00")


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


def test_connect_is_mqtt5_persistent_with_credentials() -> None:
    packet = encode_connect(
        "collector-1",
        clean_session=False,
        keepalive=30,
        session_expiry_s=3600,
        receive_maximum=100_000,
        username="u",
        password="p",
    )
    assert packet[0] == 0x10
    length, pos = decode_varint(packet, 1)
    body = packet[pos:]
    assert len(body) == length
    assert body[:6] == b"\x00\x04MQTT"
    assert body[6] == 5
    assert body[7] == 0xC0  # user name + password, clean start off
    assert body[8:10] == (30).to_bytes(2, "big")
    assert body[10] == 8  # properties: session expiry (5 bytes) + receive maximum (3 bytes)
    assert body[11:16] == b"\x11" + (3600).to_bytes(4, "big")
    assert body[16:19] == b"\x21\xff\xff"  # capped at 65535
    assert body.endswith(b"\x00\x01u\x00\x01p")


def test_connect_properties_only_when_asked() -> None:
    # No session kept and no Receive Maximum: an empty property list (a device's CONNECT).
    bare = encode_connect("d", keepalive=10)
    assert bare == b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x0a\x00\x00\x01d"
    with_max = encode_connect("d", keepalive=10, receive_maximum=0)
    assert with_max[12:16] == b"\x03\x21\x00\x01"  # at least 1


def test_mqtt311_connect_with_credentials_and_will() -> None:
    packet = encode_connect(
        "c",
        clean_session=True,
        keepalive=5,
        session_expiry_s=60,  # no such thing in 3.1.1: ignored
        receive_maximum=10,
        will=Will("s/c", b"off"),
        username="u",
        password="p",
        version=MQTT311,
    )
    assert packet == (
        b"\x10\x1d\x00\x04MQTT\x04\xee\x00\x05\x00\x01c\x00\x03s/c\x00\x03off\x00\x01u\x00\x01p"
    )


def test_connack_reason_translates_mqtt311_return_codes() -> None:
    assert connack_reason(0, MQTT311) == 0
    assert connack_reason(0x05, MQTT311) == 0x87
    assert connack_reason(0x01, MQTT311) in UNSUPPORTED_VERSION_CODES
    assert connack_reason(0x86, MQTT5) == 0x86
    assert reason_text(connack_reason(0x04, MQTT311)) == ("bad user name or password")
