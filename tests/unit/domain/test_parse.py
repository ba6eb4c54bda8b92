"""Tests of iotcollector.domain.parse: every wire format, every rejection code, properties."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotcollector.domain.parse import (
    DEFAULT_UNITS,
    MULTI_SENSOR_METADATA_KEYS,
    REJECTION_CODES,
    RejectionCode,
    _matches_device_id,
    _matches_sensor_type,
    _parse_document,
    _plain_reading,
    dead_letter_reason,
    parse_message,
)
from iotcollector.domain.reading import ParseResult, Reading, Rejection

RECEIVED = datetime(2026, 11, 28, 0, 5, 0, 250_000, tzinfo=UTC)
SKEW = timedelta(seconds=300)
GOOD: dict[str, Any] = {
    "device_id": "sim-0042",
    "sensor_type": "temperature",
    "value": 21.57,
    "unit": "C",
    "timestamp": "2026-11-28T00:00:00.123Z",
}
GOOD_READING = Reading(
    device_id="sim-0042",
    sensor_type="temperature",
    value=21.57,
    unit="C",
    timestamp=datetime(2026, 11, 28, 0, 0, 0, 123_000, tzinfo=UTC),
)
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,50}")
SENSOR_TYPE_RE = re.compile(r"[A-Za-z0-9._-]{1,20}")


def parse(message: Any, **kwargs: Any) -> ParseResult:
    payload = message if isinstance(message, bytes) else orjson.dumps(message)
    kwargs.setdefault("received_at", RECEIVED)
    return parse_message(payload, **kwargs)


def with_(**fields: Any) -> dict[str, Any]:
    """GOOD with some fields replaced; a field set to ``...`` is removed."""
    out = {**GOOD, **fields}
    return {key: value for key, value in out.items() if value is not ...}


def only_reading(result: ParseResult) -> Reading:
    assert result.rejections == []
    assert len(result.readings) == 1
    return result.readings[0]


def only_rejection(result: ParseResult, code: str) -> Rejection:
    assert result.readings == []
    assert len(result.rejections) == 1, result.rejections
    rejection = result.rejections[0]
    assert rejection.code == code, rejection
    assert rejection.index is None
    assert rejection.detail
    return rejection


def check_invariants(result: ParseResult, payload: bytes) -> None:
    """What must hold for any result, whatever the input."""
    assert isinstance(result, ParseResult)
    for rejection in result.rejections:
        assert rejection.code in REJECTION_CODES
        assert rejection.detail
        assert len(rejection.detail) < 300
    if result.rejections:
        assert len(dead_letter_reason(result.rejections)) < 4000
    for reading in result.readings:
        assert DEVICE_ID_RE.fullmatch(reading.device_id)
        assert SENSOR_TYPE_RE.fullmatch(reading.sensor_type)
        assert type(reading.value) is float
        assert -1e15 <= reading.value <= 1e15
        assert len(reading.unit) <= 10
        assert reading.unit.isprintable() or reading.unit == ""
        assert reading.timestamp.tzinfo is UTC
        assert datetime(2000, 1, 1, tzinfo=UTC) <= reading.timestamp <= RECEIVED + SKEW
    whole = [r for r in result.rejections if r.index is None]
    if whole:
        assert len(result.rejections) == 1
        assert result.readings == []
    if payload[:1] != b"[" and not whole:
        assert result.readings  # an object yields readings or one whole rejection


# --- the three wire formats ------------------------------------------------------------------


def test_single_reading() -> None:
    assert only_reading(parse(GOOD)) == GOOD_READING


def test_single_reading_timestamp_is_utc_singleton() -> None:
    assert only_reading(parse(GOOD)).timestamp.tzinfo is UTC


def test_unit_absent_or_null_is_empty() -> None:
    assert only_reading(parse(with_(unit=...))).unit == ""
    assert only_reading(parse(with_(unit=None))).unit == ""
    assert only_reading(parse(with_(unit=""))).unit == ""


def test_timestamp_absent_or_null_is_received_at() -> None:
    assert only_reading(parse(with_(timestamp=...))).timestamp == RECEIVED
    assert only_reading(parse(with_(timestamp=None))).timestamp == RECEIVED


def test_received_at_in_another_zone_is_converted_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    reading = only_reading(parse(with_(timestamp=...), received_at=RECEIVED.astimezone(paris)))
    assert reading.timestamp == RECEIVED
    assert reading.timestamp.tzinfo is UTC


def test_naive_received_at_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse(GOOD, received_at=datetime(2026, 11, 28))  # noqa: DTZ001


def test_unknown_keys_on_a_single_reading_are_ignored() -> None:
    message = with_(extra="x", nested={"a": [1, 2]}, temperature="oops")
    assert only_reading(parse(message)) == GOOD_READING


def test_key_order_does_not_matter() -> None:
    assert only_reading(parse(dict(reversed(GOOD.items())))) == GOOD_READING


def test_integer_value_becomes_float() -> None:
    reading = only_reading(parse(with_(value=21)))
    assert reading.value == 21.0
    assert type(reading.value) is float


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("21.57", 21.57),
        ("  21.57\n", 21.57),
        ("-3", -3.0),
        ("+3", 3.0),
        (".5", 0.5),
        ("5.", 5.0),
        ("1e3", 1000.0),
        ("-2.5E-3", -0.0025),
        ("1e15", 1e15),
        ("0", 0.0),
    ],
)
def test_numeric_string_value(text: str, expected: float) -> None:
    assert only_reading(parse(with_(value=text))).value == expected


def test_device_id_alias() -> None:
    reading = only_reading(parse(with_(device_id=..., deviceId="sim-0042")))
    assert reading == GOOD_READING


def test_device_id_and_alias_equal_is_fine() -> None:
    assert only_reading(parse(with_(deviceId="sim-0042"))) == GOOD_READING


def test_device_id_and_alias_different_conflict() -> None:
    rejection = only_rejection(parse(with_(deviceId="other")), "conflicting_fields")
    assert "deviceId" in rejection.detail


def test_device_id_and_alias_same_text_different_type_conflict() -> None:
    only_rejection(parse(with_(device_id=1, deviceId=True)), "conflicting_fields")


def test_multi_sensor_form() -> None:
    message = {
        "deviceId": "sensor-local",
        "temperature": "27.41",
        "humidity": "51.02",
        "timestamp": "2026-11-28T00:00:00Z",
    }
    result = parse(message)
    assert result.rejections == []
    ts = datetime(2026, 11, 28, tzinfo=UTC)
    assert result.readings == [
        Reading("sensor-local", "temperature", 27.41, "C", ts),
        Reading("sensor-local", "humidity", 51.02, "%", ts),
    ]


def test_multi_sensor_default_units_and_numbers() -> None:
    message = {
        "device_id": "d1",
        "pressure": 1013.25,
        "co2": 412,
        "battery": "3.7",
        "pm25": 12,
        "Temperature": 20,
        "my_sensor": 7,
    }
    readings = parse(message).readings
    units = {r.sensor_type: r.unit for r in readings}
    assert units == {
        "pressure": "hPa",
        "co2": "ppm",
        "battery": "V",
        "pm25": "µg/m³",
        "Temperature": "C",  # the unit table is looked up case-insensitively
        "my_sensor": "",  # unknown sensor: no default unit
    }
    assert all(r.timestamp == RECEIVED for r in readings)
    assert [r.value for r in readings] == [1013.25, 412.0, 3.7, 12.0, 20.0, 7.0]


def test_default_units_fit_the_unit_rule() -> None:
    for sensor, unit in DEFAULT_UNITS.items():
        assert SENSOR_TYPE_RE.fullmatch(sensor)
        assert sensor == sensor.lower()
        assert 0 < len(unit) <= 10
        assert unit.isprintable()


def test_multi_sensor_ignores_metadata_and_unit() -> None:
    message = {
        "deviceId": "d1",
        "name": "kitchen",
        "seq": 17,
        "status": "ok",
        "unit": "F",
        "temperature": 20.5,
    }
    reading = only_reading(parse(message))
    assert reading == Reading("d1", "temperature", 20.5, "C", RECEIVED)
    assert {"name", "seq", "status"} <= MULTI_SENSOR_METADATA_KEYS


@pytest.mark.parametrize(
    ("field_value", "code"),
    [
        ("ok", "invalid_value"),
        ("", "invalid_value"),
        ("nan", "invalid_value"),
        (None, "wrong_type"),
        (True, "wrong_type"),
        ([1], "wrong_type"),
        ({"v": 1}, "wrong_type"),
        (1e16, "value_out_of_range"),
    ],
)
def test_multi_sensor_bad_field_rejects_whole_object(field_value: Any, code: str) -> None:
    message = {"deviceId": "d1", "temperature": 20, "humidty": field_value}
    rejection = only_rejection(parse(message), code)
    assert "'humidty'" in rejection.detail


@pytest.mark.parametrize("key", ["bad key", "x" * 21, "a/b", "t:1", ""])
def test_multi_sensor_bad_key(key: str) -> None:
    rejection = only_rejection(parse({"deviceId": "d1", key: 1}), "invalid_sensor_type")
    assert "sensor field" in rejection.detail


def test_multi_sensor_without_sensors() -> None:
    rejection = only_rejection(parse({"deviceId": "d1", "name": "x"}), "missing_field")
    assert "sensor" in rejection.detail
    only_rejection(parse({"deviceId": "d1"}), "missing_field")
    only_rejection(parse({"deviceId": "d1", "timestamp": "2026-11-28T00:00:00Z"}), "missing_field")


def test_value_without_sensor_type_is_missing_field() -> None:
    rejection = only_rejection(parse(with_(sensor_type=...)), "missing_field")
    assert "sensor_type" in rejection.detail


def test_multi_sensor_needs_device_id() -> None:
    rejection = only_rejection(parse({"temperature": 1}), "missing_field")
    assert "device_id" in rejection.detail


def test_multi_sensor_bad_timestamp_rejects_whole_object() -> None:
    message = {"deviceId": "d1", "temperature": 1, "timestamp": "1999-01-01T00:00:00Z"}
    only_rejection(parse(message), "timestamp_out_of_range")


# --- arrays ------------------------------------------------------------------------------------


def test_array_of_readings() -> None:
    result = parse([GOOD, with_(value=1), with_(sensor_type="humidity", unit="%")])
    assert result.rejections == []
    assert [r.sensor_type for r in result.readings] == ["temperature", "temperature", "humidity"]
    assert [r.value for r in result.readings] == [21.57, 1.0, 21.57]


def test_array_mixing_good_and_bad_items() -> None:
    bad_device: dict[str, Any] = with_(device_id="bad id")
    bad_value: dict[str, Any] = with_(value="NaN")
    items: list[Any] = [GOOD, bad_device, 42, GOOD, bad_value, [GOOD], None, "x"]
    result = parse(items)
    assert result.readings == [GOOD_READING, GOOD_READING]
    got = [(r.index, r.code) for r in result.rejections]
    assert got == [
        (1, "invalid_device_id"),
        (2, "wrong_type"),
        (4, "invalid_value"),
        (5, "wrong_type"),
        (6, "wrong_type"),
        (7, "wrong_type"),
    ]
    assert result.rejections[0].reason.startswith("invalid_device_id: item 1: device_id")


def test_array_item_may_be_multi_sensor() -> None:
    multi = {"deviceId": "m1", "temperature": "1", "humidity": 2}
    result = parse([GOOD, multi, {"deviceId": "m2"}])
    assert [r.sensor_type for r in result.readings] == ["temperature", "temperature", "humidity"]
    assert [(r.index, r.code) for r in result.rejections] == [(2, "missing_field")]


def test_array_all_bad() -> None:
    result = parse([{}, {}])
    assert result.readings == []
    assert [(r.index, r.code) for r in result.rejections] == [
        (0, "missing_field"),
        (1, "missing_field"),
    ]


def test_empty_array() -> None:
    only_rejection(parse(b"[]"), "empty_array")
    only_rejection(parse(b" [ ] "), "empty_array")


def test_deep_array_item_is_rejected_alone() -> None:
    deep = b"[" * 600 + b"1" + b"]" * 600
    result = parse(b"[" + orjson.dumps(GOOD) + b"," + deep + b"]")
    assert result.readings == [GOOD_READING]
    assert [(r.index, r.code) for r in result.rejections] == [(1, "wrong_type")]


def test_deep_object_item_is_rejected_alone() -> None:
    deep = b'{"device_id":"d","temperature":' + b'{"a":' * 400 + b"[]" + b"}" * 400 + b"}"
    result = parse(b"[" + deep + b"]")
    assert [(r.index, r.code) for r in result.rejections] == [(0, "wrong_type")]


# --- bounded work: readings per message --------------------------------------------------------


def test_array_over_the_readings_limit_is_rejected_whole_before_its_items() -> None:
    payload = b"[" + b",".join([b"{}"] * 87_000) + b"]"  # 261,001 bytes of empty objects
    result = parse_message(payload, received_at=RECEIVED, max_payload_bytes=300_000)
    rejection = only_rejection(result, "too_many_readings")
    assert rejection.detail == (
        "message holds 87,000 array items, more than the limit of 10,000 "
        "(IOT_MAX_READINGS_PER_MESSAGE)"
    )


def test_array_at_the_readings_limit_is_parsed() -> None:
    result = parse_message(orjson.dumps([GOOD] * 3), received_at=RECEIVED, max_readings=3)
    assert result.readings == [GOOD_READING] * 3


def test_multi_sensor_fields_count_against_the_limit() -> None:
    fields = {f"t{i}": i for i in range(4)}
    ok = parse_message(
        orjson.dumps({"device_id": "m", **fields}), received_at=RECEIVED, max_readings=4
    )
    assert len(ok.readings) == 4
    over = parse_message(
        orjson.dumps({"device_id": "m", **fields, "t9": 9}), received_at=RECEIVED, max_readings=4
    )
    only_rejection(over, "too_many_readings")


def test_readings_of_all_array_items_count_against_the_limit() -> None:
    multi = {"device_id": "m", "a": 1, "b": 2}
    result = parse_message(orjson.dumps([multi, multi, GOOD]), received_at=RECEIVED, max_readings=4)
    assert only_rejection(result, "too_many_readings").detail.startswith(
        "message holds more than 4 readings"
    )


def test_dead_letter_reason_of_one_rejection_is_its_reason() -> None:
    [rejection] = parse(b"{}").rejections
    assert dead_letter_reason([rejection]) == rejection.reason


def test_dead_letter_reason_counts_by_code_and_lists_the_first_items() -> None:
    items: list[Any] = [{}] * 12 + [42, GOOD]
    result = parse(items)
    reason = dead_letter_reason(result.rejections)
    assert reason.startswith("missing_field: 13 items rejected (missing_field 12, wrong_type 1): ")
    assert "item 0: device_id (or deviceId) is missing" in reason
    assert "item 9: " in reason
    assert "item 10: " not in reason
    assert reason.endswith("; and 3 more")


# --- whole-message rejections ------------------------------------------------------------------


def test_too_large_is_checked_before_parsing() -> None:
    payload = b"x" * (10 * 1024 * 1024)  # not JSON either: size is checked first
    rejection = only_rejection(parse(payload), "too_large")
    assert f"{10 * 1024 * 1024:,} bytes" in rejection.detail


def test_size_limit_boundary() -> None:
    payload = orjson.dumps(GOOD)
    assert only_reading(parse(payload, max_payload_bytes=len(payload)))
    only_rejection(parse(payload, max_payload_bytes=len(payload) - 1), "too_large")


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff",
        b'{"device_id":"\xc3\x28","sensor_type":"t","value":1}',
        b'{"device_id":"\xed\xa0\x80","sensor_type":"t","value":1}',  # UTF-8 encoded surrogate
        b"\x80abc",
        b'"\xf0\x28\x8c\x28"',
    ],
)
def test_invalid_utf8(payload: bytes) -> None:
    only_rejection(parse(payload), "invalid_utf8")


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"   ",
        b"{",
        b"[1,]",
        b'{"a":1,}',
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b'{"device_id":"d","sensor_type":"t","value":NaN}',
        b'{"device_id":"d","sensor_type":"t","value":Infinity}',
        b'{"device_id":"d","sensor_type":"t","value":1e400}',
        b'{"device_id":"\\ud800","sensor_type":"t","value":1}',
        b"\xef\xbb\xbf{}",
        b"{} {}",
        b"{'a': 1}",
    ],
)
def test_invalid_json(payload: bytes) -> None:
    rejection = only_rejection(parse(payload), "invalid_json")
    assert rejection.detail.startswith("payload is not valid JSON")


@pytest.mark.parametrize("payload", [b"[" * 5000, b"[" * 2000 + b"]" * 2000, b'{"a":' * 1100])
def test_too_deep(payload: bytes) -> None:
    only_rejection(parse(payload), "too_deep")


def test_depth_just_below_limit_is_parsed() -> None:
    payload = b"[" * 1000 + b"]" * 1000
    result = parse(payload)
    assert [(r.index, r.code) for r in result.rejections] == [(0, "wrong_type")]


@pytest.mark.parametrize(
    ("payload", "got"),
    [(b"42", "number"), (b'"x"', "string"), (b"null", "null"), (b"true", "boolean")],
)
def test_top_level_wrong_type(payload: bytes, got: str) -> None:
    rejection = only_rejection(parse(payload), "wrong_type")
    assert f"got {got}" in rejection.detail


# --- field rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (with_(device_id=...), "device_id"),
        (with_(value=...), "value"),
        ({}, "device_id"),
    ],
)
def test_missing_field(message: dict[str, Any], field: str) -> None:
    rejection = only_rejection(parse(message), "missing_field")
    assert field in rejection.detail


def test_device_id_length_limits() -> None:
    assert only_reading(parse(with_(device_id="a" * 50))).device_id == "a" * 50
    assert only_reading(parse(with_(device_id="a"))).device_id == "a"
    rejection = only_rejection(parse(with_(device_id="a" * 51)), "invalid_device_id")
    assert rejection.detail == (
        "device_id must be 1-50 characters of A-Z a-z 0-9 . _ : - (got 51 characters)"
    )
    only_rejection(parse(with_(device_id="")), "invalid_device_id")


def test_device_id_full_charset() -> None:
    device_id = "AZaz09._:-"
    assert only_reading(parse(with_(device_id=device_id))).device_id == device_id


@pytest.mark.parametrize(
    "device_id",
    [
        "x'; DROP TABLE readings;--",
        "1 OR 1=1",
        'a"b',
        "dev/1",
        "dév",
        "dev\n",
        " dev",
        "dev\x00",
        "０１",  # full-width digits  # noqa: RUF001
    ],
)
def test_device_id_charset(device_id: str) -> None:
    rejection = only_rejection(parse(with_(device_id=device_id)), "invalid_device_id")
    assert repr(device_id) in rejection.detail


@pytest.mark.parametrize(("device_id", "got"), [(42, "number"), (None, "null"), ([], "array")])
def test_device_id_wrong_type(device_id: Any, got: str) -> None:
    rejection = only_rejection(parse(with_(device_id=device_id)), "wrong_type")
    assert rejection.detail == f"device_id must be a string (got {got})"


def test_detail_never_echoes_much_input() -> None:
    long_text = "Z" * 10_000
    cases: list[tuple[dict[str, Any], str]] = [
        (with_(device_id=long_text), "invalid_device_id"),
        (with_(device_id="!" + long_text[:49]), "invalid_device_id"),
        (with_(value=long_text), "invalid_value"),
        (with_(unit=long_text), "invalid_unit"),
        (with_(timestamp=long_text), "invalid_timestamp"),
        ({"deviceId": "d", long_text: 1}, "invalid_sensor_type"),
        ({"deviceId": "d", "x" + long_text[:19]: "a" + long_text}, "invalid_value"),
    ]
    for message, code in cases:
        rejection = only_rejection(parse(message), code)
        assert "Z" * 61 not in rejection.detail, rejection.detail
        assert len(rejection.detail) < 200


@pytest.mark.parametrize("sensor_type", ["t", "a" * 20, "pm2.5", "air_quality-1"])
def test_sensor_type_accepted(sensor_type: str) -> None:
    assert only_reading(parse(with_(sensor_type=sensor_type))).sensor_type == sensor_type


@pytest.mark.parametrize("sensor_type", ["", "a" * 21, "a:b", "a b", "température", "t;--"])
def test_sensor_type_rejected(sensor_type: str) -> None:
    rejection = only_rejection(parse(with_(sensor_type=sensor_type)), "invalid_sensor_type")
    assert rejection.detail.startswith("sensor_type must be 1-20 characters")


@pytest.mark.parametrize("sensor_type", [None, 1, True, ["t"]])
def test_sensor_type_wrong_type(sensor_type: Any) -> None:
    only_rejection(parse(with_(sensor_type=sensor_type)), "wrong_type")


@pytest.mark.parametrize(
    ("value", "got"),
    [([1], "array"), ({"v": 1}, "object"), (True, "boolean"), (False, "boolean"), (None, "null")],
)
def test_value_wrong_type(value: Any, got: str) -> None:
    rejection = only_rejection(parse(with_(value=value)), "wrong_type")
    assert rejection.detail == f"value must be a number or a numeric string (got {got})"


@pytest.mark.parametrize(
    "value",
    [
        "nan",
        "NaN",
        "-nan",
        "inf",
        "-inf",
        "Infinity",
        "-Infinity",
        "0x10",
        "0x1p3",
        "",
        "   ",
        "1_000",
        "١٢٣",  # Arabic-Indic digits, which float() would accept
        "1,5",
        "1.2.3",
        "e5",
        "1e",
        "--1",
        "21.5C",
        "1" * 65,
    ],
)
def test_value_invalid_string(value: str) -> None:
    rejection = only_rejection(parse(with_(value=value)), "invalid_value")
    assert rejection.detail.startswith("value must be a finite number or a decimal string")


@pytest.mark.parametrize(
    "value", [1e308, -1e308, 1e15 * (1 + 1e-15), -1.5e15, 10**16, 2**64 - 1, "1e400", "-1e16"]
)
def test_value_out_of_range(value: Any) -> None:
    rejection = only_rejection(parse(with_(value=value)), "value_out_of_range")
    assert "1e15" in rejection.detail


@pytest.mark.parametrize("value", [1e15, -1e15, 10**15, 0, -0.0, 5e-324, 1e-300])
def test_value_in_range(value: float) -> None:
    assert only_reading(parse(with_(value=value))).value == value


def test_huge_number_literals() -> None:
    payload = orjson.dumps(GOOD)
    only_rejection(parse(payload.replace(b"21.57", b"1" + b"0" * 30)), "value_out_of_range")
    # A literal beyond a double's range is refused by the JSON parser itself.
    rejection = only_rejection(parse(payload.replace(b"21.57", b"1" + b"0" * 400)), "invalid_json")
    assert "infinity" in rejection.detail


@pytest.mark.parametrize("unit", ["", "C", "µg/m³", "a" * 10, "';--", "m/s^2", "dB(A)", "% rh"])
def test_unit_accepted(unit: str) -> None:
    assert only_reading(parse(with_(unit=unit))).unit == unit


@pytest.mark.parametrize("unit", ["a" * 11, "C\n", "\x00", "\x7f", "C\u200b", "\t"])
def test_unit_rejected(unit: str) -> None:
    rejection = only_rejection(parse(with_(unit=unit)), "invalid_unit")
    assert rejection.detail.startswith("unit must be 0-10 printable characters")


@pytest.mark.parametrize("unit", [1, True, ["C"], {"u": "C"}])
def test_unit_wrong_type(unit: Any) -> None:
    only_rejection(parse(with_(unit=unit)), "wrong_type")


# --- timestamps --------------------------------------------------------------------------------


def ts_of(timestamp: Any, **kwargs: Any) -> datetime:
    return only_reading(parse(with_(timestamp=timestamp), **kwargs)).timestamp


def utc(year: int, month: int, day: int, *, us: int = 0) -> datetime:
    return datetime(year, month, day, microsecond=us, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T00:00:00Z", utc(2026, 11, 28)),
        ("2026-11-28T00:00:00.123Z", utc(2026, 11, 28, us=123_000)),
        ("2026-11-28T00:00:00.123456Z", utc(2026, 11, 28, us=123_456)),
        ("2026-11-28T00:00:00.123456789Z", utc(2026, 11, 28, us=123_456)),
        ("2026-11-28T00:00:00.9999999Z", utc(2026, 11, 28, us=999_999)),
        ("2026-11-28T00:00:00", utc(2026, 11, 28)),
        ("2026-11-28 00:00:00", utc(2026, 11, 28)),
        ("2026-11-28T00:00:00+00:00", utc(2026, 11, 28)),
        ("2026-11-28T02:00:00+02:00", utc(2026, 11, 28)),
        ("2026-11-27T19:00:00-05:00", utc(2026, 11, 28)),
        ("2026-11-28T05:30:00.5+05:30", utc(2026, 11, 28, us=500_000)),
        ("2026-11-28", utc(2026, 11, 28)),
        ("20261128T000000Z", utc(2026, 11, 28)),
    ],
)
def test_iso_timestamp(text: str, expected: datetime) -> None:
    parsed = ts_of(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (1_795_824_000, utc(2026, 11, 28)),
        (1_795_824_000.123, utc(2026, 11, 28, us=123_000)),
        (1_795_824_000.000001, utc(2026, 11, 28, us=1)),
        (1_795_824_000_123, utc(2026, 11, 28, us=123_000)),
        (1_795_824_000_123.5, utc(2026, 11, 28, us=123_500)),
        (946_684_800, utc(2000, 1, 1)),
        (946_684_800_000, utc(2000, 1, 1)),
    ],
)
def test_epoch_timestamp(number: float, expected: datetime) -> None:
    parsed = ts_of(number)
    assert parsed == expected
    assert parsed.tzinfo is UTC


def test_timestamp_lower_bound_is_2000() -> None:
    assert ts_of("2000-01-01T00:00:00Z") == utc(2000, 1, 1)
    for early in ("1999-12-31T23:59:59.999999Z", "2000-01-01T00:00:00+00:01", "1970-01-01"):
        rejection = only_rejection(parse(with_(timestamp=early)), "timestamp_out_of_range")
        assert "before 2000-01-01" in rejection.detail
    for number in (946_684_799, 946_684_799.999, 0, -1, 1e11 + 1, 946_684_799_999, -1e300):
        rejection = only_rejection(parse(with_(timestamp=number)), "timestamp_out_of_range")
        assert "before 2000-01-01" in rejection.detail


def test_future_skew_boundary() -> None:
    limit = RECEIVED + SKEW
    assert ts_of(limit.isoformat()) == limit
    too_far = limit + timedelta(microseconds=1)
    rejection = only_rejection(
        parse(with_(timestamp=too_far.isoformat())), "timestamp_out_of_range"
    )
    assert "is 300.000001 s after the time of receipt (at most 300 s allowed)" in rejection.detail
    years = parse(with_(timestamp=(RECEIVED + timedelta(days=1125.5)).isoformat()))
    detail = only_rejection(years, "timestamp_out_of_range").detail
    assert "is 97,243,200 s (1,125.5 days) after the time of receipt" in detail


def test_future_skew_boundary_epoch() -> None:
    received = utc(2026, 11, 28)
    limit_s = received.timestamp() + 300
    assert ts_of(limit_s, received_at=received) == received + SKEW
    assert ts_of(int(limit_s * 1000), received_at=received) == received + SKEW
    for number in (limit_s + 0.001, int(limit_s * 1000) + 1, 1e11 - 1, 1e17, 2**64 - 1, 1e300):
        result = parse(with_(timestamp=number), received_at=received)
        only_rejection(result, "timestamp_out_of_range")


def test_future_skew_is_configurable() -> None:
    ahead = (RECEIVED + timedelta(hours=1)).isoformat()
    only_rejection(parse(with_(timestamp=ahead)), "timestamp_out_of_range")
    assert ts_of(ahead, max_future_skew_s=3600.0) == RECEIVED + timedelta(hours=1)
    assert ts_of(ahead, max_future_skew_s=float("inf")) == RECEIVED + timedelta(hours=1)
    only_rejection(
        parse(with_(timestamp=RECEIVED.isoformat()), max_future_skew_s=-1.0),
        "timestamp_out_of_range",
    )


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59"]
)
def test_timestamp_at_the_edge_of_datetime(text: str) -> None:
    only_rejection(parse(with_(timestamp=text)), "timestamp_out_of_range")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "1764288000",
        "1764288000123",
        "2026-13-01T00:00:00Z",
        "2026-11-28T25:00:00Z",
        "2026-11-28T00:00:00+25:00",
        "28/11/2026",
        "2026-11-28T00:00:00Z" + " " * 60,
    ],
)
def test_invalid_timestamp(text: str) -> None:
    rejection = only_rejection(parse(with_(timestamp=text)), "invalid_timestamp")
    assert rejection.detail.startswith("timestamp must be an ISO 8601 string")


@pytest.mark.parametrize("value", [True, False, [1], {"t": 1}])
def test_timestamp_wrong_type(value: Any) -> None:
    only_rejection(parse(with_(timestamp=value)), "wrong_type")


# --- the codes -------------------------------------------------------------------------------


def test_rejection_codes_are_small_fixed_and_label_safe() -> None:
    assert tuple(code.value for code in RejectionCode) == REJECTION_CODES
    assert len(set(REJECTION_CODES)) == len(REJECTION_CODES)
    assert len(REJECTION_CODES) <= 20
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", code) for code in REJECTION_CODES)


# --- properties --------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
interesting_keys = st.sampled_from(
    ["device_id", "deviceId", "sensor_type", "value", "unit", "timestamp", "temperature", "seq"]
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(interesting_keys | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=30,
)
field_values = st.one_of(
    json_scalars,
    st.sampled_from(["sim-1", "temperature", "21.5", " 1e3 ", "nan", "C", "2026-11-28T00:00:00Z"]),
    st.integers(min_value=900_000_000, max_value=1_800_000_000_000),
    st.floats(min_value=-2e15, max_value=2e15),
)
near_valid_objects = st.dictionaries(interesting_keys, field_values, max_size=7)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(payload: bytes) -> None:
    check_invariants(parse_message(payload, received_at=RECEIVED), payload)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='{}[]",:0123456789.eE-+ nulltrsdvicZT_', max_size=80))
def test_json_looking_bytes_never_raise(text: str) -> None:
    payload = text.encode()
    check_invariants(parse_message(payload, received_at=RECEIVED), payload)


@settings(max_examples=400, deadline=None)
@given(json_values | st.lists(json_values, max_size=4))
def test_arbitrary_json_never_raises(value: Any) -> None:
    payload = orjson.dumps(value)
    result = parse_message(payload, received_at=RECEIVED)
    check_invariants(result, payload)
    if type(value) is list and value:
        indices = [r.index for r in result.rejections if r.index is not None]
        assert len(indices) == len(result.rejections)
        assert indices == sorted(set(indices))
        assert all(r.index is not None for r in result.rejections)


@settings(max_examples=400, deadline=None)
@given(near_valid_objects | st.lists(near_valid_objects, min_size=1, max_size=4))
def test_near_valid_objects_never_raise(value: Any) -> None:
    payload = orjson.dumps(value)
    check_invariants(parse_message(payload, received_at=RECEIVED), payload)


offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
valid_readings = st.builds(
    Reading,
    device_id=st.from_regex(DEVICE_ID_RE, fullmatch=True),
    sensor_type=st.from_regex(SENSOR_TYPE_RE, fullmatch=True),
    value=st.floats(min_value=-1e15, max_value=1e15, allow_nan=False)
    | st.integers(min_value=-(10**15), max_value=10**15).map(float),
    unit=st.text(max_size=10).filter(str.isprintable),
    timestamp=st.datetimes(
        min_value=datetime(2000, 1, 1),  # noqa: DTZ001
        max_value=(RECEIVED + SKEW).replace(tzinfo=None),
        timezones=st.just(UTC),
    ),
)


@settings(max_examples=400, deadline=None)
@given(valid_readings, offsets, st.sampled_from(["iso", "z", "naive", "number", "ms"]), st.data())
def test_valid_reading_round_trips(
    reading: Reading, offset: timezone, ts_form: str, data: st.DataObject
) -> None:
    timestamp: Any
    if ts_form == "iso":
        timestamp = reading.timestamp.astimezone(offset).isoformat()
    elif ts_form == "z":
        timestamp = reading.timestamp.isoformat().replace("+00:00", "Z")
    elif ts_form == "naive":
        timestamp = reading.timestamp.replace(tzinfo=None).isoformat()
    else:
        # A float epoch carries ~0.2 µs of resolution, so keep numbers to whole milliseconds.
        reading = Reading(
            reading.device_id,
            reading.sensor_type,
            reading.value,
            reading.unit,
            reading.timestamp.replace(microsecond=reading.timestamp.microsecond // 1000 * 1000),
        )
        millis = round(reading.timestamp.timestamp() * 1000)
        timestamp = millis if ts_form == "ms" else millis / 1000
    value: Any = reading.value
    if data.draw(st.booleans(), label="value as string"):
        value = repr(reading.value)
    message: dict[str, Any] = {
        data.draw(st.sampled_from(["device_id", "deviceId"]), label="id key"): reading.device_id,
        "sensor_type": reading.sensor_type,
        "value": value,
        "timestamp": timestamp,
    }
    if reading.unit or data.draw(st.booleans(), label="explicit empty unit"):
        message["unit"] = reading.unit
    parsed = only_reading(parse(message))
    assert parsed == reading
    assert parsed.timestamp.tzinfo is UTC
    assert type(parsed.value) is float


# The fast path of a plain single reading (parse._plain_reading) against the general parser:
# wherever the fast path accepts a payload, the general parser gives the same reading; every
# other payload is the general parser's alone. Raw JSON text, so that escaped keys, duplicate
# keys, number spellings and whitespace, which orjson.dumps never writes, are covered.
_KNOWN_KEYS = ["device_id", "sensor_type", "value", "unit", "timestamp"]
_KEY_TEXTS = st.sampled_from(
    [*(f'"{k}"' for k in _KNOWN_KEYS), '"device\\u005fid"', '"deviceId"', '"extra"', '"Value"']
)
_NUMBERS = [
    "1", "-0", "-0.0", "21.57", "1E2", "1e15", "-1e15", "1e15001", "1000000000000001",
    "0.1e-400", "123456789012345678901234567890", "1.00000000000000000000001",
]  # fmt: skip
_POOLS = {
    "device_id": ['"sim-1"', '""', '"a b"', '"a\\u0000"', '"\\ud800"', f'"{"x" * 51}"', "1"],
    "sensor_type": ['"t"', '"temp erature"', f'"{"t" * 21}"', "true", "null"],
    "value": [*_NUMBERS, "true", "null", '"21.5"', "{}", "[]"],
    "unit": ['"C"', '""', '" "', '"a\\u0000"', '"°C"', '"0123456789"', '"0123456789a"', "null",
             '"\\u2028"', "1"],
    "timestamp": ['"2026-11-28T00:03:00Z"', '"2026-11-28T00:03:00.1234567+01:00"',
                  '"2026-11-28 00:03:00"', '"2026-11-28"', '"1999-12-31T23:59:59Z"',
                  '"2026-11-28T00:30:00Z"', "1764288000", "1764288000123", "1764288000.5",
                  "946684799", "99999999999999999", "null", "true", '"x"'],
}  # fmt: skip
_VALUE_TEXTS = st.sampled_from([text for pool in _POOLS.values() for text in pool])
_SPACES = st.sampled_from(["", " ", "\n\t "])


_VALID = {"device_id": '"sim-1"', "sensor_type": '"t"', "value": "21.5", "unit": '"C"',
          "timestamp": '"2026-11-28T00:03:00Z"'}  # fmt: skip


@st.composite
def _object_texts(draw: st.DrawFn) -> bytes:
    """A single-reading object as JSON text, valid but for at most two changes: a value of
    its key's kind (valid or not), another key, an extra key; unit and timestamp optional."""
    keys = ["device_id", "sensor_type", "value"]
    keys += draw(st.lists(st.sampled_from(["unit", "timestamp"]), unique=True))
    pairs = [(f'"{key}"', _VALID[key]) for key in keys]
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, len(pairs) - 1))
        key = keys[i]
        pairs[i] = draw(
            st.tuples(st.just(pairs[i][0]), st.sampled_from(_POOLS[key]))
            | st.tuples(_KEY_TEXTS, st.just(pairs[i][1]))
        )
    pairs += draw(st.lists(st.tuples(_KEY_TEXTS, _VALUE_TEXTS), max_size=1))
    pairs = draw(st.permutations(pairs))
    space = draw(_SPACES)
    body = ",".join(f"{space}{key}{space}:{space}{value}" for key, value in pairs)
    return f"{space}{{{body}}}{space}".encode()


