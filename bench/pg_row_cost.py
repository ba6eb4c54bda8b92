"""PostgreSQL CPU per stored row for variants of the write path (schema from migrations).

Starts a private PostgreSQL, applies the migrations to a new database per variant, writes 200k
simulator readings (1000 devices x 5 sensors) in batches of 5000 (the collector's default),
one transaction each, and reports rows/s and the CPU time of all PostgreSQL processes per row:
load-independent, unlike rows/s on a shared machine.

    .venv/bin/python -m bench.pg_row_cost [--rows 200000] [--repeats 2] [--batch 5000]
"""

from __future__ import annotations

import argparse
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
from support.postgres import PostgresServer  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable

MIGRATIONS = sorted((ROOT / "src/iotcollector/storage/migrations/postgres").glob("*.sql"))
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


VARIANTS: list[tuple[str, list[bytes], Callable[[psycopg.Cursor[Any], list[Row]], None]]] = [
    ("COPY into iot_data as migrated (the fast path)", [], _copy_direct),
    ("staging + INSERT ON CONFLICT (batches with a redelivery)", [], _staging),
    (
        "COPY, plus 0002's device/time index (before 0003)",
        [b'CREATE INDEX iot_data_device_time_idx ON iot_data (device_id, "timestamp", id)'],
        _copy_direct,
    ),
    ("COPY, without the timestamp index", [b"DROP INDEX iot_data_timestamp_idx"], _copy_direct),
    (
        "COPY, only the unique key (the floor with dedup)",
        [
            b"DROP INDEX iot_data_timestamp_idx",
            b"ALTER TABLE iot_data DROP CONSTRAINT iot_data_pkey",
        ],
        _copy_direct,
    ),
]


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
    finally:
        pg.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
