"""The HTTP application: health, readiness, metrics, and the ``/api`` routes."""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Literal, Protocol

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from iotcollector import __version__
from iotcollector.api.auth import bearer_guard
from iotcollector.api.errors import ApiError
from iotcollector.api.responses import error_body, json_response
from iotcollector.api.routes.data import data_router
from iotcollector.api.routes.devices import devices_router
from iotcollector.api.routes.info import info_router
from iotcollector.api.routes.rejected import rejected_router
from iotcollector.api.schemas import UNAUTHORIZED, Health
from iotcollector.api.security import SecurityHeadersMiddleware
from iotcollector.dashboard import dashboard_router, docs_router, load_assets
from iotcollector.errors import StorageError, TransientStorageError

if TYPE_CHECKING:
    import logging

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from iotcollector.api.context import ApiContext
    from iotcollector.metrics import Metrics

__all__ = ["BodyLimitMiddleware", "HttpMetricsMiddleware", "Readiness", "create_app", "error_body"]


class Readiness(Protocol):
    """What ``/readyz`` asks: each named dependency and whether it is usable now."""

    def readiness(self) -> dict[str, bool]: ...


class ReadinessReport(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, bool]


class HttpMetricsMiddleware:
    """Counts requests and times them by route template (never the raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self._metrics.http_requests.labels(
                method=scope["method"], route=template, status=str(status)
            ).inc()
            self._metrics.http_request_duration.labels(route=template).observe(
                time.perf_counter() - started
            )


# The body any route but POST /api/data (which reads its own, up to IOT_MAX_BODY_BYTES) may
# send: FastAPI reads a route's declared body whole before its dependencies, the API key
# check among them, so without this anyone could make POST /api/rejected/replay hold gigabytes.
MAX_OTHER_BODY_BYTES = 64 * 1024


class BodyLimitMiddleware:
    """413 for a request body over :data:`MAX_OTHER_BODY_BYTES`, as soon as it is known to be
    (its Content-Length, or the bytes received): nothing beyond is read."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) == ("POST", "/api/data"):
            await self._app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        size = int(declared) if declared.isdigit() else 0

        async def limited() -> Message:
            nonlocal size
            if size > MAX_OTHER_BODY_BYTES:
                raise HTTPException(
                    413, f"the body is larger than the limit of {MAX_OTHER_BODY_BYTES:,} bytes"
                )
            message = await receive()
            if message["type"] == "http.request" and not declared.isdigit():
                size += len(message.get("body", b""))
            return message

        await self._app(scope, limited, send)


_DESCRIPTION = """IoT sensor readings collected over MQTT and HTTP, stored without loss.

Every `/api/*` route takes `Authorization: Bearer <key>` when keys are configured
(`IOT_API_KEYS`, `IOT_API_KEYS_FILE`); `/healthz`, `/readyz`, `/metrics` and these docs are
open. Every 4xx and 5xx answer has one shape:
`{"error": {"code": "...", "message": "...", "details": [...] | null}}`.
Times are returned in UTC as RFC 3339 with `Z`.
"""


