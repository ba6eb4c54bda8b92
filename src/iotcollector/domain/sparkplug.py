"""Sparkplug B: topics, payload decoding and metrics → readings, as a host application reads them.

Topics are ``spBv1.0/<group>/<type>/<edge node>[/<device>]``. The payload is the protobuf
message ``Payload`` of the Sparkplug specification (Eclipse Tahu's ``sparkplug_b.proto``,
package ``org.eclipse.tahu.protobuf``). Its schema is declared below as descriptors built at
import (no generated ``_pb2`` module, no ``protoc`` step): only the fields a host reads are
declared; the others (DataSet, Template, metadata, extensions) stay unknown fields, which
protobuf skips, and their metrics are refused by datatype.

Rules (docs/devices.md):

* device id: the edge node id for node metrics (NBIRTH/NDATA), ``<edge node>:<device>`` for
  device metrics; characters outside ``A-Z a-z 0-9 . _ : -`` become ``_``;
* sensor type (:func:`sensor_type`): the metric name with ``/`` as ``.`` and other characters
  outside ``A-Z a-z 0-9 . _ -`` as ``_``; a result longer than 20 characters becomes the first
  13 characters of its last segment, ``-``, and 6 hex digits of the SHA-1 of the full name;
* value: Int8-64, UInt8-64, Float, Double, Boolean (1/0); signed integers are read as two's
  complement; a null metric is skipped; other datatypes are refused (``unsupported_metric``);
* unit: the metric's ``engUnit`` property (as Ignition sends it) when it is a valid unit;
* time: the metric's timestamp, else the payload's, else the time of receipt (epoch ms);
* ``bdSeq`` and the ``Node Control/*``/``Device Control/*`` metrics are protocol, not data.

Pure: the alias memory is passed in (the pipeline owns it); never raises on input.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from iotcollector.domain.parse import RejectionCode, parse_reading
from iotcollector.domain.reading import Reading, Rejection

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from google.protobuf.message import Message

NAMESPACE: Final = "spBv1.0"


class SparkplugCode(StrEnum):
    """Rejection codes of Sparkplug messages (bounded: metric labels)."""

    INVALID_TOPIC = "invalid_topic"
    INVALID_PROTOBUF = "invalid_protobuf"
    UNKNOWN_ALIAS = "unknown_alias"
    UNSUPPORTED_METRIC = "unsupported_metric"


class MessageType(StrEnum):
    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    NDATA = "NDATA"
    DDATA = "DDATA"
    NCMD = "NCMD"
    DCMD = "DCMD"
    STATE = "STATE"


# Sparkplug datatypes, as numbered in the specification and in Tahu's schema.
_SIGNED_BITS: Final = {1: 8, 2: 16, 3: 32, 4: 64}
_UNSIGNED: Final = frozenset({5, 6, 7, 8})
_FLOATS: Final = frozenset({9, 10})
BOOLEAN: Final = 11
_TYPE_NAMES: Final = [
    "Unknown",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "UInt8",
    "UInt16",
    "UInt32",
    "UInt64",
    "Float",
    "Double",
    "Boolean",
    "String",
    "DateTime",
    "Text",
    "UUID",
    "DataSet",
    "Bytes",
    "File",
    "Template",
]
# The birth/death sequence number of an edge node's session (NBIRTH and NDEATH).
BD_SEQ: Final = "bdSeq"
_SKIPPED_NAMES: Final = (BD_SEQ,)
_SKIPPED_PREFIXES: Final = ("Node Control/", "Device Control/")
_NOT_DEVICE_CHARS: Final = re.compile(r"[^A-Za-z0-9._:-]")
_NOT_SENSOR_CHARS: Final = re.compile(r"[^A-Za-z0-9._-]")
_MAX_SENSOR_CHARS: Final = 20
_MAX_DEVICE_CHARS: Final = 50
_MAX_UNIT_CHARS: Final = 10
_KEPT_NAME_CHARS: Final = 64
MAX_TOPIC_CHARS: Final = 256


def _schema() -> tuple[type[Message], type[Message]]:
    """The ``Payload`` and ``Payload.Metric`` classes, from descriptors of the spec's fields."""
    f = descriptor_pb2.FieldDescriptorProto
    optional, repeated = f.LABEL_OPTIONAL, f.LABEL_REPEATED

    def fields(msg: descriptor_pb2.DescriptorProto, *specs: tuple[str, int, int, int]) -> None:
        for name, number, kind, label in specs:
            msg.field.add(name=name, number=number, type=kind, label=label)

    file = descriptor_pb2.FileDescriptorProto(
        name="iotcollector/sparkplug_b.proto", package="org.eclipse.tahu.protobuf", syntax="proto2"
    )
    payload = file.message_type.add(name="Payload")
    prop_value = payload.nested_type.add(name="PropertyValue")
    fields(prop_value, ("type", 1, f.TYPE_UINT32, optional), ("is_null", 2, f.TYPE_BOOL, optional))
    prop_value.oneof_decl.add(name="value")
    for name, number, kind in (
        ("int_value", 3, f.TYPE_UINT32),
        ("long_value", 4, f.TYPE_UINT64),
        ("float_value", 5, f.TYPE_FLOAT),
        ("double_value", 6, f.TYPE_DOUBLE),
        ("boolean_value", 7, f.TYPE_BOOL),
        ("string_value", 8, f.TYPE_STRING),
    ):
        prop_value.field.add(name=name, number=number, type=kind, label=optional, oneof_index=0)
    prop_set = payload.nested_type.add(name="PropertySet")
    fields(prop_set, ("keys", 1, f.TYPE_STRING, repeated))
    prop_set.field.add(
        name="values",
        number=2,
        type=f.TYPE_MESSAGE,
        label=repeated,
        type_name=".org.eclipse.tahu.protobuf.Payload.PropertyValue",
    )
    metric = payload.nested_type.add(name="Metric")
    fields(
        metric,
        ("name", 1, f.TYPE_STRING, optional),
        ("alias", 2, f.TYPE_UINT64, optional),
        ("timestamp", 3, f.TYPE_UINT64, optional),
        ("datatype", 4, f.TYPE_UINT32, optional),
        ("is_historical", 5, f.TYPE_BOOL, optional),
        ("is_transient", 6, f.TYPE_BOOL, optional),
        ("is_null", 7, f.TYPE_BOOL, optional),
    )
    metric.field.add(
        name="properties",
        number=9,
        type=f.TYPE_MESSAGE,
        label=optional,
        type_name=".org.eclipse.tahu.protobuf.Payload.PropertySet",
    )
    metric.oneof_decl.add(name="value")
    for name, number, kind in (
        ("int_value", 10, f.TYPE_UINT32),
        ("long_value", 11, f.TYPE_UINT64),
        ("float_value", 12, f.TYPE_FLOAT),
        ("double_value", 13, f.TYPE_DOUBLE),
        ("boolean_value", 14, f.TYPE_BOOL),
        ("string_value", 15, f.TYPE_STRING),
        ("bytes_value", 16, f.TYPE_BYTES),
    ):
        metric.field.add(name=name, number=number, type=kind, label=optional, oneof_index=0)
    fields(
        payload,
        ("timestamp", 1, f.TYPE_UINT64, optional),
        ("seq", 3, f.TYPE_UINT64, optional),
        ("uuid", 4, f.TYPE_STRING, optional),
        ("body", 5, f.TYPE_BYTES, optional),
    )
    payload.field.add(
        name="metrics",
        number=2,
        type=f.TYPE_MESSAGE,
        label=repeated,
        type_name=".org.eclipse.tahu.protobuf.Payload.Metric",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    payload_class = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("org.eclipse.tahu.protobuf.Payload")
    )
    metric_class = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("org.eclipse.tahu.protobuf.Payload.Metric")
    )
    return payload_class, metric_class


