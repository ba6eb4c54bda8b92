"""Assembles the collector: storage, pipeline, MQTT subscriber and HTTP server in one loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import uvicorn
from prometheus_client import CollectorRegistry

from iotcollector.api.app import create_app
from iotcollector.api.auth import ApiKeys
from iotcollector.api.context import ApiContext
from iotcollector.api.server import HttpLimits, bounded_protocol
from iotcollector.backoff import Backoff
from iotcollector.config import ApiAuth
from iotcollector.domain.mapping import PayloadKind, overlapping_filters
from iotcollector.errors import MqttRefusedError, PermanentStorageError, StorageError
from iotcollector.ingest import codec
from iotcollector.ingest.subscriber import Delivery, MqttSubscriber
from iotcollector.ingest.tls import client_tls_context
from iotcollector.metrics import BrokerStats, Metrics
from iotcollector.pipeline.mapped import MappedTopics
from iotcollector.pipeline.pipeline import BatchLimits, Pipeline
from iotcollector.pipeline.replay import ParseSettings, Replayer
from iotcollector.pipeline.sparkplug_host import restore_births
from iotcollector.redact import redact_url
from iotcollector.storage.factory import SqliteTarget, open_storage, parse_database_url
from iotcollector.storage.migrations import SchemaTooNewError
from iotcollector.storage.retention import RetentionTask, open_purger
from iotcollector.storage.rollups import RollupRefresher

if TYPE_CHECKING:
    import logging
    import socket
    import ssl
    from collections.abc import Iterator

    from iotcollector.config import Settings
    from iotcollector.domain.mapping import Mappings
    from iotcollector.storage.base import Database, DeadLetterFilter

_PING_INTERVAL_S = 2.0
_STUCK_AFTER_S = 5.0


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS for ``mqtts://``: system or given CA, optional client certificate, TLS >= 1.2."""
    if not settings.mqtt_tls:
        return None
    return client_tls_context(
        settings.mqtt_ca_file,
        settings.mqtt_cert_file,
        settings.mqtt_key_file,
        port=settings.mqtt_port,
    )


