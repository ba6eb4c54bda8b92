"""Tests of MappedTopics: rules dispatch, the payload bound, rebirth requests rate-limited."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import yaml

from iotcollector.domain.mapping import compile_mappings
from iotcollector.domain.sparkplug import Payload
from iotcollector.pipeline.mapped import MappedTopics
from support.sparkplug import DOUBLE, encode, metric

if TYPE_CHECKING:
    from iotcollector.pipeline.sparkplug_host import Outcome

RECEIVED = datetime(2026, 12, 2, 12, 0, 5, tzinfo=UTC)
RULES = compile_mappings(
    yaml.safe_load(
        """
mappings:
  - topic: "zigbee2mqtt/{device_id}"
    readings: auto
  - topic: "spBv1.0/#"
    payload: sparkplug_b
"""
    )
)
DDATA = encode([metric(value=1.0, alias=7, datatype=DOUBLE)])


def decode(mapped: MappedTopics, topic: str, payload: bytes) -> Outcome:
    match = mapped.match(topic)
    assert match is not None
    return mapped.decode(match, topic, payload, RECEIVED)


def test_rebirth_requested_once_per_node_and_interval() -> None:
    sent: list[tuple[str, bytes]] = []
    mapped = MappedTopics(
        RULES, request_rebirth=lambda t, p: sent.append((t, p)), rebirth_interval_s=60
    )
    for _ in range(3):
        decode(mapped, "spBv1.0/g/DDATA/n1/d1", DDATA)
    decode(mapped, "spBv1.0/g/NDATA/n2", DDATA)
    assert [t for t, _ in sent] == ["spBv1.0/g/NCMD/n1", "spBv1.0/g/NCMD/n2"]
    request: Any = Payload()
    request.ParseFromString(sent[0][1])
    [m] = request.metrics
    assert (m.name, m.datatype, m.boolean_value) == ("Node Control/Rebirth", 11, True)
    assert m.timestamp == int(RECEIVED.timestamp() * 1000)


def test_no_rebirth_without_the_setting() -> None:
    mapped = MappedTopics(RULES)
    out = mapped.sparkplug.receive("spBv1.0/g/DDATA/n1/d1", DDATA, received_at=RECEIVED)
    assert out.rebirth_topic == "spBv1.0/g/NCMD/n1"  # the host would ask; nobody sends it
    assert [r.code for r in out.rejections] == ["unknown_alias"]


def test_payload_bound_applies_to_every_kind() -> None:
    mapped = MappedTopics(RULES, max_payload_bytes=1024)
    for topic in ("zigbee2mqtt/k", "spBv1.0/g/DDATA/n1/d1"):
        out = decode(mapped, topic, b"x" * 2048)
        assert [r.code for r in out.rejections] == ["too_large"]
