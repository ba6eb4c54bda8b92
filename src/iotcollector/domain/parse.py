"""Parse one raw message (MQTT payload or HTTP body) into readings and rejections.

``parse_message`` is pure (no I/O, no logging) and never raises for any input bytes: every
problem becomes a :class:`~iotcollector.domain.reading.Rejection` whose ``code`` is one of
:class:`RejectionCode` (a small, fixed set: they are metric label values).

Accepted shapes (README, "Messages"):

* one reading: ``{"device_id", "sensor_type", "value", "unit"?, "timestamp"?}``; unknown extra
  keys are ignored;
* a JSON array of readings; each element stands alone (valid ones become readings, each invalid
  one a rejection with its ``index``); an element may itself be the multi-sensor form; an empty
  array is rejected (``empty_array``);
* multi-sensor (older devices): an object with no ``sensor_type`` key. Every field other than
  ``device_id``/``deviceId``/``timestamp``/``unit`` and :data:`MULTI_SENSOR_METADATA_KEYS` is a
  sensor: its key is the sensor type (same rule as ``sensor_type``), its value must be numeric,
  its unit comes from :data:`DEFAULT_UNITS` (looked up case-insensitively; ``""`` if unknown).

Decisions:

* ``deviceId`` is an alias of ``device_id`` in every form; both present and different is
  ``conflicting_fields``.
* A multi-sensor object is all or nothing: a non-numeric sensor field (a word, ``null``, a
  list, a boolean...), a bad sensor key, or no sensor field at all rejects the whole object,
  naming the field. A top-level ``unit`` in that form is ignored (units come from the table).
  An object with ``value`` but no ``sensor_type`` is rejected as ``missing_field`` (it is a
  single reading missing its type, not a sensor called "value").
* ``value``: a JSON number (``true``/``false`` are not numbers) or a decimal string
  (surrounding whitespace stripped; ASCII digits only: no ``nan``, ``inf``, hex, ``_``,
  or empty). Magnitude above 1e15 is ``value_out_of_range``.
* ``unit``: a string of 0-10 printable characters (control characters are rejected); absent
  or ``null`` means ``""``.
* ``timestamp``: absent or ``null`` means ``received_at``. A string must be ISO 8601 (what
  ``datetime.fromisoformat`` accepts: ``Z`` and offsets, no offset = UTC; a date alone is
  midnight UTC); digits beyond microseconds are truncated. A JSON number is epoch seconds, or
  epoch milliseconds if above 1e11; fractional epochs are rounded to the nearest microsecond
  (truncating a float would turn ``.123`` into ``.122999``). Numeric *strings* are not epochs.
  Before 2000-01-01T00:00:00Z, or more than ``max_future_skew_s`` after ``received_at``, is
  ``timestamp_out_of_range`` (both bounds inclusive of the limit itself).
* JSON nested deeper than orjson's limit (1024) is ``too_deep``.
* Work is bounded per message: an array of more than ``max_readings`` items, or a message that
  would yield more than ``max_readings`` readings (multi-sensor fields count one each), is
  rejected whole (``too_many_readings``) before its items are validated.

:func:`dead_letter_reason` turns the rejections of one message into the reason of its one
dead-letter row: a message never writes more than one row to ``iot_rejected``.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import msgspec
import orjson

from iotcollector.domain.reading import ParseResult, Reading, Rejection

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DEFAULT_UNITS",
    "MULTI_SENSOR_METADATA_KEYS",
    "REJECTION_CODES",
    "RejectionCode",
    "dead_letter_reason",
    "parse_message",
    "too_large",
]


class RejectionCode(StrEnum):
    """Every ``Rejection.code`` this module produces (bounded: they are metric labels)."""

    TOO_LARGE = "too_large"
    TOO_MANY_READINGS = "too_many_readings"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    TOO_DEEP = "too_deep"
    WRONG_TYPE = "wrong_type"
    EMPTY_ARRAY = "empty_array"
    MISSING_FIELD = "missing_field"
    CONFLICTING_FIELDS = "conflicting_fields"
    INVALID_DEVICE_ID = "invalid_device_id"
    INVALID_SENSOR_TYPE = "invalid_sensor_type"
    INVALID_VALUE = "invalid_value"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    INVALID_UNIT = "invalid_unit"
    INVALID_TIMESTAMP = "invalid_timestamp"
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    INVALID_STATUS = "invalid_status"
    DEVICE_MISMATCH = "device_mismatch"


REJECTION_CODES: Final[tuple[str, ...]] = tuple(code.value for code in RejectionCode)

DEFAULT_UNITS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "temperature": "C",
        "temp": "C",
        "humidity": "%",
        "pressure": "hPa",
        "co2": "ppm",
        "co": "ppm",
        "tvoc": "ppb",
        "battery": "V",
        "voltage": "V",
        "current": "A",
        "power": "W",
        "energy": "kWh",
        "light": "lx",
        "illuminance": "lx",
        "lux": "lx",
        "noise": "dB",
        "pm1": "µg/m³",
        "pm25": "µg/m³",
        "pm2.5": "µg/m³",
        "pm2_5": "µg/m³",
        "pm10": "µg/m³",
        "rssi": "dBm",
        "wind_speed": "m/s",
        "rainfall": "mm",
        "soil_moisture": "%",
    }
)

# Fields of a multi-sensor object that describe the device or message, not a sensor.
MULTI_SENSOR_METADATA_KEYS: Final[frozenset[str]] = frozenset(
    {
        "name",
        "location",
        "model",
        "firmware",
        "firmware_version",
        "version",
        "type",
        "status",
        "seq",
        "sequence",
        "msg_id",
        "message_id",
    }
)
_MULTI_SKIP: Final = MULTI_SENSOR_METADATA_KEYS | {"device_id", "deviceId", "timestamp", "unit"}

_MAX_DEVICE_ID_CHARS: Final = 50
_MAX_SENSOR_TYPE_CHARS: Final = 20
# The valid names, as regular expressions (also the API's parameter patterns).
DEVICE_ID_REGEX: Final = rf"[A-Za-z0-9._:-]{{1,{_MAX_DEVICE_ID_CHARS}}}"
SENSOR_TYPE_REGEX: Final = rf"[A-Za-z0-9._-]{{1,{_MAX_SENSOR_TYPE_CHARS}}}"
_DEVICE_ID_RE: Final = re.compile(DEVICE_ID_REGEX)
_SENSOR_TYPE_RE: Final = re.compile(SENSOR_TYPE_REGEX)


def is_device_id(text: str) -> bool:
    """Whether ``text`` is a valid device id (1-50 of ``A-Z a-z 0-9 . _ : -``)."""
    return len(text) <= _MAX_DEVICE_ID_CHARS and _matches_device_id(text)


def _is_sensor_type(text: str) -> bool:
    return len(text) <= _MAX_SENSOR_TYPE_CHARS and _matches_sensor_type(text)


# Both checks run for every reading and see the same few thousand names again and again: a
# cache hit costs a third of the match. Bounded in entries (a flood of new names only
# evicts) and in bytes (only names short enough to be valid are looked up): at most ~5 MB.
@functools.lru_cache(maxsize=16_384)
def _matches_device_id(text: str) -> bool:
    return _DEVICE_ID_RE.fullmatch(text) is not None


@functools.lru_cache(maxsize=1024)
def _matches_sensor_type(text: str) -> bool:
    return _SENSOR_TYPE_RE.fullmatch(text) is not None


_DECIMAL_RE: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

_MAX_VALUE: Final = 1e15
_MAX_UNIT_CHARS: Final = 10
_MAX_NUMERIC_STRING_CHARS: Final = 64
_MAX_TIMESTAMP_CHARS: Final = 64
_EPOCH_MS_ABOVE: Final = 1e11
_MIN_TIMESTAMP: Final = datetime(2000, 1, 1, tzinfo=UTC)
_DAY_S: Final = 86_400.0
_MIN_EPOCH_S: Final = _MIN_TIMESTAMP.timestamp()
_MAX_EPOCH_S: Final = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
_SHOW_CHARS: Final = 40
# A dead letter's reason lists the first rejected items of its message, then counts the rest.
_LISTED_ITEMS: Final = 10
_MISSING: Final = object()


class _InvalidError(Exception):
    """Internal: one object failed validation (never escapes this module)."""

    def __init__(self, code: RejectionCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def parse_message(  # noqa: PLR0913 - the payload, then keyword-only limits
    payload: bytes,
    *,
    received_at: datetime,
    max_future_skew_s: float = 300.0,
    max_payload_bytes: int = 256 * 1024,
    max_readings: int = 10_000,
    size: int | None = None,
) -> ParseResult:
    """Parse one message into its valid readings and the rejections of its invalid parts.

    ``received_at`` (aware; converted to UTC) is the timestamp of readings that carry none and
    the reference for the future-skew check. ``size`` is the payload's size as sent when
    ``payload`` holds only its first bytes (a message too large to keep whole). Never raises
    for any ``payload``.
    """
    if received_at.tzinfo is not UTC:
        if received_at.tzinfo is None:
            raise ValueError("received_at must be timezone-aware")
        received_at = received_at.astimezone(UTC)
    size = len(payload) if size is None else size
    if size > max_payload_bytes:
        return ParseResult(rejections=[too_large(size, len(payload), max_payload_bytes)])
    reading = _plain_reading(payload, received_at, max_future_skew_s)
    if reading is not None:
        return ParseResult([reading], [])
    return _parse_document(payload, received_at, max_future_skew_s, max_readings)


class _PlainReading(msgspec.Struct, forbid_unknown_fields=True):
    """The common message, decoded and typed in one pass (``value`` a JSON number, not a
    boolean: msgspec is strict). Anything else fails to decode and takes the general path."""

    device_id: str
    sensor_type: str
    value: float
    unit: str | None = None
    timestamp: str | float | None = None


_PLAIN_DECODER: Final = msgspec.json.Decoder(_PlainReading)


def _plain_reading(payload: bytes, received_at: datetime, skew_s: float) -> Reading | None:
    """The reading of a valid single-reading object with no other key; ``None`` for any
    other payload, valid or not, which :func:`_parse_document` then parses.

    The fast path of the collector's most common message (1.7 µs instead of 2.7, measured
    in bench/README.md): one typed decode instead of a dict, and no rejection is ever made
    here, so every rejection is the general path's. Where both accept a payload they give
    the same reading (property-tested in tests/unit/domain/test_parse.py).
    """
    try:
        plain = _PLAIN_DECODER.decode(payload)
    except msgspec.DecodeError:
        return None
    value = plain.value
    if (
        not is_device_id(plain.device_id)
        or not _is_sensor_type(plain.sensor_type)
        or not -_MAX_VALUE <= value <= _MAX_VALUE
    ):
        return None
    unit = plain.unit
    if unit is None:
        unit = ""
    elif len(unit) > _MAX_UNIT_CHARS or not unit.isprintable():
        return None
    raw_ts = plain.timestamp
    if raw_ts is None:
        timestamp = received_at
    else:
        try:
            timestamp = _timestamp(raw_ts, received_at, skew_s)
        except _InvalidError:
            return None
    return Reading(plain.device_id, plain.sensor_type, value, unit, timestamp)


def _parse_document(
    payload: bytes, received_at: datetime, max_future_skew_s: float, max_readings: int
) -> ParseResult:
    """Every accepted shape, and the rejection of every other payload."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return _json_error(payload, exc)

    try:
        if type(doc) is dict:
            return ParseResult(
                readings=_parse_object(doc, received_at, max_future_skew_s, max_readings)
            )
        if type(doc) is list:
            return _parse_array(doc, received_at, max_future_skew_s, max_readings)
    except _InvalidError as exc:
        return _whole(exc.code, exc.detail)
    return _whole(
        RejectionCode.WRONG_TYPE,
        f"message must be a JSON object or array (got {_json_type(doc)})",
    )


