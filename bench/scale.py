"""Fleet-scale benchmarks (issue 13) on one kept PostgreSQL 15 cluster with a large history.

    .venv/bin/python -m bench.scale load --rows 100000000   # history, resumable (long)
    .venv/bin/python -m bench.scale ingest                 # drain rate with what is stored
    .venv/bin/python -m bench.scale ingest --empty         # the same into an empty database
    .venv/bin/python -m bench.scale api                    # API latencies, concurrency 8
    .venv/bin/python -m bench.scale disk                   # bytes per row, table by table
    .venv/bin/python -m bench.scale retention              # drop one day vs delete one day
    .venv/bin/python -m bench.scale upgrade --rows 10000000   # migration 0005 in place
    .venv/bin/python -m bench.scale stop                   # stop the kept cluster

The cluster lives in ``--dir`` (default ``/var/tmp/iot-bench-scale``) between commands, on a
private port on 127.0.0.1; ``stop`` stops it, ``rm -r`` the directory removes it. Results go
to ``bench/results/scale-<command>-<date>.json``; bench/README.md keeps them.

History (``load``): ``--devices`` (350) x 4 sensors, one reading per series every ``--step``
seconds (36: 100 per series and hour, so a 1-hour page of 100 is full), from midnight 31 days
ago onwards, generated inside PostgreSQL (``bench.api``'s generator), one day at a time. A
day's three partitions (readings, 1-minute and 1-hour rollups computed from its rows) are
filled as bare tables, given their keys and indexes, then attached: much faster than
live-ingest order (as bench.api drops and re-creates indexes), same result. Each day is one
transaction recorded in ``bench_history``: ``load`` stops at ``--rows`` (rounded up to whole
days) and a later ``load`` with more rows continues where it stopped. 100 M rows = 30 days
of 3.36 M rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bench import api as api_bench  # noqa: E402
from bench import ingest as ingest_bench  # noqa: E402
from bench.common import git, machine  # noqa: E402
from iotcollector.domain.epoch import EPOCH  # noqa: E402
from iotcollector.storage.base import ReadingFilter  # noqa: E402
from iotcollector.storage.migrations import load_migrations  # noqa: E402
from iotcollector.storage.query import POSTGRES, readings_query  # noqa: E402
from iotcollector.storage.rollups import aggregate_query  # noqa: E402
from support.collector import Collector  # noqa: E402
from support.mosquitto import MosquittoServer  # noqa: E402
from support.postgres import PostgresServer  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator

RESULTS = ROOT / "bench" / "results"
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
EPOCH_SQL = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"
PG_SETTINGS = {
    **api_bench.PG_SETTINGS,
    "track_commit_timestamp": "on",  # ingest: the exact time of the last commit
    "max_connections": "60",
}
TARGET_P99_MS = {"page_1h": 20.0, "aggregate_1d": 50.0, "aggregate_30d_1h": 100.0}

_HISTORY = """
CREATE TABLE IF NOT EXISTS bench_history (
    t0 timestamptz NOT NULL, devices int NOT NULL, step_s int NOT NULL, steps_done bigint NOT NULL
)
"""


def _log(text: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {text}", flush=True)


def _load_avg() -> float:
    return round(os.getloadavg()[0], 2)


@contextlib.contextmanager
def cluster(directory: Path) -> Iterator[PostgresServer]:
    """The kept cluster, started (on a fresh port) if it is not running; left running."""
    pid_file = directory / "data" / "postmaster.pid"
    port_file = directory / "port"
    if pid_file.is_file() and port_file.is_file():
        port = int(port_file.read_text())
        with contextlib.suppress(psycopg.OperationalError):
            psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres").close()
            yield PostgresServer(base_dir=directory, port=port, extra_settings=PG_SETTINGS)
            return
    server = PostgresServer(base_dir=directory, extra_settings=PG_SETTINGS)
    server.start()
    port_file.write_text(str(server.port))
    # Detach: the cluster outlives this command (``stop`` ends it).
    if server._proc is not None:  # noqa: SLF001 - the fixture keeps its child; we let it go
        server._proc = None  # noqa: SLF001
    yield server


def _url(server: PostgresServer, database: str = "iot") -> str:
    server.create_database(database)
    return server.url_for(database)


def _migrate(url: str) -> None:
    env = {**os.environ, "IOT_DATABASE_URL": url}
    subprocess.run(
        [sys.executable, "-m", "iotcollector", "migrate"], env=env, check=True, capture_output=True
    )


def _history(conn: psycopg.Connection[Any]) -> tuple[datetime, int, int, int] | None:
    conn.execute(_HISTORY)
    row = conn.execute("SELECT t0, devices, step_s, steps_done FROM bench_history").fetchone()
    return None if row is None else (row[0], row[1], row[2], row[3])


def dataset(url: str) -> api_bench.DataSet:
    with psycopg.connect(url, autocommit=True) as conn:
        found = _history(conn)
    if found is None:
        raise SystemExit("no history loaded: run `python -m bench.scale load` first")
    t0, devices, step_s, steps = found
    return api_bench.DataSet(devices=devices, per_series=steps, step_s=step_s, t0=t0)


# -- load -----------------------------------------------------------------------------------


def load(args: argparse.Namespace) -> dict[str, Any]:
    with cluster(args.dir) as server:
        url = _url(server)
        _migrate(url)
        series = args.devices * len(api_bench.SENSORS)
        with psycopg.connect(url, autocommit=True) as conn:
            found = _history(conn)
            if found is None:
                t0 = EPOCH + timedelta(days=(datetime.now(UTC) - EPOCH).days - 31)
                conn.execute(
                    "INSERT INTO bench_history VALUES (%s, %s, %s, 0)",
                    (t0, args.devices, args.step),
                )
                found = (t0, args.devices, args.step, 0)
            t0, devices, step_s, done = found
            if (devices, step_s) != (args.devices, args.step):
                raise SystemExit(f"the history has {devices} devices every {step_s} s")
            conn.execute("SET synchronous_commit = off")
            conn.execute("SET maintenance_work_mem = '512MB'")
            steps_per_day = 86_400 // step_s
            target_steps = -(-args.rows // (series * steps_per_day)) * steps_per_day
            began, rows_before = time.perf_counter(), done * series
            while done < target_steps:
                last = done + steps_per_day - 1
                day = t0 + timedelta(seconds=done * step_s)
                with conn.transaction():
                    _load_day(conn, day, _chunk_params(t0, step_s, devices, done, last))
                    conn.execute("UPDATE bench_history SET steps_done = %s", (last + 1,))
                done = last + 1
                rows = done * series
                elapsed = time.perf_counter() - began
                _log(
                    f"{rows:,} rows (to {day:%Y-%m-%d}); "
                    f"{(rows - rows_before) / elapsed:,.0f} rows/s, load {_load_avg()}"
                )
            _register_devices(conn, devices)
            conn.execute("VACUUM ANALYZE")
        elapsed = time.perf_counter() - began
        return {
            "rows": done * series,
            "loaded_now": done * series - rows_before,
            "seconds": round(elapsed, 1),
            "rows_per_s": round((done * series - rows_before) / elapsed) if elapsed else None,
            "load_1m": _load_avg(),
        }


def _load_day(conn: psycopg.Connection[Any], day: datetime, params: Any) -> None:
    """One day as the three partitions the collector would make, built before attaching:
    rows into bare tables, then their keys and indexes, then ATTACH (which adopts them)."""
    name = f"{day:%Y%m%d}"
    bounds = {"lo": day, "hi": day + DAY}
    raw = f"iot_data_p{name}"
    conn.execute(f"CREATE TABLE {raw} (LIKE iot_data INCLUDING DEFAULTS)")
    conn.execute(
        api_bench._LOAD_CHUNK.replace(  # noqa: SLF001 - the same generator as bench.api
            "INSERT INTO iot_data (device_id,", f"INSERT INTO {raw} (id, device_id,"
        ).replace(
            "SELECT 'sim-'", "SELECT nextval(pg_get_serial_sequence('iot_data', 'id')), 'sim-'"
        ),
        params,
    )
    conn.execute(
        f"ALTER TABLE {raw} ADD CONSTRAINT {raw}_reading_key "
        'UNIQUE (device_id, sensor_type, "timestamp") INCLUDE (value, unit, id)'
    )
    conn.execute(f'CREATE INDEX {raw}_timestamp_idx ON {raw} ("timestamp")')
    for width, table in api_bench.ROLLUP_TABLES:
        part = f"{table}_p{name}"
        conn.execute(f"CREATE TABLE {part} (LIKE {table})")
        conn.execute(f"INSERT INTO {part} {api_bench.rollup_rows(width, raw)}")
        conn.execute(
            f"ALTER TABLE {part} ADD CONSTRAINT {part}_key "
            "PRIMARY KEY (sensor_type, device_id, bucket) INCLUDE (count, sum, min, max)"
        )
        _attach(conn, table, part, "bucket", bounds)
    _attach(conn, "iot_data", raw, '"timestamp"', bounds)


def _attach(
    conn: psycopg.Connection[Any], parent: str, part: str, column: str, bounds: dict[str, Any]
) -> None:
    """ATTACH without its validating scan: a CHECK constraint proves the range first."""
    lo, hi = bounds["lo"].isoformat(), bounds["hi"].isoformat()
    conn.execute(
        f"ALTER TABLE {part} ADD CONSTRAINT {part}_range "
        f"CHECK ({column} >= '{lo}' AND {column} < '{hi}')"
    )
    conn.execute(
        f"ALTER TABLE {parent} ATTACH PARTITION {part} FOR VALUES FROM ('{lo}') TO ('{hi}')"
    )
    conn.execute(f"ALTER TABLE {part} DROP CONSTRAINT {part}_range")


def _chunk_params(t0: datetime, step_s: int, devices: int, first: int, last: int) -> Any:
    sensors = api_bench.SENSORS
    per_step = devices * len(sensors)
    return {
        "types": [s[0] for s in sensors],
        "units": [s[1] for s in sensors],
        "bases": [s[2] for s in sensors],
        "amps": [s[3] for s in sensors],
        "t0": t0,
        "step": timedelta(seconds=step_s),
        "per_step": per_step,
        "sensors": len(sensors),
        "devices": devices,
        "first": first * per_step,
        "last": (last + 1) * per_step - 1,
    }


def _register_devices(conn: psycopg.Connection[Any], devices: int) -> None:
    conn.execute(
        "INSERT INTO devices (device_id, first_seen, last_seen, status) "
        "SELECT 'sim-' || lpad(d::text, 4, '0'), now(), now(), 'online' "
        "FROM generate_series(0, %s - 1) AS d ON CONFLICT DO NOTHING",
        (devices,),
    )


# -- ingest ---------------------------------------------------------------------------------


def ingest(args: argparse.Namespace) -> dict[str, Any]:
    """bench.ingest's drain of single-reading messages, into the loaded (or an empty) table."""
    with cluster(args.dir) as server, tempfile.TemporaryDirectory(prefix="iot-scale-") as tmp:
        database = "iot_empty" if args.empty else "iot"
        if args.empty:
            server.drop_database(database)
        url = _url(server, database)
        _migrate(url)
        stored_before = _estimate(url)
        broker = MosquittoServer()
        broker.start()
        try:
            payloads = ingest_bench._payloads(args.messages, 1)  # noqa: SLF001
            runs = [_drain(broker, server, url, payloads, Path(tmp)) for _ in range(args.repeat)]
        finally:
            broker.cleanup()
        if not args.empty:
            _forget_live(url)
        return {"rows_stored_before": stored_before, "database": database, "runs": runs}