# The schema is a constant, like a compiled regular expression: built once, never changed.
Payload, Metric = _schema()


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed Sparkplug topic; ``device`` is ``None`` for node-level messages."""

    group: str
    kind: MessageType
    node: str
    device: str | None

    @property
    def node_key(self) -> str:
        """The edge node, the unit the alias memory is kept by: ``<group>/<node>``."""
        return f"{self.group}/{self.node}"

    @property
    def device_id(self) -> str:
        """Our device id for this topic's metrics (see the module's rules)."""
        node = _identifier(self.node)
        return node if self.device is None else _identifier(f"{node}:{self.device}")


def rebirth_request(now_ms: int) -> bytes:
    """The NCMD payload asking an edge node to send its births again (``Node Control/Rebirth``)."""
    message: Any = Payload()
    message.timestamp = now_ms
    metric = message.metrics.add()
    metric.name = "Node Control/Rebirth"
    metric.timestamp = now_ms
    metric.datatype = BOOLEAN
    metric.boolean_value = True
    data: bytes = message.SerializeToString()
    return data


def parse_topic(topic: str) -> Topic | Rejection | None:
    """The parsed topic; ``None`` for what a host does not store (commands, STATE)."""
    if len(topic) > MAX_TOPIC_CHARS:  # the host keeps node and device names: bounded
        return Rejection(
            SparkplugCode.INVALID_TOPIC,
            f"{topic[:80]!r}... is longer than {MAX_TOPIC_CHARS} characters",
        )
    levels = topic.split("/")
    if levels[0] != NAMESPACE or len(levels) < 3:
        return Rejection(
            SparkplugCode.INVALID_TOPIC,
            f"{topic[:80]!r} is not spBv1.0/<group>/<message type>/<edge node>[/<device>]",
        )
    if levels[1] == MessageType.STATE:
        return None
    try:
        kind = MessageType(levels[2])
    except ValueError:
        kind = None
    device_level = kind in {MessageType.DBIRTH, MessageType.DDEATH, MessageType.DDATA}
    if kind is None or (len(levels) != (5 if device_level else 4) and kind != MessageType.DCMD):
        return Rejection(
            SparkplugCode.INVALID_TOPIC,
            f"{topic[:80]!r} is not spBv1.0/<group>/<message type>/<edge node>[/<device>]",
        )
    if kind in {MessageType.NCMD, MessageType.DCMD, MessageType.STATE}:
        return None
    return Topic(levels[1], kind, levels[3], levels[4] if device_level else None)


@dataclass(frozen=True, slots=True)
class MetricDef:
    """What a birth certificate says of one metric: its name (and our sensor type for it),
    datatype and unit."""

    name: str
    datatype: int
    unit: str
    sensor_type: str


@dataclass(slots=True)
class Decoded:
    """The readings of one Sparkplug message, the aliases it defined, and its one rejection."""

    readings: list[Reading] = field(default_factory=list)
    defined: dict[int, MetricDef] = field(default_factory=dict)
    rejection: Rejection | None = None
    unknown_aliases: int = 0


def decode_payload(payload: bytes) -> Any:
    """The protobuf ``Payload`` (a class built at run time: typed ``Any``), or an
    ``invalid_protobuf`` :class:`Rejection`."""
    message = Payload()
    try:
        message.ParseFromString(payload)
    except (DecodeError, RecursionError, ValueError) as exc:
        return Rejection(
            SparkplugCode.INVALID_PROTOBUF,
            f"payload is not a Sparkplug B protobuf Payload ({str(exc)[:80]})",
        )
    return message


def birth_death_seq(message: Any) -> int | None:
    """The ``bdSeq`` metric's value of a decoded NBIRTH or NDEATH, or ``None`` without one."""
    for metric in message.metrics:
        which = metric.WhichOneof("value")
        if metric.name == BD_SEQ and which in {"int_value", "long_value"}:
            value: int = getattr(metric, which)
            return value
    return None