def _tune_gc() -> None:
    """Fewer garbage collections on the hot path.

    Every message allocates a few container objects that live until their batch commits; with
    the default gen-0 threshold (700) the receive path spends a large share of its time in the
    cyclic GC (the figures are in bench/README.md). Objects that exist at start-up are frozen
    out of collection and the young generation is collected every 50,000 allocations.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Service:
    """The running collector; ``run`` returns the process exit code."""

    def __init__(
        self,
        settings: Settings,
        logger: logging.Logger,
        *,
        mappings: Mappings | None = None,
        development: bool = False,
    ) -> None:
        """``development``: ``up`` without keys; says so instead of warning about a setting."""
        self._settings = settings
        self._log = logger
        self._development = development
        self._last_message = time.monotonic()
        self._registry = CollectorRegistry()
        self.metrics = Metrics(self._registry)
        self._storage: Database = open_storage(
            settings.database_url.get_secret_value(),
            partition_interval=settings.partition_interval,
            device_offline_after=timedelta(seconds=settings.device_offline_after_s),
        )
        self._database_ok = False
        self._exit_code = 0
        self._stop = asyncio.Event()
        self._mappings = mappings
        s = settings
        self._mapped = (
            MappedTopics(
                mappings,
                max_payload_bytes=s.max_payload_bytes,
                max_future_skew_s=s.max_future_skew_s,
                max_readings=s.max_readings_per_message,
                request_rebirth=self._request_rebirth if s.sparkplug_rebirth else None,
            )
            if mappings is not None
            else None
        )
        self._subscriber = MqttSubscriber(
            host=s.mqtt_host,
            port=s.mqtt_port,
            client_id=s.mqtt_client_id,
            subscriptions=s.subscriptions_with(mappings.filters if mappings else ()),
            optional_subscriptions=tuple(BrokerStats.TOPICS) if s.mqtt_broker_stats else (),
            on_message=self._on_message,
            on_connected=self._on_connected,
            logger=logger.getChild("mqtt"),
            ssl_context=tls_context(s),
            username=s.mqtt_username,
            password=s.mqtt_password.get_secret_value() if s.mqtt_password else None,
            keepalive_s=s.mqtt_keepalive_s,
            receive_maximum=s.mqtt_max_inflight,
            max_inflight=s.mqtt_max_inflight,
            max_inflight_bytes=s.mqtt_max_inflight_bytes,
            max_payload_bytes=s.max_payload_bytes,
            reconnect_max_s=s.mqtt_reconnect_max_s,
            protocol_version=codec.MQTT5 if s.mqtt_protocol == "5" else codec.MQTT311,
        )
        self._pipeline: Pipeline[Delivery] = Pipeline(
            self._storage,
            self.metrics,
            logger.getChild("pipeline"),
            on_committed=self._subscriber.ack,
            on_pressure=self._on_pressure,
            limits=BatchLimits(
                max_size=s.batch_max_size,
                max_delay_s=s.batch_max_delay_ms / 1000,
                max_pending=s.mqtt_max_inflight,
            ),
            max_payload_bytes=s.max_payload_bytes,
            max_readings_per_message=s.max_readings_per_message,
            max_future_skew_s=s.max_future_skew_s,
            status_topic_prefix=s.status_topic_prefix,
            device_topics=s.mqtt_device_topics,
            mapped=self._mapped,
            concurrent_writes=self._storage.concurrent_writes,
        )

    def readiness(self) -> dict[str, bool]:
        """Each check ``/readyz`` reports; ready when all hold.

        ``writes``: the last batch was committed (a read-only database answers pings while
        every write fails). ``pipeline``: not full with nothing committed for
        ``_STUCK_AFTER_S`` (a collector draining a backlog at full speed is full often, and
        ready).
        """
        pipeline = self._pipeline
        full = self._subscriber.full or pipeline.paused
        stuck = full and time.monotonic() - pipeline.last_commit > _STUCK_AFTER_S
        return {
            "database": self._database_ok,
            "writes": not pipeline.writes_failing,
            "mqtt": self._subscriber.connected,
            "pipeline": not stuck,
        }

    def request_stop(self) -> None:
        self._stop.set()

    async def settle(self, quiet_s: float, timeout_s: float) -> bool:
        """Wait until every message the broker sent has been committed and nothing has
        arrived for ``quiet_s``: after the local publishers stopped, what the broker holds for
        this collector has then reached the database. False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            now = time.monotonic()
            if not self._subscriber.connected:
                return False
            if self._pipeline.pending == 0 and now - self._last_message >= quiet_s:
                return True
            await asyncio.sleep(min(quiet_s, 0.05))
        return False

    def _on_message(self, deliveries: list[Delivery]) -> None:
        self._last_message = time.monotonic()
        if self._settings.mqtt_broker_stats and any(d.topic.startswith("$") for d in deliveries):
            stats = [d for d in deliveries if d.topic.startswith("$SYS/")]
            for d in stats:
                self.metrics.broker.update(d.topic, d.payload)
            self._subscriber.ack(stats)
            deliveries = [d for d in deliveries if not d.topic.startswith("$SYS/")]
        self._pipeline.submit(deliveries)

    def _on_connected(self, connected: bool) -> None:
        self.metrics.mqtt_connected.set(1 if connected else 0)
        if connected and self._subscriber.connections > 1:
            self.metrics.mqtt_reconnects.inc()

    def _on_pressure(self, full: bool) -> None:
        if full:
            self._log.warning(
                "pipeline full (%d un-acknowledged messages): pausing MQTT reads",
                self._pipeline.pending,
            )
            self._subscriber.pause_reading()
        else:
            self._log.info("pipeline drained: resuming MQTT reads")
            self._subscriber.resume_reading()

    async def run(self, listener: socket.socket, *, handle_signals: bool = True) -> int:
        """Serve HTTP on ``listener`` (bound beforehand: see ``ports.bind_listener``) and
        ingest until SIGTERM/SIGINT (``handle_signals``) or :meth:`request_stop`."""
        s = self._settings
        keys = ApiKeys(s.api_key_values)
        if not keys and s.api_auth is ApiAuth.ENABLED:
            self._log.error(
                "refusing to start: no API keys. Set IOT_API_KEYS (comma-separated) or "
                "IOT_API_KEYS_FILE, or set IOT_API_AUTH=disabled to serve /api/* without "
                "authentication"
            )
            return 2
        if not keys and self._development:
            self._log.info(
                "development mode: no API keys; use `serve` with IOT_API_KEYS in production"
            )
        elif not keys:
            self._log.warning(
                "IOT_API_AUTH=disabled: /api/* is served WITHOUT authentication to anyone who "
                "can reach %s:%d",
                s.api_host,
                s.api_port,
            )
        elif s.api_auth is ApiAuth.DISABLED:
            self._log.warning("IOT_API_AUTH=disabled is ignored: API keys are set and enforced")
        _tune_gc()
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
        app = create_app(
            readiness=self,
            metrics=self.metrics,
            api=ApiContext(
                queries=self._storage,
                writer=self._pipeline,
                keys=keys,
                logger=self._log.getChild("api"),
                device_offline_after_s=s.device_offline_after_s,
                max_body_bytes=s.max_body_bytes,
                max_future_skew_s=s.max_future_skew_s,
                max_readings_per_message=s.max_readings_per_message,
                body_timeout_s=s.http_body_timeout_s,
                replay=self._replay,
                mqtt_broker=redact_url(s.mqtt_url),
                mqtt_topics=s.mqtt_topics,
            ),
        )
        server = _QuietServer(
            uvicorn.Config(
                app,
                host=s.api_host,
                port=s.api_port,
                log_config=None,
                access_log=False,
                lifespan="off",
                http=bounded_protocol(
                    HttpLimits(
                        max_head_bytes=s.http_max_header_bytes,
                        max_headers=s.http_max_headers,
                        head_timeout_s=s.http_header_timeout_s,
                        max_connections=s.http_max_connections,
                    )
                ),
                ws="none",
                timeout_keep_alive=s.http_keepalive_s,
            )
        )
        http_task = asyncio.create_task(server.serve(sockets=[listener]), name="http")
        ingest_task = asyncio.create_task(self._ingest(), name="ingest")
        stop_task = asyncio.create_task(self._stop.wait(), name="stop")
        await asyncio.wait({http_task, ingest_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        exit_code = self._exit_code
        if http_task.done() and not self._stop.is_set():
            self._log.error("the HTTP server stopped unexpectedly")
            exit_code = 1
        self._log.info("shutting down: committing what is in flight")
        await self._shutdown(ingest_task)
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await http_task
        stop_task.cancel()
        await self._storage.close()
        return exit_code

    async def _ingest(self) -> None:
        if not await self._open_storage():
            self._exit_code = 1
            self._stop.set()
            return
        self._warn_overlaps()
        self._warn_sparkplug_shared()
        await self._remember_births()
        background = [
            asyncio.create_task(self._ping_loop(), name="db-ping"),
            asyncio.create_task(self._presence_loop(), name="presence"),
        ]
        if self._settings.retention_days is not None:
            retention = RetentionTask(
                open_purger(self._settings.database_url.get_secret_value()),
                days=self._settings.retention_days,
                interval_s=self._settings.retention_interval_s,
                logger=self._log.getChild("retention"),
                on_purged=self.metrics.record_retention,
            )
            background.append(asyncio.create_task(retention.run(), name="retention"))
        url = self._settings.database_url.get_secret_value()
        if not isinstance(parse_database_url(url), SqliteTarget):
            refresher = RollupRefresher(
                url,
                self._log.getChild("rollups"),
                self.metrics.record_rollup_refresh,
                busy=lambda: self._pipeline.backlogged,
            )
            background.append(asyncio.create_task(refresher.run(), name="rollups"))
        writer = asyncio.create_task(self._pipeline.run(), name="pipeline")
        subscriber = asyncio.create_task(self._subscriber.run(), name="mqtt")
        try:
            await asyncio.gather(writer, subscriber)
        except MqttRefusedError as exc:
            self._log.critical(
                "cannot start: %s (check IOT_MQTT_USERNAME/PASSWORD or the client certificate, "
                "IOT_MQTT_CLIENT_ID, the topic filters and the broker's ACL)",
                exc,
            )
            self._exit_code = 1
            self._stop.set()
        finally:
            for task in background:
                task.cancel()

    async def _open_storage(self) -> bool:
        """Connect and migrate, retrying while the database is unavailable.

        False (logged) when it can never work as configured: a schema newer than this code,
        a failed migration, refused credentials. A supervisor restarts us; the log says why.
        """
        backoff = Backoff(0.5, 30.0)
        while True:
            try:
                await self._storage.open()
                applied = await self._storage.migrate()
            except PermanentStorageError as exc:
                self._log.critical("cannot start: %s (%s)", exc, _startup_hint(exc))
                return False
            except StorageError as exc:
                delay = backoff.next_delay()
                self._log.warning("database not available (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            if applied:
                self._log.info("applied migrations %s", ", ".join(applied))
            self._database_ok = True
            return True

    def _request_rebirth(self, topic: str, payload: bytes) -> None:
        """IOT_SPARKPLUG_REBIRTH: an edge node sent data with aliases no birth defined."""
        if self._subscriber.publish(topic, payload):
            self._log.info("Sparkplug B: unknown aliases, rebirth requested on %s", topic)

    def _warn_overlaps(self) -> None:
        """A message on a topic two subscribed filters match can be delivered twice: the data
        topics, the status topic and the mapping rules' topics, each against every other."""
        rules = self._mappings.filters if self._mappings is not None else ()
        for first, second in overlapping_filters(self._settings.topic_filters_with(rules)):
            self._log.warning(
                "the topic filters %r and %r overlap: the broker may deliver a message matching "
                "both twice (readings without a timestamp would be stored twice, dead letters "
                "kept twice); keep IOT_MQTT_TOPICS, IOT_MQTT_STATUS_TOPIC and the rule topics "
                "apart",
                first,
                second,
            )

    def _warn_sparkplug_shared(self) -> None:
        """Sparkplug B aliases live in each collector's memory: under a shared subscription
        an edge node's birth reaches one replica and its data the others."""
        rules = self._mappings.rules if self._mappings is not None else ()
        if self._settings.mqtt_shared_group and any(
            rule.payload is PayloadKind.SPARKPLUG_B for rule in rules
        ):
            self._log.warning(
                "IOT_MQTT_SHARED_GROUP with a Sparkplug B rule: each replica knows only the "
                "births it received, so alias-only data reaching another replica is "
                "dead-lettered unknown_alias; have one collector, outside the shared group, "
                "read the spBv1.0 topics"
            )

    async def _remember_births(self) -> None:
        """Sparkplug B: the aliases of the births kept before a restart (nothing to retry:
        the database has just answered; a failure leaves alias-only data to dead-letter)."""
        if self._mapped is None:
            return
        host = self._mapped.sparkplug
        try:
            read = await restore_births(host, self._storage)
        except StorageError as exc:
            self._log.warning(
                "Sparkplug B births not loaded (%s): aliases unknown until rebirth", exc
            )
            return
        if read:
            self._log.info(
                "Sparkplug B: %d birth certificates read, %d aliases' worth remembered",
                read,
                host.entries,
            )

    async def _replay(self, where: DeadLetterFilter, *, dry_run: bool) -> dict[str, object]:
        """``POST /api/rejected/replay``: the same replay as the CLI, through the pipeline."""
        replayer = Replayer(
            self._storage,
            self._pipeline.write,
            mappings=self._mappings,
            parsing=ParseSettings.of(self._settings),
        )
        return (await replayer.replay(where, dry_run=dry_run)).as_dict()

    async def _ping_loop(self) -> None:
        """Ping every 2 s; log each change (a failed ping with its error, and the recovery)."""
        while True:
            await asyncio.sleep(_PING_INTERVAL_S)
            try:
                async with asyncio.timeout(_PING_INTERVAL_S * 2):
                    await self._storage.ping()
            except (StorageError, TimeoutError) as exc:
                if self._database_ok:
                    self._log.warning("database ping fails: %s", exc or "timed out")
                self._database_ok = False
            else:
                if not self._database_ok:
                    self._log.info("database ping answers again")
                self._database_ok = True

    async def _presence_loop(self) -> None:
        """Mark silent devices offline and export the online/offline gauges.

        Every replica runs the same idempotent UPDATE against the shared database.
        """
        offline_after = timedelta(seconds=self._settings.device_offline_after_s)
        interval = min(10.0, max(0.5, offline_after.total_seconds() / 4))
        while True:
            try:
                marked = await self._storage.mark_offline(datetime.now(UTC) - offline_after)
                online, offline = await self._storage.device_counts()
            except StorageError as exc:
                self._log.debug("presence sweep skipped: %s", exc)
            else:
                if marked:
                    self._log.info("%d device(s) silent for %s: offline", marked, offline_after)
                self.metrics.devices_online.set(online)
                self.metrics.devices_offline.set(offline)
            await asyncio.sleep(interval)

    async def _shutdown(self, ingest_task: asyncio.Task[None]) -> None:
        self._subscriber.pause_reading()
        if await self._pipeline.close(self._settings.shutdown_timeout_s):
            self._log.info("stopped: every message received was committed and acknowledged")
        await self._subscriber.stop()
        ingest_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ingest_task


def _startup_hint(exc: PermanentStorageError) -> str:
    """What the operator should do about a start-up error that retrying cannot fix."""
    if isinstance(exc, SchemaTooNewError):
        return "the database was migrated by a newer iot-collector: run that version"
    code = exc.code or ""
    if code.startswith("28") or code == "3D000":
        return "check the user, password and database name in IOT_DATABASE_URL"
    return "fix the database (privileges, schema) and start again"
