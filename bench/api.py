"""HTTP API latency benchmark (issue 3, item 3): 10 million readings, concurrency 8.

    .venv/bin/python -m bench.api                  # 10,000,000 rows (about 2-3 minutes)
    .venv/bin/python -m bench.api --rows 1000000   # smaller and quicker
    .venv/bin/python -m bench.api --profile DIR    # also py-spy the collector under load

Everything runs on 127.0.0.1 and is removed at the end, even on failure or Ctrl-C: a private
PostgreSQL 15 (``tests/support/postgres.py``), a private Mosquitto, and ``iot-collector
serve`` (``tests/support/collector.py``) with an API key.

1. Schema by ``iot-collector migrate``. The secondary indexes it created are dropped, the rows
   loaded, and the indexes re-created from their own catalogued definitions (checked equal
   afterwards): building an index once is much faster than maintaining four during the load.
2. Rows: ``--devices`` (1,000) x 4 sensors, one reading per series every ``--step`` seconds
   (35 s: 2,500 readings per series = 24.3 h, so a 1-hour window holds 102-103 rows, more
   than one page of 100, and a whole day exists). Generated inside PostgreSQL by
   ``INSERT … SELECT … FROM generate_series`` in chunks of time steps, in time order (each
   time step writes all series, as live ingest does: one series' rows are spread over the
   heap, one row per page). Then the devices rows and ``VACUUM ANALYZE``.
3. Two request kinds, each for a random device and sensor type:
   (a) ``GET /api/data`` over a random 1-hour window, ``limit=100``;
   (b) ``GET /api/data/aggregate`` over the first whole day, ``bucket=60s``.
   Each is measured four ways after a warm-up whose answers are checked against the counts
   expected from the generator: over HTTP with 8 and 1 concurrent keep-alive connections,
   and the exact SQL the server sends (``readings_query``, ``aggregate_query``) with psycopg on
   8 and 1 connections set up like the server's read pool. Each run is closed-loop and
   bounded by ``--requests`` and ``--seconds``.

The HTTP client is a minimal HTTP/1.1 client on asyncio streams (one connection per worker,
latency = request written to last body byte read): it costs a few tens of µs of CPU per
request, where httpx costs several hundred, which on two cores would be taken from the server
under test. CPU time per request of the collector, PostgreSQL and this client is recorded
for every run. Results: ``bench/results/api-<date>.json``, a row in ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bench.common import git, machine  # noqa: E402
from iotcollector.storage.base import ReadingFilter  # noqa: E402
from iotcollector.storage.query import POSTGRES, readings_query  # noqa: E402
from iotcollector.storage.rollups import aggregate_query  # noqa: E402
from support.collector import Collector  # noqa: E402
from support.mosquitto import MosquittoServer  # noqa: E402
from support.postgres import PostgresServer  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

README = ROOT / "bench" / "README.md"
RESULTS = ROOT / "bench" / "results"
TABLE_MARKER = "<!-- results: bench/api.py appends rows below -->"
API_KEY = "bench-api-key-" + "0123456789abcdef"
LIMIT = 100
WINDOW = timedelta(hours=1)
DAY = timedelta(days=1)
BUCKET_S = 60
TARGET_P99_MS = {"data_1h": 20.0, "aggregate_1d": 50.0}
# (sensor type, unit, typical value, amplitude)
SENSORS = (
    ("temperature", "C", 21.0, 4.0),
    ("humidity", "%", 45.0, 15.0),
    ("pressure", "hPa", 1013.0, 8.0),
    ("co2", "ppm", 600.0, 200.0),
)
# The bench's PostgreSQL: the test server's settings plus room for this data set.
PG_SETTINGS = {
    "shared_buffers": "256MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "maintenance_work_mem": "512MB",
}

_LOAD_CHUNK = """
INSERT INTO iot_data (device_id, sensor_type, value, unit, "timestamp", received_at)
SELECT 'sim-' || lpad(r.d::text, 4, '0'), (%(types)s::text[])[r.s], r.value,
       (%(units)s::text[])[r.s], r.ts, r.ts + interval '150 ms'