_PREFIX_KEPT: Final = " bytes are kept)"


def too_large(size: int, kept: int, max_payload_bytes: int) -> Rejection:
    """The rejection of a payload of ``size`` bytes of which only ``kept`` were kept."""
    held = "" if kept >= size else f" (its first {kept:,}{_PREFIX_KEPT}"
    return Rejection(
        RejectionCode.TOO_LARGE.value,
        f"payload is {size:,} bytes, more than the limit of {max_payload_bytes:,}{held}",
    )


def holds_a_prefix(reason: str) -> bool:
    """Whether a dead letter of this reason holds only the first bytes of its payload (a
    :func:`too_large` one): its payload is not the message and must never be parsed as it."""
    return reason.startswith(f"{RejectionCode.TOO_LARGE.value}:") and reason.endswith(_PREFIX_KEPT)


def _whole(code: RejectionCode, detail: str) -> ParseResult:
    return ParseResult(rejections=[Rejection(code=code.value, detail=detail)])


def _json_error(payload: bytes, exc: orjson.JSONDecodeError) -> ParseResult:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as bad:
        return _whole(
            RejectionCode.INVALID_UTF8,
            f"payload is not valid UTF-8 (bad byte at offset {bad.start})",
        )
    msg = str(exc.msg)[:80]
    if "depth" in msg or "recursion" in msg:
        return _whole(
            RejectionCode.TOO_DEEP,
            "payload nests JSON arrays/objects more than 1024 levels deep",
        )
    return _whole(
        RejectionCode.INVALID_JSON,
        f"payload is not valid JSON: {msg} (line {exc.lineno}, column {exc.colno})",
    )


