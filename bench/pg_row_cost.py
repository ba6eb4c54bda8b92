"""PostgreSQL CPU per stored row for variants of the write path (schema from migrations).

Starts a private PostgreSQL, applies the migrations to a new database per variant, writes 200k
simulator readings (1000 devices x 5 sensors) in batches of 5000 (the collector's default),
one transaction each, and reports rows/s and the CPU time of all PostgreSQL processes per row:
load-independent, unlike rows/s on a shared machine.

    .venv/bin/python -m bench.pg_row_cost [--rows 200000] [--repeats 2] [--batch 5000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bench.ingest import _cpu_tree, _payloads, _postmaster_pid  # noqa: E402
from iotcollector.domain.parse import parse_message  # noqa: E402
from support.postgres import PostgresServer, refresh_rollups_on  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable

MIGRATIONS_DIR = ROOT / "src/iotcollector/storage/migrations/postgres"
MIGRATIONS = sorted(MIGRATIONS_DIR.glob("*.sql"))
COPY_TYPES = ["text", "text", "float8", "text", "timestamptz"]
Row = tuple[Any, ...]


def _copy_direct(cur: psycopg.Cursor[Any], rows: list[Row]) -> None:
    sql = b'COPY iot_data (device_id, sensor_type, value, unit, "timestamp") FROM STDIN BINARY'
    with cur.copy(sql) as copy:
        copy.set_types(COPY_TYPES)
        for row in rows:
            copy.write_row(row)


def _staging(cur: psycopg.Cursor[Any], rows: list[Row]) -> None:
    cur.execute(
        b"CREATE TEMPORARY TABLE IF NOT EXISTS st (device_id text, sensor_type text,"
        b" value double precision, unit text, ts timestamptz) ON COMMIT DELETE ROWS"
    )
    with cur.copy(b"COPY st FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(COPY_TYPES)
        for row in rows:
            copy.write_row(row)
    cur.execute(
        b'INSERT INTO iot_data (device_id, sensor_type, value, unit, "timestamp")'
        b" SELECT * FROM st ON CONFLICT DO NOTHING"
    )


def _sync_rollups() -> bytes:
    """Migration 0005's trigger function, which upserted both rollups in the inserting
    transaction (0008 replaced it with a log of touched minutes)."""
    text = (MIGRATIONS_DIR / "0005_partitions_and_rollups.sql").read_text()
    start = text.index("CREATE FUNCTION iot_rollup_new_readings()")
    end = text.index("$$;", start) + len("$$;")
    return text[start:end].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1).encode()


VARIANTS: list[tuple[str, list[bytes], Callable[[psycopg.Cursor[Any], list[Row]], None]]] = [
    ("COPY into iot_data as migrated (the fast path)", [], _copy_direct),
    ("staging + INSERT ON CONFLICT (batches with a redelivery)", [], _staging),
    ("COPY, rollups upserted by the trigger (0005-0007)", [_sync_rollups()], _copy_direct),
    (
        "COPY, no rollup trigger at all",
        [b"DROP TRIGGER iot_data_rollups ON iot_data"],
        _copy_direct,
    ),
    ("COPY, without the timestamp index", [b"DROP INDEX iot_data_timestamp_idx"], _copy_direct),
]


def _process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _refresh_cost(url: str, rows: int) -> None:
    """The background refresh of the rollups (0008) for the rows just written, per row: the
    CPU of the refreshing backend (the only process at work)."""
    with psycopg.connect(url, autocommit=True) as conn:
        backend = conn.info.backend_pid
        cpu, began = _process_cpu_s(backend), time.perf_counter()
        refresh_rollups_on(conn, step=10)  # as the collector's refresher steps
        elapsed = time.perf_counter() - began
        cpu = _process_cpu_s(backend) - cpu
    print(
        f"{'  then the rollup refresh of those rows (0008)':58} {rows / elapsed:9,.0f} rows/s"
        f"  PostgreSQL {cpu / rows * 1e6:5.1f} µs CPU/row",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()
    now = datetime.now(UTC)
    rows: list[Row] = []
    for payload in _payloads(args.rows, 1):
        r = parse_message(payload, received_at=now).readings[0]
        rows.append((r.device_id, r.sensor_type, r.value, r.unit, r.timestamp))
    pg = PostgresServer()
    pg.start()
    try:
        for repeat in range(args.repeats):
            for number, (name, setup, write) in enumerate(VARIANTS):
                url = pg.create_database(f"cost_{repeat}_{number}")
                with psycopg.connect(url) as conn:
                    for migration in MIGRATIONS:
                        conn.execute(migration.read_bytes())
                    conn.execute(
                        "SELECT iot_create_partitions(%s, '1 day')", (sorted({r[4] for r in rows}),)
                    )
                    for statement in setup:
                        conn.execute(statement)
                    conn.commit()
                    pid = _postmaster_pid(pg)
                    cpu, began = _cpu_tree(pid), time.perf_counter()
                    for offset in range(0, len(rows), args.batch):
                        with conn.cursor() as cur:
                            write(cur, rows[offset : offset + args.batch])
                        conn.commit()
                    elapsed = time.perf_counter() - began
                    cpu = _cpu_tree(pid) - cpu
                print(
                    f"{name:58} {len(rows) / elapsed:9,.0f} rows/s"
                    f"  PostgreSQL {cpu / len(rows) * 1e6:5.1f} µs CPU/row",
                    flush=True,
                )
                if number == 0:
                    _refresh_cost(url, len(rows))
    finally:
        pg.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