FROM (
    SELECT g.i, g.d, g.s, %(t0)s::timestamptz + g.i * %(step)s::interval AS ts,
           (%(bases)s::float8[])[g.s]
           + (%(amps)s::float8[])[g.s] * (sin((g.i + g.d * 7) / 240.0) + (random() - 0.5) / 10)
           AS value
    -- One series of row numbers n, in order: time step i, then device d, then sensor s. A
    -- function scan keeps that order, so the rows land in the heap in time order as with live
    -- ingest: one series' consecutive readings are devices x sensors rows apart.
    FROM (
        SELECT n / %(per_step)s::int AS i, n / %(sensors)s::int %% %(devices)s::int AS d,
               n %% %(sensors)s::int + 1 AS s
        FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n
    ) AS g
) AS r
"""
_SECONDARY_INDEXES = """
SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), c.conname,
       pg_get_constraintdef(c.oid)
FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.contype = 'u'
WHERE i.indrelid = 'iot_data'::regclass AND NOT i.indisprimary
ORDER BY 1
"""


# (date_bin width, table) of the two rollups.
ROLLUP_TABLES = (("minute", "iot_rollup_1m"), ("hour", "iot_rollup_1h"))


def rollup_rows(width: str, source: str) -> str:
    """A SELECT of the rollup rows of ``source``'s readings, as the refresher computes them."""
    return (
        "SELECT sensor_type, device_id, "
        f"date_bin('1 {width}', \"timestamp\", TIMESTAMPTZ '1970-01-01Z'), count(*), "
        f"sum(value), min(value), max(value) FROM {source} GROUP BY 1, 2, 3"
    )


def _log(text: str) -> None:
    print(text, flush=True)


