"""Write-path benchmark: PostgreSQL insert methods and SQLite synchronous modes.

Starts its own private PostgreSQL (``tests/support/postgres.py``, default durability:
fsync on, synchronous_commit on) and a temporary SQLite file, writes N readings through the
real storage classes in batches of several sizes, and prints rows/s per write path.

    .venv/bin/python bench/storage_bench.py [--rows 200000] [--sizes 500,1000,2000,5000]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from iotcollector.domain.reading import Reading
from iotcollector.storage.postgres_writer import InsertReadings, PostgresWriter, copy_readings
from iotcollector.storage.sqlite import SqliteStorage
from support.postgres import PostgresServer

if TYPE_CHECKING:
    from collections.abc import Sequence

    from psycopg import AsyncConnection

    from iotcollector.storage.base import BatchWriter

_INSERT_UNNEST = """
INSERT INTO iot_data (device_id, sensor_type, value, unit, "timestamp")
SELECT * FROM unnest(%s::text[], %s::text[], %s::float8[], %s::text[], %s::timestamptz[])
ON CONFLICT DO NOTHING
"""
_INSERT_VALUES = """
INSERT INTO iot_data (device_id, sensor_type, value, unit, "timestamp")
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""


async def insert_unnest(
    conn: AsyncConnection[Any],
    readings: Sequence[Reading],
    *,
    more_to_come: bool,  # noqa: ARG001 - the signature of InsertReadings
) -> int:
    """One ``INSERT … SELECT FROM unnest(arrays)``: the write path measured against COPY."""
    async with conn.cursor() as cur:
        await cur.execute(
            _INSERT_UNNEST,
            (
                [r.device_id for r in readings],
                [r.sensor_type for r in readings],
                [r.value for r in readings],
                [r.unit for r in readings],
                [r.timestamp for r in readings],
            ),
        )
        return cur.rowcount


async def insert_executemany(
    conn: AsyncConnection[Any],
    readings: Sequence[Reading],
    *,
    more_to_come: bool,  # noqa: ARG001 - the signature of InsertReadings
) -> int:
    """``executemany`` of one-row ``INSERT``s: the write path measured against COPY."""
    async with conn.cursor() as cur:
        await cur.executemany(
            _INSERT_VALUES,
            [(r.device_id, r.sensor_type, r.value, r.unit, r.timestamp) for r in readings],
        )
        return cur.rowcount


INSERT_METHODS: dict[str, InsertReadings] = {
    "copy": copy_readings,
    "unnest": insert_unnest,
    "executemany": insert_executemany,
}

SENSORS = ("temperature", "humidity", "pressure", "co2")
UNITS = ("C", "%", "hPa", "ppm")


def make_readings(count: int, devices: int = 1000) -> list[Reading]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    readings = []
    for i in range(count):
        sensor = i % len(SENSORS)
        readings.append(
            Reading(
                device_id=f"sim-{(i // len(SENSORS)) % devices:04d}",
                sensor_type=SENSORS[sensor],
                value=20.0 + (i % 1000) / 100,
                unit=UNITS[sensor],
                timestamp=start + timedelta(milliseconds=i),
            )
        )
    return readings


async def timed_write(storage: BatchWriter, readings: list[Reading], batch: int) -> float:
    began = time.perf_counter()
    stored = 0
    for offset in range(0, len(readings), batch):
        result = await storage.write_batch(readings[offset : offset + batch], [])
        stored += result.stored
    elapsed = time.perf_counter() - began
    assert stored == len(readings), (stored, len(readings))
    return len(readings) / elapsed


async def bench_postgres(
    url: str, readings: list[Reading], sizes: list[int], repeats: int
) -> list[str]:
    lines = []
    methods = tuple(INSERT_METHODS)
    for batch in sizes:
        best: dict[str, tuple[float, float]] = {}
        for _ in range(repeats):  # interleaved, best of ``repeats``: the machine is shared
            for method in methods:
                rate, dup_rate = await _postgres_run(url, method, readings, batch)
                old = best.get(method, (0.0, 0.0))
                best[method] = (max(old[0], rate), max(old[1], dup_rate))
                print(f"  postgres {method:<11} batch {batch:>5}: {rate:9,.0f} rows/s", flush=True)
        cells = [f"{best[m][0]:>9,.0f} ({best[m][1] / 1000:.0f}k dup)" for m in methods]
        lines.append(f"| {batch:>5} | " + " | ".join(cells) + " |")
    header = "| batch | " + " | ".join(methods) + " |"
    return [header, "|---" * (len(methods) + 1) + "|", *lines]


async def _postgres_run(
    url: str, method: str, readings: list[Reading], batch: int
) -> tuple[float, float]:
    storage = PostgresWriter(url, insert=INSERT_METHODS[method])
    await storage.open()
    await storage.migrate()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE iot_data, devices, iot_rejected")
        conn.execute("VACUUM ANALYZE iot_data")
    rate = await timed_write(storage, readings, batch)
    # Redelivery of the same batches: every row is a duplicate.
    dup_rows = min(len(readings), 50_000)
    dup_began = time.perf_counter()
    for offset in range(0, dup_rows, batch):
        result = await storage.write_batch(readings[offset : offset + batch], [])
        assert result.stored == 0
    dup_rate = dup_rows / (time.perf_counter() - dup_began)
    await storage.close()
    return rate, dup_rate


async def bench_sqlite(
    directory: Path, readings: list[Reading], sizes: list[int], repeats: int
) -> list[str]:
    lines = ["| batch | FULL | NORMAL |", "|---|---|---|"]
    modes: tuple[Literal["FULL", "NORMAL"], ...] = ("FULL", "NORMAL")
    for batch in sizes:
        best = dict.fromkeys(modes, 0.0)
        for run in range(repeats):
            for mode in modes:
                path = directory / f"bench-{mode}-{batch}-{run}.db"
                storage = SqliteStorage(str(path), synchronous=mode)
                await storage.open()
                await storage.migrate()
                rate = await timed_write(storage, readings, batch)
                await storage.close()
                best[mode] = max(best[mode], rate)
                print(f"  sqlite {mode:<6} batch {batch:>5}: {rate:9,.0f} rows/s", flush=True)
        lines.append(f"| {batch:>5} | " + " | ".join(f"{best[m]:9,.0f}" for m in modes) + " |")
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--sizes", default="500,1000,2000,5000")
    parser.add_argument("--sqlite-sizes", default="500,2000")
    parser.add_argument("--repeats", type=int, default=2, help="best of N, interleaved")
    parser.add_argument(
        "--sqlite-dir", default=None, help="a directory on the disk to measure (default: tmp)"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    readings = make_readings(args.rows)
    print(f"{args.rows} readings; {platform.platform()}; python {platform.python_version()}")
    with PostgresServer() as server:
        pg_table = await bench_postgres(server.url, readings, sizes, args.repeats)
    with tempfile.TemporaryDirectory(prefix="iot-sqlite-bench-", dir=args.sqlite_dir) as tmp:
        sqlite_sizes = [int(s) for s in args.sqlite_sizes.split(",")]
        sqlite_table = await bench_sqlite(Path(tmp), readings, sqlite_sizes, args.repeats + 1)
    print(
        f"\nPostgreSQL 15, rows/s, best of {args.repeats} (new rows; in brackets: "
        "redelivered batches, all duplicates)"
    )
    print("\n".join(pg_table))
    print("\nSQLite WAL, rows/s")
    print("\n".join(sqlite_table))


if __name__ == "__main__":
    asyncio.run(main())