def _parse_array(
    items: list[Any], received_at: datetime, skew_s: float, max_readings: int
) -> ParseResult:
    """Each item alone; raises ``_InvalidError`` (the whole message) past ``max_readings``."""
    if not items:
        return _whole(RejectionCode.EMPTY_ARRAY, "message is an empty JSON array")
    if len(items) > max_readings:
        raise _too_many(f"{len(items):,} array items", max_readings)
    readings: list[Reading] = []
    rejections: list[Rejection] = []
    for index, item in enumerate(items):
        if type(item) is dict:
            try:
                readings.extend(_parse_object(item, received_at, skew_s, max_readings))
            except _InvalidError as exc:
                if exc.code is RejectionCode.TOO_MANY_READINGS:
                    raise
                rejections.append(Rejection(exc.code.value, exc.detail, index))
            if len(readings) > max_readings:
                raise _too_many(f"more than {max_readings:,} readings", max_readings)
        else:
            detail = f"array item must be a JSON object (got {_json_type(item)})"
            rejections.append(Rejection(RejectionCode.WRONG_TYPE.value, detail, index))
    return ParseResult(readings=readings, rejections=rejections)


def _too_many(what: str, max_readings: int) -> _InvalidError:
    return _InvalidError(
        RejectionCode.TOO_MANY_READINGS,
        f"message holds {what}, more than the limit of {max_readings:,} "
        "(IOT_MAX_READINGS_PER_MESSAGE)",
    )