def _load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class DataSet:
    devices: int
    per_series: int
    step_s: int
    t0: datetime

    @property
    def rows(self) -> int:
        return self.devices * len(SENSORS) * self.per_series

    @property
    def span(self) -> timedelta:
        return timedelta(seconds=self.step_s * self.per_series)

    def steps_in(self, start: datetime, end: datetime) -> list[int]:
        """Indexes k of the readings ``t0 + k * step`` in ``[start, end)`` (every series)."""
        first = max(0, -(-int((start - self.t0).total_seconds()) // self.step_s))
        last = min(self.per_series, -(-int((end - self.t0).total_seconds()) // self.step_s))
        return list(range(first, max(first, last)))


@dataclass(frozen=True)
class Query:
    device_id: str
    sensor_type: str
    start: datetime
    end: datetime

    def path(self, kind: str) -> bytes:
        common = (
            f"device_id={self.device_id}&sensor_type={self.sensor_type}"
            f"&from={_iso(self.start)}&to={_iso(self.end)}"
        )
        if kind == "data_1h":
            return f"/api/data?{common}&limit={LIMIT}".encode()
        return f"/api/data/aggregate?{common}&bucket={BUCKET_S}s".encode()

    def sql(self, kind: str) -> tuple[str, Any]:
        if kind == "data_1h":
            where = ReadingFilter(self.device_id, self.sensor_type, self.start, self.end)
            return readings_query(where, None, LIMIT + 1, POSTGRES)  # the server asks for limit + 1
        return aggregate_query(
            sensor_type=self.sensor_type,
            device_id=self.device_id,
            start=self.start,
            end=self.end,
            bucket=timedelta(seconds=BUCKET_S),
            # The history is loaded with its rollups: nothing is stale (the server checks).
            stale_minutes=(),
            stale_hours=(),
        )


def make_queries(kind: str, data: DataSet, count: int, rng: random.Random) -> list[Query]:
    out = []
    window_s = int(WINDOW.total_seconds())
    latest_start = max(0, int(data.span.total_seconds()) - window_s)
    for _ in range(count):
        device = f"sim-{rng.randrange(data.devices):04d}"
        sensor = rng.choice(SENSORS)[0]
        if kind == "data_1h":
            start = data.t0 + timedelta(seconds=rng.randrange(latest_start + 1))
            out.append(Query(device, sensor, start, start + WINDOW))
        else:
            out.append(Query(device, sensor, data.t0, data.t0 + DAY))
    return out


def check_answer(kind: str, data: DataSet, query: Query, body: bytes) -> int:
    """Raise unless the answer is what the generator implies; return its row/bucket count."""
    doc = orjson.loads(body)
    steps = data.steps_in(query.start, query.end)
    if kind == "data_1h":
        rows = doc["data"]
        expected = [data.t0 + timedelta(seconds=k * data.step_s) for k in reversed(steps)]
        got = [datetime.fromisoformat(r["timestamp"]) for r in rows]
        assert got == expected[:LIMIT], (query, len(got), len(expected))
        assert all(
            r["device_id"] == query.device_id and r["sensor_type"] == query.sensor_type
            for r in rows
        )
        assert (doc["next_cursor"] is not None) == (len(steps) > LIMIT), query
        return len(rows)
    buckets = doc["data"]
    minutes = Counter(
        int(k * data.step_s + data.t0.timestamp()) // BUCKET_S * BUCKET_S for k in steps
    )
    got_counts = {
        int(datetime.fromisoformat(b["bucket_start"]).timestamp()): b["count"] for b in buckets
    }
    assert got_counts == dict(minutes), query
    return len(buckets)


# -- the servers ----------------------------------------------------------------------------


@dataclass
class Servers:
    pg: PostgresServer
    broker: MosquittoServer
    collector: Collector | None = None
    tmp: Path = field(default_factory=Path)

    @property
    def postmaster_pid(self) -> int:
        return int((self.pg.data_dir / "postmaster.pid").read_text().split()[0])


@contextlib.contextmanager
def servers() -> Iterator[Servers]:
    """A private PostgreSQL and Mosquitto (the collector is added later); all removed after."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="iot-bench-api-")))
        pg = PostgresServer(extra_settings=PG_SETTINGS)
        stack.callback(pg.cleanup)
        broker = MosquittoServer(persistence=False)
        stack.callback(broker.cleanup)
        found = Servers(pg=pg, broker=broker, tmp=tmp)
        stack.callback(lambda: found.collector.ensure_stopped() if found.collector else None)
        pg.start()
        broker.start()
        yield found


def migrate(url: str) -> None:
    """The schema, created by the real command."""
    env = {**os.environ, "IOT_DATABASE_URL": url}
    result = subprocess.run(
        [sys.executable, "-m", "iotcollector", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"iot-collector migrate failed:\n{result.stdout}{result.stderr}")


def load(url: str, data: DataSet, chunk_steps: int) -> dict[str, Any]:
    """Fill iot_data and devices inside PostgreSQL; return timings and sizes."""
    timings: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        indexes = conn.execute(_SECONDARY_INDEXES).fetchall()
        began = time.perf_counter()
        for name, _indexdef, conname, _condef in indexes:
            if conname:
                conn.execute(f"ALTER TABLE iot_data DROP CONSTRAINT {conname}".encode())
            else:
                conn.execute(f"DROP INDEX {name}".encode())
        # Partitions for the whole span (the collector would make them on demand).
        days = int(data.span / timedelta(days=1)) + 2
        conn.execute(
            "SELECT iot_create_partitions(%s, interval '1 day')",
            ([data.t0 + timedelta(days=k) for k in range(days)],),
        )
        per_step = data.devices * len(SENSORS)
        params = {
            "t0": data.t0,
            "step": timedelta(seconds=data.step_s),
            "devices": data.devices,
            "sensors": len(SENSORS),
            "per_step": per_step,
            "types": [s[0] for s in SENSORS],
            "units": [s[1] for s in SENSORS],
            "bases": [s[2] for s in SENSORS],
            "amps": [s[3] for s in SENSORS],
        }
        for first in range(0, data.per_series, chunk_steps):
            last = min(data.per_series, first + chunk_steps)
            rows = {"first": first * per_step, "last": last * per_step - 1}
            conn.execute(_LOAD_CHUNK.encode(), {**params, **rows})
            done = last * per_step
            rate = done / (time.perf_counter() - began)
            print(f"\r  {done:,} rows, {rate:,.0f} rows/s", end="", flush=True)
        print(flush=True)
        timings["insert_s"] = time.perf_counter() - began
        began = time.perf_counter()
        for name, indexdef, conname, condef in indexes:
            if conname:
                conn.execute(f"ALTER TABLE iot_data ADD CONSTRAINT {conname} {condef}".encode())
            else:
                # A partitioned index's definition reads "ON ONLY iot_data", which would make
                # an invalid index on the parent alone: build it on every partition.
                conn.execute(indexdef.replace(" ON ONLY ", " ON ", 1).encode())
            _log(f"  index {name}: {time.perf_counter() - began:.0f} s")
        if conn.execute(_SECONDARY_INDEXES).fetchall() != indexes:
            raise RuntimeError("the re-created indexes differ from the migrated ones")
        invalid = conn.execute(
            "SELECT count(*) FROM pg_index WHERE NOT indisvalid AND indexrelid IN "
            "(SELECT indexrelid FROM pg_index WHERE indrelid = 'iot_data'::regclass)"
        ).fetchone()
        if invalid is None or invalid[0]:
            raise RuntimeError("a re-created index of iot_data is not valid on every partition")
        timings["indexes_s"] = time.perf_counter() - began
        began = time.perf_counter()
        # The rollups as the refresher would leave them, built in key order in one statement
        # each (the refresher, a minute at a time over a day of history, took 15 minutes).
        for width, table in ROLLUP_TABLES:
            conn.execute(f"INSERT INTO {table} {rollup_rows(width, 'iot_data')} ORDER BY 1, 2, 3")
        conn.execute("TRUNCATE iot_rollup_stale_1m, iot_rollup_stale_1h")
        _log(f"  rollups: {time.perf_counter() - began:.0f} s")
        timings["rollups_s"] = time.perf_counter() - began
        began = time.perf_counter()
        conn.execute(
            """
            INSERT INTO devices (device_id, first_seen, last_seen, status)
            SELECT 'sim-' || lpad(d::text, 4, '0'), %(t0)s, %(t1)s, 'offline'
            FROM generate_series(0, %(devices)s::int - 1) AS d
            """,
            {"t0": data.t0, "t1": data.t0 + data.span, "devices": data.devices},
        )
        conn.execute("VACUUM ANALYZE iot_data")
        conn.execute("VACUUM ANALYZE devices")
        timings["vacuum_analyze_s"] = time.perf_counter() - began
        sizes = conn.execute(
            """
            SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c
            WHERE c.oid = 'iot_data'::regclass
               OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'iot_data'::regclass)
            ORDER BY 1
            """
        ).fetchall()
        count = conn.execute("SELECT count(*) FROM iot_data").fetchone()
    assert count is not None
    if count[0] != data.rows:
        raise RuntimeError(f"loaded {count[0]:,} rows, expected {data.rows:,}")
    return {
        **{k: round(v, 1) for k, v in timings.items()},
        "sizes_mb": {name: round(size / 2**20) for name, size in sizes},
    }


def plans(url: str, data: DataSet) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of one query of each kind, and the heap spread of a series."""
    out: dict[str, Any] = {}
    query = make_queries("data_1h", data, 1, random.Random(1))[0]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        for kind in TARGET_P99_MS:
            sql, params = (query if kind == "data_1h" else _day_query(query, data)).sql(kind)
            rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}".encode(), params).fetchall()
            out[kind] = [str(r[0]) for r in rows]
        pages = conn.execute(
            """
            SELECT count(*), count(DISTINCT (ctid::text::point)[0])
            FROM iot_data WHERE device_id = %s AND sensor_type = %s
              AND "timestamp" >= %s AND "timestamp" < %s
            """,
            (query.device_id, query.sensor_type, query.start, query.end),
        ).fetchone()
    assert pages is not None
    out["one_hour_rows_and_heap_pages"] = list(pages)
    return out


def _day_query(query: Query, data: DataSet) -> Query:
    return Query(query.device_id, query.sensor_type, data.t0, data.t0 + DAY)


# -- measuring ------------------------------------------------------------------------------


@dataclass
class Run:
    latencies_ns: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        values = sorted(self.latencies_ns)
        n = len(values)

        def pct(p: float) -> float:
            return round(values[min(n - 1, max(0, int(p * n + 0.5) - 1))] / 1e6, 2) if n else 0.0

        return {
            "requests": n,
            "errors": dict(self.errors),
            "seconds": round(self.seconds, 2),
            "throughput_rps": round(n / self.seconds, 1) if self.seconds else 0.0,
            "mean_ms": round(sum(values) / n / 1e6, 2) if n else 0.0,
            "p50_ms": pct(0.50),
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "max_ms": round(values[-1] / 1e6, 2) if n else 0.0,
        }


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        parts.append(await reader.readexactly(size + 2))
        if size == 0:
            return status, b"".join(p[:-2] for p in parts)


async def _closed_loop(
    workers: Sequence[Callable[[Iterator[int], Run, float], Any]],
    count: int,
    seconds: float,
) -> Run:
    """Run ``workers`` concurrently over the request indexes ``0..count-1`` until done or
    ``seconds`` have passed; each records into the same Run."""
    run = Run()
    indexes = iter(range(count))
    began = time.perf_counter()
    await asyncio.gather(*(w(indexes, run, began + seconds) for w in workers))
    run.seconds = time.perf_counter() - began
    return run


async def http_run(
    port: int,
    paths: Sequence[bytes],
    concurrency: int,
    seconds: float,
    check: Callable[[int, bytes], object] | None = None,
) -> Run:
    """Closed loop over keep-alive connections, connected before the clock starts."""
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(concurrency)]
    head = f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {API_KEY}\r\n\r\n".encode()

    def worker(
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> Callable[[Iterator[int], Run, float], Any]:
        reader, writer = conn

        async def go(indexes: Iterator[int], run: Run, deadline: float) -> None:
            for i in indexes:
                if time.perf_counter() > deadline:
                    return
                began = time.perf_counter_ns()
                writer.write(b"GET " + paths[i] + b" HTTP/1.1\r\n" + head)
                status, body = await _read_response(reader)
                run.latencies_ns.append(time.perf_counter_ns() - began)
                if status != 200:
                    run.errors[f"HTTP {status}"] += 1
                    if len(run.errors) == 1 and run.errors[f"HTTP {status}"] == 1:
                        _log(f"  HTTP {status}: {body[:300]!r}")
                elif check is not None:
                    check(i, body)

        return go

    try:
        return await _closed_loop([worker(c) for c in conns], len(paths), seconds)
    finally:
        for _, writer in conns:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def sql_run(
    url: str, statements: Sequence[tuple[str, Any]], concurrency: int, seconds: float
) -> Run:
    """The same closed loop on psycopg connections set up like the server's read pool."""
    conns = []
    try:
        for _ in range(concurrency):
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
            conns.append(conn)
            await conn.execute(
                "SELECT set_config('statement_timeout', '30000ms', false), "
                "set_config('default_transaction_read_only', 'on', false), "
                "set_config('TimeZone', 'UTC', false)"
            )

        def worker(conn: psycopg.AsyncConnection[Any]) -> Callable[..., Any]:
            async def go(indexes: Iterator[int], run: Run, deadline: float) -> None:
                for i in indexes:
                    if time.perf_counter() > deadline:
                        return
                    sql, params = statements[i]
                    began = time.perf_counter_ns()
                    cur = await conn.execute(sql.encode(), params)
                    await cur.fetchall()
                    run.latencies_ns.append(time.perf_counter_ns() - began)

            return go

        return await _closed_loop([worker(c) for c in conns], len(statements), seconds)
    finally:
        for conn in conns:
            await conn.close()


def _cpu_tree(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children, live or exited."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        times = root.cpu_times()
        total += times.children_user + times.children_system  # exited children (backends)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


@dataclass
class Bench:
    args: argparse.Namespace
    data: DataSet
    servers: Servers
    url: str
    port: int
    collector_pid: int

    def cpu(self) -> tuple[float, float, float]:
        return (
            _cpu_tree(self.collector_pid),
            _cpu_tree(self.servers.postmaster_pid),
            time.process_time(),
        )

    def measure(self, kind: str, rng: random.Random) -> dict[str, Any]:
        args = self.args
        out: dict[str, Any] = {}
        # Warm-up: every answer checked against the generator.
        warm = make_queries(kind, self.data, args.warmup, rng)
        shapes: list[int] = []

        def check(i: int, body: bytes) -> None:
            shapes.append(check_answer(kind, self.data, warm[i], body))

        run = asyncio.run(
            http_run(self.port, [q.path(kind) for q in warm], args.concurrency, 120, check)
        )
        if run.errors or len(shapes) != len(warm):
            raise RuntimeError(f"warm-up of {kind} failed: {run.errors}")
        out["warmup"] = {
            "requests": len(warm),
            "checked": len(shapes),
            "mean_rows_or_buckets": round(sum(shapes) / len(shapes), 1),
        }
        for name, concurrency, count in (
            ("http_c8", args.concurrency, args.requests),
            ("sql_c8", args.concurrency, args.requests),
            ("http_c1", 1, args.requests // 3),
            ("sql_c1", 1, args.requests // 3),
        ):
            queries = make_queries(kind, self.data, count, rng)
            load = _load_avg()
            before = self.cpu()
            if name.startswith("http"):
                paths = [q.path(kind) for q in queries]
                run = asyncio.run(http_run(self.port, paths, concurrency, args.seconds))
            else:
                statements = [q.sql(kind) for q in queries]
                run = asyncio.run(sql_run(self.url, statements, concurrency, args.seconds))
                time.sleep(0.3)  # the closed backends exit: their CPU time is counted
            after = self.cpu()
            summary = run.summary()
            n = max(1, summary["requests"])
            summary["load_1m"] = load
            summary["cpu_ms_per_request"] = {
                who: round((a - b) / n * 1e3, 3)
                for who, b, a in zip(
                    ("collector", "postgres", "client"), before, after, strict=True
                )
            }
            if run.errors:
                raise RuntimeError(f"{kind} {name}: {run.errors}")
            out[name] = summary
            _log(
                f"  {kind} {name}: p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms, "
                f"{summary['throughput_rps']} req/s ({summary['requests']} in "
                f"{summary['seconds']} s, load {load}); CPU ms/request "
                f"{summary['cpu_ms_per_request']}"
            )
        return out

    def profile(self, kind: str, directory: Path, rng: random.Random) -> str:
        """py-spy the collector for 10 s under the same load (after the measured runs)."""
        directory.mkdir(parents=True, exist_ok=True)
        output = directory / f"api-{kind}.txt"
        spy = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "-p",
                str(self.collector_pid),
                "-f",
                "raw",
                "-d",
                "10",
                "--idle",
                "-o",
                str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.0)
            paths = [q.path(kind) for q in make_queries(kind, self.data, 100_000, rng)]
            asyncio.run(http_run(self.port, paths, self.args.concurrency, 11.0))
            spy.wait(timeout=60)
        finally:
            if spy.poll() is None:
                spy.kill()
                spy.wait()
        return str(output)


# -- results --------------------------------------------------------------------------------


def _versus(summary: dict[str, Any], target: float) -> str:
    verdict = "met" if summary["p99_ms"] < target else "**missed**"
    return f"{summary['p50_ms']:.1f} / {summary['p99_ms']:.1f} (< {target:g}: {verdict})"


def append_row(results: dict[str, Any]) -> None:
    """Add this run's row to the API latency table in bench/README.md."""
    r = results
    a, b = r["scenarios"]["data_1h"], r["scenarios"]["aggregate_1d"]
    cells = [
        r["date"][:16].replace("T", " "),
        f"`{r['commit']}`{'+' if r['dirty'] else ''}",
        r["machine_short"],
        f"{r['rows']:,}",
        f"{r['load_start']} / {r['load_end']}",
        _versus(a["http_c8"], TARGET_P99_MS["data_1h"]),
        f"{a['http_c8']['throughput_rps']:.0f}",
        f"{a['sql_c8']['p50_ms']:.1f} / {a['sql_c8']['p99_ms']:.1f}",
        f"{a['http_c1']['p50_ms']:.1f} / {a['sql_c1']['p50_ms']:.1f}",
        _versus(b["http_c8"], TARGET_P99_MS["aggregate_1d"]),
        f"{b['http_c8']['throughput_rps']:.0f}",
        f"{b['sql_c8']['p50_ms']:.1f} / {b['sql_c8']['p99_ms']:.1f}",
        f"{b['http_c1']['p50_ms']:.1f} / {b['sql_c1']['p50_ms']:.1f}",
        (
            f"{a['http_c8']['cpu_ms_per_request']['collector']:.2f} / "
            f"{b['http_c8']['cpu_ms_per_request']['collector']:.2f}"
        ),
    ]
    text = README.read_text()
    if TABLE_MARKER not in text:
        raise RuntimeError(f"{README} has no API latency table marker")
    head, _, tail = text.partition(TABLE_MARKER)
    lines = tail.split("\n")
    insert_at = 1
    while insert_at < len(lines) and lines[insert_at].startswith("|"):
        insert_at += 1
    lines.insert(insert_at, "| " + " | ".join(cells) + " |")
    README.write_text(head + TABLE_MARKER + "\n".join(lines))


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="total readings (10 M)")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--step", type=int, default=35, help="seconds between readings (35)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3000, help="per c8 run (c1: a third)")
    parser.add_argument("--seconds", type=float, default=40.0, help="at most, per run")
    parser.add_argument("--warmup", type=int, default=400, help="checked requests per kind")
    parser.add_argument("--chunk-steps", type=int, default=100, help="time steps per INSERT")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--profile", type=Path, help="also py-spy the collector into DIR")
    parser.add_argument("--output", type=Path, help="result JSON (bench/results/api-<date>.json)")
    parser.add_argument("--no-readme", action="store_true", help="do not add a README row")
    return parser.parse_args()


def _on_sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(143)  # unwinds through the clean-ups


def main() -> int:
    args = _parse_args()
    signal.signal(signal.SIGTERM, _on_sigterm)
    per_series = max(1, args.rows // (args.devices * len(SENSORS)))
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    data = DataSet(args.devices, per_series, args.step, today - timedelta(days=3))
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "machine": machine(),
        "machine_short": f"{os.cpu_count()} CPU, {psutil.virtual_memory().total / 2**30:.0f} GiB",
        "rows": data.rows,
        "devices": data.devices,
        "sensors": len(SENSORS),
        "step_s": data.step_s,
        "span_hours": round(data.span.total_seconds() / 3600, 2),
        "concurrency": args.concurrency,
        "postgres_settings": PG_SETTINGS,
        "load_start": _load_avg(),
    }
    _log(f"machine: {results['machine']}; load average {results['load_start']}")
    _log(
        f"{data.rows:,} rows: {data.devices} devices x {len(SENSORS)} sensors x "
        f"{data.per_series} readings {data.step_s} s apart ({results['span_hours']} h)"
    )
    rng = random.Random(args.seed)
    with servers() as srv:
        url = srv.pg.url
        migrate(url)
        _log("migrated; loading")
        results["data_load"] = load(url, data, args.chunk_steps)
        _log(f"loaded: {results['data_load']}")
        results["plans"] = plans(url, data)
        collector = Collector(
            mqtt_url=srv.broker.url,
            database_url=url,
            client_id="bench-api",
            log_dir=srv.tmp,
            env={"IOT_API_KEYS": API_KEY, "IOT_API_AUTH": "enabled", "IOT_LOG_LEVEL": "WARNING"},
        )
        srv.collector = collector
        collector.start()
        collector.wait_ready()
        assert collector.proc is not None
        bench = Bench(args, data, srv, url, collector.port, collector.proc.pid)
        results["scenarios"] = {}
        for kind in TARGET_P99_MS:
            _log(f"{kind}:")
            results["scenarios"][kind] = bench.measure(kind, rng)
        if args.profile:
            results["profiles"] = [bench.profile(kind, args.profile, rng) for kind in TARGET_P99_MS]
        collector.stop()
    results["load_end"] = _load_avg()
    results["total_seconds"] = round(time.perf_counter() - started)
    results["targets"] = {
        f"{kind}_p99_lt_{target:g}ms": results["scenarios"][kind]["http_c8"]["p99_ms"] < target
        for kind, target in TARGET_P99_MS.items()
    }
    stamp = results["date"][:19].replace(":", "")
    output = args.output or RESULTS / f"api-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    _log(json.dumps({k: results[k] for k in ("targets", "total_seconds")}))
    if not args.no_readme:
        append_row(results)
        _log(f"row added to {README.relative_to(ROOT)}")
    _log(f"results in {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
