"""The dead-letter listing query, as built for both backends."""

from __future__ import annotations

from datetime import UTC, datetime

from iotcollector.storage.base import DeadLetterFilter
from iotcollector.storage.query import POSTGRES, SQLITE, rejected_query

T0 = datetime(2026, 12, 2, tzinfo=UTC)


def test_no_filter_newest_first() -> None:
    sql, params = rejected_query(DeadLetterFilter(), None, 51, oldest_first=False, dialect=POSTGRES)
    assert sql.endswith("WHERE TRUE ORDER BY id DESC LIMIT %s")
    assert params == [51]


def test_every_filter_and_the_keyset() -> None:
    where = DeadLetterFilter("invalid_json", "zigbee2mqtt/#", T0, T0, pending=True)
    sql, params = rejected_query(where, 42, 500, oldest_first=True, dialect=SQLITE)
    assert "substr(reason, 1, ?) = ?" in sql
    assert "substr(topic, 1, ?) = ?" in sql
    assert "replayed_at IS NULL" in sql
    assert "id > ?" in sql
    assert sql.endswith("ORDER BY id LIMIT ?")
    micros = 1_796_169_600_000_000
    assert params == [13, "invalid_json:", 12, "zigbee2mqtt/", micros, micros, 42, 500]


def test_exact_topic_and_newest_first_keyset() -> None:
    where = DeadLetterFilter(topic="acme/boiler-7")
    sql, params = rejected_query(where, 9, 10, oldest_first=False, dialect=POSTGRES)
    assert "topic = %s" in sql
    assert "id < %s" in sql
    assert params == ["acme/boiler-7", 9, 10]