def _parse_object(
    obj: dict[str, Any], received_at: datetime, skew_s: float, max_readings: int
) -> list[Reading]:
    device_id = _device_id(obj)
    sensor_type = obj.get("sensor_type", _MISSING)
    if sensor_type is _MISSING:
        if len(obj) > max_readings + len(_MULTI_SKIP):
            raise _too_many(f"{len(obj):,} fields", max_readings)
        return _parse_multi(obj, device_id, received_at, skew_s, max_readings)
    if type(sensor_type) is not str:
        raise _InvalidError(
            RejectionCode.WRONG_TYPE,
            f"sensor_type must be a string (got {_json_type(sensor_type)})",
        )
    if not _is_sensor_type(sensor_type):
        raise _InvalidError(RejectionCode.INVALID_SENSOR_TYPE, _bad_sensor_type("sensor_type"))
    raw_value = obj.get("value", _MISSING)
    if raw_value is _MISSING:
        raise _InvalidError(RejectionCode.MISSING_FIELD, "value is missing")
    value = _value(raw_value, "value")
    unit = obj.get("unit")
    if unit is None:
        unit = ""
    elif type(unit) is not str:
        raise _InvalidError(
            RejectionCode.WRONG_TYPE, f"unit must be a string (got {_json_type(unit)})"
        )
    elif len(unit) > _MAX_UNIT_CHARS or not unit.isprintable():
        raise _InvalidError(
            RejectionCode.INVALID_UNIT,
            f"unit must be 0-{_MAX_UNIT_CHARS} printable characters, no control characters "
            f"(got {_show(unit)}, {len(unit)} characters)",
        )
    raw_ts = obj.get("timestamp")
    timestamp = received_at if raw_ts is None else _timestamp(raw_ts, received_at, skew_s)
    return [Reading(device_id, sensor_type, value, unit, timestamp)]


