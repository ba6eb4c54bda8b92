"""The HTTP server's connection limits: what one hostile connection may cost.

uvicorn's httptools protocol bounds neither the request head (llhttp and httptools accumulate
a header value for as long as it lasts: 30 connections sending 30 MB of one header took the
collector to 1 GB) nor the time a client may take to send it (slow-loris), and it arms its
keep-alive timer only after a first response, so a connection that sends nothing stays open.
:class:`BoundedHttpProtocol` adds, per connection:

- the request head (request line and headers) at most ``max_head_bytes`` bytes, and at most
  ``max_headers`` header fields: beyond, ``431`` and the connection is closed, before the rest
  is read (an 8 MB ``Authorization`` header costs at most this many bytes);
- the head complete within ``head_timeout_s`` of its first byte, or of the connection's
  opening: otherwise ``408`` and close;
- at most ``max_connections`` open connections for the whole server: a connection beyond is
  answered ``503`` and closed at once, before anything is read from it.

Idle keep-alive is uvicorn's ``timeout_keep_alive``; request bodies are bounded by the routes
(``IOT_MAX_BODY_BYTES``) and by uvicorn's flow control (it stops reading past 64 KiB unread).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    import asyncio

__all__ = ["BoundedHttpProtocol", "HttpLimits", "bounded_protocol"]


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_head_bytes: int = 32 * 1024
    max_headers: int = 100
    head_timeout_s: float = 10.0
    max_connections: int = 512


_STATUS = {
    408: (b"408 Request Timeout", "request_timeout"),
    431: (b"431 Request Header Fields Too Large", "request_header_fields_too_large"),
    503: (b"503 Service Unavailable", "service_unavailable"),
}


def _answer(status: int, message: str) -> bytes:
    """A complete ``Connection: close`` answer in the API's error shape."""
    line, code = _STATUS[status]
    body = orjson.dumps({"error": {"code": code, "message": message, "details": None}})
    retry = b"retry-after: 1\r\n" if status == 503 else b""
    return (
        b"HTTP/1.1 "
        + line
        + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
        + retry
        + b"content-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the head, time and connection bounds above."""

    limits: ClassVar[HttpLimits] = HttpLimits()

    _in_head: bool = True
    _head_bytes: int = 0
    _header_count: int = 0
    _refusal: tuple[int, str] | None = None
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.logger.warning(
                "HTTP connection refused: %d connections open (the limit)", len(self.connections)
            )
            transport.write(_answer(503, "too many connections; retry later"))
            transport.close()
            return
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        if self.transport is not None:  # None: refused in connection_made
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return
        if not self._in_head:
            super().data_received(data)
            self._send_refusal()
            return
        room = self.limits.max_head_bytes - self._head_bytes
        head, rest = data[:room], data[room:]
        self._head_bytes += len(head)
        super().data_received(head)
        if self._send_refusal() or not rest:
            return
        if self._in_head:  # the head goes on past the limit: read no more of it
            limit = self.limits.max_head_bytes
            self._refuse(431, f"the request head is larger than {limit} bytes")
            return
        super().data_received(rest)
        self._send_refusal()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            self._arm_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            self._refusal = (431, f"more than {self.limits.max_headers} header fields")
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        if self._refusal is None:  # a refused request never reaches the app
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refusal is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refusal is None:
            super().on_message_complete()
        # What follows is the next request's head (keep-alive, pipelining).
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0

    def _arm_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head:
            timeout = self.limits.head_timeout_s
            self._refuse(408, f"the request head was not complete within {timeout:g} s")

    def _send_refusal(self) -> bool:
        """Answer and close if a parser callback refused the request; whether it did."""
        if self._refusal is None:
            return False
        self._refuse(*self._refusal)
        return True

    def _refuse(self, status: int, message: str) -> None:
        self._refusal = (status, message)
        self._stop_head_timer()
        if not self.transport.is_closing():
            self.logger.warning("HTTP request refused (%d): %s", status, message)
            self.transport.write(_answer(status, message))
            self.transport.close()


def bounded_protocol(limits: HttpLimits) -> type[BoundedHttpProtocol]:
    """The protocol class for uvicorn's ``http=`` with these limits (uvicorn builds one per
    connection from the class alone)."""
    return type("BoundedHttpProtocolWithLimits", (BoundedHttpProtocol,), {"limits": limits})