def too_many_metrics(count: int, limit: int) -> Rejection:
    """A payload with more metrics than IOT_MAX_READINGS_PER_MESSAGE: refused before reading."""
    return Rejection(
        RejectionCode.TOO_MANY_READINGS,
        f"the payload holds {count} metrics, more than the limit of {limit} a message",
    )


def read_metrics(
    topic: Topic,
    message: Any,
    aliases: Mapping[int, MetricDef],
    *,
    received_at: datetime,
    max_future_skew_s: float,
) -> Decoded:
    """The readings of a decoded ``Payload``; a birth's metrics also define aliases.

    ``aliases`` is the edge node's memory (from its births); data metrics that carry only an
    alias are named by it. Problems are gathered into one rejection (the first problem's code).
    """
    out = Decoded()
    birth = topic.kind in {MessageType.NBIRTH, MessageType.DBIRTH}
    device_id = topic.device_id
    default_ms = message.timestamp if message.HasField("timestamp") else None
    problems: list[tuple[str, str]] = []
    unknown: list[int] = []
    for metric in message.metrics:
        has_alias = metric.HasField("alias")
        known = aliases.get(metric.alias) if has_alias else None
        if metric.HasField("name"):
            name: str = metric.name
            sensor = sensor_type(name)
        elif known is not None:
            name, sensor = known.name, known.sensor_type
        else:
            unknown.append(metric.alias)
            continue
        datatype = (
            metric.datatype if metric.HasField("datatype") else known.datatype if known else 0
        )
        unit = _unit(metric) if metric.HasField("properties") else known.unit if known else ""
        if birth and has_alias:
            # The name is kept only to recognise protocol metrics and to name problems: a
            # prefix of it, so a birth's long names cost no memory beyond its alias count.
            out.defined[metric.alias] = MetricDef(name[:_KEPT_NAME_CHARS], datatype, unit, sensor)
        if name in _SKIPPED_NAMES or name.startswith(_SKIPPED_PREFIXES) or metric.is_null:
            continue
        value = _value(metric, datatype)
        if value is None:
            shown = _TYPE_NAMES[datatype] if datatype < len(_TYPE_NAMES) else str(datatype)
            problems.append((SparkplugCode.UNSUPPORTED_METRIC, f"{name[:40]!r} ({shown})"))
            continue
        stamp = metric.timestamp if metric.HasField("timestamp") else default_ms
        result = parse_reading(
            {
                "device_id": device_id,
                "sensor_type": sensor,
                "value": value,
                "unit": unit,
                "timestamp": stamp,
            },
            received_at=received_at,
            max_future_skew_s=max_future_skew_s,
        )
        if isinstance(result, Rejection):
            problems.append((result.code, f"{name[:40]!r}: {result.detail}"))
        else:
            out.readings.append(result)
    if unknown:
        shown = ", ".join(str(a) for a in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        why = f"aliases {shown} of edge node {topic.node_key!r} are not known: no birth"
        why += " certificate (NBIRTH/DBIRTH) defined them yet"
        problems.insert(0, (SparkplugCode.UNKNOWN_ALIAS, why))
        out.unknown_aliases = len(unknown)
    if problems:
        details = "; ".join(detail for _, detail in problems[:6])
        more = f"; and {len(problems) - 6} more" if len(problems) > 6 else ""
        label = "metrics not stored: " if problems[0][0] != SparkplugCode.UNKNOWN_ALIAS else ""
        out.rejection = Rejection(problems[0][0], f"{topic.kind}: {label}{details}{more}")
    return out


def _value(metric: Any, datatype: int) -> float | None:  # noqa: PLR0911 - one return per type
    which = metric.WhichOneof("value")
    if which is None:
        return None
    if datatype == BOOLEAN or (datatype == 0 and which == "boolean_value"):
        return 1.0 if metric.boolean_value else 0.0 if which == "boolean_value" else None
    if which in {"int_value", "long_value"}:
        raw: int = getattr(metric, which)
        bits = _SIGNED_BITS.get(datatype)
        if bits is not None:
            if which == "int_value" and raw >= 1 << 31:
                return float(raw - (1 << 32))
            return float(raw - (1 << bits) if raw >= 1 << (bits - 1) else raw)
        return float(raw) if datatype in _UNSIGNED or datatype == 0 else None
    if which in {"float_value", "double_value"}:
        return float(getattr(metric, which)) if datatype in _FLOATS or datatype == 0 else None
    return None


def _unit(metric: Any) -> str:
    props = metric.properties
    for key, value in zip(props.keys, props.values, strict=False):
        if key == "engUnit" and value.WhichOneof("value") == "string_value":
            unit: str = value.string_value
            return unit if len(unit) <= _MAX_UNIT_CHARS and unit.isprintable() else ""
    return ""


def sensor_type(name: str) -> str:
    """Our sensor type for a metric name (the module's rule; stable, at most 20 characters)."""
    text = _NOT_SENSOR_CHARS.sub("_", name.replace("/", "."))
    if 0 < len(text) <= _MAX_SENSOR_CHARS:
        return text
    last = _NOT_SENSOR_CHARS.sub("_", name.rsplit("/", 1)[-1])[:13] or "metric"
    return f"{last}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"  # noqa: S324 - a name, not a secret


def _identifier(text: str) -> str:
    cleaned = _NOT_DEVICE_CHARS.sub("_", text)
    if len(cleaned) <= _MAX_DEVICE_CHARS:
        return cleaned
    return f"{cleaned[:43]}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"  # noqa: S324
