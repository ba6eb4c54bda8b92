"""The collector's Prometheus metrics, registered on a registry passed in (never the global one)."""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections import Counter as Tally
from datetime import datetime, timedelta
from itertools import repeat
from operator import sub
from typing import TYPE_CHECKING, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from prometheus_client.metrics_core import Metric

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
_NO_TIME: Final = timedelta()
_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class FastCounter(Collector):
    """A counter for the per-message hot path: a plain ``int``, read at scrape time.

    prometheus_client's Counter takes a lock per ``inc``; the collector is one event-loop
    thread, so ``value += n`` is enough here.
    """

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self._name = name
        self._doc = documentation
        self.value = 0
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._doc, value=self.value)

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._doc)


class BulkHistogram(Collector):
    """A histogram observed a batch of values at a time: one lock per batch, not per value."""

    def __init__(
        self, name: str, documentation: str, buckets: Iterable[float], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._doc = documentation
        self._bounds = sorted(buckets)
        self._age_bounds = [timedelta(seconds=bound) for bound in self._bounds]
        self._counts = [0] * (len(self._bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_ages(self, now: datetime, times: Iterable[datetime]) -> None:
        """Observe the age in seconds at ``now`` of each of ``times`` (0 for a time after
        ``now``). In ``timedelta``s, iterated in C: a third of the CPU of float seconds per
        value (the collector observes every reading's lag)."""
        ages = list(map(max, repeat(_NO_TIME), map(sub, repeat(now), times)))
        found = Tally(map(bisect_left, repeat(self._age_bounds), ages))
        total = sum(ages, _NO_TIME).total_seconds()
        with self._lock:
            counts = self._counts
            for index, count in found.items():
                counts[index] += count
            self._sum += total

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts = list(self._counts)
            total = self._sum
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip(self._bounds, counts, strict=False):
            cumulative += count
            buckets.append((str(float(bound)), cumulative))
        buckets.append(("+Inf", cumulative + counts[-1]))
        yield HistogramMetricFamily(self._name, self._doc, buckets=buckets, sum_value=total)

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._doc)


class BrokerStats(Collector):
    """Counters the broker publishes about itself (Mosquitto's ``$SYS`` tree), when it does."""

    TOPICS: Final = {
        "$SYS/broker/publish/messages/dropped": "dropped",
        "$SYS/broker/clients/connected": "clients",
    }

    def __init__(self, namespace: str, registry: CollectorRegistry) -> None:
        self._ns = namespace
        self.dropped: float | None = None
        self.clients: float | None = None
        registry.register(self)

    def update(self, topic: str, payload: bytes) -> bool:
        """Take one ``$SYS`` message; False if it is not one of ours or not a number."""
        name = self.TOPICS.get(topic)
        try:
            value = float(payload)
        except ValueError:
            return False
        if name is None or not math.isfinite(value):
            return False
        setattr(self, name, value)
        return True

    def collect(self) -> Iterator[Metric]:
        if self.dropped is not None:
            yield CounterMetricFamily(
                f"{self._ns}_broker_messages_dropped",
                "Messages the broker dropped (full queues), as the broker reports it.",
                value=self.dropped,
            )
        if self.clients is not None:
            yield GaugeMetricFamily(
                f"{self._ns}_broker_clients_connected",
                "Clients connected to the broker, as the broker reports it.",
                value=self.clients,
            )

    def describe(self) -> Iterator[Metric]:
        return iter(())


class Metrics:
    """Every metric (README, "Operations"). One instance per process (or per test)."""

    def __init__(self, registry: CollectorRegistry, *, process_metrics: bool = True) -> None:
        self.registry = registry
        ns = "iotcollector"
        if process_metrics:
            process_collector.ProcessCollector(registry=registry)
            platform_collector.PlatformCollector(registry=registry)
            gc_collector.GCCollector(registry=registry)
        self.mqtt_messages_received = FastCounter(
            f"{ns}_mqtt_messages_received", "MQTT messages received.", registry
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
        self.ingest_stalled = Gauge(
            "ingest_stalled",
            "1 while every write fails for a non-transient reason: nothing is acknowledged.",
            namespace=ns,
            registry=registry,
        )
        self.ingest_lag = BulkHistogram(
            f"{ns}_ingest_lag_seconds",
            "Reading timestamp (device time) to commit.",
            _LAG_BUCKETS,
            registry,
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
        self.broker = BrokerStats(ns, registry)
        self.db_errors.labels(kind="transient")
        self.db_errors.labels(kind="permanent")
        self.retention_deleted = Counter(
            "retention_deleted",
            "Rows deleted by the retention purge (IOT_RETENTION_DAYS), by table.",
            ["table"],
            namespace=ns,
            registry=registry,
        )
        self.retention_last_success = Gauge(
            "retention_last_success_timestamp_seconds",
            "Unix time the last retention purge finished (0: none yet, or retention off).",
            namespace=ns,
            registry=registry,
        )
        for table in ("iot_data", "iot_rejected"):
            self.retention_deleted.labels(table=table)
        self.rollup_buckets_refreshed = Counter(
            "rollup_buckets_refreshed",
            "Rollup minutes and hours recomputed from newer readings (PostgreSQL).",
            namespace=ns,
            registry=registry,
        )
        self.rollup_last_refresh = Gauge(
            "rollup_last_refresh_timestamp_seconds",
            "Unix time this collector last finished a rollup refresh pass (0: none yet, "
            "SQLite, or another replica holds the refresher lock).",
            namespace=ns,
            registry=registry,
        )

    def record_retention(self, deleted: Mapping[str, int]) -> None:
        """One finished purge: rows deleted per table."""
        for table, count in deleted.items():
            self.retention_deleted.labels(table=table).inc(count)
        self.retention_last_success.set_to_current_time()

    def record_rollup_refresh(self, buckets: int) -> None:
        """One finished rollup refresh pass that recomputed ``buckets`` minutes and hours."""
        self.rollup_buckets_refreshed.inc(buckets)
        self.rollup_last_refresh.set_to_current_time()
