"""Build Sparkplug B payloads as edge nodes send them (tests and the integration fixtures)."""

from __future__ import annotations

from typing import Any

from iotcollector.domain.sparkplug import Payload

INT32, INT64, UINT32, DOUBLE, FLOAT, BOOLEAN, STRING, INT8 = 3, 4, 7, 10, 9, 11, 12, 1

_FIELD = {
    1: "int_value",
    2: "int_value",
    3: "int_value",
    4: "long_value",
    5: "int_value",
    6: "int_value",
    7: "int_value",
    8: "long_value",
    9: "float_value",
    10: "double_value",
    11: "boolean_value",
    12: "string_value",
}


def metric(
    name: str | None = None,
    value: Any = None,
    *,
    alias: int | None = None,
    datatype: int | None = None,
    timestamp: int | None = None,
    unit: str | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "alias": alias,
        "datatype": datatype,
        "timestamp": timestamp,
        "unit": unit,
    }


def encode(metrics: list[dict[str, Any]], *, timestamp: int | None = None, seq: int = 0) -> bytes:
    """A serialized ``Payload``; a metric's value goes in the field its datatype names."""
    message: Any = Payload()
    if timestamp is not None:
        message.timestamp = timestamp
    message.seq = seq
    for spec in metrics:
        m = message.metrics.add()
        if spec["name"] is not None:
            m.name = spec["name"]
        if spec["alias"] is not None:
            m.alias = spec["alias"]
        if spec["datatype"] is not None:
            m.datatype = spec["datatype"]
        if spec["timestamp"] is not None:
            m.timestamp = spec["timestamp"]
        if spec["unit"] is not None:
            m.properties.keys.append("engUnit")
            prop = m.properties.values.add()
            prop.type = STRING
            prop.string_value = spec["unit"]
        if spec["value"] is not None:
            value = spec["value"]
            kind = _FIELD[spec["datatype"] or DOUBLE]
            if kind in {"int_value", "long_value"} and value < 0:
                value += 1 << (32 if kind == "int_value" else 64)  # two's complement, as Tahu
            setattr(m, kind, value)
    data: bytes = message.SerializeToString()
    return data
