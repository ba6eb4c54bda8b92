"""Tests of the Sparkplug B host: births, aliases, deaths, restarts, refused metrics."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from iotcollector.domain.reading import Reading, SparkplugBirth, StatusChange
from iotcollector.domain.sparkplug import sensor_type
from iotcollector.pipeline.sparkplug_host import SparkplugHost
from support.sparkplug import (
    BOOLEAN,
    DOUBLE,
    FLOAT,
    INT8,
    INT32,
    INT64,
    STRING,
    UINT32,
    encode,
    metric,
)

RECEIVED = datetime(2026, 12, 2, 12, 0, 5, tzinfo=UTC)
T0 = 1796212800000  # 2026-12-02T12:00:00Z in ms
AT = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)

NBIRTH = encode(
    [
        metric("bdSeq", 0, datatype=INT64),
        metric("Node Control/Rebirth", False, datatype=BOOLEAN),
        metric("uptime", 12, alias=1, datatype=UINT32),
    ],
    timestamp=T0,
)
DBIRTH = encode(
    [
        metric("Inputs/Temperature", 21.5, alias=10, datatype=DOUBLE, unit="C"),
        metric("Inputs/Pressure", 1.5, alias=11, datatype=FLOAT, unit="bar"),
        metric("Running", True, alias=12, datatype=BOOLEAN),
        metric("Offset", -3, alias=13, datatype=INT32),
    ],
    timestamp=T0,
)
DDATA = encode(
    [
        metric(value=22.0, alias=10, datatype=DOUBLE, timestamp=T0 + 1000),
        metric(value=False, alias=12, datatype=BOOLEAN, timestamp=T0 + 1000),
    ],
    timestamp=T0 + 2000,
)


def test_births_and_alias_only_data() -> None:
    host = SparkplugHost()
    node = host.receive("spBv1.0/plant/NBIRTH/line1", NBIRTH, received_at=RECEIVED)
    assert node.readings == [Reading("line1", "uptime", 12.0, "", AT)]
    assert [(s.device_id, s.status) for s in node.statuses] == [("line1", "online")]
    assert node.rejections == []
    [birth] = node.statuses
    assert isinstance(birth, SparkplugBirth)
    assert (birth.node_key, birth.device, birth.topic) == (
        "plant/line1",
        "",
        "spBv1.0/plant/NBIRTH/line1",
    )
    dev = host.receive("spBv1.0/plant/DBIRTH/line1/motor-1", DBIRTH, received_at=RECEIVED)
    assert dev.rejections == []
    assert [(s.device_id, s.status) for s in dev.statuses] == [("line1:motor-1", "online")]
    assert dev.readings == [
        Reading("line1:motor-1", "Inputs.Temperature", 21.5, "C", AT),
        Reading("line1:motor-1", "Inputs.Pressure", 1.5, "bar", AT),
        Reading("line1:motor-1", "Running", 1.0, "", AT),
        Reading("line1:motor-1", "Offset", -3.0, "", AT),
    ]
    data = host.receive("spBv1.0/plant/DDATA/line1/motor-1", DDATA, received_at=RECEIVED)
    at = datetime(2026, 12, 2, 12, 0, 1, tzinfo=UTC)
    assert data.rejections == []
    assert data.readings == [
        Reading("line1:motor-1", "Inputs.Temperature", 22.0, "C", at),
        Reading("line1:motor-1", "Running", 0.0, "", at),
    ]


def test_unknown_alias_is_rejected_and_asks_for_a_rebirth() -> None:
    host = SparkplugHost()
    out = host.receive("spBv1.0/plant/DDATA/line1/motor-1", DDATA, received_at=RECEIVED)
    assert out.readings == []
    [rejection] = out.rejections
    assert rejection.code == "unknown_alias"
    assert "aliases 10, 12 of edge node 'plant/line1'" in rejection.detail
    assert out.rebirth_topic == "spBv1.0/plant/NCMD/line1"


def test_remembered_births_decode_after_a_restart() -> None:
    first = SparkplugHost()
    births = [
        *first.receive("spBv1.0/plant/NBIRTH/line1", NBIRTH, received_at=RECEIVED).statuses,
        *first.receive("spBv1.0/plant/DBIRTH/line1/motor-1", DBIRTH, received_at=RECEIVED).statuses,
    ]
    restarted = SparkplugHost()
    for birth in reversed(births):  # kept births are restored newest first
        assert isinstance(birth, SparkplugBirth)
        assert restarted.remember(birth.topic, birth.payload, received_at=birth.at)
    out = restarted.receive("spBv1.0/plant/DDATA/line1/motor-1", DDATA, received_at=RECEIVED)
    assert out.rejections == []
    assert [r.sensor_type for r in out.readings] == ["Inputs.Temperature", "Running"]


def test_nbirth_starts_the_session_afresh() -> None:
    host = SparkplugHost()
    host.receive("spBv1.0/plant/NBIRTH/line1", NBIRTH, received_at=RECEIVED)
    host.receive("spBv1.0/plant/DBIRTH/line1/motor-1", DBIRTH, received_at=RECEIVED)
    host.receive("spBv1.0/plant/NBIRTH/line1", NBIRTH, received_at=RECEIVED)
    out = host.receive("spBv1.0/plant/DDATA/line1/motor-1", DDATA, received_at=RECEIVED)
    assert [r.code for r in out.rejections] == ["unknown_alias"]


def test_deaths_mark_offline_node_and_its_devices() -> None:
    host = SparkplugHost()
    host.receive("spBv1.0/plant/NBIRTH/line1", NBIRTH, received_at=RECEIVED)
    host.receive("spBv1.0/plant/DBIRTH/line1/motor-1", DBIRTH, received_at=RECEIVED)
    host.receive("spBv1.0/plant/DBIRTH/line1/motor-2", DBIRTH, received_at=RECEIVED)
    ddeath = host.receive("spBv1.0/plant/DDEATH/line1/motor-2", encode([]), received_at=RECEIVED)
    assert ddeath.statuses == [StatusChange("line1:motor-2", "offline", RECEIVED)]
    ndeath = host.receive("spBv1.0/plant/NDEATH/line1", encode([]), received_at=RECEIVED)
    assert ndeath.statuses == [
        StatusChange("line1", "offline", RECEIVED),
        StatusChange("line1:motor-1", "offline", RECEIVED),
    ]


def test_unsupported_types_are_rejected_the_rest_stored() -> None:
    payload = encode(
        [
            metric("Properties/Hardware Make", "Acme", datatype=STRING),
            metric("temp", 20.5, datatype=DOUBLE),
            metric("raw", 200, datatype=INT8),
            metric("big", -5, datatype=INT64),
        ],
        timestamp=T0,
    )
    out = SparkplugHost().receive("spBv1.0/g/NDATA/n1", payload, received_at=RECEIVED)
    assert [(r.sensor_type, r.value) for r in out.readings] == [
        ("temp", 20.5),
        ("raw", -56.0),
        ("big", -5.0),
    ]
    [rejection] = out.rejections
    assert rejection.code == "unsupported_metric"
    assert "'Properties/Hardware Make' (String)" in rejection.detail


@pytest.mark.parametrize(
    ("topic", "payload", "code"),
    [
        ("spBv1.0/g/DDATA/n1/d1", b"\xff\xff\xff", "invalid_protobuf"),
        ("spBv1.0/g/DDATA/n1", encode([]), "invalid_topic"),
        ("spBv1.0/g/NOPE/n1", encode([]), "invalid_topic"),
        ("spBv1.0/g", encode([]), "invalid_topic"),
    ],
)
def test_bad_messages_are_rejected(topic: str, payload: bytes, code: str) -> None:
    out = SparkplugHost().receive(topic, payload, received_at=RECEIVED)
    assert out.readings == []
    assert [r.code for r in out.rejections] == [code]


@pytest.mark.parametrize(
    "topic", ["spBv1.0/g/NCMD/n1", "spBv1.0/g/DCMD/n1/d", "spBv1.0/STATE/host"]
)
def test_commands_and_state_are_not_data(topic: str) -> None:
    out = SparkplugHost().receive(topic, b"anything", received_at=RECEIVED)
    assert (out.readings, out.rejections, out.statuses) == ([], [], [])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("temperature", "temperature"),
        ("Inputs/Temperature", "Inputs.Temperature"),
        ("Motor Speed", "Motor_Speed"),
        ("Outputs/Motor Speed Setpoint", "Motor_Speed_S-"),
        ("", "metric-"),
    ],
)
def test_sensor_type_rule(name: str, expected: str) -> None:
    result = sensor_type(name)
    assert result.startswith(expected)
    assert 1 <= len(result) <= 20
    assert sensor_type(name) == result  # stable


def test_long_names_stay_distinct() -> None:
    a = sensor_type("Outputs/Motor Speed Setpoint A")
    b = sensor_type("Outputs/Motor Speed Setpoint B")
    assert a != b


def test_more_metrics_than_the_limit_are_refused_before_reading() -> None:
    payload = encode([metric(f"m{i}", float(i), datatype=DOUBLE) for i in range(11)])
    out = SparkplugHost(max_metrics=10).receive("spBv1.0/g/NDATA/n1", payload, received_at=RECEIVED)
    assert out.readings == []
    assert [r.code for r in out.rejections] == ["too_many_readings"]


def _birth(aliases: range) -> bytes:
    payload: bytes = encode([metric(f"m{a}", 1.0, alias=a, datatype=DOUBLE) for a in aliases])
    return payload


def test_births_of_many_edge_nodes_forget_the_oldest_beyond_the_bound() -> None:
    host = SparkplugHost(max_entries=100)
    for n in range(50):  # a publisher inventing edge nodes: 4 + 10 entries each
        host.receive(f"spBv1.0/g/NBIRTH/n{n}", _birth(range(10)), received_at=RECEIVED)
        assert host.entries <= 100
    data = encode([metric(value=2.0, alias=3, datatype=DOUBLE)])
    latest = host.receive("spBv1.0/g/NDATA/n49", data, received_at=RECEIVED)
    assert [r.sensor_type for r in latest.readings] == ["m3"]
    forgotten = host.receive("spBv1.0/g/NDATA/n0", data, received_at=RECEIVED)
    assert [r.code for r in forgotten.rejections] == ["unknown_alias"]  # replayable after a rebirth
    assert forgotten.rebirth_topic == "spBv1.0/g/NCMD/n0"


def test_restoring_newest_first_keeps_what_the_newer_birth_defined() -> None:
    host = SparkplugHost()
    newer = encode([metric("new", 1.0, alias=1, datatype=DOUBLE)])
    older = encode([metric("old", 1.0, alias=1, datatype=DOUBLE), metric("kept", 1.0, alias=2)])
    assert host.remember("spBv1.0/g/DBIRTH/n/d", newer, received_at=RECEIVED)
    assert host.remember("spBv1.0/g/NBIRTH/n", older, received_at=RECEIVED)  # not afresh
    data = encode([metric(value=2.0, alias=1, datatype=DOUBLE), metric(value=3.0, alias=2)])
    out = host.receive("spBv1.0/g/DDATA/n/d", data, received_at=RECEIVED)
    assert [r.sensor_type for r in out.readings] == ["new", "kept"]


def test_restoring_stops_at_the_bound_forgetting_the_oldest() -> None:
    host = SparkplugHost(max_entries=100)
    restored = 0
    for n in reversed(range(50)):  # newest first: 4 + 10 entries each, 7 fit
        if not host.remember(f"spBv1.0/g/NBIRTH/n{n}", _birth(range(10)), received_at=RECEIVED):
            break
        restored += 1
    assert (restored, host.entries) == (7, 98)
    host.receive("spBv1.0/g/NBIRTH/n50", _birth(range(10)), received_at=RECEIVED)
    data = encode([metric(value=2.0, alias=3, datatype=DOUBLE)])
    assert host.receive("spBv1.0/g/NDATA/n43", data, received_at=RECEIVED).rejections
    assert host.receive("spBv1.0/g/NDATA/n44", data, received_at=RECEIVED).readings


def test_dbirths_under_one_node_count_against_the_bound() -> None:
    host = SparkplugHost(max_entries=100)
    host.receive("spBv1.0/g/NBIRTH/old", _birth(range(5)), received_at=RECEIVED)
    for d in range(20):
        topic = f"spBv1.0/g/DBIRTH/n/d{d}"
        host.receive(topic, _birth(range(d * 10, d * 10 + 10)), received_at=RECEIVED)
    assert host.entries == 4 + 2 * 20 + 200  # the others are forgotten, the newest kept whole
    data = encode([metric(value=2.0, alias=1, datatype=DOUBLE)])
    out = host.receive("spBv1.0/g/NDATA/old", data, received_at=RECEIVED)
    assert [r.code for r in out.rejections] == ["unknown_alias"]


def test_data_of_unknown_edge_nodes_is_not_remembered() -> None:
    host = SparkplugHost()
    data = encode([metric(value=2.0, alias=1, datatype=DOUBLE)])
    for n in range(100):
        host.receive(f"spBv1.0/g/NDATA/n{n}", data, received_at=RECEIVED)
        host.receive(f"spBv1.0/g/DDATA/n{n}/d", data, received_at=RECEIVED)
    assert host.entries == 0


def test_a_rebirth_replaces_the_node_and_keeps_the_count() -> None:
    host = SparkplugHost()
    host.receive("spBv1.0/g/NBIRTH/n", _birth(range(10)), received_at=RECEIVED)
    host.receive("spBv1.0/g/DBIRTH/n/d", _birth(range(10, 15)), received_at=RECEIVED)
    assert host.entries == 4 + 10 + 2 + 5
    host.receive("spBv1.0/g/NBIRTH/n", _birth(range(3)), received_at=RECEIVED)
    assert host.entries == 4 + 3


def test_a_topic_longer_than_256_characters_is_refused() -> None:
    host = SparkplugHost()
    topic = "spBv1.0/g/NBIRTH/" + "n" * 240
    out = host.receive(topic, _birth(range(3)), received_at=RECEIVED)
    assert [r.code for r in out.rejections] == ["invalid_topic"]
    assert "longer than 256 characters" in out.rejections[0].detail
    assert host.entries == 0


def test_device_deaths_give_their_entries_back() -> None:
    host = SparkplugHost(max_entries=100)
    host.receive("spBv1.0/g/NBIRTH/other", _birth(range(3)), received_at=RECEIVED)
    host.receive("spBv1.0/g/NBIRTH/n", _birth(range(3)), received_at=RECEIVED)
    for _ in range(200):  # a device that comes and goes
        host.receive("spBv1.0/g/DBIRTH/n/d", _birth(range(10, 12)), received_at=RECEIVED)
        host.receive("spBv1.0/g/DDEATH/n/d", b"", received_at=RECEIVED)
    assert host.entries == (4 + 3) + (4 + 5)  # the device's aliases stay with its node
    data = encode([metric(value=2.0, alias=1, datatype=DOUBLE)])
    assert host.receive("spBv1.0/g/NDATA/other", data, received_at=RECEIVED).rejections == []


def _nbirth(bd_seq: int) -> bytes:
    return encode([metric("bdSeq", bd_seq, datatype=INT64)], timestamp=T0)


def _ndeath(bd_seq: int) -> bytes:
    return encode([metric("bdSeq", bd_seq, datatype=INT64)])


def test_the_will_of_an_earlier_session_does_not_mark_a_reborn_node_offline() -> None:
    """The node reconnects and is born again (bdSeq 1) before the broker publishes the will of
    its previous connection (bdSeq 0): that NDEATH is stale and ignored; its own is not."""
    host = SparkplugHost()
    host.receive("spBv1.0/plant/NBIRTH/line1", _nbirth(0), received_at=RECEIVED)
    host.receive("spBv1.0/plant/NBIRTH/line1", _nbirth(1), received_at=RECEIVED)
    host.receive("spBv1.0/plant/DBIRTH/line1/motor-1", DBIRTH, received_at=RECEIVED)
    stale = host.receive("spBv1.0/plant/NDEATH/line1", _ndeath(0), received_at=RECEIVED)
    assert (stale.statuses, stale.rejections, stale.readings) == ([], [], [])
    current = host.receive("spBv1.0/plant/NDEATH/line1", _ndeath(1), received_at=RECEIVED)
    assert current.statuses == [
        StatusChange("line1", "offline", RECEIVED),
        StatusChange("line1:motor-1", "offline", RECEIVED),
    ]


def test_the_bdseq_check_holds_after_a_restart() -> None:
    first = SparkplugHost()
    births = [
        *first.receive("spBv1.0/plant/NBIRTH/line1", _nbirth(4), received_at=RECEIVED).statuses,
        *first.receive("spBv1.0/plant/NBIRTH/line1", _nbirth(5), received_at=RECEIVED).statuses,
    ]
    restarted = SparkplugHost()
    for birth in reversed(births):  # newest first, as restore_births feeds them
        assert isinstance(birth, SparkplugBirth)
        assert restarted.remember(birth.topic, birth.payload, received_at=birth.at)
    stale = restarted.receive("spBv1.0/plant/NDEATH/line1", _ndeath(4), received_at=RECEIVED)
    assert stale.statuses == []
    current = restarted.receive("spBv1.0/plant/NDEATH/line1", _ndeath(5), received_at=RECEIVED)
    assert current.statuses == [StatusChange("line1", "offline", RECEIVED)]


@pytest.mark.parametrize(
    "ndeath", [encode([]), b"\xff not protobuf"], ids=["without bdSeq", "undecodable"]
)
def test_an_ndeath_that_cannot_be_checked_marks_the_node_offline(ndeath: bytes) -> None:
    host = SparkplugHost()
    host.receive("spBv1.0/plant/NBIRTH/line1", _nbirth(3), received_at=RECEIVED)
    out = host.receive("spBv1.0/plant/NDEATH/line1", ndeath, received_at=RECEIVED)
    assert out.statuses == [StatusChange("line1", "offline", RECEIVED)]
    unknown = SparkplugHost().receive(
        "spBv1.0/plant/NDEATH/line2", _ndeath(9), received_at=RECEIVED
    )
    assert unknown.statuses == [StatusChange("line2", "offline", RECEIVED)]
