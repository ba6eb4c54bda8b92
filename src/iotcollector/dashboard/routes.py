"""Serve the packaged pages: the dashboard at ``/``, the API docs at ``/docs`` (Swagger UI,
vendored: no CDN, they work offline), and their files under ``/dashboard/``.

The files are read once from the installed package (they are package data in the wheel) and
served from memory, with an ETag (answered by 304 when unchanged) and a gzip variant for
clients that accept it. Only files that exist in the package can be named: there is no path
from a URL to the file system. The page needs no key: it asks the person for one, and every
``/api`` request it makes carries it.
"""

from __future__ import annotations

import gzip
import hashlib
from importlib.resources import files
from typing import TYPE_CHECKING, Final

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from importlib.resources.abc import Traversable

__all__ = [
    "ASSET_PREFIX",
    "CONTENT_SECURITY_POLICY",
    "DOCS_CONTENT_SECURITY_POLICY",
    "Asset",
    "dashboard_router",
    "docs_router",
    "load_assets",
]

ASSET_PREFIX: Final = "/dashboard/"
INDEX: Final = "index.html"
DOCS: Final = "docs.html"

_MEDIA_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".md": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    "": "text/plain; charset=utf-8",  # LICENSE
}
_COMPRESS_ABOVE: Final = 1024

# Everything comes from this origin; no inline script or style, no framing.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# Swagger UI sets style attributes and shows its icons as data: URIs; still nothing from
# elsewhere and no inline script.
DOCS_CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_COMMON_HEADERS: Final = {
    # Always revalidate (cheap: 304 by ETag), so an upgraded collector never serves a page
    # that mixes old and new modules.
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class Asset:
    """One packaged file, ready to send; its gzip variant is made at its first request (the
    Swagger UI bundle takes 0.2 s to compress, which every app built would otherwise pay)."""

    __slots__ = ("_gzipped", "body", "etag", "media_type")

    def __init__(self, body: bytes, media_type: str, etag: str) -> None:
        self.body = body
        self.media_type = media_type
        self.etag = etag
        self._gzipped: bytes | bool | None = len(body) > _COMPRESS_ABOVE  # True: to be made

    @classmethod
    def of(cls, name: str, body: bytes) -> Asset:
        suffix = name[name.rfind(".") :] if "." in name.rsplit("/", 1)[-1] else ""
        media_type = _MEDIA_TYPES.get(suffix, "application/octet-stream")
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        return cls(body, media_type, etag)

    @property
    def gzipped(self) -> bytes | None:
        """The gzip variant, or None when it would not be smaller (or the file is small)."""
        if self._gzipped is True:
            packed = gzip.compress(self.body, compresslevel=9, mtime=0)
            self._gzipped = packed if len(packed) < len(self.body) else None
        return self._gzipped or None


def _walk(root: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.startswith(".") or entry.name == "__pycache__":
            continue
        if entry.is_dir():
            yield from _walk(entry, f"{prefix}{entry.name}/")
        else:
            yield f"{prefix}{entry.name}", entry


def load_assets(root: Traversable | None = None) -> dict[str, Asset]:
    """Every file under ``static/`` by its relative path (``vendor/uplot/LICENSE``)."""
    base = root if root is not None else files(__package__ or "iotcollector.dashboard") / "static"
    assets = {name: Asset.of(name, entry.read_bytes()) for name, entry in _walk(base)}
    if INDEX not in assets:
        raise FileNotFoundError(f"the dashboard's {INDEX} is missing from the package")
    return assets


def _accepts_gzip(header: str | None) -> bool:
    for part in (header or "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in {"gzip", "*"}:
            q = params.strip().lower().replace(" ", "")
            return q not in {"q=0", "q=0.0", "q=0.00", "q=0.000"}
    return False


def _send(asset: Asset, request: Request, extra: Mapping[str, str] | None = None) -> Response:
    headers = {**_COMMON_HEADERS, "ETag": asset.etag, **(extra or {})}
    if asset.gzipped is not None:
        headers["Vary"] = "Accept-Encoding"
    if asset.etag in (request.headers.get("if-none-match") or ""):
        return Response(status_code=304, headers=headers)
    body = asset.body
    if asset.gzipped is not None and _accepts_gzip(request.headers.get("accept-encoding")):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=asset.media_type, headers=headers)


def dashboard_router(assets: Mapping[str, Asset] | None = None, *, page: bool = True) -> APIRouter:
    """``GET /`` (the page, unless not ``page``) and ``GET /dashboard/<file>`` (the scripts,
    styles and licences of the dashboard and of the API docs).

    Not in the OpenAPI document, and never behind the API keys: the page itself asks for one.
    """
    served = dict(assets) if assets is not None else load_assets()
    page_headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Frame-Options": "DENY"}
    router = APIRouter(include_in_schema=False)

    if page:

        @router.api_route("/", methods=["GET", "HEAD"])
        async def dashboard_page(request: Request) -> Response:
            return _send(served[INDEX], request, page_headers)

    @router.api_route(ASSET_PREFIX + "{name:path}", methods=["GET", "HEAD"])
    async def dashboard_asset(name: str, request: Request) -> Response:
        asset = served.get(name)
        if asset is None:
            raise HTTPException(status_code=404, detail="no such dashboard file")
        return _send(asset, request, page_headers if name == INDEX else None)

    return router


def docs_router(assets: Mapping[str, Asset] | None = None) -> APIRouter:
    """``GET /docs``: Swagger UI from the package, reading ``/openapi.json``; its scripts are
    under ``/dashboard/`` (:func:`dashboard_router`)."""
    served = dict(assets) if assets is not None else load_assets()
    headers = {"Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY, "X-Frame-Options": "DENY"}
    router = APIRouter(include_in_schema=False)

    @router.api_route("/docs", methods=["GET", "HEAD"])
    async def docs_page(request: Request) -> Response:
        return _send(served[DOCS], request, headers)

    return router
