"""Tests of iotcollector.domain.mapping: every rule feature, the start-up checks, hostile input."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import yaml

from iotcollector.domain.mapping import (
    MappingError,
    Mappings,
    PayloadKind,
    apply_rule,
    compile_mappings,
    filters_overlap,
    overlapping_filters,
)
from iotcollector.domain.reading import ParseResult, Reading

RECEIVED = datetime(2026, 12, 2, 12, 0, 5, tzinfo=UTC)

RULES = """
mappings:
  - topic: "shellies/{device_id}/sensor/{sensor_type}"
    payload: value
  - topic: "{device_id}/sensor/{sensor_type}/state"
    payload: value
  - topic: "tele/{device_id}/SENSOR"
    timestamp: "$.Time"
    readings:
      - {sensor_type: temperature, value: "$.AM2301.Temperature", unit: C}
      - {sensor_type: humidity, value: "$.AM2301.Humidity", unit: "%"}
  - topic: "zigbee2mqtt/{device_id}"
    readings: auto
    exclude: [linkquality]
    units: {battery: "%"}
  - topic: "spBv1.0/#"
    payload: sparkplug_b
  - topic: "plant/+/meters"
    device_id: "$.meter.id"
    timestamp: "$.ts"
    readings:
      - {sensor_type: "$.kind", value: "$.raw", scale: 0.1, offset: -40, unit: C}
  - topic: "fixed/#"
    device_id: boiler-1
    sensor_type: pressure
    value: "$.p"