@settings(max_examples=1500, deadline=None)
@given(
    _object_texts()
    | st.dictionaries(st.sampled_from(_KNOWN_KEYS), field_values, max_size=5).map(orjson.dumps)
)
def test_the_plain_reading_fast_path_agrees_with_the_general_parser(payload: bytes) -> None:
    general = _parse_document(payload, RECEIVED, SKEW.total_seconds(), 10_000)
    assert parse_message(payload, received_at=RECEIVED) == general


@pytest.mark.parametrize(
    "payload",
    [
        orjson.dumps(GOOD),
        b'{"value": 3, "sensor_type": "t", "device_id": "d", "timestamp": 1764288000123}',
        b'{"device_id": "d", "sensor_type": "t", "value": -1.5, "unit": null}',
    ],
)
def test_a_plain_single_reading_takes_the_fast_path(payload: bytes) -> None:
    assert _plain_reading(payload, RECEIVED, SKEW.total_seconds()) is not None


def test_name_checks_cache_only_names_short_enough_to_be_valid() -> None:
    _matches_device_id.cache_clear()
    _matches_sensor_type.cache_clear()
    long = "x" * 100_000  # one hostile message must not pin 100 KB in a cache
    single = parse_message(
        orjson.dumps({"device_id": long, "sensor_type": "t", "value": 1}), received_at=RECEIVED
    )
    multi = parse_message(orjson.dumps({"device_id": "d", long: 1}), received_at=RECEIVED)
    assert [r.code for r in single.rejections + multi.rejections] == [
        "invalid_device_id",
        "invalid_sensor_type",
    ]
    assert _matches_device_id.cache_info().currsize == 1  # "d" only
    assert _matches_sensor_type.cache_info().currsize == 0