def _estimate(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint FROM iot_partitions p "
            "JOIN pg_class c ON c.relname = p.name WHERE p.parent = 'iot_data'"
        ).fetchone()
    return int(row[0]) if row else 0


def _live_since() -> datetime:
    return datetime.now(UTC) - timedelta(hours=3, minutes=5)


def _drain(
    broker: MosquittoServer,
    server: PostgresServer,
    url: str,
    payloads: list[bytes],
    tmp: Path,
) -> dict[str, Any]:
    """Queue the messages for a persistent session, start the collector, time the drain."""
    _forget_live(url)
    client_id = f"bench-scale-{time.monotonic_ns()}"
    first = Collector(mqtt_url=broker.url, database_url=url, client_id=client_id, log_dir=tmp)
    first.start().wait_ready()
    first.stop()
    ingest_bench._publish_raw(broker.port, payloads)  # noqa: SLF001
    load = _load_avg()
    c = Collector(mqtt_url=broker.url, database_url=url, client_id=client_id, log_dir=tmp).start()
    launched = time.time()
    assert c.proc is not None
    postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    try:
        collector = psutil.Process(c.proc.pid)
        while ingest_bench._connected_at(c) is None and time.time() - launched < 60:  # noqa: SLF001
            time.sleep(0.01)
        cpu_before = collector.cpu_times(), api_bench._cpu_tree(postmaster)  # noqa: SLF001
        while ingest_bench._metric(c, "iotcollector_readings_stored_total") < len(payloads):  # noqa: SLF001
            if time.time() - launched > 900:
                raise RuntimeError("the drain took more than 900 s")
            time.sleep(ingest_bench.POLL_S)
        cpu_after = collector.cpu_times(), api_bench._cpu_tree(postmaster)  # noqa: SLF001
        connected = ingest_bench._connected_at(c)  # noqa: SLF001
    finally:
        c.stop()
        ingest_bench._forget_session(broker.port, client_id)  # noqa: SLF001
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*), extract(epoch FROM max(pg_xact_commit_timestamp(xmin))) "
            'FROM iot_data WHERE "timestamp" >= %s',
            (_live_since(),),
        ).fetchone()
    assert row is not None
    assert connected is not None
    count, last_commit = int(row[0]), float(row[1])
    assert count == len(payloads), (count, len(payloads))
    elapsed = last_commit - connected
    n = len(payloads)
    collector_s = sum(cpu_after[0][:2]) - sum(cpu_before[0][:2])
    result = {
        "readings": n,
        "readings_per_s": round(n / elapsed),
        "seconds": round(elapsed, 2),
        "load_1m": load,
        "cpu_us_per_reading": {
            "collector": round(collector_s / n * 1e6, 2),
            "postgres": round((cpu_after[1] - cpu_before[1]) / n * 1e6, 2),
        },
    }
    _log(f"  drain: {result}")
    return result