def _parse_multi(
    obj: dict[str, Any], device_id: str, received_at: datetime, skew_s: float, max_readings: int
) -> list[Reading]:
    if "value" in obj:
        raise _InvalidError(
            RejectionCode.MISSING_FIELD,
            "sensor_type is missing (an object with a value field needs a sensor_type)",
        )
    raw_ts = obj.get("timestamp")
    timestamp = received_at if raw_ts is None else _timestamp(raw_ts, received_at, skew_s)
    readings: list[Reading] = []
    for key, raw in obj.items():
        if key in _MULTI_SKIP:
            continue
        if not _is_sensor_type(key):
            raise _InvalidError(
                RejectionCode.INVALID_SENSOR_TYPE,
                f"sensor field {_show(key)}: {_bad_sensor_type('a sensor field name')}",
            )
        value = _value(raw, key)
        readings.append(
            Reading(device_id, key, value, DEFAULT_UNITS.get(key.lower(), ""), timestamp)
        )
    if len(readings) > max_readings:
        raise _too_many(f"{len(readings):,} sensor fields", max_readings)
    if not readings:
        raise _InvalidError(
            RejectionCode.MISSING_FIELD,
            "object has no sensor_type and no numeric sensor field "
            "(expected a single reading or fields like temperature, humidity)",
        )
    return readings


def _device_id(obj: dict[str, Any]) -> str:
    device_id = obj.get("device_id", _MISSING)
    if "deviceId" in obj:
        alias = obj["deviceId"]
        if device_id is _MISSING:
            device_id = alias
        elif device_id != alias or type(device_id) is not type(alias):
            raise _InvalidError(
                RejectionCode.CONFLICTING_FIELDS,
                "device_id and its alias deviceId are both present and differ",
            )
    if device_id is _MISSING:
        raise _InvalidError(RejectionCode.MISSING_FIELD, "device_id (or deviceId) is missing")
    if type(device_id) is not str:
        raise _InvalidError(
            RejectionCode.WRONG_TYPE,
            f"device_id must be a string (got {_json_type(device_id)})",
        )
    if not is_device_id(device_id):
        if 1 <= len(device_id) <= _MAX_DEVICE_ID_CHARS:
            problem = f"got {_show(device_id)}"
        else:
            problem = f"got {len(device_id)} characters"
        raise _InvalidError(
            RejectionCode.INVALID_DEVICE_ID,
            f"device_id must be 1-50 characters of A-Z a-z 0-9 . _ : - ({problem})",
        )
    return device_id


def _bad_sensor_type(what: str) -> str:
    return f"{what} must be 1-20 characters of A-Z a-z 0-9 . _ -"


def _value(raw: Any, field: str) -> float:
    kind = type(raw)
    if kind is float or kind is int:
        if -_MAX_VALUE <= raw <= _MAX_VALUE:
            return float(raw)
        raise _InvalidError(
            RejectionCode.VALUE_OUT_OF_RANGE,
            f"{_name(field)} magnitude must be at most 1e15 (got {raw:.6g})",
        )
    if kind is str:
        text = raw.strip()
        if len(text) > _MAX_NUMERIC_STRING_CHARS or _DECIMAL_RE.fullmatch(text) is None:
            raise _InvalidError(
                RejectionCode.INVALID_VALUE,
                f"{_name(field)} must be a finite number or a decimal string (got {_show(raw)})",
            )
        number = float(text)
        if -_MAX_VALUE <= number <= _MAX_VALUE:
            return number
        raise _InvalidError(
            RejectionCode.VALUE_OUT_OF_RANGE,
            f"{_name(field)} magnitude must be at most 1e15 (got {_show(raw)})",
        )
    raise _InvalidError(
        RejectionCode.WRONG_TYPE,
        f"{_name(field)} must be a number or a numeric string (got {_json_type(raw)})",
    )


def _name(field: str) -> str:
    return "value" if field == "value" else f"sensor field {_show(field)}"


