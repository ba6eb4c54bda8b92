"""The app in-process with fake storage and writer: error mapping, limits, OpenAPI, CSV pages."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from iotcollector.api.app import create_app
from iotcollector.api.auth import ApiKeys
from iotcollector.api.context import ApiContext
from iotcollector.errors import IotCollectorError, PermanentStorageError, TransientStorageError
from iotcollector.metrics import Metrics
from iotcollector.storage.base import (
    Bucket,
    DeviceRecord,
    StoredBirth,
    StoredDeadLetter,
    StoredReading,
    WriteResult,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from iotcollector.domain.reading import Reading
    from iotcollector.storage.base import Position, ReadingFilter

T0 = datetime(2026, 11, 28, tzinfo=UTC)
KEY = "unit-test-key-0123456789"


@dataclass
class FakeQueries:
    rows: list[StoredReading] = field(default_factory=list)
    error: Exception | None = None
    fail_after_calls: int | None = None
    calls: list[tuple[Position | None, int]] = field(default_factory=list)
    device: DeviceRecord | None = None
    letters: list[StoredDeadLetter] = field(default_factory=list)  # newest (highest id) first
    rejected_limits: list[int] = field(default_factory=list)

    def _maybe_fail(self) -> None:
        if self.error is not None and (
            self.fail_after_calls is None or len(self.calls) > self.fail_after_calls
        ):
            raise self.error

    async def read_readings(
        self,
        where: ReadingFilter,  # noqa: ARG002 - the fake ignores filters
        *,
        before: Position | None,
        limit: int,
    ) -> list[StoredReading]:
        self.calls.append((before, limit))
        self._maybe_fail()
        rows = self.rows
        if before is not None:
            rows = [r for r in rows if (r.timestamp, r.id) < (before.timestamp, before.id)]
        return rows[:limit]

    async def aggregate(self, **_: Any) -> list[Bucket]:
        self._maybe_fail()
        return [Bucket(T0, 2, 1.0, 3.0, 2.0)]

    async def list_devices(self, **_: Any) -> list[DeviceRecord]:
        self._maybe_fail()
        return [self.device] if self.device else []

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        self._maybe_fail()
        return self.device if self.device and self.device.device_id == device_id else None

    async def list_rejected(
        self,
        where: Any,  # noqa: ARG002 - the fake ignores filters
        *,
        after: int | None,
        limit: int,
        oldest_first: bool = False,
    ) -> list[StoredDeadLetter]:
        assert not oldest_first
        self._maybe_fail()
        self.rejected_limits.append(limit)
        return [d for d in self.letters if after is None or d.id < after][:limit]

    async def load_births(self, *, before: StoredBirth | None, limit: int) -> list[StoredBirth]:  # noqa: ARG002
        return []


@dataclass
class FakeWriter:
    error: Exception | None = None
    hang: bool = False
    written: list[list[Reading]] = field(default_factory=list)

    async def write(self, readings: list[Reading]) -> WriteResult:
        if self.error is not None:
            raise self.error
        if self.hang:
            await asyncio.sleep(3600)
        self.written.append(readings)
        return WriteResult(stored=len(readings), duplicates=0, dead_letters=0)


class Ready:
    def readiness(self) -> dict[str, bool]:
        return {"database": True}


def _rows(n: int) -> list[StoredReading]:
    """Newest first, two readings per instant (ties broken by id)."""
    return [
        StoredReading(n - i, "d", "t", float(i), "C", T0 - timedelta(seconds=i // 2))
        for i in range(n)
    ]


def _client(
    queries: FakeQueries | None = None,
    writer: FakeWriter | None = None,
    *,
    keys: tuple[str, ...] = (),
    **options: Any,
) -> httpx.AsyncClient:
    context = ApiContext(
        queries=queries or FakeQueries(),
        writer=writer or FakeWriter(),
        keys=ApiKeys(keys),
        logger=logging.getLogger("test.api"),
        **options,
    )
    app = create_app(
        readiness=Ready(),
        metrics=Metrics(CollectorRegistry(), process_metrics=False),
        api=context,
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    error: dict[str, Any] = body["error"]
    return error


READING = b'{"device_id":"d","sensor_type":"t","value":1}'


async def test_write_busy_is_503_with_retry_after() -> None:
    client = _client(writer=FakeWriter(error=IotCollectorError("too many writes waiting")))
    response = await client.post("/api/data", content=READING)
    _error(response, 503, "busy")
    assert response.headers["retry-after"] == "1"


async def test_write_timeout_is_503_with_retry_after() -> None:
    client = _client(writer=FakeWriter(hang=True), write_timeout_s=0.05)
    response = await client.post("/api/data", content=READING)
    assert "retry" in _error(response, 503, "write_timeout")["message"]
    assert response.headers["retry-after"] == "5"


async def test_written_readings_are_the_parsed_ones() -> None:
    writer = FakeWriter()
    client = _client(writer=writer)
    response = await client.post(
        "/api/data", content=b'{"deviceId":"d","temperature":"21.5","humidity":40}'
    )
    assert (response.status_code, response.json()) == (201, {"stored": 2, "duplicates": 0})
    assert [(r.sensor_type, r.value, r.unit) for r in writer.written[0]] == [
        ("temperature", 21.5, "C"),
        ("humidity", 40.0, "%"),
    ]


async def test_body_limit_by_header_and_by_stream() -> None:
    writer = FakeWriter()
    client = _client(writer=writer, max_body_bytes=2048)
    body = b"[" + b",".join([READING] * 60) + b"]"
    _error(await client.post("/api/data", content=body), 413, "payload_too_large")

    async def chunks() -> Any:
        for i in range(0, len(body), 100):
            yield body[i : i + 100]

    _error(await client.post("/api/data", content=chunks()), 413, "payload_too_large")
    assert writer.written == []


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (TransientStorageError("connection refused"), 503, "database_unavailable"),
        (PermanentStorageError("syntax error"), 500, "database_error"),
        (RuntimeError("bug"), 500, "internal_error"),
    ],
)
@pytest.mark.parametrize(
    "path",
    [
        "/api/data",
        "/api/data?format=csv",
        "/api/data/aggregate?sensor_type=t&from=2026-11-27&to=2026-11-28",
        "/api/devices",
        "/api/devices/d",
    ],
)
async def test_storage_errors_keep_the_error_shape(
    error: Exception, status: int, code: str, path: str
) -> None:
    client = _client(FakeQueries(error=error))
    response = await client.get(path)
    err = _error(response, status, code)
    assert "connection refused" not in err["message"]
    assert "syntax" not in err["message"]
    if status == 503:
        assert response.headers["retry-after"] == "5"


async def test_csv_is_read_page_by_page() -> None:
    queries = FakeQueries(rows=_rows(10))
    client = _client(queries, csv_page_rows=3)
    response = await client.get("/api/data", params={"format": "csv"})
    lines = response.text.splitlines()
    assert lines[0] == "id,device_id,sensor_type,value,unit,timestamp"
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(10, 0, -1))
    assert [limit for _, limit in queries.calls] == [3, 3, 3, 3]
    queries.calls.clear()
    limited = await client.get("/api/data", params={"format": "csv", "limit": 7})
    assert len(limited.text.splitlines()) == 8
    assert [limit for _, limit in queries.calls] == [3, 3, 1]


async def test_csv_error_after_the_first_page_ends_the_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queries = FakeQueries(rows=_rows(10), error=TransientStorageError("gone"), fail_after_calls=1)
    client = _client(queries, csv_page_rows=3)
    with caplog.at_level(logging.ERROR):
        response = await client.get("/api/data", params={"format": "csv"})
    assert response.status_code == 200
    assert len(response.text.splitlines()) == 4  # header + the first page only
    assert "CSV download aborted" in caplog.text


async def test_json_pages_follow_the_cursor_through_ties() -> None:
    client = _client(FakeQueries(rows=_rows(9)))
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/data", params=params)).json()
        seen += [row["id"] for row in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(9, 0, -1))


async def test_device_status_comes_from_last_seen_and_the_clock() -> None:
    device = DeviceRecord("d", T0 - timedelta(days=1), T0, ("t",), "online")
    for now, status in [
        (T0 + timedelta(seconds=10), "online"),
        (T0 + timedelta(seconds=11), "offline"),
    ]:
        client = _client(
            FakeQueries(device=device), device_offline_after_s=10, clock=lambda n=now: n
        )
        assert (await client.get("/api/devices/d")).json()["status"] == status
        listed = (await client.get("/api/devices")).json()["data"]
        assert [d["status"] for d in listed] == [status]


async def test_without_api_context_only_health_routes_exist() -> None:
    app = create_app(readiness=Ready(), metrics=Metrics(CollectorRegistry(), process_metrics=False))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    assert (await client.get("/healthz")).status_code == 200
    _error(await client.get("/api/data"), 404, "not_found")


# -- OpenAPI ---------------------------------------------------------------------------------


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


async def test_openapi_documents_every_api_route_with_errors_and_security() -> None:
    schema = (await _client(keys=(KEY,)).get("/openapi.json")).json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    api_operations = [(p, m, o) for p, m, o in _operations(schema) if p.startswith("/api/")]
    assert {(p, m) for p, m, _ in api_operations} == {
        ("/api/health", "get"),
        ("/api/info", "get"),
        ("/api/data", "get"),
        ("/api/data", "post"),
        ("/api/data/aggregate", "get"),
        ("/api/devices", "get"),
        ("/api/devices/{device_id}", "get"),
        ("/api/rejected", "get"),
        ("/api/rejected/replay", "post"),
    }
    for path, method, operation in api_operations:
        assert operation["security"] == [{"bearerAuth": []}], path
        assert "401" in operation["responses"], (path, method)
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorResponse"), (path, method, status)
        if path not in {"/api/health", "/api/info"}:  # no parameters, no database
            assert {"422", "503"} <= set(operation["responses"]), (path, method)
    post = schema["paths"]["/api/data"]["post"]
    assert set(post["responses"]) >= {"201", "401", "413", "415", "422", "503"}
    assert post["requestBody"]["content"]["application/json"]["examples"]
    get = schema["paths"]["/api/data"]["get"]
    assert set(get["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    params = {p["name"] for p in get["parameters"]}
    assert params == {"device_id", "sensor_type", "from", "to", "limit", "cursor", "format"}


async def test_openapi_without_keys_has_no_security() -> None:
    schema = (await _client().get("/openapi.json")).json()
    for path, _method, operation in _operations(schema):
        assert "security" not in operation, path
        assert "401" not in operation["responses"], path


async def test_info_says_where_devices_publish_behind_the_keys() -> None:
    key = "info-test-key-0123456789"
    async with _client(
        keys=(key,), mqtt_broker="mqtt://***@broker:1883", mqtt_topics=("iot/data/+",)
    ) as client:
        refused = await client.get("/api/info")
        answer = await client.get("/api/info", headers={"Authorization": f"Bearer {key}"})
    _error(refused, 401, "unauthorized")
    assert answer.status_code == 200
    body = answer.json()
    assert body["mqtt"] == {"broker": "mqtt://***@broker:1883", "topics": ["iot/data/+"]}
    assert body["version"]


async def test_rejected_pages_are_bounded_by_payload_bytes() -> None:
    big = b"x" * (256 * 1024)
    letters = [StoredDeadLetter(i, T0, "t", big, "too_large: ...", None) for i in range(40, 0, -1)]
    queries = FakeQueries(letters=letters)
    seen: list[int] = []
    cursor: str | None = None
    async with _client(queries) as client:
        while True:
            params: dict[str, Any] = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
            response = await client.get("/api/rejected", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(response.content) < 5 * 1024 * 1024
            seen += [d["id"] for d in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert seen == list(range(40, 0, -1))  # every one, once, in order
    assert max(queries.rejected_limits) <= 50


async def test_rejected_limit_and_cursor_with_small_payloads() -> None:
    letters = [
        StoredDeadLetter(i, T0, "t", b"{}", "invalid_json: ...", None) for i in range(120, 0, -1)
    ]
    async with _client(FakeQueries(letters=letters)) as client:
        first = (await client.get("/api/rejected", params={"limit": 100})).json()
        assert [d["id"] for d in first["data"]] == list(range(120, 20, -1))
        params = {"limit": 100, "cursor": first["next_cursor"]}
        rest = (await client.get("/api/rejected", params=params)).json()
    assert [d["id"] for d in rest["data"]] == list(range(20, 0, -1))
    assert rest["next_cursor"] is None


async def test_bodies_of_other_routes_are_bounded_before_the_key_check() -> None:
    big = b'{"reason": "' + b"x" * (100 * 1024) + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    async with _client(keys=(KEY,)) as client:
        declared = await client.post("/api/rejected/replay", content=big)
        _error(declared, 413, "payload_too_large")
        streamed = await client.post(
            "/api/rejected/replay", content=chunks(), headers={"content-type": "application/json"}
        )
        _error(streamed, 413, "payload_too_large")
        small = await client.post("/api/rejected/replay", json={"dry_run": True})
        _error(small, 401, "unauthorized")  # a small body still meets the key check
