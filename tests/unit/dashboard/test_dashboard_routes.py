"""The dashboard's routes in-process: the page is open, its files are packaged and cached well."""

from __future__ import annotations

import gzip
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, cast

import httpx
import pytest
from prometheus_client import CollectorRegistry

from iotcollector.api.app import create_app
from iotcollector.api.auth import ApiKeys
from iotcollector.api.context import ApiContext
from iotcollector.dashboard.routes import (
    CONTENT_SECURITY_POLICY,
    Asset,
    _accepts_gzip,
    dashboard_router,
    load_assets,
)
from iotcollector.metrics import Metrics

if TYPE_CHECKING:
    from iotcollector.api.context import ReadingWriter
    from iotcollector.storage.base import ReadingQueries

KEY = "unit-test-key-0123456789"
DOCS = Path(__file__).resolve().parents[3] / "docs" / "dashboard.md"


class Ready:
    def readiness(self) -> dict[str, bool]:
        return {"database": True}


def _client(keys: tuple[str, ...] = (KEY,)) -> httpx.AsyncClient:
    # The storage is never reached: the dashboard serves files, and /api answers 401 first.
    context = ApiContext(
        queries=cast("ReadingQueries", object()),
        writer=cast("ReadingWriter", object()),
        keys=ApiKeys(keys),
        logger=logging.getLogger("test.dashboard"),
    )
    app = create_app(
        readiness=Ready(),
        metrics=Metrics(CollectorRegistry(), process_metrics=False),
        api=context,
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_the_page_needs_no_key_while_the_api_does() -> None:
    async with _client() as client:
        page = await client.get("/")
        api = await client.get("/api/devices")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>iot-collector" in page.text
    assert api.status_code == 401


async def test_the_page_is_sent_with_security_and_cache_headers() -> None:
    async with _client() as client:
        page = await client.get("/")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["etag"].startswith('"')


async def test_an_unchanged_file_is_answered_304() -> None:
    async with _client() as client:
        first = await client.get("/dashboard/app.js")
        again = await client.get(
            "/dashboard/app.js", headers={"If-None-Match": first.headers["etag"]}
        )
    assert first.status_code == 200
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == first.headers["etag"]


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/dashboard/app.js", "text/javascript; charset=utf-8"),
        ("/dashboard/style.css", "text/css; charset=utf-8"),
        ("/dashboard/favicon.svg", "image/svg+xml"),
        ("/dashboard/vendor/uplot/uPlot.esm.js", "text/javascript; charset=utf-8"),
        ("/dashboard/vendor/uplot/LICENSE", "text/plain; charset=utf-8"),
    ],
)
async def test_files_have_their_media_type(path: str, media_type: str) -> None:
    async with _client() as client:
        response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert "content-security-policy" not in response.headers


async def test_large_files_are_gzipped_for_clients_that_accept_it() -> None:
    async with _client() as client:
        plain = await client.get(
            "/dashboard/vendor/uplot/uPlot.esm.js", headers={"Accept-Encoding": "identity"}
        )
        packed = await client.get(
            "/dashboard/vendor/uplot/uPlot.esm.js", headers={"Accept-Encoding": "gzip, br"}
        )
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["vary"] == "Accept-Encoding"
    assert packed.content == plain.content  # httpx decodes it
    assert int(packed.headers["content-length"]) < len(plain.content) / 2


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/nope.js",
        "/dashboard/",
        "/dashboard/%2e%2e/routes.py",
        "/dashboard/..%2Froutes.py",
        "/dashboard/vendor/../../routes.py",
        "/dashboard//etc/passwd",
    ],
)
async def test_only_packaged_files_can_be_named(path: str) -> None:
    async with _client() as client:
        response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_the_dashboard_is_not_in_the_openapi_document() -> None:
    async with _client() as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/" not in paths
    assert not [p for p in paths if p.startswith("/dashboard")]


async def test_without_the_api_there_is_no_dashboard() -> None:
    app = create_app(readiness=Ready(), metrics=Metrics(CollectorRegistry(), process_metrics=False))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/")).status_code == 404


def test_every_file_the_page_and_its_modules_name_is_packaged() -> None:
    assets = load_assets()
    index = assets["index.html"].body.decode()
    named = re.findall(r'(?:href|src)="dashboard/([^"]+)"', index)
    assert {"app.js", "style.css", "vendor/uplot/uPlot.min.css"} <= set(named)
    missing = [name for name in named if name not in assets]
    for name, asset in assets.items():
        if name.endswith(".js"):
            folder = name.rpartition("/")[0]
            for target in re.findall(
                r'^import .* from "\./([^"]+)";$', asset.body.decode(), re.MULTILINE
            ):
                resolved = f"{folder}/{target}" if folder else target
                if resolved not in assets:
                    missing.append(f"{name} -> {resolved}")
    assert missing == []
    assert not re.search(r"https?://", index), "the page must not load anything from elsewhere"


def test_the_docs_page_names_only_packaged_files() -> None:
    assets = load_assets()
    page = assets["docs.html"].body.decode()
    named = re.findall(r'(?:href|src)="dashboard/([^"]+)"', page)
    assert "vendor/swagger-ui/swagger-ui-bundle.js" in named
    assert [name for name in named if name not in assets] == []
    assert not re.search(r"https?://", page)


def test_vendored_swagger_ui_keeps_its_licence_and_recorded_version() -> None:
    assets = load_assets()
    assert b"Apache License" in assets["vendor/swagger-ui/LICENSE"].body
    assert b"sourceMappingURL" not in assets["vendor/swagger-ui/swagger-ui-bundle.js"].body
    version = assets["vendor/swagger-ui/VERSION"].body.decode().split()[1]
    assert f"swagger-ui-dist@{version}" in DOCS.read_text()


def test_the_vendored_chart_library_keeps_its_licence_and_recorded_version() -> None:
    assets = load_assets()
    assert b"The MIT License" in assets["vendor/uplot/LICENSE"].body
    version = assets["vendor/uplot/VERSION"].body.decode().split()[1]
    assert f"uplot@{version}" in DOCS.read_text()


def test_a_package_without_the_page_is_refused(tmp_path: Path) -> None:
    (tmp_path / "app.js").write_text("")
    with pytest.raises(FileNotFoundError, match=r"index\.html"):
        load_assets(tmp_path)


def test_a_router_serves_given_assets() -> None:
    assets = {"index.html": Asset.of("index.html", b"<p>hi</p>")}
    router = dashboard_router(assets)
    assert {getattr(r, "path", None) for r in router.routes} == {"/", "/dashboard/{name:path}"}
    without_page = dashboard_router(assets, page=False)
    assert {getattr(r, "path", None) for r in without_page.routes} == {"/dashboard/{name:path}"}


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("br, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("identity", False),
        ("*", True),
        ("GZIP", True),
    ],
)
def test_accept_encoding(header: str | None, accepted: bool) -> None:
    assert _accepts_gzip(header) is accepted


def test_small_files_are_not_compressed() -> None:
    assert Asset.of("a.css", b"p{}").gzipped is None
    big = Asset.of("a.js", b"let x = 1;\n" * 500)
    assert big.gzipped is not None
    assert gzip.decompress(big.gzipped) == big.body
