"""Metric helpers: the scrape-time counter, the bulk histogram, the broker's $SYS numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from iotcollector.metrics import Metrics


def _metrics() -> tuple[Metrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return Metrics(registry, process_metrics=False), registry


def test_bulk_histogram_matches_prometheus_buckets() -> None:
    m, registry = _metrics()
    now = datetime(2026, 12, 4, 12, tzinfo=UTC)
    ages = [0.005, 0.01, 0.3, 5000.0, -2.0]  # the last: a reading dated after `now` counts 0
    m.ingest_lag.observe_ages(now, [now - timedelta(seconds=age) for age in ages])
    sample = registry.get_sample_value
    assert sample("iotcollector_ingest_lag_seconds_bucket", {"le": "0.01"}) == 3
    assert sample("iotcollector_ingest_lag_seconds_bucket", {"le": "0.5"}) == 4
    assert sample("iotcollector_ingest_lag_seconds_bucket", {"le": "3600.0"}) == 4
    assert sample("iotcollector_ingest_lag_seconds_bucket", {"le": "+Inf"}) == 5
    assert sample("iotcollector_ingest_lag_seconds_count", {}) == 5
    assert sample("iotcollector_ingest_lag_seconds_sum", {}) == 5000.315


def test_fast_counter() -> None:
    m, registry = _metrics()
    m.mqtt_messages_received.value += 3
    assert registry.get_sample_value("iotcollector_mqtt_messages_received_total", {}) == 3


def test_broker_stats_only_once_the_broker_said_them() -> None:
    m, registry = _metrics()
    assert registry.get_sample_value("iotcollector_broker_messages_dropped_total", {}) is None
    assert m.broker.update("$SYS/broker/publish/messages/dropped", b"25")
    assert m.broker.update("$SYS/broker/clients/connected", b"3")
    assert not m.broker.update("$SYS/broker/clients/connected", b"many")
    assert not m.broker.update("$SYS/broker/uptime", b"12")
    assert registry.get_sample_value("iotcollector_broker_messages_dropped_total", {}) == 25
    assert registry.get_sample_value("iotcollector_broker_clients_connected", {}) == 3
