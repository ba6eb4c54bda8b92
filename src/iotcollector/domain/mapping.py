"""Mapping rules (``IOT_MAPPINGS_FILE``): turn what devices already publish into readings.

A rule names a topic template and says how to read its payload::

    - topic: "tele/{device_id}/SENSOR"          # {device_id}/{sensor_type} bind one level
      timestamp: "$.Time"                        # singular JSONPath (domain/jsonpath.py)
      readings:
        - {sensor_type: temperature, value: "$.AM2301.Temperature", unit: C}

``compile_mappings`` checks every rule once, at start-up, and raises :class:`MappingError`
naming the rule (index and topic) and the field. ``Mappings.match`` finds the first rule whose
topic matches (MQTT ``+``/``#`` semantics); :func:`apply_rule` turns one JSON or bare-value
payload into readings, each validated exactly like a reading of our own formats
(:func:`~iotcollector.domain.parse.parse_reading`). Sparkplug B rules are decoded by
``domain/sparkplug.py`` with the alias memory the pipeline keeps. Pure, never raises on input.

Decisions: ``device_id``/``sensor_type`` fields are a JSONPath when they start with ``$``,
a fixed text otherwise; a reading's unit is its ``unit``, else the default-unit table of the
multi-sensor form; ``value = raw * scale + offset``; ``readings: auto`` takes every top-level
field whose value is a JSON number (strings, booleans, objects skipped), named by its key,
except ``exclude``; a message yields one rejection at most, naming every reading that failed,
while the readings that passed are stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

import orjson

from iotcollector.domain.jsonpath import MISSING, JsonPath, JsonPathError
from iotcollector.domain.parse import (
    DEFAULT_UNITS,
    RejectionCode,
    parse_message,
    parse_reading,
)
from iotcollector.domain.reading import ParseResult, Reading, Rejection

__all__ = [
    "MappingError",
    "Mappings",
    "Match",
    "PayloadKind",
    "ReadingRule",
    "Rule",
    "apply_rule",
    "compile_mappings",
    "filters_overlap",
    "overlapping_filters",
]

_CAPTURES: Final = frozenset({"device_id", "sensor_type"})
_MAX_BARE_VALUE_BYTES: Final = 64
_MAX_VALUE: Final = 1e15
_MAX_UNIT_CHARS: Final = 10
_RULE_FIELDS: Final = frozenset(
    {
        "topic",
        "payload",
        "device_id",
        "sensor_type",
        "value",
        "unit",
        "scale",
        "offset",
        "timestamp",
        "readings",
        "exclude",
        "units",
    }
)
_READING_FIELDS: Final = frozenset({"sensor_type", "value", "unit", "scale", "offset"})


class PayloadKind(StrEnum):
    JSON = "json"
    VALUE = "value"
    SPARKPLUG_B = "sparkplug_b"


class MappingError(ValueError):
    """A rule of the mappings file is wrong: ``rule N (topic 'T'): FIELD: why``."""


@dataclass(frozen=True, slots=True)
class ReadingRule:
    """How to read one reading: sensor type (fixed, JSONPath or the topic's), value path."""

    sensor_type: str | JsonPath | None  # None: the topic's {sensor_type}
    value: JsonPath | None  # None: the bare payload (payload: value)
    unit: str | None  # None: the default-unit table
    scale: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule; ``levels`` is the topic template split on ``/``."""

    index: int
    topic: str
    levels: tuple[str, ...]
    payload: PayloadKind
    device_id: str | JsonPath | None = None  # None: the topic's {device_id}
    timestamp: JsonPath | None = None
    readings: tuple[ReadingRule, ...] = ()
    auto: bool = False
    exclude: frozenset[str] = frozenset()
    units: dict[str, str] = field(default_factory=dict)
    # The levels as matched: (None, text) a literal, ("", "+") any level, ("#", "#") the rest,
    # (name, "") a capture. Computed from ``levels``.
    pattern: tuple[tuple[str | None, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = tuple(
            ("", "+")
            if level == "+"
            else ("#", "#")
            if level == "#"
            else (name, "")
            if (name := _capture(level))
            else (None, level)
            for level in self.levels
        )
        object.__setattr__(self, "pattern", pattern)

    @property
    def filter(self) -> str:
        """The MQTT topic filter this rule subscribes to: each ``{name}`` level becomes ``+``."""
        return "/".join("+" if _capture(level) else level for level in self.levels)

    @property
    def name(self) -> str:
        return f"rule {self.index} (topic {self.topic!r})"


@dataclass(slots=True)  # not frozen: its __init__ is on the hot path (treated as immutable)
class Match:
    """The rule a topic matched and what its ``{device_id}``/``{sensor_type}`` levels hold."""

    rule: Rule
    device_id: str | None
    sensor_type: str | None


@dataclass(frozen=True, slots=True)
class Mappings:
    """The compiled rules, in file order: the first rule whose topic matches decides."""

    rules: tuple[Rule, ...]
    # The rules a topic can match, in file order, by its first level: those whose first level
    # is that literal or a wildcard; ``generic`` for a first level no rule names.
    _by_first: dict[str, tuple[Rule, ...]] = field(init=False, repr=False, compare=False)
    _generic: tuple[Rule, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        generic = tuple(r for r in self.rules if r.pattern[0][0] is not None)
        firsts = {r.pattern[0][1] for r in self.rules if r.pattern[0][0] is None}
        by_first = {
            first: tuple(
                r for r in self.rules if r.pattern[0][0] is not None or r.pattern[0][1] == first
            )
            for first in firsts
        }
        object.__setattr__(self, "_by_first", by_first)
        object.__setattr__(self, "_generic", generic)

    @property
    def filters(self) -> tuple[str, ...]:
        """The topic filters to subscribe to, once each, in rule order."""
        return tuple(dict.fromkeys(rule.filter for rule in self.rules))

    def match(self, topic: str) -> Match | None:
        levels = topic.split("/")
        count = len(levels)
        system = topic.startswith("$")
        for rule in self._by_first.get(levels[0], self._generic):
            pattern = rule.pattern
            if len(pattern) != count and pattern[-1][0] != "#":
                continue  # the usual miss, decided by the number of levels alone
            if _matches(pattern, levels, system=system):
                device_id = sensor_type = None
                for (name, _), level in zip(pattern, levels, strict=False):
                    if name == "device_id":
                        device_id = level
                    elif name == "sensor_type":
                        sensor_type = level
                return Match(rule, device_id, sensor_type)
        return None


def filters_overlap(a: str, b: str) -> bool:
    """Whether some topic matches both MQTT topic filters (the broker may then deliver it
    twice, once per subscription)."""
    left, right = a.split("/"), b.split("/")
    for x, y in zip(left, right, strict=False):
        if "#" in {x, y}:
            return True
        if x != y and "+" not in {x, y}:
            return False
    if len(left) == len(right):
        return True
    longer = left if len(left) > len(right) else right
    return longer[min(len(left), len(right))] == "#"  # 'a/#' also matches 'a'


def overlapping_filters(filters: tuple[str, ...]) -> list[tuple[str, str]]:
    """The pairs of distinct topic filters some topic matches both of (in order given)."""
    return [
        (a, b)
        for i, a in enumerate(filters)
        for b in filters[i + 1 :]
        if a != b and filters_overlap(a, b)
    ]


def _capture(level: str) -> str | None:
    if len(level) > 2 and level[0] == "{" and level[-1] == "}":
        return level[1:-1]
    return None


def _matches(
    pattern: tuple[tuple[str | None, str], ...], levels: list[str], *, system: bool
) -> bool:
    if system and pattern[0][0] is not None:
        return False  # MQTT: wildcards never match topics starting with '$'
    for position, (name, text) in enumerate(pattern):
        if name == "#":
            return True
        if position >= len(levels) or (name is None and text != levels[position]):
            return False
    return len(levels) == len(pattern)


# -- compiling ---------------------------------------------------------------------------------


def compile_mappings(document: Any) -> Mappings:
    """Check and compile a parsed mappings file (``{"mappings": [rule, ...]}``)."""
    if not isinstance(document, dict) or set(document) != {"mappings"}:
        raise MappingError("the file must hold one key, mappings: a list of rules")
    rules = document["mappings"]
    if not isinstance(rules, list) or not rules:
        raise MappingError("mappings: must be a non-empty list of rules")
    return Mappings(tuple(_compile_rule(index, raw) for index, raw in enumerate(rules)))


def _compile_rule(index: int, raw: Any) -> Rule:
    topic = raw.get("topic") if isinstance(raw, dict) else None
    where = f"rule {index} (topic {topic!r})" if isinstance(topic, str) else f"rule {index}"

    def fail(name: str, why: str) -> MappingError:
        return MappingError(f"{where}: {name}: {why}")

    if not isinstance(raw, dict):
        raise fail("rule", "must be a mapping of fields (topic, payload, readings, ...)")
    unknown = sorted(str(k) for k in raw if k not in _RULE_FIELDS)
    if unknown:
        raise fail(unknown[0], f"unknown field (known: {', '.join(sorted(_RULE_FIELDS))})")
    levels = _compile_topic(raw.get("topic"), fail)
    captures = {name for level in levels if (name := _capture(level))}
    try:
        payload = PayloadKind(raw.get("payload", "json"))
    except ValueError:
        raise fail("payload", "must be json, value or sparkplug_b") from None
    base = Rule(index, str(topic), levels, payload)
    if payload is PayloadKind.SPARKPLUG_B:
        extra = sorted(set(raw) - {"topic", "payload"})
        if extra:
            raise fail(extra[0], "not used with payload: sparkplug_b (metrics name themselves)")
        return base
    device_id = _compile_device_id(raw, captures, fail)
    if payload is PayloadKind.VALUE:
        return _compile_value(
            Rule(index, str(topic), levels, payload, device_id), raw, captures, fail
        )
    return _compile_json(
        Rule(index, str(topic), levels, payload, device_id, _optional_path(raw, "timestamp", fail)),
        raw,
        captures,
        fail,
    )


def _compile_value(base: Rule, raw: dict[str, Any], captures: set[str], fail: Any) -> Rule:
    extra = sorted(set(raw) & {"timestamp", "readings", "value", "exclude", "units"})
    if extra:
        raise fail(extra[0], "not used with payload: value (the payload is the value)")
    reading = _compile_reading(raw, captures, fail, prefix="", bare=True)
    for name, source in (("device_id", base.device_id), ("sensor_type", reading.sensor_type)):
        if isinstance(source, JsonPath):
            raise fail(name, "a bare value has no fields: use the topic or a fixed text")
    return Rule(
        base.index, base.topic, base.levels, base.payload, base.device_id, readings=(reading,)
    )


def _compile_json(base: Rule, raw: dict[str, Any], captures: set[str], fail: Any) -> Rule:
    readings = raw.get("readings")
    if readings == "auto":
        return _compile_auto(base, raw, captures, fail)
    for name in ("exclude", "units"):
        if name in raw:
            raise fail(name, "only used with readings: auto")
    if readings is None:
        if "value" not in raw:
            raise fail("readings", "missing: a list of readings, auto, or a rule-level value")
        compiled: tuple[ReadingRule, ...] = (_compile_reading(raw, captures, fail, prefix=""),)
    else:
        for name in ("value", "unit", "scale", "offset", "sensor_type"):
            if name in raw:
                raise fail(name, "belongs to each item of readings (or drop readings)")
        if not isinstance(readings, list) or not readings:
            raise fail("readings", "must be auto or a non-empty list of readings")
        compiled = tuple(
            _compile_reading(item, captures, fail, prefix=f"readings[{position}].")
            for position, item in enumerate(readings)
        )
    return Rule(
        base.index, base.topic, base.levels, base.payload, base.device_id, base.timestamp, compiled
    )


def _compile_topic(topic: Any, fail: Any) -> tuple[str, ...]:
    if not isinstance(topic, str) or not topic:
        raise fail("topic", "missing: a topic template such as tele/{device_id}/SENSOR")
    if topic.startswith("$share/"):
        raise fail("topic", "give the plain topic: IOT_MQTT_SHARED_GROUP adds $share/<group>/")
    levels = tuple(topic.split("/"))
    seen: set[str] = set()
    for position, level in enumerate(levels):
        name = _capture(level)
        if name is not None:
            if name not in _CAPTURES:
                raise fail("topic", f"{{{name}}}: only {{device_id}} and {{sensor_type}} bind")
            if name in seen:
                raise fail("topic", f"{{{name}}} appears twice")
            seen.add(name)
        elif level == "#" and position != len(levels) - 1:
            raise fail("topic", "'#' must be the last level")
        elif level not in {"+", "#"} and any(c in level for c in "+#{}"):
            raise fail("topic", f"level {level!r}: a wildcard or {{name}} must fill a level")
    return levels


def _compile_device_id(raw: dict[str, Any], captures: set[str], fail: Any) -> str | JsonPath | None:
    if "device_id" not in raw:
        if "device_id" not in captures:
            raise fail("device_id", "missing: a {device_id} topic level, a JSONPath or a text")
        return None
    if "device_id" in captures:
        raise fail("device_id", "given twice: by the topic's {device_id} and by this field")
    return _text_or_path(raw["device_id"], "device_id", fail)


def _compile_auto(base: Rule, raw: dict[str, Any], captures: set[str], fail: Any) -> Rule:
    if "sensor_type" in captures:
        raise fail("topic", "{sensor_type} is not used with readings: auto (keys name sensors)")
    for name in ("value", "unit", "scale", "offset", "sensor_type"):
        if name in raw:
            raise fail(name, "not used with readings: auto (every numeric field is a reading)")
    exclude = raw.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(k, str) for k in exclude):
        raise fail("exclude", "must be a list of field names")
    units = raw.get("units", {})
    if not isinstance(units, dict) or not all(isinstance(k, str) for k in units):
        raise fail("units", "must map field names to units, e.g. {battery: '%'}")
    for key, unit in units.items():
        _check_unit(unit, f"units.{key}", fail)
    return Rule(
        base.index,
        base.topic,
        base.levels,
        base.payload,
        base.device_id,
        base.timestamp,
        auto=True,
        exclude=frozenset(exclude),
        units=dict(units),
    )


def _compile_reading(
    raw: Any, captures: set[str], fail: Any, *, prefix: str, bare: bool = False
) -> ReadingRule:
    if not isinstance(raw, dict):
        raise fail(prefix.rstrip(".") or "readings", "must be a mapping: {sensor_type, value}")
    if prefix:
        unknown = sorted(str(k) for k in raw if k not in _READING_FIELDS)
        if unknown:
            raise fail(
                prefix + unknown[0], "unknown field (sensor_type, value, unit, scale, offset)"
            )
    if "sensor_type" in raw:
        if "sensor_type" in captures:
            raise fail(prefix + "sensor_type", "given twice: by the topic and by this field")
        sensor_type: str | JsonPath | None = _text_or_path(
            raw["sensor_type"], prefix + "sensor_type", fail
        )
    elif "sensor_type" in captures:
        sensor_type = None
    else:
        raise fail(prefix + "sensor_type", "missing: a {sensor_type} level, a text or a JSONPath")
    value: JsonPath | None = None
    if not bare:
        path = raw.get("value")
        if path is None:
            raise fail(prefix + "value", "missing: a JSONPath such as $.temperature")
        value = _path(path, prefix + "value", fail)
    unit = raw.get("unit")
    if unit is not None:
        _check_unit(unit, prefix + "unit", fail)
    return ReadingRule(
        sensor_type,
        value,
        unit,
        _number(raw.get("scale", 1.0), prefix + "scale", fail),
        _number(raw.get("offset", 0.0), prefix + "offset", fail),
    )


def _check_unit(unit: Any, name: str, fail: Any) -> None:
    if not isinstance(unit, str) or len(unit) > _MAX_UNIT_CHARS or not unit.isprintable():
        raise fail(name, f"must be text of 0-{_MAX_UNIT_CHARS} printable characters")


def _number(raw: Any, name: str, fail: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise fail(name, "must be a finite number")
    return float(raw)


def _text_or_path(raw: Any, name: str, fail: Any) -> str | JsonPath:
    if not isinstance(raw, str) or not raw:
        raise fail(name, "must be a JSONPath ($...) or a fixed text")
    return _path(raw, name, fail) if raw.startswith("$") else raw


def _optional_path(raw: dict[str, Any], name: str, fail: Any) -> JsonPath | None:
    return None if raw.get(name) is None else _path(raw[name], name, fail)


def _path(raw: Any, name: str, fail: Any) -> JsonPath:
    if not isinstance(raw, str):
        raise fail(name, "must be a JSONPath string such as $.temperature")
    try:
        return JsonPath.compile(raw)
    except JsonPathError as exc:
        raise fail(name, str(exc)) from None


# -- applying ----------------------------------------------------------------------------------


def apply_rule(  # noqa: PLR0913 - the message and the limits of parsing it
    match: Match,
    payload: bytes,
    *,
    received_at: datetime,
    max_future_skew_s: float = 300.0,
    max_payload_bytes: int = 256 * 1024,
    max_readings: int = 10_000,
) -> ParseResult:
    """The readings a JSON or bare-value payload yields under its matched rule.

    Never raises; every problem is a rejection (at most one per message) naming the rule.
    """
    if received_at.tzinfo is not UTC:
        received_at = received_at.astimezone(UTC)
    if len(payload) > max_payload_bytes:
        return parse_message(payload, received_at=received_at, max_payload_bytes=max_payload_bytes)
    message = _Message(match, received_at, max_future_skew_s)
    if match.rule.payload is PayloadKind.VALUE:
        readings = message.bare_value(payload)
    else:
        try:
            document = orjson.loads(payload)
        except orjson.JSONDecodeError:
            # The same codes and details as the default formats give (invalid_json, too_deep...).
            return parse_message(payload, received_at=received_at)
        readings = message.json_readings(document, max_readings)
    rejection = message.rejection()
    return ParseResult(readings=readings, rejections=[rejection] if rejection else [])


class _Message:
    """One message being read under its rule; its problems are reported as one rejection."""

    __slots__ = ("device_id", "document", "failures", "match", "received_at", "skew", "timestamp")

    def __init__(self, match: Match, received_at: datetime, skew: float) -> None:
        self.match = match
        self.received_at = received_at
        self.skew = skew
        self.document: Any = None
        self.device_id: Any = None
        self.timestamp: Any = None
        self.failures: list[tuple[str, str]] = []

    def fail(self, code: str, detail: str) -> None:
        self.failures.append((code, detail))

    def rejection(self) -> Rejection | None:
        if not self.failures:
            return None
        shown = "; ".join(detail for _, detail in self.failures[:5])
        more = len(self.failures) - 5
        tail = f"; and {more} more" if more > 0 else ""
        return Rejection(self.failures[0][0], f"{self.match.rule.name}: {shown}{tail}")

    def bare_value(self, payload: bytes) -> list[Reading]:
        text = payload.strip()
        if len(text) > _MAX_BARE_VALUE_BYTES:
            self.fail(
                RejectionCode.INVALID_VALUE,
                f"a bare value must be a number of at most {_MAX_BARE_VALUE_BYTES} bytes "
                f"(got {len(payload)} bytes)",
            )
            return []
        if len(text) > 1 and text.startswith(b'"') and text.endswith(b'"'):
            text = text[1:-1]
        rule = self.match.rule
        self.device_id = rule.device_id if type(rule.device_id) is str else self.match.device_id
        reading = self.reading(rule.readings[0], text.decode("utf-8", "replace"))
        return [reading] if reading is not None else []

    def json_readings(self, document: Any, max_readings: int) -> list[Reading]:
        rule = self.match.rule
        self.document = document
        self.device_id = self.lookup(rule.device_id, self.match.device_id, "device_id")
        if rule.timestamp is not None:
            self.timestamp = rule.timestamp.find(document)
            if self.timestamp is MISSING:
                self.fail(
                    RejectionCode.MISSING_FIELD,
                    f"timestamp: {rule.timestamp.text} is not in the message",
                )
                return []
        if self.device_id is None:
            return []
        if rule.auto:
            return self.auto_readings(max_readings)
        readings: list[Reading] = []
        for spec in rule.readings:
            assert spec.value is not None  # a JSON rule's readings always have a value path
            raw = spec.value.find(document)
            if raw is MISSING:
                self.fail(
                    RejectionCode.MISSING_FIELD, f"value: {spec.value.text} is not in the message"
                )
                continue
            reading = self.reading(spec, raw)
            if reading is not None:
                readings.append(reading)
        return readings

    def auto_readings(self, max_readings: int) -> list[Reading]:
        rule = self.match.rule
        document = self.document
        if type(document) is not dict:
            self.fail(RejectionCode.WRONG_TYPE, "readings: auto needs a JSON object")
            return []
        skip = rule.exclude
        if rule.timestamp is not None and len(rule.timestamp.segments) == 1:
            skip = skip | {rule.timestamp.segments[0]}  # type: ignore[arg-type]
        fields = [
            (key, raw)
            for key, raw in document.items()
            if (type(raw) is float or type(raw) is int) and key not in skip
        ]
        if not fields:
            self.fail(RejectionCode.MISSING_FIELD, "readings: auto found no numeric field")
            return []
        if len(fields) > max_readings:
            self.fail(
                RejectionCode.TOO_MANY_READINGS,
                f"readings: auto found {len(fields)} numeric fields, more than {max_readings}",
            )
            return []
        readings: list[Reading] = []
        units = rule.units
        for key, raw in fields:
            unit = units.get(key)
            result = self.validate(
                key, raw, DEFAULT_UNITS.get(key.lower(), "") if unit is None else unit
            )
            if isinstance(result, Rejection):
                self.fail(result.code, f"field {key[:40]!r}: {result.detail}")
            else:
                readings.append(result)
        return readings

    def lookup(self, source: str | JsonPath | None, captured: str | None, name: str) -> Any:
        if source is None:
            return captured
        if isinstance(source, str):
            return source
        found = source.find(self.document)
        if found is MISSING:
            self.fail(RejectionCode.MISSING_FIELD, f"{name}: {source.text} is not in the message")
            return None
        return found

    def validate(self, sensor_type: Any, raw_value: Any, unit: str) -> Reading | Rejection:
        return parse_reading(
            {
                "device_id": self.device_id,
                "sensor_type": sensor_type,
                "value": raw_value,
                "unit": unit,
                "timestamp": self.timestamp,
            },
            received_at=self.received_at,
            max_future_skew_s=self.skew,
        )

    def reading(self, spec: ReadingRule, raw_value: Any) -> Reading | None:
        sensor_type = self.lookup(spec.sensor_type, self.match.sensor_type, "sensor_type")
        if sensor_type is None:
            return None
        label = f"reading {str(sensor_type)[:20]!r}" + (
            f" ({spec.value.text})" if spec.value is not None else ""
        )
        unit = spec.unit
        if unit is None:
            unit = DEFAULT_UNITS.get(sensor_type.lower(), "") if type(sensor_type) is str else ""
        result = self.validate(sensor_type, raw_value, unit)
        if isinstance(result, Rejection):
            self.fail(result.code, f"{label}: {result.detail}")
            return None
        if spec.scale != 1.0 or spec.offset != 0.0:
            value = result.value * spec.scale + spec.offset
            if not -_MAX_VALUE <= value <= _MAX_VALUE:
                self.fail(
                    RejectionCode.VALUE_OUT_OF_RANGE,
                    f"{label}: scaled value {value:.6g} is beyond 1e15",
                )
                return None
            result.value = value
        return result
