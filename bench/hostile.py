"""What hostile payloads cost the event loop: CPU per loop turn of the receive path.

The subscriber hands over at most 16 KiB of payloads (or one message) per event-loop turn; one
turn is: take the packets out of the read buffer, decode them, and parse them into the
pipeline's queue. This runs exactly that (``PacketReader.pop``, ``decode_incoming``,
``Pipeline.submit``) on a stream of each payload kind, without a socket, and reports the
longest and the mean turn. Thread CPU time is reported beside wall time: on a loaded machine
wall time includes waiting for a core.

Run: .venv/bin/python -m bench.hostile
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from prometheus_client import CollectorRegistry

from iotcollector.ingest import codec
from iotcollector.ingest.subscriber import OVERSIZE_PREFIX_BYTES, SLICE_BYTES, Delivery
from iotcollector.metrics import Metrics
from iotcollector.pipeline.pipeline import BatchLimits, Pipeline
from iotcollector.storage.base import WriteResult

MAX_PAYLOAD = 256 * 1024


class NoStorage:
    async def write_batch(self, *_args: object) -> WriteResult:
        return WriteResult(0, 0, 0)


def _publish(payload: bytes, packet_id: int) -> bytes:
    body = codec.encode_string("iot/data") + packet_id.to_bytes(2, "big") + b"\x00" + payload
    return bytes([0x32]) + codec.encode_remaining_length(len(body)) + body


def _array(item: bytes, count: int) -> bytes:
    return b"[" + b",".join([item] * count) + b"]"


SINGLE = (
    b'{"device_id":"sim-0042","sensor_type":"temperature","value":21.57,"unit":"C",'
    b'"timestamp":"2026-11-28T00:00:00.123Z"}'
)
KINDS: dict[str, tuple[bytes, int]] = {
    "single readings (baseline)": (SINGLE, 5000),
    "261 KB [{},{},...] (87,000 items)": (_array(b"{}", 87_000), 20),
    "30 KB of 10,000 rejected items": (_array(b"{}", 10_000), 20),
    "250 KB of 4,000 items with a bad timestamp": (
        _array(b'{"device_id":"d","sensor_type":"t","value":1,"timestamp":"x"}', 4_000),
        20,
    ),
    "257 KB of 5,600 valid readings": (
        _array(b'{"device_id":"d","sensor_type":"t","value":1}', 5_600),
        20,
    ),
    "10 MB payload (too large)": (b"x" * (10 * 1024 * 1024), 5),
}


def measure(payload: bytes, count: int) -> tuple[float, float, float, int]:
    """(worst wall ms, worst CPU ms, mean CPU ms, turns) over ``count`` messages."""
    pipeline: Pipeline[Delivery] = Pipeline(
        NoStorage(),
        Metrics(CollectorRegistry(), process_metrics=False),
        logging.getLogger("bench"),
        on_committed=lambda _tokens: None,
        on_pressure=lambda _full: None,
        limits=BatchLimits(max_pending=10**9, max_pending_rows=10**9),
        max_payload_bytes=MAX_PAYLOAD,
        max_future_skew_s=300,
    )
    reader = codec.PacketReader()
    reader.push(b"".join(_publish(payload, (i % 65535) + 1) for i in range(count)))
    worst_wall = worst_cpu = total_cpu = 0.0
    turns = 0
    while reader.has_packet():
        wall, cpu = time.perf_counter(), time.thread_time()
        deliveries = []
        for _, flags, body in reader.pop(SLICE_BYTES):
            msg = codec.decode_incoming(flags, body, codec.MQTT5, MAX_PAYLOAD)
            kept = msg.payload if msg.size <= MAX_PAYLOAD else msg.payload[:OVERSIZE_PREFIX_BYTES]
            deliveries.append(Delivery(msg.topic, kept, msg.packet_id, 1, msg.size))
        pipeline.submit(deliveries)
        cpu = time.thread_time() - cpu
        worst_wall = max(worst_wall, time.perf_counter() - wall)
        worst_cpu = max(worst_cpu, cpu)
        total_cpu += cpu
        turns += 1
    return worst_wall * 1000, worst_cpu * 1000, total_cpu / turns * 1000, turns


async def main() -> None:
    print(f"load {os.getloadavg()[0]:.1f}; slice {SLICE_BYTES // 1024} KiB per loop turn")
    print(f"{'payload':45} {'worst wall':>11} {'worst CPU':>10} {'mean CPU':>9} {'turns':>6}")
    for name, (payload, count) in KINDS.items():
        worst_wall, worst_cpu, mean_cpu, turns = measure(payload, count)
        print(f"{name:45} {worst_wall:8.1f} ms {worst_cpu:7.1f} ms {mean_cpu:6.1f} ms {turns:6}")


if __name__ == "__main__":
    asyncio.run(main())
