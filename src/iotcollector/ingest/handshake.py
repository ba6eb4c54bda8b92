"""The MQTT client handshake, one for the collector's subscriber and the simulator's devices.

CONNECT and CONNACK (MQTT 5 or 3.1.1), the fallback from 5 to 3.1.1 when the broker does
not speak 5, the refusal's reason in words whatever the version, and the keep alive the
broker imposes: a CONNACK's Server Keep Alive replaces the one the client asked for
(MQTT-3.2.2-21).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from iotcollector.errors import MqttRefusedError
from iotcollector.ingest.codec import (
    CONNECT,
    MQTT5,
    MQTT311,
    ProtocolError,
    decode_varint,
    encode_remaining_length,
    encode_string,
    reason_text,
)

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable

# CONNACK codes meaning "speak an older protocol": 3.1.1's 0x01, MQTT 5's 0x84.
UNSUPPORTED_VERSION_CODES = frozenset({0x01, 0x84})
# MQTT 3.1.1 CONNACK return codes as the MQTT 5 reason codes of the same meaning.
MQTT311_CONNACK_REASONS = {0x01: 0x84, 0x02: 0x85, 0x03: 0x88, 0x04: 0x86, 0x05: 0x87}

_PROP_SESSION_EXPIRY = 0x11
_PROP_SERVER_KEEP_ALIVE = 0x13
_PROP_REASON_STRING = 0x1F
_PROP_RECEIVE_MAXIMUM = 0x21
_PROP_MAXIMUM_QOS = 0x24
_PROP_RETAIN_AVAILABLE = 0x25
_PROP_MAXIMUM_PACKET_SIZE = 0x27


@dataclass(frozen=True, slots=True)
class Will:
    """A Last Will: what the broker publishes for a client that vanishes without DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def encode_connect(  # noqa: PLR0913 - the CONNECT fields
    client_id: str,
    *,
    keepalive: int,
    clean_session: bool = True,
    session_expiry_s: int = 0,
    receive_maximum: int | None = None,
    will: Will | None = None,
    username: str | None = None,
    password: str | None = None,
    version: int = MQTT5,
) -> bytes:
    """CONNECT, MQTT 5 or 3.1.1 (level 4: no properties, neither the connection's nor the will's).

    MQTT 5 properties: Session Expiry Interval unless 0 (the default: no session kept after
    the connection), Receive Maximum when given (capped at 65535). MQTT 3.1.1 forbids a
    password without a user name: there the password goes only with a user name.
    """
    mqtt5 = version == MQTT5
    flags = 0x02 if clean_session else 0
    payload = encode_string(client_id)
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload += (b"\x00" if mqtt5 else b"") + encode_string(will.topic)
        payload += encode_string(will.payload)
    if username is not None:
        flags |= 0x80
        payload += encode_string(username)
    if password is not None and (username is not None or mqtt5):
        flags |= 0x40
        payload += encode_string(password)
    properties = b""
    if mqtt5:
        props = b""
        if session_expiry_s:
            props += bytes([_PROP_SESSION_EXPIRY]) + struct.pack("!I", session_expiry_s)
        if receive_maximum is not None:
            props += bytes([_PROP_RECEIVE_MAXIMUM]) + struct.pack(
                "!H", max(1, min(receive_maximum, 65535))
            )
        properties = encode_remaining_length(len(props)) + props
    variable = (
        encode_string("MQTT") + bytes([version, flags]) + struct.pack("!H", keepalive) + properties
    )
    body = variable + payload
    return bytes([CONNECT << 4]) + encode_remaining_length(len(body)) + body


@dataclass(frozen=True, slots=True)
class ConnAck:
    """A CONNACK; ``reason_code`` is MQTT 5's whatever the version (0: accepted).

    ``server_keep_alive``: the keep alive the broker imposes, if it sent one.
    """

    session_present: bool
    reason_code: int
    receive_maximum: int = 65535
    maximum_qos: int = 2
    retain_available: bool = True
    maximum_packet_size: int | None = None
    reason_string: str | None = None
    server_keep_alive: int | None = None

    def refusal(self) -> str:
        """The reason of a refused connection, in words."""
        text = reason_text(self.reason_code)
        return f"{text} ({self.reason_string})" if self.reason_string else text


