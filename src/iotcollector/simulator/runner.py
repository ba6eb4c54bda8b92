"""Run a simulation: connect, publish the stream at the asked rate, inject faults, summarise.

Everything is bounded: the count or the duration ends publishing, the in-flight window of
each connection bounds memory, and closing waits at most ``drain_s`` for acknowledgements.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import IO, TYPE_CHECKING, Any

from iotcollector.errors import MqttError
from iotcollector.ingest.handshake import protocol_name
from iotcollector.simulator.connection import Connection, Counters, Endpoint
from iotcollector.simulator.packets import topic_prefix
from iotcollector.simulator.payloads import Format
from iotcollector.simulator.stream import MessageStream, StreamConfig

if TYPE_CHECKING:
    from collections.abc import Callable

_BURST = 1000  # messages generated between two yields to the event loop
_CONNECT_CONCURRENCY = 256
_CHURN_SALT = 0xC4_0C4


@dataclass(frozen=True, slots=True)
class SimulatorOptions:
    """What to simulate; see ``iot-collector simulate --help`` for each option."""

    devices: int = 10
    rate: float | None = None  # readings per second per device; 0 = unthrottled
    total_rate: float | None = None  # cap on readings per second overall; 0 = unthrottled
    count: int | None = None  # readings to generate
    duration_s: float | None = None
    qos: int = 1
    fmt: Format = Format.SINGLE
    batch_size: int = 10
    seed: int = 0
    prefix: str = "sim"
    topic: str = "iot/data"
    connections: int | None = None  # None: one per device
    inflight: int = 1000
    status: bool = True
    malformed: float = 0.0
    duplicates: float = 0.0
    out_of_order: float = 0.0
    churn: float = 0.0  # probability per connection per second of a disconnect/reconnect
    churn_downtime_s: float = 1.0
    start_us: int | None = None
    drain_s: float = 10.0
    stall_timeout_s: float = 60.0
    client_id_prefix: str = ""

    def readings_per_s(self) -> float:
        """The overall reading rate; 0 means as fast as the broker acknowledges."""
        per_device = self.rate
        if per_device is None:
            per_device = 0.0 if self.total_rate is not None else 1.0
        overall = per_device * self.devices
        if self.total_rate is not None and self.total_rate > 0:
            overall = min(overall, self.total_rate) if overall > 0 else self.total_rate
        return overall

    def connection_count(self) -> int:
        return self.devices if self.connections is None else min(self.connections, self.devices)

    def validate(self) -> None:
        """Raise ``ValueError`` naming every option out of range."""
        checks = [
            (1 <= self.devices <= 100_000, "--devices must be between 1 and 100,000"),
            (self.qos in {0, 1, 2}, "--qos must be 0, 1 or 2"),
            (self.count is None or self.count >= 1, "--count must be at least 1"),
            (self.duration_s is None or self.duration_s > 0, "--duration must be positive"),
            (
                self.connections is None or self.connections >= 1,
                "--connections must be at least 1 (or 'devices')",
            ),
            (1 <= self.batch_size <= 10_000, "--batch-size must be between 1 and 10,000"),
            (1 <= self.inflight <= 65535, "--inflight must be between 1 and 65,535"),
            (0.0 <= self.churn <= 1.0, "--churn must be a probability per second in [0, 1]"),
            ((self.rate or 0) >= 0 and (self.total_rate or 0) >= 0, "rates must not be negative"),
        ]
        checks += [
            (0.0 <= getattr(self, name) <= 1.0, f"--{name.replace('_', '-')} must be in [0, 1]")
            for name in ("malformed", "duplicates", "out_of_order")
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(slots=True)
class Summary:
    """The run's totals, written as JSON by ``--summary-json``."""

    devices: int
    connections: int
    format: str
    qos: int
    seed: int
    protocol: str = ""  # "5" or "3.1.1": what the broker accepted ("3.1.1" if any fell back)
    stopped_by: str = ""
    elapsed_s: float = 0.0
    published: int = 0
    acknowledged: int = 0
    unacknowledged: int = 0
    readings: int = 0
    malformed: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    refused: int = 0
    resent: int = 0
    status_published: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    disconnects: int = 0
    churned: int = 0
    published_per_s: float = 0.0
    readings_per_s: float = 0.0
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Simulation:
    """One run; ``await run()`` returns the :class:`Summary`; ``stop()`` ends it early."""

    def __init__(
        self,
        options: SimulatorOptions,
        endpoint: Endpoint,
        *,
        progress: IO[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        options.validate()
        self.options = options
        self.endpoint = endpoint
        self.progress = progress
        self.counters = Counters()
        rate = options.readings_per_s()
        self.stream = MessageStream(
            StreamConfig(
                devices=options.devices,
                fmt=options.fmt,
                batch_size=options.batch_size,
                seed=options.seed,
                prefix=options.prefix,
                readings_per_s=rate,
                start_us=options.start_us,
                malformed=options.malformed,
                duplicates=options.duplicates,
                out_of_order=options.out_of_order,
            ),
            clock=clock,
        )
        per_message = self.stream.config.readings_per_message
        self.messages_per_s = rate / per_message
        self.total_messages = (
            math.ceil(options.count / per_message) if options.count is not None else None
        )
        self.summary = Summary(
            devices=options.devices,
            connections=options.connection_count(),
            format=options.fmt.value,
            qos=options.qos,
            seed=options.seed,
        )
        self._stop: asyncio.Event | None = None
        self._stopped_by = ""
        self._connections: list[Connection] = []
        self._device_conn: list[Connection] = []
        self._topics: list[bytes] | None = None
        self._topic = topic_prefix(options.topic)
        self._started = 0.0

    # -- wiring --------------------------------------------------------------------------------

    def _build_connections(self) -> None:
        opts = self.options
        k = opts.connection_count()
        ids = [d.device_id for d in self.stream.fleet]
        prefix = opts.client_id_prefix or f"iot-sim-{os.getpid()}"
        for c in range(k):
            devices = ids[c::k]
            client_id = devices[0] if k == opts.devices else f"{prefix}-{c}"
            self._connections.append(
                Connection(
                    client_id,
                    self.endpoint,
                    devices,
                    self.counters,
                    qos=opts.qos,
                    window=opts.inflight,
                    status=opts.status,
                )
            )
        self._device_conn = [self._connections[i % k] for i in range(opts.devices)]
        if "{device_id}" in opts.topic:
            self._topics = [topic_prefix(opts.topic.format(device_id=d)) for d in ids]

    async def _connect_all(self) -> None:
        # The first connection finds the protocol version (MQTT 5, or 3.1.1 after a fallback);
        # the others start with it instead of each being refused once.
        first, *others = self._connections
        await first.connect()
        limit = asyncio.Semaphore(_CONNECT_CONCURRENCY)

        async def one(conn: Connection) -> None:
            async with limit:
                await conn.connect()

        async with asyncio.TaskGroup() as group:
            for conn in others:
                conn.version = first.version
                group.create_task(one(conn))

    def stop(self, reason: str = "signal") -> None:
        if self._stop is not None and not self._stop.is_set():
            self._stopped_by = reason
            self._stop.set()

    # -- the run -------------------------------------------------------------------------------

    async def run(self) -> Summary:
        self._stop = asyncio.Event()
        self._build_connections()
        try:
            await self._connect_all()
        except* MqttError as group:
            first = group.exceptions[0]
            for conn in self._connections:
                conn.drop()
            raise MqttError(str(first)) from None
        self.summary.protocol = protocol_name(min(conn.version for conn in self._connections))
        self._started = time.monotonic()
        progress = asyncio.create_task(self._progress_loop())
        helpers = [asyncio.create_task(self._keepalive())]
        if self.options.churn > 0:
            helpers.append(asyncio.create_task(self._churn_loop()))
        generator = asyncio.create_task(self._generate())
        stopper = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait(
            {generator, stopper},
            timeout=self.options.duration_s,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if generator in done:
            self._stopped_by = self._stopped_by or "count"
            generator.result()
        elif stopper not in done:
            self._stopped_by = "duration"
        await _cancel(generator, stopper, *helpers)
        self._send_messages(self.stream.flush_held())
        publish_end = time.monotonic()
        await self._close_all()
        await _cancel(progress)
        self._finish(publish_end)
        return self.summary

    async def _generate(self) -> None:
        stream = self.stream
        rate = self.messages_per_s
        total = self.total_messages
        started = time.monotonic()
        generated = 0
        stall_limit = self.options.stall_timeout_s
        while total is None or generated < total:
            now = time.monotonic()
            if rate > 0:
                due = int((now - started) * rate) + 1
                if generated >= due:
                    await asyncio.sleep(max(0.0005, (generated + 1) / rate - (now - started)))
                    continue
                burst_end = min(due, generated + _BURST)
            else:
                burst_end = generated + _BURST
            if total is not None:
                burst_end = min(burst_end, total)
            while generated < burst_end:
                for message in stream.next_messages():
                    conn = self._device_conn[message.device]
                    if not conn.has_space:
                        try:
                            async with asyncio.timeout(stall_limit):
                                await conn.wait_space()
                        except TimeoutError:
                            self._stopped_by = "stalled"
                            self.counters.error(
                                "stalled", f"no acknowledgement for {stall_limit:.0f}s"
                            )
                            return
                    self._send_one(conn, message.device, message.payload)
                    self._account(message.readings, message.malformed, message)
                generated += 1
            await asyncio.sleep(0)

    def _send_one(self, conn: Connection, device: int, payload: bytes) -> None:
        conn.publish(self._topics[device] if self._topics else self._topic, payload)

    def _account(self, readings: int, malformed: bool, message: Any) -> None:
        s = self.summary
        if message.duplicate:
            s.duplicated += 1
            return
        s.readings += readings
        if malformed:
            s.malformed += 1
        if message.late:
            s.out_of_order += 1

    def _send_messages(self, messages: list[Any]) -> None:
        for message in messages:
            self._send_one(self._device_conn[message.device], message.device, message.payload)
            self._account(message.readings, message.malformed, message)

    async def _close_all(self) -> None:
        drain = self.options.drain_s
        async with asyncio.TaskGroup() as group:
            for conn in self._connections:
                group.create_task(conn.close(drain_s=drain))

    async def _keepalive(self) -> None:
        while True:
            # A broker may impose a shorter keep alive than asked (Server Keep Alive).
            shortest = min(
                (c.keepalive_s for c in self._connections if c.keepalive_s),
                default=self.endpoint.keepalive_s,
            )
            await asyncio.sleep(max(0.25, min(5.0, shortest / 4)))
            now = time.monotonic()
            for conn in self._connections:
                conn.ping_if_idle(now)

    async def _churn_loop(self) -> None:
        rng = random.Random(self.options.seed ^ _CHURN_SALT)  # noqa: S311 - a simulation
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                await asyncio.sleep(1.0)
                for conn in self._connections:
                    if conn.connected and rng.random() < self.options.churn:
                        task = asyncio.create_task(
                            conn.churn(self.options.churn_downtime_s, self.options.drain_s)
                        )
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _progress_loop(self) -> None:
        out = self.progress
        if out is None:
            return
        last_pub, last_t = 0, time.monotonic()
        try:
            while True:
                await asyncio.sleep(1.0)
                now = time.monotonic()
                c = self.counters
                rate = (c.published - last_pub) / max(1e-6, now - last_t)
                last_pub, last_t = c.published, now
                in_flight = sum(conn.outstanding for conn in self._connections)
                out.write(
                    f"\r{now - self._started:7.1f}s  published {c.published:,} "
                    f"({rate:,.0f}/s)  acked {c.acknowledged:,}  in flight {in_flight:,}  "
                    f"errors {c.errors:,}   "
                )
                out.flush()
        finally:
            out.write("\n")
            out.flush()

    def _finish(self, publish_end: float) -> None:
        s, c = self.summary, self.counters
        s.stopped_by = self._stopped_by or "count"
        s.elapsed_s = round(publish_end - self._started, 3)
        s.published = c.published
        s.acknowledged = c.acknowledged
        s.unacknowledged = (
            sum(conn.outstanding for conn in self._connections) if self.options.qos else 0
        )
        s.refused = c.refused
        s.resent = c.resent
        s.status_published = c.status_published
        s.errors = c.errors
        s.error_kinds = dict(c.error_kinds)
        s.disconnects = c.disconnects
        s.churned = c.churned
        s.last_error = c.last_error
        if s.elapsed_s > 0:
            s.published_per_s = round(s.published / s.elapsed_s, 1)
            s.readings_per_s = round(s.readings / s.elapsed_s, 1)


async def _cancel(*tasks: asyncio.Task[Any]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def install_signal_handlers(simulation: Simulation) -> None:
    """SIGINT (Ctrl-C) and SIGTERM end the run gracefully, with its summary."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, simulation.stop)


def progress_stream() -> IO[str] | None:
    """The live progress line goes to a terminal only; logs and pipes stay quiet."""
    return sys.stderr if sys.stderr.isatty() else None