def _forget_live(url: str) -> None:
    """Remove the live readings of a previous drain (they would be duplicates), and recompute
    the rollups of the hours they were in from what is left (no collector is running)."""
    since = _live_since().replace(minute=0, second=0, microsecond=0)
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute('DELETE FROM iot_data WHERE "timestamp" >= %s', (_live_since(),))
        conn.execute("DELETE FROM iot_rollup_stale_1m WHERE minute >= %s", (since,))
        conn.execute("DELETE FROM iot_rollup_stale_1h WHERE hour >= %s", (since,))
        for width, table in (("minute", "iot_rollup_1m"), ("hour", "iot_rollup_1h")):
            conn.execute(f"DELETE FROM {table} WHERE bucket >= %s", (since,))
            conn.execute(
                f"INSERT INTO {table} (sensor_type, device_id, bucket, count, sum, min, max) "
                f"SELECT sensor_type, device_id, date_bin('1 {width}', \"timestamp\", "
                f"{EPOCH_SQL}), count(*), sum(value), min(value), max(value) FROM iot_data "
                'WHERE "timestamp" >= %s GROUP BY 1, 2, 3',
                (since,),
            )


# -- API ------------------------------------------------------------------------------------


def _paths_and_sql(
    kind: str, data: api_bench.DataSet, count: int, rng: random.Random
) -> tuple[list[bytes], list[tuple[str, Any]]]:
    paths: list[bytes] = []
    statements: list[tuple[str, Any]] = []
    span_s = int(data.span.total_seconds())
    days = span_s // 86_400
    for _ in range(count):
        device = f"sim-{rng.randrange(data.devices):04d}"
        sensor = rng.choice(api_bench.SENSORS)[0]
        if kind == "page_1h":
            start = data.t0 + timedelta(seconds=rng.randrange(span_s - 3600))
            end, bucket = start + HOUR, None
        elif kind == "aggregate_1d":
            start = data.t0 + rng.randrange(days) * DAY
            end, bucket = start + DAY, timedelta(minutes=1)
        else:
            start, end, bucket = data.t0, data.t0 + 30 * DAY, HOUR
        common = (
            f"device_id={device}&sensor_type={sensor}"
            f"&from={api_bench._iso(start)}&to={api_bench._iso(end)}"  # noqa: SLF001
        )
        if bucket is None:
            paths.append(f"/api/data?{common}&limit={api_bench.LIMIT}".encode())
            where = ReadingFilter(device, sensor, start, end)
            statements.append(readings_query(where, None, api_bench.LIMIT + 1, POSTGRES))
        else:
            seconds = int(bucket.total_seconds())
            paths.append(f"/api/data/aggregate?{common}&bucket={seconds}s".encode())
            statements.append(
                aggregate_query(
                    sensor_type=sensor,
                    device_id=device,
                    start=start,
                    end=end,
                    bucket=bucket,
                    # The history is loaded with its rollups: nothing is stale (the server
                    # checks, in the same snapshot, one more statement).
                    stale_minutes=(),
                    stale_hours=(),
                )
            )
    return paths, statements


