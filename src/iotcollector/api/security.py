"""Security headers on every HTTP response (ASGI middleware).

Every response gets ``X-Content-Type-Options: nosniff`` (no content sniffing of JSON or CSV
into HTML), ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY`` and a Content Security
Policy with ``frame-ancestors 'none'`` (no framing, no click-jacking), and the cross-origin
isolation headers. The policy is strict (``default-src 'self'``, no inline script or style): the
dashboard at ``/`` and the API docs at ``/docs`` (Swagger UI from the package, no CDN) load only
their own files and send their own policies. ``/api/*`` answers are ``Cache-Control:
no-store``: readings and device lists must not sit in shared or browser caches.

A header the route has set itself is left alone (the dashboard sends its own policy), and
the dashboard's static files get no policy (it applies to documents only).
HSTS belongs to whatever terminates TLS in front of the collector (the ingress).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["API_CACHE_CONTROL", "CONTENT_SECURITY_POLICY", "SecurityHeadersMiddleware"]

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
API_CACHE_CONTROL: Final = "no-store"
# The dashboard's scripts and styles: a policy only means something on a document (the page
# at / has its own, from the dashboard router).
_ASSETS: Final = "/dashboard/"

_COMMON: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


class SecurityHeadersMiddleware:
    """Adds the headers above to each HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        extra = list(_COMMON)
        if not path.startswith(_ASSETS):
            extra.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
        if path == "/api" or path.startswith("/api/"):
            extra.append((b"cache-control", API_CACHE_CONTROL.encode()))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in extra if name not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, send_with_headers)
