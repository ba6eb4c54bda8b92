"""HTTP connection limits on a real `serve` over real sockets: endless and huge headers, too
many header fields, slow-loris, idle connections and too many connections are cut off; the
collector's memory stays bounded and ordinary requests keep working."""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from support.collector import Collector
from support.mosquitto import MosquittoServer, mosquitto_available

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]

API_KEY = "limits-key-Xc8Vb2Nm5Lk7Jh4G"
HEAD_TIMEOUT_S = 2
MAX_CONNECTIONS = 60
KEEPALIVE_S = 1
# Generous: the collector idles at 60-90 MB; without limits the header flood took it to 1 GB.
RSS_BOUND = 200 * 1024 * 1024


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    tmp = tmp_path_factory.mktemp("http-limits")
    broker = MosquittoServer()
    broker.start()
    c = Collector(
        mqtt_url=broker.url,
        database_url=f"sqlite:///{tmp}/iot.db",
        client_id="http-limits",
        log_dir=tmp,
        env={
            "IOT_API_AUTH": "enabled",
            "IOT_API_KEYS": API_KEY,
            "IOT_HTTP_HEADER_TIMEOUT_S": str(HEAD_TIMEOUT_S),
            "IOT_HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
            "IOT_HTTP_KEEPALIVE_S": str(KEEPALIVE_S),
        },
    ).start()
    try:
        c.wait_ready()
        yield c
    finally:
        c.ensure_stopped()
        broker.cleanup()


def _connect(c: Collector) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", c.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    return sock


def _flood(c: Collector, head: bytes, total: int, sent: list[int], answers: list[bytes]) -> None:
    """Send ``head`` then filler bytes up to ``total``; record how much went out and the answer."""
    chunk = b"a" * 65536
    count = 0
    with _connect(c) as sock:
        try:
            sock.sendall(head)
            count = len(head)
            while count < total:
                sock.sendall(chunk)
                count += len(chunk)
        except OSError:
            pass  # cut off by the server: what we want
        sent.append(count)
        answers.append(_read_answer(sock))


def _read_answer(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:
        pass
    return data


def _assert_healthy_fast(c: Collector) -> None:
    started = time.perf_counter()
    assert c.get("/healthz").status_code == 200
    assert time.perf_counter() - started < 2


def test_30_endless_headers_are_cut_off_and_memory_stays_bounded(collector: Collector) -> None:
    before = collector.rss()
    sent: list[int] = []
    answers: list[bytes] = []
    head = b"GET /api/data HTTP/1.1\r\nHost: x\r\nX-Flood: "
    threads = [
        threading.Thread(target=_flood, args=(collector, head, 30 * 1024 * 1024, sent, answers))
        for _ in range(30)
    ]
    peak = before
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, collector.rss())
        time.sleep(0.05)
    for t in threads:
        t.join()
    peak = max(peak, collector.rss())
    print(f"header flood: RSS {before / 2**20:.0f} -> peak {peak / 2**20:.0f} MB, sent {sent}")
    assert peak < RSS_BOUND
    # Each connection was cut long before its 30 MB: what it got out is the limit plus what
    # the two sockets' buffers held.
    assert max(sent) < 8 * 1024 * 1024, sent
    assert all(a.startswith(b"HTTP/1.1 431 ") for a in answers), answers[:3]
    _assert_healthy_fast(collector)


def test_an_8mb_authorization_header_is_refused_before_it_is_read(collector: Collector) -> None:
    sent: list[int] = []
    answers: list[bytes] = []
    head = b"GET /api/data HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
    _flood(collector, head, 8 * 1024 * 1024, sent, answers)
    assert answers[0].startswith(b"HTTP/1.1 431 "), answers[0][:200]
    assert b"request_header_fields_too_large" in answers[0]
    print(f"8 MB Authorization: {sent[0]} bytes went out before the server closed")
    assert sent[0] < 8 * 1024 * 1024
    assert "HTTP request refused (431)" in collector.log()


def test_too_many_header_fields_are_refused(collector: Collector) -> None:
    headers = b"".join(b"X-H%d: 1\r\n" % i for i in range(101))
    with _connect(collector) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        answer = _read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"more than 100 header fields" in answer
    # 100 are fine (httpx adds Host, Accept, Accept-Encoding, Connection, User-Agent).
    fine = {f"X-H{i}": "1" for i in range(95)}
    assert httpx.get(collector.base_url + "/healthz", headers=fine, timeout=5).status_code == 200


def test_slow_loris_and_idle_connections_are_closed_after_the_head_timeout(
    collector: Collector,
) -> None:
    stop = threading.Event()
    closed_after: list[float] = []

    def loris(idle: bool) -> None:
        started = time.monotonic()
        with _connect(collector) as sock:
            sock.settimeout(0.5)
            if not idle:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            while not stop.is_set():
                try:
                    if not idle:
                        sock.sendall(b"X")  # one byte of a header, never finished
                    if sock.recv(4096) == b"":
                        break
                except TimeoutError:
                    continue
                except OSError:
                    break
            closed_after.append(time.monotonic() - started)

    threads = [threading.Thread(target=loris, args=(i % 5 == 0,)) for i in range(40)]
    for t in threads:
        t.start()
    _assert_healthy_fast(collector)  # below MAX_CONNECTIONS: others are still served
    for t in threads:
        t.join(timeout=HEAD_TIMEOUT_S * 5)
    stop.set()
    print(f"slow-loris: closed after {min(closed_after):.1f}-{max(closed_after):.1f} s")
    assert len(closed_after) == 40
    assert max(closed_after) < HEAD_TIMEOUT_S * 4


def test_connections_beyond_the_limit_are_answered_503_and_closed(
    collector: Collector,
) -> None:
    held = [_connect(collector) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.3)
        with _connect(collector) as extra:
            answer = _read_answer(extra)
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
        assert b"retry-after: 1" in answer
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            if collector.get("/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_pipelined_requests_are_all_answered(collector: Collector) -> None:
    one = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with _connect(collector) as sock:
        sock.sendall(one * 3 + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = _read_answer(sock)
    assert answers.count(b"HTTP/1.1 200 OK") == 4, answers[:500]


def test_an_idle_keep_alive_connection_is_closed(collector: Collector) -> None:
    with _connect(collector) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(KEEPALIVE_S * 5)
        started = time.monotonic()
        answer = _read_answer(sock)  # returns when the server closes
        idle = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b"408" not in answer
    assert idle < KEEPALIVE_S * 4


def test_keep_alive_requests_still_work(collector: Collector) -> None:
    with httpx.Client(base_url=collector.base_url, timeout=5) as client:
        for _ in range(5):
            assert client.get("/healthz").status_code == 200
        response = client.post(
            "/api/data",
            headers={"Authorization": f"Bearer {API_KEY}"},
            content=b'{"device_id":"d1","sensor_type":"t","value":1}' + b" " * 100_000,
        )
        assert response.status_code == 201, response.text