def api(args: argparse.Namespace) -> dict[str, Any]:
    with cluster(args.dir) as server, tempfile.TemporaryDirectory(prefix="iot-scale-") as tmp:
        url = _url(server)
        data = dataset(url)
        broker = MosquittoServer(persistence=False)
        broker.start()
        c = Collector(
            mqtt_url=broker.url,
            database_url=url,
            client_id="bench-scale-api",
            log_dir=Path(tmp),
            env={"IOT_API_KEYS": api_bench.API_KEY},
        )
        try:
            c.start().wait_ready()
            assert c.proc is not None
            port = c.port
            postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
            rng = random.Random(13)
            out: dict[str, Any] = {"rows": data.rows, "series": data.devices * 4}
            for kind in ("page_1h", "aggregate_1d", "aggregate_30d_1h"):
                paths, _ = _paths_and_sql(kind, data, 30, rng)
                warm = asyncio.run(api_bench.http_run(port, paths, args.concurrency, 120))
                if warm.errors:
                    raise RuntimeError(f"{kind}: {warm.errors}")
                out[kind] = {}
                for name in ("http_c8", "sql_c8"):
                    paths, statements = _paths_and_sql(kind, data, args.requests, rng)
                    load = _load_avg()
                    before = api_bench._cpu_tree(c.proc.pid), api_bench._cpu_tree(postmaster)  # noqa: SLF001
                    if name == "http_c8":
                        run = asyncio.run(
                            api_bench.http_run(port, paths, args.concurrency, args.seconds)
                        )
                    else:
                        run = asyncio.run(
                            api_bench.sql_run(url, statements, args.concurrency, args.seconds)
                        )
                    after = api_bench._cpu_tree(c.proc.pid), api_bench._cpu_tree(postmaster)  # noqa: SLF001
                    summary = run.summary()
                    if run.errors:
                        raise RuntimeError(f"{kind} {name}: {run.errors}")
                    n = max(1, summary["requests"])
                    summary["load_1m"] = load
                    summary["cpu_ms_per_request"] = {
                        "collector": round((after[0] - before[0]) / n * 1e3, 3),
                        "postgres": round((after[1] - before[1]) / n * 1e3, 3),
                    }
                    summary["target_p99_ms"] = TARGET_P99_MS[kind]
                    out[kind][name] = summary
                    _log(f"  {kind} {name}: {summary}")
            return out
        finally:
            c.ensure_stopped()
            broker.cleanup()