"""


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return compile_mappings(yaml.safe_load(RULES))


def apply(mappings: Mappings, topic: str, payload: Any, **kwargs: Any) -> ParseResult:
    match = mappings.match(topic)
    assert match is not None, topic
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return apply_rule(match, raw, received_at=RECEIVED, **kwargs)


def test_bare_value_shelly_gen1(mappings: Mappings) -> None:
    result = apply(mappings, "shellies/shelly1-abc/sensor/temperature", b"21.5")
    assert result.rejections == []
    assert result.readings == [Reading("shelly1-abc", "temperature", 21.5, "C", RECEIVED)]


def test_bare_value_esphome_string_and_quotes(mappings: Mappings) -> None:
    result = apply(mappings, "livingroom/sensor/humidity/state", b' "45.20" ')
    assert result.readings == [Reading("livingroom", "humidity", 45.2, "%", RECEIVED)]


@pytest.mark.parametrize(
    ("payload", "code"),
    [(b"nan", "invalid_value"), (b"ON", "invalid_value"), (b"1" * 65, "invalid_value")],
)
def test_bad_bare_values_are_rejected_naming_the_rule(
    mappings: Mappings, payload: bytes, code: str
) -> None:
    result = apply(mappings, "shellies/s1/sensor/temperature", payload)
    assert result.readings == []
    [rejection] = result.rejections
    assert rejection.code == code
    assert "rule 0 (topic 'shellies/{device_id}/sensor/{sensor_type}')" in rejection.detail


def test_tasmota_paths_timestamp_and_units(mappings: Mappings) -> None:
    payload = {
        "Time": "2026-12-02T12:00:00",
        "AM2301": {"Temperature": 21.3, "Humidity": 45.1},
        "TempUnit": "C",
    }
    result = apply(mappings, "tele/tasmota_1A2B3C/SENSOR", payload)
    at = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert result.rejections == []
    assert result.readings == [
        Reading("tasmota_1A2B3C", "temperature", 21.3, "C", at),
        Reading("tasmota_1A2B3C", "humidity", 45.1, "%", at),
    ]


def test_missing_path_stores_the_rest_and_rejects_once(mappings: Mappings) -> None:
    payload = {"Time": "2026-12-02T12:00:00", "AM2301": {"Temperature": 21.3}}
    result = apply(mappings, "tele/t1/SENSOR", payload)
    assert [r.sensor_type for r in result.readings] == ["temperature"]
    [rejection] = result.rejections
    assert rejection.code == "missing_field"
    assert "$.AM2301.Humidity is not in the message" in rejection.detail


def test_missing_timestamp_path_rejects_the_message(mappings: Mappings) -> None:
    result = apply(mappings, "tele/t1/SENSOR", {"AM2301": {"Temperature": 1, "Humidity": 2}})
    assert result.readings == []
    assert result.rejections[0].code == "missing_field"
    assert "timestamp: $.Time" in result.rejections[0].detail


def test_zigbee2mqtt_auto_exclude_and_units(mappings: Mappings) -> None:
    payload = {
        "temperature": 21.3,
        "humidity": 45,
        "battery": 97,
        "linkquality": 120,
        "state": "ON",
        "occupancy": True,
        "color": {"x": 0.3},
        "update": None,
    }
    result = apply(mappings, "zigbee2mqtt/kitchen_sensor", payload)
    assert result.rejections == []
    assert result.readings == [
        Reading("kitchen_sensor", "temperature", 21.3, "C", RECEIVED),
        Reading("kitchen_sensor", "humidity", 45.0, "%", RECEIVED),
        Reading("kitchen_sensor", "battery", 97.0, "%", RECEIVED),
    ]


def test_auto_bad_key_rejected_others_stored(mappings: Mappings) -> None:
    payload = {"temperature": 20, "a key with spaces": 1}
    result = apply(mappings, "zigbee2mqtt/k", payload)
    assert [r.sensor_type for r in result.readings] == ["temperature"]
    assert result.rejections[0].code == "invalid_sensor_type"


def test_auto_bounds_readings_per_message(mappings: Mappings) -> None:
    payload = {f"s{i}": i for i in range(50)}
    result = apply(mappings, "zigbee2mqtt/k", payload, max_readings=10)
    assert result.readings == []
    assert result.rejections[0].code == "too_many_readings"


def test_device_and_sensor_from_paths_scale_offset_epoch(mappings: Mappings) -> None:
    payload = {"meter": {"id": "m-7"}, "kind": "temperature", "raw": 612, "ts": 1796212800}
    result = apply(mappings, "plant/north/meters", payload)
    assert result.rejections == []
    [reading] = result.readings
    assert (reading.device_id, reading.sensor_type, reading.unit) == ("m-7", "temperature", "C")
    assert reading.value == pytest.approx(21.2)
    assert reading.timestamp == datetime.fromtimestamp(1796212800, UTC)


def test_fixed_device_and_rule_level_value(mappings: Mappings) -> None:
    result = apply(mappings, "fixed/a/b/c", {"p": "1013.2"})
    assert result.readings == [Reading("boiler-1", "pressure", 1013.2, "hPa", RECEIVED)]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"meter": {"id": 7}, "kind": "t", "raw": 1, "ts": 1796212800}, "wrong_type"),
        ({"meter": {"id": "m"}, "kind": "t", "raw": [1], "ts": 1796212800}, "wrong_type"),
        ({"meter": {"id": "m"}, "kind": "t", "raw": 1, "ts": "yesterday"}, "invalid_timestamp"),
        ({"meter": {"id": "m"}, "kind": "t", "raw": 1e20, "ts": 1796212800}, "value_out_of_range"),
        ({"meter": "m", "kind": "t", "raw": 1, "ts": 1796212800}, "missing_field"),
        ([1, 2, 3], "missing_field"),
        ("text", "missing_field"),
    ],
)
def test_wrong_types_and_missing_paths_are_rejected(
    mappings: Mappings, payload: Any, code: str
) -> None:
    result = apply(mappings, "plant/x/meters", payload)
    assert result.readings == []
    assert [r.code for r in result.rejections] == [code]
    assert result.rejections[0].detail.startswith("rule 5 (topic 'plant/+/meters')")


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[" * 5000 + b"]" * 5000, "too_deep"),
        (b"\xff\xfe", "invalid_utf8"),
        (b'{"temperature": 1, "pad": "' + b"x" * 300_000 + b'"}', "too_large"),
    ],
)
def test_hostile_payloads_on_mapped_topics(mappings: Mappings, payload: bytes, code: str) -> None:
    result = apply(mappings, "zigbee2mqtt/k", payload)
    assert result.readings == []
    assert [r.code for r in result.rejections] == [code]


def test_first_matching_rule_decides_and_unmatched_is_none(mappings: Mappings) -> None:
    match = mappings.match("shellies/a/sensor/temperature")
    assert match is not None
    assert match.rule.index == 0
    assert mappings.match("iot/data") is None
    assert mappings.match("tele/a/STATE") is None
    assert mappings.match("tele/a/SENSOR/extra") is None
    spb = mappings.match("spBv1.0/g/DDATA/n/d")
    assert spb is not None
    assert spb.rule.payload is PayloadKind.SPARKPLUG_B


def test_wildcards_follow_mqtt() -> None:
    m = compile_mappings({"mappings": [{"topic": "#", "device_id": "d", "readings": "auto"}]})
    assert m.match("a") is not None
    assert m.match("a/b/c") is not None
    assert m.match("$SYS/broker/load") is None  # MQTT: wildcards never match $ topics
    m = compile_mappings({"mappings": [{"topic": "a/#", "device_id": "d", "readings": "auto"}]})
    assert m.match("a") is not None  # '#' also matches the parent level
    assert m.match("b/a") is None


def test_filters_to_subscribe(mappings: Mappings) -> None:
    assert mappings.filters == (
        "shellies/+/sensor/+",
        "+/sensor/+/state",
        "tele/+/SENSOR",
        "zigbee2mqtt/+",
        "spBv1.0/#",
        "plant/+/meters",
        "fixed/#",
    )


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ({"payload": "value"}, "rule 1: topic: missing"),
        ({"topic": "a/{device}", "readings": "auto"}, "only {device_id} and {sensor_type} bind"),
        ({"topic": "a/#/b", "device_id": "d", "readings": "auto"}, "'#' must be the last level"),
        ({"topic": "a/x+", "device_id": "d", "readings": "auto"}, "must fill a level"),
        ({"topic": "$share/g/a", "device_id": "d", "readings": "auto"}, "IOT_MQTT_SHARED_GROUP"),
        ({"topic": "a/{device_id}", "payload": "xml"}, "payload: must be json, value"),
        ({"topic": "a/{device_id}", "reading": "auto"}, "reading: unknown field"),
        ({"topic": "a", "readings": "auto"}, "device_id: missing"),
        (
            {"topic": "a/{device_id}", "device_id": "x", "readings": "auto"},
            "device_id: given twice",
        ),
        ({"topic": "a/{device_id}"}, "readings: missing"),
        ({"topic": "a/{device_id}", "readings": []}, "readings: must be auto or a non-empty"),
        ({"topic": "a/{device_id}", "readings": [{"value": "$.v"}]}, "readings[0].sensor_type"),
        (
            {"topic": "a/{device_id}", "readings": [{"sensor_type": "t"}]},
            "readings[0].value: missing",
        ),
        (
            {"topic": "a/{device_id}", "readings": [{"sensor_type": "t", "value": "$..v"}]},
            "readings[0].value: '$..v'",
        ),
        (
            {
                "topic": "a/{device_id}",
                "readings": [{"sensor_type": "t", "value": "$.v", "unit": "x" * 11}],
            },
            "readings[0].unit: must be text of 0-10",
        ),
        (
            {
                "topic": "a/{device_id}",
                "readings": [{"sensor_type": "t", "value": "$.v", "scale": "2"}],
            },
            "readings[0].scale: must be a finite number",
        ),
        (
            {
                "topic": "a/{device_id}",
                "readings": [{"sensor_type": "t", "value": "$.v", "min": 1}],
            },
            "readings[0].min: unknown field",
        ),
        ({"topic": "a/{device_id}", "readings": "auto", "value": "$.v"}, "value: not used with"),
        ({"topic": "a/{device_id}", "readings": "auto", "exclude": "x"}, "exclude: must be a list"),
        (
            {"topic": "a/{device_id}", "exclude": ["x"], "value": "$.v", "sensor_type": "t"},
            "exclude: only",
        ),
        ({"topic": "a/{device_id}/{sensor_type}", "readings": "auto"}, "{sensor_type} is not used"),
        (
            {"topic": "spBv1.0/#", "payload": "sparkplug_b", "timestamp": "$.t"},
            "timestamp: not used",
        ),
        ({"topic": "a/{device_id}", "payload": "value"}, "sensor_type: missing"),
        (
            {"topic": "a/{device_id}", "payload": "value", "sensor_type": "$.t"},
            "a bare value has no",
        ),
        (
            {"topic": "a/{device_id}/{sensor_type}", "payload": "value", "timestamp": "$.t"},
            "timestamp: not used",
        ),
        ({"topic": "a", "device_id": 5, "readings": "auto"}, "device_id: must be a JSONPath"),
    ],
)
def test_bad_rules_name_rule_and_field(rule: dict[str, Any], says: str) -> None:
    good = {"topic": "ok/{device_id}", "readings": "auto"}
    with pytest.raises(MappingError) as raised:
        compile_mappings({"mappings": [good, rule]})
    message = str(raised.value)
    assert message.startswith("rule 1")
    if "topic" in rule and isinstance(rule["topic"], str):
        assert f"(topic {rule['topic']!r})" in message
    assert says in message


@pytest.mark.parametrize(
    "document", [None, [], {"mapping": []}, {"mappings": []}, {"mappings": "x"}]
)
def test_bad_file_shape(document: Any) -> None:
    with pytest.raises(MappingError, match="mappings"):
        compile_mappings(document)


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("iot/data", "zigbee2mqtt/+", False),
        ("#", "zigbee2mqtt/+", True),
        ("iot/#", "iot/data", True),
        ("iot/#", "iot", True),
        ("+/sensor/+/state", "livingroom/sensor/t/state", True),
        ("+/sensor/+/state", "a/b", False),
        ("a/+", "a/b/c", False),
        ("a/b", "a/b", True),
        ("spBv1.0/#", "iot/data", False),
    ],
)
def test_filters_overlap(a: str, b: str, overlap: bool) -> None:
    assert filters_overlap(a, b) is overlap
    assert filters_overlap(b, a) is overlap


def test_overlapping_filters_are_every_pair_not_only_data_against_rules() -> None:
    subscribed = ("iot/#", "iot/status/+", "tele/+/SENSOR", "tele/#", "zigbee2mqtt/+")
    assert overlapping_filters(subscribed) == [
        ("iot/#", "iot/status/+"),  # data topics against the status topic
        ("tele/+/SENSOR", "tele/#"),  # two rules
    ]
    assert overlapping_filters(("iot/data", "iot/status/+", "zigbee2mqtt/+")) == []
