"""Large hostile POST bodies on a real `serve`: a 1 MB body of 340,000 `{}` items answers a
small 422 (the first errors and the count), and five at once leave memory bounded while
/healthz and MQTT ingest go on."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from support.collector import Collector, publish, wait_for_count
from support.messages import make_stream
from support.mosquitto import MosquittoServer, mosquitto_available

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]

API_KEY = "bodies-key-Qw3Er6Ty9Ui2Op5A"
BODY_TIMEOUT_S = 2
AUTH = {"Authorization": f"Bearer {API_KEY}"}
EMPTY_ITEMS = 340_000
BODY = b"[" + b",".join([b"{}"] * EMPTY_ITEMS) + b"]"  # 1,020,001 bytes
RSS_BOUND = 200 * 1024 * 1024
# Generous: /healthz answered in 5.6-8.4 s while five such bodies were parsed on the loop.
HEALTHZ_BOUND_S = 1.0
PROBE = """
import sys, threading, time, httpx
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
seen = []
with httpx.Client(base_url=sys.argv[1], timeout=30) as client:
    client.get("/healthz")
    print("ready", flush=True)
    while not stop.is_set():
        started = time.perf_counter()
        assert client.get("/healthz").status_code == 200
        seen.append(time.perf_counter() - started)
        time.sleep(0.005)
print(" ".join(f"{s:.6f}" for s in seen))
"""


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Collector, str]]:
    tmp = tmp_path_factory.mktemp("http-bodies")
    broker = MosquittoServer()
    broker.start()
    c = Collector(
        mqtt_url=broker.url,
        database_url=f"sqlite:///{tmp}/iot.db",
        client_id="http-bodies",
        log_dir=tmp,
        env={
            "IOT_API_AUTH": "enabled",
            "IOT_API_KEYS": API_KEY,
            "IOT_HTTP_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        },
    ).start()
    try:
        c.wait_ready()
        yield c, broker.url
    finally:
        c.ensure_stopped()
        broker.cleanup()


def test_a_422_lists_the_first_errors_and_counts_them_all(
    collector: tuple[Collector, str],
) -> None:
    c, _ = collector
    body = b'[{"device_id":"ok","sensor_type":"t","value":1},' + b",".join([b"{}"] * 500) + b"]"
    response = httpx.post(c.base_url + "/api/data", headers=AUTH, content=body, timeout=30)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_readings"
    assert error["count"] == 500
    assert len(error["details"]) == 100
    assert [d["index"] for d in error["details"]] == list(range(1, 101))
    assert error["message"] == (
        "500 of the readings are not valid; nothing was stored; the first 100 are listed"
    )
    assert len(response.content) < 20_000


def test_five_huge_bodies_at_once_keep_memory_bounded_and_healthz_fast(
    collector: tuple[Collector, str],
) -> None:
    c, mqtt_url = collector
    answers: list[httpx.Response] = []

    def post() -> None:
        answers.append(
            httpx.post(c.base_url + "/api/data", headers=AUTH, content=BODY, timeout=120)
        )

    # The probe runs in its own process: in this one, the posting threads would delay it.
    probe = subprocess.Popen(
        [sys.executable, "-c", PROBE, c.base_url],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
    )
    assert probe.stdout is not None
    assert probe.stdout.readline() == b"ready\n"

    stream = make_stream(2000)
    before = c.rss()
    peak = before
    posters = [threading.Thread(target=post) for _ in range(5)]
    started = time.perf_counter()
    for t in posters:
        t.start()
    publisher = threading.Thread(
        target=publish, args=(mqtt_url, stream.payloads), kwargs={"publishers": 1}
    )
    publisher.start()
    while any(t.is_alive() for t in posters):
        peak = max(peak, c.rss())
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    out, _ = probe.communicate(b"stop\n", timeout=30)
    latencies = [float(x) for x in out.split()]
    publisher.join()
    db = c.env["IOT_DATABASE_URL"]
    stored = wait_for_count(db, "iot_data", stream.readings, timeout=60)
    latencies.sort()
    print(
        f"5 x {len(BODY)} B POSTs in {elapsed:.2f} s: RSS {before / 2**20:.0f} -> peak "
        f"{peak / 2**20:.0f} MB; /healthz n={len(latencies)} p50 "
        f"{latencies[len(latencies) // 2] * 1000:.1f} ms max {latencies[-1] * 1000:.1f} ms; "
        f"answers {sorted({len(a.content) for a in answers})} B"
    )
    assert [a.status_code for a in answers] == [422] * 5
    assert {a.json()["error"]["details"][0]["code"] for a in answers} == {"too_many_readings"}
    assert all(len(a.content) < 20_000 for a in answers)
    assert peak < RSS_BOUND
    assert latencies[-1] < HEALTHZ_BOUND_S
    assert stored == stream.readings


def _slow_post(c: Collector, declared: int, answers: list[bytes]) -> None:
    """Declare a large body, send 10 bytes of it, then wait for the server's answer."""
    with socket.create_connection(("127.0.0.1", c.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/data HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {API_KEY}\r\nContent-Length: {declared}\r\n\r\n".encode()
            + b"[{},{},{},"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        answers.append(data)


def test_slow_bodies_time_out_and_free_their_place(collector: tuple[Collector, str]) -> None:
    """Four slow senders hold every place for large bodies until the body timeout: 408 each;
    the next large POST is then served."""
    c, _ = collector
    slow: list[bytes] = []
    threads = [threading.Thread(target=_slow_post, args=(c, 200_000, slow)) for _ in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.5)
    response = httpx.post(c.base_url + "/api/data", headers=AUTH, content=BODY, timeout=30)
    served_after = time.monotonic() - started
    for t in threads:
        t.join(timeout=30)
    assert response.status_code == 422, response.text
    assert len(slow) == 4
    assert all(a.startswith(b"HTTP/1.1 408 ") and b"request_timeout" in a for a in slow), slow
    assert served_after >= BODY_TIMEOUT_S  # it waited for a place
    print(
        f"slow bodies: 408 after {BODY_TIMEOUT_S} s; the next large POST served after "
        f"{served_after:.1f} s"
    )


def test_many_large_bodies_at_once_stay_bounded(collector: tuple[Collector, str]) -> None:
    c, _ = collector
    answers: list[httpx.Response] = []

    def post() -> None:
        answers.append(httpx.post(c.base_url + "/api/data", headers=AUTH, content=BODY, timeout=60))

    before = peak = c.rss()
    threads = [threading.Thread(target=post) for _ in range(40)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, c.rss())
        time.sleep(0.02)
    statuses = sorted(a.status_code for a in answers)
    print(f"40 x 1 MB POSTs: RSS {before / 2**20:.0f} -> peak {peak / 2**20:.0f} MB, {statuses}")
    assert set(statuses) <= {422, 503}
    assert all(a.headers.get("retry-after") == "1" for a in answers if a.status_code == 503)
    assert peak < RSS_BOUND