# -- disk, retention, upgrade -----------------------------------------------------------------


def disk(args: argparse.Namespace) -> dict[str, Any]:
    with cluster(args.dir) as server, psycopg.connect(_url(server), autocommit=True) as conn:
        rows = dataset(server.url).rows
        sizes = {
            parent: int(size)
            for parent, size in conn.execute(
                "SELECT parent, sum(pg_total_relation_size(name::regclass)) FROM iot_partitions "
                "GROUP BY parent"
            ).fetchall()
        }
        database = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert database is not None
    return {
        "rows": rows,
        "bytes": sizes,
        "database_bytes": int(database[0]),
        "bytes_per_row": {k: round(v / rows, 1) for k, v in sizes.items()},
        "gb_per_100m_rows": round(sum(sizes.values()) / rows * 1e8 / 1e9, 1),
    }


def retention(args: argparse.Namespace) -> dict[str, Any]:
    """Drop the oldest day's partitions (detach concurrently + drop, as retention does), then
    delete the next day's rows the old way (batches of 5,000) for comparison."""
    from iotcollector.storage.partitions import drop_before  # noqa: PLC0415

    with cluster(args.dir) as server:
        url = _url(server)
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT name, lower, upper FROM iot_partitions WHERE parent = 'iot_data' "
                "ORDER BY lower LIMIT 2"
            ).fetchall()
        (_, first_lo, first_hi), (second, second_lo, second_hi) = rows

        async def drop() -> tuple[float, Any]:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as aconn:
                began = time.perf_counter()
                result = await drop_before(aconn, first_hi, batch_size=5000, pause_s=0)
                return time.perf_counter() - began, result

        load = _load_avg()
        dropped_s, result = asyncio.run(drop())
        _log(f"  dropped {result.dropped} in {dropped_s:.3f} s")
        with psycopg.connect(url, autocommit=True) as conn:
            began = time.perf_counter()
            deleted = 0
            while True:
                cur = conn.execute(
                    f"DELETE FROM {second} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {second} "
                    'WHERE "timestamp" < %s LIMIT 5000))',
                    (second_hi,),
                )
                deleted += cur.rowcount
                if cur.rowcount < 5000:
                    break
            deleted_s = time.perf_counter() - began
        _log(f"  deleted {deleted:,} rows in {deleted_s:.1f} s")
        return {
            "day_dropped": [str(first_lo), str(first_hi)],
            "rows_dropped": result.rows_deleted["iot_data"],
            "drop_seconds": round(dropped_s, 3),
            "day_deleted": [str(second_lo), str(second_hi)],
            "rows_deleted": deleted,
            "delete_seconds": round(deleted_s, 1),
            "load_1m": load,
        }


