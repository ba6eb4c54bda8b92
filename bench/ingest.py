"""End-to-end ingest benchmark: QoS 1 messages → committed rows, against a bare subscriber.

    .venv/bin/python -m bench.ingest            # full run (about 3 minutes)
    .venv/bin/python -m bench.ingest --quick    # smaller run (about 1 minute)
    .venv/bin/python -m bench.ingest --profile DIR   # and a py-spy profile of one more drain

Everything runs on 127.0.0.1 with a private Mosquitto and PostgreSQL (and SQLite in a temp
dir), all removed at the end. One run measures, side by side:

1. bare subscriber: ``mosquitto_sub`` draining N queued QoS 1 messages (messages/s); and a
   raw-socket subscriber that only counts and acks (the broker's own limit);
2. the collector into PostgreSQL, N single-reading messages (readings/s, ratio to each of 1);
   1 (mosquitto_sub) and 2 are drained in turn three times (``--rounds``): the ratio is of
   their medians, so that one noisy moment on a shared machine does not decide it (every
   round's figure is in the result JSON);
3. the same with JSON arrays of 100 readings;
4. the same into SQLite; then mapped topics (``IOT_MAPPINGS_FILE``) into PostgreSQL:
   4b. Zigbee2MQTT-like JSON, 5 sensors a message (``readings: auto``), N/5 messages;
   4c. Sparkplug B alias-only DDATA, 10 metrics a message, N/10 messages (after an NBIRTH and
   100 DBIRTHs);
5. latency publish → commit at a fixed 5,000 readings/s for 60 s (p50/p99);
6. the collector's peak RSS in every run, and during a 30 s PostgreSQL outage under
   5,000 readings/s (then: every reading stored exactly once).

Throughput (1-4): so that the publisher is never the bottleneck, the broker's queue for the
subscriber's persistent session is filled first (pre-encoded PUBLISH packets on a raw socket),
then the subscriber is started and the drain is timed, from its first received message to its
last committed reading. Latency (5, 6): ``iot-collector simulate`` publishes live at the fixed
rate with each reading's timestamp set to its publish time; PostgreSQL runs with
``track_commit_timestamp = on`` so each row's commit time is exact
(``pg_xact_commit_timestamp(xmin)``): latency = commit time - reading timestamp, per reading,
same machine clock. bench/README.md explains the method and keeps the results.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bench.common import git, machine  # noqa: E402
from iotcollector.ingest import codec  # noqa: E402
from iotcollector.ingest.handshake import encode_connect  # noqa: E402
from iotcollector.simulator.payloads import Format  # noqa: E402
from iotcollector.simulator.stream import MessageStream, StreamConfig  # noqa: E402
from support.collector import Collector, scalar  # noqa: E402
from support.mosquitto import MosquittoServer  # noqa: E402
from support.postgres import PostgresServer  # noqa: E402
from support.sparkplug import BOOLEAN, DOUBLE, INT64, encode, metric  # noqa: E402

README = ROOT / "bench" / "README.md"
RESULTS = ROOT / "bench" / "results"
TABLE_MARKER = "<!-- results: bench/ingest.py appends rows below -->"
POLL_S = 0.25


def _log(text: str) -> None:
    print(text, flush=True)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _payloads(count: int, per_message: int, devices: int = 1000) -> list[bytes]:
    """Simulator payloads (1000 devices, five sensors) with timestamps over the past hours."""
    start = datetime.now(UTC) - timedelta(hours=3)
    readings = count * per_message
    stream = MessageStream(
        StreamConfig(
            devices=devices,
            fmt=Format.SINGLE if per_message == 1 else Format.BATCH,
            batch_size=per_message,
            seed=42,
            readings_per_s=readings / 3600,  # an hour of data
            start_us=int(start.timestamp() * 1e6),
        )
    )
    out: list[bytes] = []
    while len(out) < count:
        out.extend(m.payload for m in stream.next_messages())
    return out[:count]


MAPPINGS = """
mappings:
  - topic: "zigbee2mqtt/{device_id}"
    timestamp: "$.last_seen"
    readings: auto
    exclude: [linkquality]
    units: {battery: "%", voltage: mV}
  - topic: "spBv1.0/#"
    payload: sparkplug_b