def connack_reason(code: int, version: int) -> int:
    """A CONNACK's code as an MQTT 5 reason code (3.1.1 return codes translated; 0 = accepted)."""
    if version == MQTT5 or not code:
        return code
    return MQTT311_CONNACK_REASONS.get(code, 0x80)


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
    """CONNACK with the properties a client must respect.

    A 3.1.1 return code is translated to MQTT 5's (:func:`connack_reason`); 3.1.1 has no
    properties, so no Receive Maximum nor Server Keep Alive: the client's own apply.
    """
    if len(body) < 2:
        raise ProtocolError("CONNACK too short")
    if version != MQTT5:
        return ConnAck(bool(body[0] & 0x01), connack_reason(body[1], version))
    props = _properties(body, 2) if len(body) > 2 else {}
    reason = props.get(_PROP_REASON_STRING)
    packet_size = props.get(_PROP_MAXIMUM_PACKET_SIZE)
    keep_alive = props.get(_PROP_SERVER_KEEP_ALIVE)
    return ConnAck(
        session_present=bool(body[0] & 0x01),
        reason_code=body[1],
        receive_maximum=int(props.get(_PROP_RECEIVE_MAXIMUM, 65535)),
        maximum_qos=int(props.get(_PROP_MAXIMUM_QOS, 2)),
        retain_available=bool(props.get(_PROP_RETAIN_AVAILABLE, 1)),
        maximum_packet_size=packet_size if isinstance(packet_size, int) else None,
        reason_string=reason.decode(errors="replace") if isinstance(reason, bytes) else None,
        server_keep_alive=keep_alive if isinstance(keep_alive, int) else None,
    )


def protocol_name(version: int) -> str:
    """``"5"`` or ``"3.1.1"``, as ``--protocol`` and IOT_MQTT_PROTOCOL spell it."""
    return "5" if version == MQTT5 else "3.1.1"


def protocol_version(name: str) -> int:
    """The CONNECT protocol level of ``"5"`` or ``"3.1.1"``."""
    versions = {"5": MQTT5, "3.1.1": MQTT311}
    if name not in versions:
        raise ValueError(f"MQTT protocol must be 5 or 3.1.1, not {name!r}")
    return versions[name]


class Handshaking(Protocol):
    """What the handshake needs of a connection's :class:`asyncio.Protocol`."""

    @property
    def transport(self) -> asyncio.Transport | None: ...

    @property
    def connack(self) -> asyncio.Future[bytes]:
        """Resolved with the body of the first CONNACK (or failed when the connection drops)."""


_P = TypeVar("_P", bound=Handshaking)


async def handshake(
    open_connection: Callable[[int], Awaitable[_P]],
    connect_packet: Callable[[int], bytes],
    *,
    client_id: str,
    version: int,
    keepalive_s: int,
) -> tuple[_P, ConnAck, int, int]:
    """Connect, send CONNECT, read CONNACK: return (protocol, CONNACK, version, keep alive).

    ``open_connection(version)`` opens a transport whose protocol decodes that version;
    ``connect_packet(version)`` is the CONNECT to send. A broker that refuses MQTT 5 as an
    unsupported version is asked again, on a new connection, in MQTT 3.1.1: the version
    returned is the one to keep for reconnects. The keep alive is the CONNACK's Server Keep
    Alive when it has one, else ``keepalive_s``. A refusal closes the connection and raises
    :class:`~iotcollector.errors.MqttRefusedError` with the reason in words.
    """
    while True:
        proto = await open_connection(version)
        assert proto.transport is not None  # connection_made comes before the opener returns
        proto.transport.write(connect_packet(version))
        ack = decode_connack(await proto.connack, version)
        if ack.reason_code in UNSUPPORTED_VERSION_CODES and version == MQTT5:
            proto.transport.close()
            version = MQTT311
            continue
        if ack.reason_code:
            proto.transport.close()
            raise MqttRefusedError(
                f"broker refused {client_id!r}: {ack.refusal()}", ack.reason_code
            )
        keepalive = ack.server_keep_alive if ack.server_keep_alive is not None else keepalive_s
        return proto, ack, version, keepalive
