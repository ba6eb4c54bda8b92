"""The collector's Prometheus metrics, registered on a registry passed in (never the global one)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    platform_collector,
    process_collector,
)

_BATCH_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 50000)
_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class Metrics:
    """Every metric of design §5. One instance per process (or per test)."""

    def __init__(self, registry: CollectorRegistry, *, process_metrics: bool = True) -> None:
        self.registry = registry
        ns = "iotcollector"
        if process_metrics:
            process_collector.ProcessCollector(registry=registry)
            platform_collector.PlatformCollector(registry=registry)
            gc_collector.GCCollector(registry=registry)
        self.mqtt_messages_received = Counter(
            "mqtt_messages_received", "MQTT messages received.", namespace=ns, registry=registry
        )
        self.readings_stored = Counter(
            "readings_stored",
            "Readings committed to the database.",
            namespace=ns,
            registry=registry,
        )
        self.readings_duplicate = Counter(
            "readings_duplicate",
            "Readings already stored (redeliveries), not stored again.",
            namespace=ns,
            registry=registry,
        )
        self.readings_rejected = Counter(
            "readings_rejected",
            "Messages or items rejected by validation, by reason.",
            ["reason"],
            namespace=ns,
            registry=registry,
        )
        self.mqtt_connected = Gauge(
            "mqtt_connected",
            "1 while connected to the broker with subscriptions acknowledged.",
            namespace=ns,
            registry=registry,
        )
        self.mqtt_reconnects = Counter(
            "mqtt_reconnects",
            "Connections to the broker after the first.",
            namespace=ns,
            registry=registry,
        )
        self.pipeline_queue_depth = Gauge(
            "pipeline_queue_depth",
            "Messages received and not yet acknowledged.",
            namespace=ns,
            registry=registry,
        )
        self.pipeline_queue_capacity = Gauge(
            "pipeline_queue_capacity",
            "Limit of un-acknowledged messages before reading pauses.",
            namespace=ns,
            registry=registry,
        )
        self.batch_size = Histogram(
            "batch_size",
            "Readings and dead letters per committed batch.",
            namespace=ns,
            registry=registry,
            buckets=_BATCH_BUCKETS,
        )
        self.db_write_duration = Histogram(
            "db_write_duration_seconds",
            "Time to write and commit one batch.",
            namespace=ns,
            registry=registry,
            buckets=_SECONDS_BUCKETS,
        )
        self.db_errors = Counter(
            "db_errors",
            "Database errors by kind (transient, permanent).",
            ["kind"],
            namespace=ns,
            registry=registry,
        )
        self.ingest_lag = Histogram(
            "ingest_lag_seconds",
            "Reading timestamp (device time) to commit.",
            namespace=ns,
            registry=registry,
            buckets=_LAG_BUCKETS,
        )
        self.devices_online = Gauge(
            "devices_online", "Devices heard from recently.", namespace=ns, registry=registry
        )
        self.devices_offline = Gauge(
            "devices_offline",
            "Devices silent longer than the offline timeout.",
            namespace=ns,
            registry=registry,
        )
        self.http_requests = Counter(
            "http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            namespace=ns,
            registry=registry,
        )
        self.http_request_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration by route template.",
            ["route"],
            namespace=ns,
            registry=registry,
            buckets=_SECONDS_BUCKETS,
        )
        self.db_errors.labels(kind="transient")
        self.db_errors.labels(kind="permanent")