"""
SPARKPLUG_METRICS = (
    "Inputs/Temperature",
    "Inputs/Pressure",
    "Inputs/Flow",
    "Inputs/Level",
    "Motor/Speed",
    "Motor/Current",
    "Motor/Voltage",
    "Motor/Torque",
    "Outputs/Valve",
    "Outputs/Setpoint",
)
SPARKPLUG_DEVICES = 100


def _zigbee2mqtt(count: int, devices: int = 1000) -> tuple[list[str], list[bytes]]:
    """Zigbee2MQTT-like state messages (5 numeric sensors, linkquality, strings), one device
    per topic, each with its ``last_seen`` time (Zigbee2MQTT's ``advanced.last_seen``)."""
    start = datetime.now(UTC) - timedelta(hours=3)
    topics, payloads = [], []
    for i in range(count):
        at = start + timedelta(microseconds=i * 1000)
        topics.append(f"zigbee2mqtt/z2m-{i % devices:04d}")
        payloads.append(
            json.dumps(
                {
                    "battery": 90 + i % 10,
                    "humidity": 40 + (i % 200) / 10,
                    "linkquality": 120,
                    "pressure": 1013 + (i % 50) / 10,
                    "temperature": 20 + (i % 100) / 10,
                    "voltage": 2900 + i % 100,
                    "update": {"state": "idle"},
                    "last_seen": at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
                },
                separators=(",", ":"),
            ).encode()
        )
    return topics, payloads


def _sparkplug(count: int) -> tuple[list[str], list[bytes], int]:
    """An edge node's NBIRTH, a DBIRTH per device (10 metrics with aliases and values), then
    ``count`` alias-only DDATA of 10 metrics; returns topics, payloads and the readings."""
    start_ms = int((datetime.now(UTC) - timedelta(hours=3)).timestamp() * 1000)
    topics = ["spBv1.0/bench/NBIRTH/edge-1"]
    payloads = [
        encode(
            [
                metric("bdSeq", 0, datatype=INT64),
                metric("Node Control/Rebirth", False, datatype=BOOLEAN),
            ],
            timestamp=start_ms,
        )
    ]
    for d in range(SPARKPLUG_DEVICES):
        topics.append(f"spBv1.0/bench/DBIRTH/edge-1/dev-{d:03d}")
        payloads.append(
            encode(
                [
                    metric(name, 1.0, alias=a, datatype=DOUBLE)
                    for a, name in enumerate(SPARKPLUG_METRICS)
                ],
                timestamp=start_ms,
            )
        )
    for i in range(count):
        at = start_ms + 1 + i
        topics.append(f"spBv1.0/bench/DDATA/edge-1/dev-{i % SPARKPLUG_DEVICES:03d}")
        payloads.append(
            encode(
                [
                    metric(value=float(i % 1000) + a, alias=a, datatype=DOUBLE, timestamp=at)
                    for a in range(len(SPARKPLUG_METRICS))
                ],
                timestamp=at,
                seq=i % 256,
            )
        )
    readings = (SPARKPLUG_DEVICES + count) * len(SPARKPLUG_METRICS)
    return topics, payloads, readings


def _publish_raw(
    port: int, payloads: list[bytes], topic: str = "iot/data", topics: list[str] | None = None
) -> float:
    """Publish QoS 1 as fast as the broker acknowledges (``topics[i]`` for payload ``i`` when
    given); return messages/s."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        encode_connect(
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
    encoded = [len(t).to_bytes(2, "big") + t.encode() for t in topics] if topics else None
    while acked < len(payloads):
        if connected and sent - acked < window and sent < len(payloads):
            chunk = []
            for i in range(sent, min(len(payloads), acked + window)):
                name = encoded[i] if encoded else tbytes
                body = name + ((i % 65535) + 1).to_bytes(2, "big") + b"\x00" + payloads[i]
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


def bare_subscriber(broker: MosquittoServer, payloads: list[bytes]) -> dict[str, Any]:
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
    load = _load()
    _publish_raw(broker.port, payloads)
    broker_cpu = _broker_cpu(broker)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [*args, "-C", str(len(payloads))], stdout=subprocess.DEVNULL, check=True, timeout=600
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    _forget_session(broker.port, "bench-bare")
    return _drain_figures(len(payloads), elapsed, (own, _broker_cpu(broker) - broker_cpu), load)


def raw_subscriber(broker: MosquittoServer, payloads: list[bytes]) -> dict[str, Any]:
    """The broker's own delivery limit: a raw-socket subscriber that only counts and acks.

    ``mosquitto_sub`` writes every message to its output and sends one PUBACK per message,
    and on some machines spends a whole core doing so before the broker does (see
    bench/README.md). This one answers each received chunk's PUBLISHes with one write of
    PUBACKs, so the broker is the limit.
    """
    client_id = f"bench-raw-{time.monotonic_ns()}"
    sock = _session(broker.port, client_id)
    sock.sendall(codec.encode_subscribe(1, [("iot/data", 1)]))
    _until(sock, codec.PacketReader(), codec.SUBACK)
    sock.sendall(codec.DISCONNECT_PACKET)
    sock.close()
    load = _load()
    _publish_raw(broker.port, payloads)
    broker_cpu = _broker_cpu(broker)
    own_cpu = _cpu(psutil.Process())
    started = time.perf_counter()
    sock = _session(broker.port, client_id)
    reader = codec.PacketReader()
    received = 0
    while received < len(payloads):
        data = sock.recv(1 << 20)
        if not data:
            raise RuntimeError("broker closed the connection")
        acks = []
        for ptype, flags, body in reader.feed(data):
            if ptype == codec.PUBLISH:
                packet_id = codec.decode_publish(flags, body)[2]
                if packet_id is not None:
                    acks.append(packet_id)
                received += 1
        if acks:
            sock.sendall(codec.encode_pubacks(acks))
    elapsed = time.perf_counter() - started
    cpu = _cpu(psutil.Process()) - own_cpu, _broker_cpu(broker) - broker_cpu
    sock.sendall(codec.DISCONNECT_PACKET)
    sock.close()
    _forget_session(broker.port, client_id)
    return _drain_figures(len(payloads), elapsed, cpu, load)


def _session(port: int, client_id: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)  # a stuck drain fails
    sock.sendall(
        encode_connect(
            client_id,
            clean_session=False,
            keepalive=60,
            session_expiry_s=3600,
            receive_maximum=65535,
        )
    )
    return sock


def _until(sock: socket.socket, reader: codec.PacketReader, packet_type: int) -> None:
    while True:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError("broker closed the connection")
        if any(ptype == packet_type for ptype, _f, _b in reader.feed(data)):
            return


def _broker_cpu(broker: MosquittoServer) -> float:
    return _cpu_tree(broker.proc.pid if broker.proc else None)


def _drain_figures(
    messages: int, elapsed: float, cpu: tuple[float, float], load: float
) -> dict[str, Any]:
    """``cpu``: CPU seconds of the subscriber and of the broker during the drain."""
    subscriber_cpu, broker_cpu = cpu
    return {
        "msgs_per_s": round(messages / elapsed),
        "load": load,
        # The share of one core each side used: whichever is near 1.0 was the limit.
        "cpu_cores_busy": {
            "subscriber": round(subscriber_cpu / elapsed, 2),
            "mosquitto": round(broker_cpu / elapsed, 2),
        },
    }


def _peak_rss(pid: int) -> int:
    """The kernel's high-water mark of the process's resident set (bytes), 0 if unknown."""
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            return int(match.group(1)) * 1024
    return 0


def _metric(c: Collector, name: str) -> float:
    try:
        return c.metrics().get(name, 0.0)
    except httpx.HTTPError:
        return 0.0


def _collector(
    broker: MosquittoServer,
    database_url: str,
    client_id: str,
    tmp: Path,
    env: dict[str, str] | None = None,
) -> Collector:
    return Collector(
        mqtt_url=broker.url, database_url=database_url, client_id=client_id, log_dir=tmp, env=env
    )


def _stop(c: Collector, broker: MosquittoServer) -> int:
    """Stop the collector and end its session; return its peak RSS in bytes."""
    assert c.proc is not None
    peak = max(_peak_rss(c.proc.pid), c.peak_rss)
    c.stop()
    _forget_session(broker.port, c.client_id)
    return peak


def _forget_session(port: int, client_id: str) -> None:
    """End the persistent session of a finished run.

    Left alone, the broker queues every later run's messages for it, and Mosquitto saves
    all its queues every 30 s (``autosave_interval``) on its one thread: a save of the
    earlier runs' millions of messages stalled delivery for 0.4-1.2 s, both in later drains
    and in the latency run (bench/README.md, 2026-12-04), while ``mosquitto_sub``, measured
    first, had the broker to itself.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    with sock:
        sock.sendall(
            encode_connect(
                client_id, clean_session=True, keepalive=60, session_expiry_s=0, receive_maximum=1
            )
        )
        _until(sock, codec.PacketReader(), codec.CONNACK)
        sock.sendall(codec.DISCONNECT_PACKET)


def _connected_at(c: Collector) -> float | None:
    """Epoch seconds of the collector's "connected to MQTT broker" log line (ms precision)."""
    for line in c.log().splitlines():
        if "connected to MQTT broker" in line:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")  # noqa: DTZ007
            return stamp.astimezone().timestamp()  # the log is in local time
    return None


def _last_commit(database_url: str) -> float:
    """Epoch seconds of the last commit into iot_data: exact for PostgreSQL (commit
    timestamps); for SQLite the last batch's write time (``received_at``, just before its
    commit)."""
    if database_url.startswith("sqlite:///"):
        return scalar(database_url, "SELECT max(received_at) FROM iot_data") / 1e6
    row = scalar_row(
        database_url,
        "SELECT extract(epoch FROM max(pg_xact_commit_timestamp(xmin))) FROM iot_data",
    )
    return float(row[0])


def collector_drain(  # noqa: PLR0913 - the run's servers and inputs
    broker: MosquittoServer,
    database_url: str,
    payloads: list[bytes],
    readings: int,
    tmp: Path,
    *,
    pg: PostgresServer | None = None,
    profile: Path | None = None,
    topics: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Fill the collector's session queue, start it, time until every reading is committed.

    ``topics``: each payload's topic (default ``iot/data``); ``env``: the collector's extra
    settings (a mappings file for the mapped-topic runs).

    ``profile``: also record the collector with py-spy (raw collapsed stacks, idle samples
    included) into this file, from its start to its exit. Sampling slows it: such a run is
    extra, never one of the measured ones.

    The drain is timed from the collector's connection to the broker (its log line; the
    broker starts sending the backlog then) to the commit of the last reading (from the
    database). Completion is detected by polling /metrics every 0.25 s, which is cheap.
    """
    client_id = f"bench-collector-{time.monotonic_ns()}"
    first = _collector(broker, database_url, client_id, tmp, env).start()
    first.wait_ready()
    first.stop()
    _publish_raw(broker.port, payloads, topics=topics)
    load = _load()
    c = _collector(broker, database_url, client_id, tmp, env).start()
    launched = time.time()
    assert c.proc is not None
    spy = _py_spy(c.proc.pid, profile) if profile else None
    try:
        collector_cpu = psutil.Process(c.proc.pid)
        while _connected_at(c) is None and time.time() - launched < 60:
            time.sleep(0.01)
        servers = broker.proc.pid if broker.proc else None, _postmaster_pid(pg)
        cpu_before = _cpu(collector_cpu), _cpu_tree(servers[0]), _cpu_tree(servers[1])
        while True:
            stored = _metric(c, "iotcollector_readings_stored_total")
            c.rss()
            if stored >= readings:
                break
            if time.time() - launched > 900:
                raise RuntimeError(f"only {stored} of {readings} stored after 900 s")
            time.sleep(POLL_S)
        cpu_after = _cpu(collector_cpu), _cpu_tree(servers[0]), _cpu_tree(servers[1])
        count = scalar(database_url, "SELECT count(*) FROM iot_data")
        assert count == readings, (count, readings)
        last_commit = _last_commit(database_url)
        connected = _connected_at(c)
    finally:
        peak = _stop(c, broker)
        if spy is not None:
            spy.wait(timeout=60)  # py-spy writes its file when the collector exits
    if connected is None:
        raise RuntimeError(f"no connection line in the collector's log:\n{c.log()[-2000:]}")
    elapsed = last_commit - connected
    return {
        "readings": readings,
        "readings_per_s": round(readings / elapsed),
        "seconds": round(elapsed, 3),
        "seconds_from_process_start": round(last_commit - launched, 2),
        "peak_rss_mb": round(peak / 1e6, 1),
        "load": load,
        # CPU time per reading of each process (load-independent, unlike readings/s):
        "cpu_us_per_reading": {
            name: round((after - before) / readings * 1e6, 2)
            for name, before, after in zip(
                ("collector", "mosquitto", "postgres"), cpu_before, cpu_after, strict=True
            )
        },
    }


def _py_spy(pid: int, output: Path) -> subprocess.Popen[bytes]:
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid)]
    return subprocess.Popen(
        [*command, "-f", "raw", "--idle", "-r", "250", "-o", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _cpu(process: psutil.Process) -> float:
    with contextlib.suppress(psutil.Error):
        times = process.cpu_times()
        return float(times.user + times.system)
    return 0.0


def _postmaster_pid(pg: PostgresServer | None) -> int | None:
    if pg is None:
        return None
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    return None


def _cpu_tree(pid: int | None) -> float:
    """CPU seconds of a server process and its children (PostgreSQL's backends)."""
    if pid is None:
        return 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        return _cpu(root) + sum(_cpu(child) for child in root.children(recursive=True))
    return 0.0


def _simulate(
    broker: MosquittoServer, rate: int, seconds: float, summary: Path
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iotcollector",
            "simulate",
            "--url",
            broker.url,
            "--devices",
            "1000",
            "--total-rate",
            str(rate),
            "--duration",
            str(seconds),
            "--qos",
            "1",
            "--no-status",
            "--drain-timeout",
            "60",
            "--summary-json",
            str(summary),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_stored(database_url: str, expected: int, timeout: float = 180) -> int:
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            count = scalar(database_url, "SELECT count(*) FROM iot_data")
        if count >= expected:
            break
        time.sleep(0.2)
    return count


def latency(
    broker: MosquittoServer, pg: PostgresServer, rate: int, seconds: float, tmp: Path
) -> dict[str, Any]:
    """Publish live at ``rate`` readings/s; per-reading publish → commit from PostgreSQL."""
    url = pg.create_database("latency")
    c = _collector(broker, url, f"bench-latency-{time.monotonic_ns()}", tmp).start()
    c.wait_ready()
    load = _load()
    summary_path = tmp / "latency-sim.json"
    sim = _simulate(broker, rate, seconds, summary_path)
    try:
        while sim.poll() is None:
            c.rss()
            time.sleep(0.5)
        summary = json.loads(summary_path.read_text())
        stored = _wait_stored(url, summary["readings"])
        rows = scalar(url, "SELECT count(*) FROM iot_data")
        p50, p99, pmax = _percentiles(url)
        per_second = _per_second_p99(url)
    finally:
        peak = _stop(c, broker)
    return {
        "rate": rate,
        "seconds": seconds,
        "published": summary["published"],
        "acknowledged": summary["acknowledged"],
        "achieved_readings_per_s": summary["readings_per_s"],
        "stored": stored,
        "rows": rows,
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": pmax,
        # p99 of each second of publishing: shows whether the p99 is steady or a few stalls.
        "p99_per_second_median_ms": per_second[len(per_second) // 2] if per_second else None,
        "seconds_with_p99_over_250ms": sum(1 for v in per_second if v > 250),
        "peak_rss_mb": round(peak / 1e6, 1),
        "load": load,
    }


def _percentiles(url: str) -> tuple[float, float, float]:
    row = scalar_row(
        url,
        """
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag),
               percentile_cont(0.99) WITHIN GROUP (ORDER BY lag),
               max(lag)
        FROM (SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - "timestamp") * 1000
                     AS lag
              FROM iot_data) AS l
        """,
    )
    return tuple(round(float(v), 1) for v in row)  # type: ignore[return-value]


def _per_second_p99(url: str) -> list[float]:
    """Sorted p99 latencies (ms) of each whole second of the run."""
    import psycopg  # noqa: PLC0415

    sql = """
        SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY lag)
        FROM (SELECT date_trunc('second', "timestamp") AS s,
                     extract(epoch FROM pg_xact_commit_timestamp(xmin) - "timestamp") * 1000
                     AS lag
              FROM iot_data) AS l
        GROUP BY s HAVING count(*) > 100
    """
    with psycopg.connect(url, autocommit=True) as conn:
        values = [float(row[0]) for row in conn.execute(sql.encode()).fetchall()]
    return sorted(round(v, 1) for v in values)


def scalar_row(url: str, sql: str) -> tuple[Any, ...]:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql.encode()).fetchone()
    assert row is not None
    return tuple(row)


def outage(
    broker: MosquittoServer,
    pg: PostgresServer,
    rate: int,
    timing: tuple[float, float, float],
    tmp: Path,
) -> dict[str, Any]:
    """``before`` s of load, PostgreSQL down for ``down`` s, ``after`` s more; then check."""
    before, down, after = timing
    url = pg.create_database("outage")
    c = _collector(broker, url, f"bench-outage-{time.monotonic_ns()}", tmp).start()
    c.wait_ready()
    load = _load()
    summary_path = tmp / "outage-sim.json"
    sim = _simulate(broker, rate, before + down + after, summary_path)
    rss_before = rss_down = 0
    try:
        time.sleep(before)
        rss_before = c.rss()
        pg.stop("immediate")
        outage_end = time.monotonic() + down
        while time.monotonic() < outage_end:
            rss_down = max(rss_down, c.rss())
            time.sleep(0.25)
        pg.start()
        restarted = time.monotonic()
        while sim.poll() is None:
            c.rss()
            time.sleep(0.5)
        summary = json.loads(summary_path.read_text())
        stored = _wait_stored(url, summary["readings"], timeout=300)
        caught_up_s = time.monotonic() - restarted
        distinct = scalar(
            url, 'SELECT count(DISTINCT (device_id, sensor_type, "timestamp")) FROM iot_data'
        )
    finally:
        peak = _stop(c, broker)
    return {
        "rate": rate,
        "seconds_before_down_after": [before, down, after],
        "published": summary["published"],
        "acknowledged": summary["acknowledged"],
        "readings_published": summary["readings"],
        "rows_stored": stored,
        "distinct_rows": distinct,
        "lost": summary["readings"] - distinct,
        "duplicated_rows": stored - distinct,
        "caught_up_s_after_restart": round(caught_up_s, 1),
        "rss_before_mb": round(rss_before / 1e6, 1),
        "peak_rss_during_outage_mb": round(rss_down / 1e6, 1),
        "peak_rss_mb": round(peak / 1e6, 1),
        "load": load,
    }


def append_row(results: dict[str, Any]) -> None:
    """Add this run's row to the results table in bench/README.md."""
    r = results
    single, array, sq = r["postgres_single"], r["postgres_array100"], r["sqlite_single"]
    lat, out = r["latency"], r["outage"]
    peak = max(_single_peak_rss(r), array["peak_rss_mb"], sq["peak_rss_mb"], lat["peak_rss_mb"])
    cells = [
        r["date"][:16].replace("T", " "),
        f"`{r['commit']}`{'+' if r['dirty'] else ''}",
        r["machine"].rsplit(", Python", 1)[0],
        f"{r['mode']}, N={r['messages']:,}",
        f"{r['load_start']} / {r['load_end']}",
        f"{r['bare_subscriber']['msgs_per_s']:,}",
        f"{r['raw_subscriber']['msgs_per_s']:,}",
        (
            f"{single['readings_per_s']:,}"
            f" ({single['readings_per_s'] / r['bare_subscriber']['msgs_per_s']:.2f}x /"
            f" {single['readings_per_s'] / r['raw_subscriber']['msgs_per_s']:.2f}x)"
        ),
        f"{array['readings_per_s']:,}",
        f"{sq['readings_per_s']:,}",
        f"{lat['p50_ms']:.0f} / {lat['p99_ms']:.0f}",
        f"{peak:.0f}",
        f"{out['peak_rss_during_outage_mb']:.0f} / {out['peak_rss_mb']:.0f}",
        f"{out['lost']} lost, {out['duplicated_rows']} dup",
        " / ".join(f"{x['cpu_us_per_reading']['collector']:.1f}" for x in (single, array, sq)),
    ]
    row = "| " + " | ".join(cells) + " |\n"
    text = README.read_text()
    if TABLE_MARKER not in text:
        raise RuntimeError(f"{README} has no results table marker")
    head, _, tail = text.partition(TABLE_MARKER)
    lines = tail.split("\n")
    # The table follows the marker; the new row goes after its last line.
    insert_at = 1
    while insert_at < len(lines) and lines[insert_at].startswith("|"):
        insert_at += 1
    lines.insert(insert_at, row.rstrip("\n"))
    README.write_text(head + TABLE_MARKER + "\n".join(lines))


def main() -> int:  # noqa: PLR0915 - one benchmark, one sequence of phases
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller, about 1 minute")
    parser.add_argument("--messages", type=int, help="N for runs 1-4 (200,000; quick 50,000)")
    parser.add_argument("--rate", type=int, default=5000, help="readings/s for runs 5-6")
    parser.add_argument("--latency-seconds", type=float, help="(60; quick 15)")
    parser.add_argument("--outage-seconds", type=float, help="(30; quick 10)")
    parser.add_argument("--output", type=Path, help="result JSON (bench/results/<date>.json)")
    parser.add_argument("--no-readme", action="store_true", help="do not add a README row")
    parser.add_argument(
        "--profile",
        type=Path,
        help="after the measured runs, drain N single readings once more under py-spy into DIR",
    )
    parser.add_argument(
        "--rounds", type=int, help="bare and collector single-reading drains, in turn (3; quick 1)"
    )
    args = parser.parse_args()
    n = args.messages or (50_000 if args.quick else 200_000)
    rounds = args.rounds or (1 if args.quick else 3)
    latency_s = args.latency_seconds or (15.0 if args.quick else 60.0)
    down_s = args.outage_seconds or (10.0 if args.quick else 30.0)
    outage_timing = (5.0, down_s, 10.0) if args.quick else (10.0, down_s, 15.0)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "machine": machine(),
        "mode": "quick" if args.quick else "full",
        "messages": n,
        "rounds": rounds,
        "load_start": _load(),
    }
    _log(f"machine: {results['machine']}; load average {results['load_start']}")
    singles = _payloads(n, 1)
    arrays = _payloads(max(1, n // 100), 100)
    with tempfile.TemporaryDirectory(prefix="iot-bench-") as tmpdir:
        tmp = Path(tmpdir)
        broker = MosquittoServer()
        pg = PostgresServer(extra_settings={"track_commit_timestamp": "on"})
        try:
            broker.start()
            pg.start()
            bares, single_runs = [], []
            for number in range(rounds):
                bare = bare_subscriber(broker, singles)
                bares.append(bare)
                _log(f"1 bare subscriber: {bare['msgs_per_s']:,} msg/s {bare['cpu_cores_busy']}")
                single = collector_drain(
                    broker, pg.create_database(f"single{number}"), singles, n, tmp, pg=pg
                )
                single_runs.append(single)
                _log(f"2 postgres, single: {single['readings_per_s']:,} readings/s")
            raw = raw_subscriber(broker, singles)
            results["raw_subscriber"] = raw
            _log(f"1b raw subscriber: {raw['msgs_per_s']:,} msg/s {raw['cpu_cores_busy']}")

            bare = _median_run(bares, "msgs_per_s")
            results["bare_subscriber"] = bare
            results["bare_subscriber_rounds"] = [b["msgs_per_s"] for b in bares]
            single = _median_run(single_runs, "readings_per_s")
            results["postgres_single"] = single
            results["postgres_single_rounds"] = [x["readings_per_s"] for x in single_runs]
            results["postgres_single_rounds_peak_rss_mb"] = [x["peak_rss_mb"] for x in single_runs]
            ratio = single["readings_per_s"] / bare["msgs_per_s"]
            results["postgres_single_ratio_to_bare"] = round(ratio, 3)
            raw_ratio = single["readings_per_s"] / raw["msgs_per_s"]
            results["postgres_single_ratio_to_raw"] = round(raw_ratio, 3)
            _log(
                f"2 postgres, single (median of {rounds}): {single['readings_per_s']:,}"
                f" readings/s ({ratio:.2f}x bare, {raw_ratio:.2f}x raw)"
            )

            array = collector_drain(
                broker, pg.create_database("array"), arrays, len(arrays) * 100, tmp, pg=pg
            )
            results["postgres_array100"] = array
            _log(f"3 postgres, arrays of 100: {array['readings_per_s']:,} readings/s")

            sq = collector_drain(broker, f"sqlite:///{tmp}/bench.db", singles, n, tmp)
            results["sqlite_single"] = sq
            _log(f"4 sqlite, single: {sq['readings_per_s']:,} readings/s")

            rules = tmp / "mappings.yaml"
            rules.write_text(MAPPINGS)
            mapped_env = {"IOT_MAPPINGS_FILE": str(rules)}
            z_topics, z_payloads = _zigbee2mqtt(max(1, n // 5))
            mapped = collector_drain(
                broker,
                pg.create_database("mapped"),
                z_payloads,
                len(z_payloads) * 5,
                tmp,
                pg=pg,
                topics=z_topics,
                env=mapped_env,
            )
            results["postgres_mapped_json5"] = mapped
            _log(f"4b postgres, mapped JSON (5 sensors): {mapped['readings_per_s']:,} readings/s")
            s_topics, s_payloads, s_readings = _sparkplug(max(1, n // 10))
            spb = collector_drain(
                broker,
                pg.create_database("sparkplug"),
                s_payloads,
                s_readings,
                tmp,
                pg=pg,
                topics=s_topics,
                env=mapped_env,
            )
            results["postgres_sparkplug_ddata10"] = spb
            _log(
                f"4c postgres, Sparkplug B DDATA (10 metrics): {spb['readings_per_s']:,} readings/s"
            )

            lat = latency(broker, pg, args.rate, latency_s, tmp)
            results["latency"] = lat
            _log(f"5 latency at {args.rate:,}/s: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms")

            out = outage(broker, pg, args.rate, outage_timing, tmp)
            results["outage"] = out
            _log(
                f"6 outage {down_s:.0f}s: RSS {out['peak_rss_during_outage_mb']} MB, "
                f"lost {out['lost']}, duplicated {out['duplicated_rows']}"
            )
            if args.profile:
                stacks = args.profile / "ingest-postgres-single.txt"
                url = pg.create_database("profiled")
                collector_drain(broker, url, singles, n, tmp, pg=pg, profile=stacks)
                results["profile"] = str(stacks)
                _log(f"profile of a drain into PostgreSQL (not measured): {stacks}")
        finally:
            broker.cleanup()
            pg.cleanup()
    results["load_end"] = _load()
    results["targets"] = _targets(results)
    output = args.output or RESULTS / f"ingest-{results['date'][:19].replace(':', '')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    _log(json.dumps(results, indent=2))
    if not args.no_readme:
        append_row(results)
        _log(f"row added to {README.relative_to(ROOT)}; results in {output.relative_to(ROOT)}")
    return 0


def _median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run whose ``key`` is the median (the lower middle one of an even count)."""
    return sorted(runs, key=lambda run: run[key])[(len(runs) - 1) // 2]


def _single_peak_rss(r: dict[str, Any]) -> float:
    """The collector's peak RSS over every round of single readings, not the median's only."""
    rounds = r.get("postgres_single_rounds_peak_rss_mb", [r["postgres_single"]["peak_rss_mb"]])
    return float(max(rounds))


def _targets(r: dict[str, Any]) -> dict[str, bool]:
    """Issue 4's targets, and issue 13's ratio, each met or not."""
    rss = [_single_peak_rss(r)] + [
        r[k]["peak_rss_mb"] for k in ("postgres_array100", "sqlite_single", "latency", "outage")
    ]
    return {
        "postgres_single_ge_40k": r["postgres_single"]["readings_per_s"] >= 40_000,
        "postgres_single_ge_0.55x_bare": r["postgres_single_ratio_to_bare"] >= 0.55,
        "postgres_single_ge_0.8x_bare": r["postgres_single_ratio_to_bare"] >= 0.8,  # issue 13
        # Not an issue target; the stricter yardstick (bench/README.md).
        "postgres_single_ge_0.55x_raw": r["postgres_single_ratio_to_raw"] >= 0.55,
        "postgres_array100_ge_100k": r["postgres_array100"]["readings_per_s"] >= 100_000,
        "sqlite_ge_20k": r["sqlite_single"]["readings_per_s"] >= 20_000,
        "p99_lt_250ms": r["latency"]["p99_ms"] < 250,
        "rss_lt_200mb": max(rss) < 200,
        "outage_zero_loss": r["outage"]["lost"] == 0 and r["outage"]["duplicated_rows"] == 0,
        "latency_rate_reached": math.isclose(
            r["latency"]["achieved_readings_per_s"], r["latency"]["rate"], rel_tol=0.05
        ),
    }


if __name__ == "__main__":
    raise SystemExit(main())