def upgrade(args: argparse.Namespace) -> dict[str, Any]:
    """Migration 0005 on an unpartitioned table of ``--rows`` readings (a throw-away cluster)."""
    with PostgresServer(extra_settings=PG_SETTINGS) as server:
        url = server.url
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE schema_migrations "
                "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for migration in load_migrations("postgres"):
                if migration.version >= "0005":
                    break
                conn.execute(migration.sql.encode())
                conn.execute("INSERT INTO schema_migrations VALUES (%s)", (migration.version,))
            devices, step_s = args.devices, args.step
            series = devices * len(api_bench.SENSORS)
            steps = -(-args.rows // series)
            t0 = EPOCH + timedelta(days=(datetime.now(UTC) - EPOCH).days - 31)
            conn.execute("SET synchronous_commit = off")
            began = time.perf_counter()
            conn.execute(
                api_bench._LOAD_CHUNK,  # noqa: SLF001
                _chunk_params(t0, step_s, devices, 0, steps - 1),
            )
            conn.execute("VACUUM ANALYZE iot_data")
            _log(f"  loaded {steps * series:,} rows in {time.perf_counter() - began:.0f} s")
            count = conn.execute("SELECT count(*) FROM iot_data").fetchone()
        load = _load_avg()
        began = time.perf_counter()
        _migrate(url)
        seconds = time.perf_counter() - began
        with psycopg.connect(url, autocommit=True) as conn:
            after = conn.execute("SELECT count(*) FROM iot_data").fetchone()
            rollups = conn.execute("SELECT sum(count) FROM iot_rollup_1h").fetchone()
        assert count is not None
        assert after is not None
        assert rollups is not None
        assert count[0] == after[0] == rollups[0], (count, after, rollups)
        return {
            "rows": int(count[0]),
            "migrate_seconds": round(seconds, 1),
            "seconds_per_10m_rows": round(seconds / count[0] * 1e7, 1),
            "load_1m": load,
        }


# -- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "command", choices=("load", "ingest", "api", "disk", "retention", "upgrade", "stop")
    )
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp/iot-bench-scale"))
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--devices", type=int, default=350)
    parser.add_argument("--step", type=int, default=36)
    parser.add_argument("--messages", type=int, default=200_000, help="ingest: per drain")
    parser.add_argument("--repeat", type=int, default=2, help="ingest: drains")
    parser.add_argument("--empty", action="store_true", help="ingest into an empty database")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3000, help="api: per run")
    parser.add_argument("--seconds", type=float, default=30.0, help="api: at most, per run")
    args = parser.parse_args()
    if args.command == "stop":
        with cluster(args.dir) as server:
            pid = int((server.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 2)
        return 0
    commands = {
        "load": load,
        "ingest": ingest,
        "api": api,
        "disk": disk,
        "retention": retention,
        "upgrade": upgrade,
    }
    started = datetime.now(UTC)
    result = {
        "command": args.command,
        "started": started.isoformat(timespec="seconds"),
        "git": git("describe", "--always", "--dirty"),
        "machine": machine(),
        "load_1m_before": _load_avg(),
        "result": commands[args.command](args),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "-empty" if args.command == "ingest" and args.empty else ""
    out = RESULTS / f"scale-{args.command}{suffix}-{started:%Y-%m-%dT%H%M%S}.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    _log(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
