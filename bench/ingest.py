"""End-to-end ingest benchmark: QoS 1 messages → committed rows, against a bare subscriber.

Everything runs on 127.0.0.1 with a private Mosquitto and PostgreSQL (and SQLite in a temp
dir). So that the publisher is never the bottleneck, the broker's queue for the subscriber's
persistent session is filled first (pre-encoded PUBLISH packets on a raw socket), then the
subscriber is started and the drain is timed.

    python -m bench.ingest --messages 200000
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from iotcollector.ingest import codec  # noqa: E402
from support.collector import Collector, scalar  # noqa: E402
from support.mosquitto import MosquittoServer  # noqa: E402
from support.postgres import PostgresServer  # noqa: E402


def _payloads(count: int, per_message: int) -> list[bytes]:
    base = datetime.now(UTC) - timedelta(hours=2)
    out = []
    for i in range(count):
        items = [
            {
                "device_id": f"bench-{(i * per_message + k) % 1000:04d}",
                "sensor_type": "temperature",
                "value": 20.0 + (i % 100) / 10,
                "unit": "C",
                "timestamp": (base + timedelta(microseconds=i * per_message + k)).isoformat(),
            }
            for k in range(per_message)
        ]
        out.append(orjson.dumps(items[0] if per_message == 1 else items))
    return out


def _publish_raw(port: int, payloads: list[bytes], topic: str = "iot/data") -> float:
    """Publish QoS 1 as fast as the broker acknowledges; return messages/s."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        codec.encode_connect(
            f"bench-pub-{time.monotonic_ns()}",
            clean_session=True,
            keepalive=60,
            session_expiry_s=0,
            receive_maximum=65535,
        )
    )
    reader = codec.PacketReader()
    acked = 0
    connected = False
    window = 5000
    sent = 0
    started = time.perf_counter()
    tbytes = len(topic).to_bytes(2, "big") + topic.encode()
    while acked < len(payloads):
        if connected and sent - acked < window and sent < len(payloads):
            chunk = []
            for i in range(sent, min(len(payloads), acked + window)):
                body = tbytes + ((i % 65535) + 1).to_bytes(2, "big") + b"\x00" + payloads[i]
                chunk.append(b"\x32" + codec.encode_remaining_length(len(body)) + body)
            sock.sendall(b"".join(chunk))
            sent += len(chunk)
        data = sock.recv(1 << 20)
        if not data:
            raise RuntimeError("broker closed the connection")
        for ptype, _flags, _body in reader.feed(data):
            if ptype == codec.CONNACK:
                connected = True
            elif ptype == codec.PUBACK:
                acked += 1
    sock.sendall(codec.DISCONNECT_PACKET)
    sock.close()
    return len(payloads) / (time.perf_counter() - started)


def bare_subscriber(broker: MosquittoServer, payloads: list[bytes]) -> float:
    """mosquitto_sub on a persistent session: messages/s draining the queue."""
    args = [
        "mosquitto_sub",
        "-p",
        str(broker.port),
        "-i",
        "bench-bare",
        "-c",
        "-q",
        "1",
        "-t",
        "iot/data",
        "-V",
        "mqttv5",
        "-x",
        "3600",
    ]
    subprocess.run([*args, "-W", "1"], capture_output=True, check=False)
    _publish_raw(broker.port, payloads)
    started = time.perf_counter()
    subprocess.run(
        [*args, "-C", str(len(payloads))], stdout=subprocess.DEVNULL, check=True, timeout=600
    )
    return len(payloads) / (time.perf_counter() - started)


def collector_drain(
    broker: MosquittoServer, database_url: str, payloads: list[bytes], readings: int, tmp: Path
) -> dict[str, float]:
    """Fill the collector's session queue, start it, time until every reading is committed."""
    client_id = f"bench-collector-{time.monotonic_ns()}"
    first = Collector(
        mqtt_url=broker.url, database_url=database_url, client_id=client_id, log_dir=tmp
    ).start()
    first.wait_ready()
    first.stop()
    _publish_raw(broker.port, payloads)
    c = Collector(
        mqtt_url=broker.url, database_url=database_url, client_id=client_id, log_dir=tmp
    ).start()
    started = time.perf_counter()
    try:
        while True:
            stored = int(c.metrics().get("iotcollector_readings_stored_total", 0)) if _up(c) else 0
            c.rss()
            if stored >= readings:
                break
            if time.perf_counter() - started > 900:
                raise RuntimeError(f"only {stored} of {readings} stored after 900 s")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        assert scalar(database_url, "SELECT count(*) FROM iot_data") >= readings
    finally:
        c.stop()
    return {
        "readings_per_s": readings / elapsed,
        "seconds": elapsed,
        "peak_rss_mb": c.peak_rss / 1e6,
    }


def _up(c: Collector) -> bool:
    try:
        return c.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args()
    n = args.messages
    results: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        ).stdout.strip(),
        "machine": f"{platform.machine()} {subprocess.getoutput('nproc')} cores",
        "messages": n,
    }
    singles = _payloads(n, 1)
    arrays = _payloads(max(1, n // 100), 100)
    with tempfile.TemporaryDirectory(prefix="iot-bench-") as tmpdir:
        tmp = Path(tmpdir)
        broker = MosquittoServer()
        broker.start()
        pg = PostgresServer()
        pg.start()
        try:
            bare = bare_subscriber(broker, singles)
            results["bare_subscriber_msgs_per_s"] = round(bare)
            print(f"bare subscriber: {bare:,.0f} msg/s")
            pg_single = collector_drain(broker, pg.create_database("single"), singles, n, tmp)
            results["postgres_single"] = pg_single
            results["postgres_single_ratio_to_bare"] = round(pg_single["readings_per_s"] / bare, 3)
            print(
                f"postgres, single: {pg_single['readings_per_s']:,.0f} readings/s "
                f"({pg_single['readings_per_s'] / bare:.2f} x bare), "
                f"peak RSS {pg_single['peak_rss_mb']:.0f} MB"
            )
            pg_array = collector_drain(
                broker, pg.create_database("array"), arrays, len(arrays) * 100, tmp
            )
            results["postgres_array100"] = pg_array
            print(f"postgres, arrays of 100: {pg_array['readings_per_s']:,.0f} readings/s")
            sq = collector_drain(broker, f"sqlite:///{tmp}/bench.db", singles, n, tmp)
            results["sqlite_single"] = sq
            print(f"sqlite, single: {sq['readings_per_s']:,.0f} readings/s")
        finally:
            broker.cleanup()
            pg.cleanup()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