def _timestamp(raw: Any, received_at: datetime, skew_s: float) -> datetime:
    kind = type(raw)
    if kind is str:
        parsed = _iso_timestamp(raw)
    elif kind is int or kind is float:
        parsed = _epoch_timestamp(raw)
    else:
        raise _InvalidError(
            RejectionCode.WRONG_TYPE,
            f"timestamp must be an ISO 8601 string or a number (got {_json_type(raw)})",
        )
    if parsed < _MIN_TIMESTAMP:
        raise _InvalidError(
            RejectionCode.TIMESTAMP_OUT_OF_RANGE,
            f"timestamp {parsed.isoformat()} is before 2000-01-01T00:00:00Z",
        )
    ahead = (parsed - received_at).total_seconds()
    if ahead > skew_s:
        raise _InvalidError(
            RejectionCode.TIMESTAMP_OUT_OF_RANGE,
            f"timestamp {parsed.isoformat()} is {_seconds(ahead)} after the time of receipt "
            f"(at most {_seconds(skew_s)} allowed)",
        )
    return parsed


def _seconds(value: float) -> str:
    """``300.000001 s``, ``97,243,123 s (1,125.5 days)``: never ``9.72431e+07 s``."""
    if value >= _DAY_S:
        return f"{value:,.0f} s ({value / _DAY_S:,.1f} days)"
    return f"{value:,.6f}".rstrip("0").rstrip(".") + " s"


def _iso_timestamp(raw: str) -> datetime:
    if len(raw) > _MAX_TIMESTAMP_CHARS:
        raise _InvalidError(
            RejectionCode.INVALID_TIMESTAMP,
            f"timestamp must be an ISO 8601 string (got {len(raw)} characters)",
        )
    try:
        parsed = datetime.fromisoformat(raw)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        if parsed.tzinfo is not UTC:
            return parsed.astimezone(UTC)
    except OverflowError:
        raise _InvalidError(
            RejectionCode.TIMESTAMP_OUT_OF_RANGE,
            f"timestamp {_show(raw)} is outside the representable range once in UTC",
        ) from None
    except ValueError:
        raise _InvalidError(
            RejectionCode.INVALID_TIMESTAMP,
            "timestamp must be an ISO 8601 string or epoch seconds/milliseconds as a "
            f"JSON number (got {_show(raw)})",
        ) from None
    return parsed


def _epoch_timestamp(raw: float) -> datetime:
    seconds = raw / 1000 if raw > _EPOCH_MS_ABOVE else raw
    if _MIN_EPOCH_S <= seconds <= _MAX_EPOCH_S:
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            pass
    unit = "milliseconds" if raw > _EPOCH_MS_ABOVE else "seconds"
    where = "before 2000-01-01T00:00:00Z" if seconds < _MIN_EPOCH_S else "after the year 9999"
    raise _InvalidError(
        RejectionCode.TIMESTAMP_OUT_OF_RANGE, f"timestamp {raw:.15g} (epoch {unit}) is {where}"
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "boolean"
    if type(value) is int or type(value) is float:
        return "number"
    if type(value) is str:
        return "string"
    if type(value) is list:
        return "array"
    return "object"


def _show(text: str) -> str:
    """Quote user text for a detail: escaped, at most ``_SHOW_CHARS`` characters of it."""
    if len(text) > _SHOW_CHARS:
        return repr(text[:_SHOW_CHARS]) + "..."
    return repr(text)


def dead_letter_reason(rejections: list[Rejection]) -> str:
    """The reason of a message's one dead-letter row, from its (one or more) rejections.

    One rejection: its own reason. Several (items of an array): the first code, how many
    items were rejected by code, then the first :data:`_LISTED_ITEMS` items' reasons.
    """
    if len(rejections) == 1:
        return rejections[0].reason
    by_code: dict[str, int] = {}
    for rejection in rejections:
        by_code[rejection.code] = by_code.get(rejection.code, 0) + 1
    counts = ", ".join(f"{code} {count}" for code, count in by_code.items())
    listed = "; ".join(r.reason for r in rejections[:_LISTED_ITEMS])
    more = len(rejections) - _LISTED_ITEMS
    rest = f"; and {more} more" if more > 0 else ""
    return f"{rejections[0].code}: {len(rejections)} items rejected ({counts}): {listed}{rest}"


def parse_reading(
    fields: dict[str, Any], *, received_at: datetime, max_future_skew_s: float = 300.0
) -> Reading | Rejection:
    """Validate one reading given as the single-reading object (mapping rules build it).

    ``fields`` must hold ``sensor_type``; the checks are exactly those of a message's reading.
    """
    try:
        return _parse_object(fields, received_at, max_future_skew_s, 1)[0]
    except _InvalidError as exc:
        return Rejection(exc.code.value, exc.detail)