def create_app(*, readiness: Readiness, metrics: Metrics, api: ApiContext | None = None) -> FastAPI:
    """Build the ASGI app; collaborators are passed in, nothing is global.

    Without ``api`` only the health, readiness and metrics endpoints exist.
    """
    # /docs is Swagger UI from the package (no CDN: collectors often run offline); no ReDoc.
    app = FastAPI(
        title="iot-collector",
        version=__version__,
        description=_DESCRIPTION,
        docs_url=None,
        redoc_url=None,
    )
    _add_error_handlers(app, api.logger if api is not None else None)

    @app.get("/healthz", tags=["health"], summary="The process is alive", response_model=Health)
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Ready: database reachable and MQTT subscribed",
        response_model=ReadinessReport,
        responses={503: {"model": ReadinessReport, "description": "A dependency is not ready"}},
    )
    async def readyz() -> JSONResponse:
        checks = readiness.readiness()
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not_ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if api is not None:
        dependencies: list[Any] = [Depends(_reject_unknown_query_parameters)]
        responses: dict[int | str, dict[str, Any]] = {}
        if api.keys:
            dependencies.insert(0, Depends(bearer_guard(api.keys)))
            responses = {401: UNAUTHORIZED}

        @app.get(
            "/api/health",
            tags=["health"],
            summary="The process is alive (alias of /healthz)",
            response_model=Health,
            dependencies=dependencies,
            responses=responses,
        )
        async def api_health() -> Response:
            return json_response({"status": "ok"})

        routers = (data_router(api), devices_router(api), rejected_router(api), info_router(api))
        for router in routers:
            app.include_router(router, dependencies=dependencies, responses=responses)
    assets = load_assets()
    app.include_router(docs_router(assets))
    # The page at / needs no key: it asks for one and sends it with each /api request.
    app.include_router(dashboard_router(assets, page=api is not None))

    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeadersMiddleware)  # outermost: error answers get them too
    return app


async def _reject_unknown_query_parameters(request: Request) -> None:
    """A misspelt filter (``?devce_id=``) must not silently return everything: 422."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _query_names(route)
    unknown = [name for name in request.query_params if name not in known]
    if unknown:
        raise RequestValidationError(
            [
                {
                    "loc": ("query", name[:50]),
                    "msg": f"unknown query parameter; expected one of: {', '.join(sorted(known))}"
                    if known
                    else "this route takes no query parameters",
                    "type": "value_error",
                }
                for name in dict.fromkeys(unknown)
            ]
        )


def _query_names(route: APIRoute) -> frozenset[str]:
    names: set[str] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        names.update(p.alias for p in dependant.query_params)
        pending.extend(dependant.dependencies)
    return frozenset(names)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(app: FastAPI, scope: Scope) -> str:
    """Every method some route serves at this path: Starlette names only the first route's.

    ``GET /api/data`` and ``POST /api/data`` are two routes; a 405 must list both (RFC 9110).
    Each method is asked of the routes themselves (included routers do not expose theirs).
    """
    return ", ".join(
        method
        for method in _METHODS
        if any(
            isinstance(route, BaseRoute)
            and route.matches({**scope, "method": method})[0] is Match.FULL
            for route in app.router.routes
        )
    )


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    code = _CODES.get(exc.status_code) or (
        HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    )
    headers = exc.headers
    if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        headers = {**(headers or {}), "Allow": _allowed_methods(request.app, request.scope)}
    return json_response(error_body(code, str(exc.detail)), exc.status_code, headers=headers)


_CODES = {413: "payload_too_large"}  # as POST /api/data says it (the phrase varies by Python)


def _add_error_handlers(app: FastAPI, logger: logging.Logger | None) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        details = [
            {"loc": list(e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()
        ]
        return json_response(
            error_body("invalid_request", "the request is not valid", details), 422
        )

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        body = error_body(exc.code, exc.message, exc.details)
        if exc.count is not None:
            body["error"]["count"] = exc.count
        return json_response(body, exc.status, headers=exc.headers)

    @app.exception_handler(StorageError)
    async def _storage_error(request: Request, exc: StorageError) -> Response:
        if isinstance(exc, TransientStorageError):
            if logger is not None:
                logger.warning(
                    "%s %s: database unavailable: %s", request.method, request.url.path, exc
                )
            return json_response(
                error_body("database_unavailable", "the database is not available, retry later"),
                503,
                headers={"Retry-After": "5"},
            )
        if logger is not None:
            logger.error("%s %s: database error: %s", request.method, request.url.path, exc)
        return json_response(error_body("database_error", "the database refused the query"), 500)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        if logger is not None:
            logger.error("%s %s: unexpected error", request.method, request.url.path, exc_info=exc)
        return json_response(error_body("internal_error", "unexpected error"), 500)
