"""Security headers on every kind of response: API, errors, the dashboard, the docs, metrics."""

from __future__ import annotations

import logging

import httpx
import pytest
from prometheus_client import CollectorRegistry

from iotcollector.api.app import create_app
from iotcollector.api.auth import ApiKeys
from iotcollector.api.context import ApiContext
from iotcollector.api.security import CONTENT_SECURITY_POLICY
from iotcollector.dashboard.routes import DOCS_CONTENT_SECURITY_POLICY
from iotcollector.metrics import Metrics
from iotcollector.storage.base import DeviceRecord, WriteResult

KEY = "unit-test-key-0123456789"


class _Queries:
    async def read_readings(self, *_: object, **__: object) -> list[object]:
        return []

    async def aggregate(self, **_: object) -> list[object]:
        return []

    async def list_devices(self, **_: object) -> list[DeviceRecord]:
        return []

    async def get_device(self, _device_id: str) -> DeviceRecord | None:
        return None


class _Writer:
    async def write(self, readings: list[object]) -> WriteResult:
        return WriteResult(stored=len(readings), duplicates=0, dead_letters=0)


class _Ready:
    def readiness(self) -> dict[str, bool]:
        return {"database": True}


def _client() -> httpx.AsyncClient:
    context = ApiContext(
        queries=_Queries(),  # type: ignore[arg-type]
        writer=_Writer(),  # type: ignore[arg-type]
        keys=ApiKeys([KEY]),
        logger=logging.getLogger("test.api"),
    )
    app = create_app(
        readiness=_Ready(),
        metrics=Metrics(CollectorRegistry(), process_metrics=False),
        api=context,
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _common(response: httpx.Response) -> None:
    h = response.headers
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "no-referrer"
    assert h["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in h["content-security-policy"]
    assert h.get_list("content-security-policy") == [h["content-security-policy"]]


AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/api/data", AUTH, 200),
        ("GET", "/api/devices", AUTH, 200),
        ("GET", "/api/devices/nope", AUTH, 404),
        ("GET", "/api/data", {}, 401),
        ("GET", "/api/data?limit=0", AUTH, 422),
        ("POST", "/api/data", {**AUTH, "content-type": "application/json"}, 422),
    ],
)
async def test_api_answers_are_not_cached_nor_sniffed(
    method: str, path: str, headers: dict[str, str], status: int
) -> None:
    async with _client() as client:
        response = await client.request(method, path, headers=headers, content=b"[]")
    assert response.status_code == status
    _common(response)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


async def test_dashboard_page_has_a_strict_same_origin_policy() -> None:
    async with _client() as client:
        response = await client.get("/")
    assert response.status_code == 200
    _common(response)
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert (
        "cache-control" not in response.headers
        or "no-store" not in response.headers["cache-control"]
    )


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/nope"])
async def test_other_routes_get_the_headers_too(path: str) -> None:
    async with _client() as client:
        response = await client.get(path)
    _common(response)
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


async def test_the_docs_page_loads_its_own_files_and_nothing_else() -> None:
    async with _client() as client:
        response = await client.get("/docs")
        redoc = await client.get("/redoc")
    assert response.status_code == 200
    _common(response)
    policy = response.headers["content-security-policy"]
    assert policy == DOCS_CONTENT_SECURITY_POLICY
    assert "http" not in policy
    assert "unsafe-inline" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    assert "http" not in response.text
    assert redoc.status_code == 404
