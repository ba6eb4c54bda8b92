"""Pure parsing of the API's query parameters: times, cursors, buckets, content negotiation.

Every parser raises :class:`ParamError` (a ``ValueError``) with a message fit for a client;
the routes turn it into a 422 naming the parameter.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Final

from iotcollector.domain.epoch import MICROSECOND, from_epoch_us, to_epoch_us
from iotcollector.domain.parse import DEVICE_ID_REGEX, SENSOR_TYPE_REGEX, is_device_id
from iotcollector.storage.base import Position

DEVICE_ID_PATTERN: Final = f"^{DEVICE_ID_REGEX}$"
SENSOR_TYPE_PATTERN: Final = f"^{SENSOR_TYPE_REGEX}$"

_MAX_TIME_CHARS: Final = 64
_EPOCH_MS_ABOVE: Final = Decimal(100_000_000_000)  # the same rule as the readings' timestamps
_EPOCH_RE: Final = re.compile(r"-?[0-9]{1,16}(?:\.[0-9]{1,9})?")
# "+01:00" in a query string arrives as " 01:00" when the client did not percent-encode "+".
_SPACE_OFFSET_RE: Final = re.compile(r"(T[0-9:.,]+) ([0-9]{2}(?::?[0-9]{2})?)$")

_BUCKET_RE: Final = re.compile(r"([1-9][0-9]{0,5})([smhd])")
_BUCKET_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_BUCKET: Final = timedelta(days=366)

_CURSOR_VERSION: Final = 1
_CURSOR_FORMAT: Final = struct.Struct(">Bqq")  # version, timestamp in µs since epoch, id
_DEVICE_CURSOR_PREFIX: Final = b"d1:"


class ParamError(ValueError):
    """A query parameter that cannot be used; the message says why (never echoes secrets)."""


def parse_time(text: str) -> datetime:
    """ISO 8601 (no offset = UTC; a date alone = midnight UTC) or epoch seconds/milliseconds.

    Epochs follow the readings' rule: a number above 1e11 is milliseconds. The result is
    timezone-aware UTC, truncated to microseconds.
    """
    raw = text.strip()
    if not raw or len(raw) > _MAX_TIME_CHARS:
        raise ParamError("must be an ISO 8601 time or epoch seconds/milliseconds")
    if _EPOCH_RE.fullmatch(raw):
        return _epoch(raw)
    candidate = _SPACE_OFFSET_RE.sub(r"\1+\2", raw)
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        raise ParamError(
            "must be an ISO 8601 time (e.g. 2026-11-28T00:00:00Z) or epoch seconds/milliseconds"
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ParamError("is outside the representable range once in UTC") from None


def _epoch(raw: str) -> datetime:
    try:
        number = Decimal(raw)
    except InvalidOperation:  # pragma: no cover - the regex admits only decimals
        raise ParamError("must be a number of epoch seconds or milliseconds") from None
    micros = number * 1000 if number > _EPOCH_MS_ABOVE else number * 1_000_000
    try:
        return from_epoch_us(int(micros.to_integral_value()))
    except OverflowError:
        raise ParamError("is outside the years 1-9999") from None


def check_range(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and start >= end:
        raise ParamError("must be later than 'from'")


def encode_cursor(position: Position) -> str:
    """An opaque, URL-safe token for a keyset position in newest-first order."""
    packed = _CURSOR_FORMAT.pack(_CURSOR_VERSION, to_epoch_us(position.timestamp), position.id)
    return base64.urlsafe_b64encode(packed).rstrip(b"=").decode("ascii")


def decode_cursor(token: str) -> Position:
    raw = _b64decode(token)
    if len(raw) != _CURSOR_FORMAT.size or raw[0] != _CURSOR_VERSION:
        raise ParamError("is not a cursor returned by this API")
    _, micros, row_id = _CURSOR_FORMAT.unpack(raw)
    try:
        moment = from_epoch_us(micros)
    except OverflowError:
        raise ParamError("is not a cursor returned by this API") from None
    return Position(moment, row_id)


def encode_device_cursor(device_id: str) -> str:
    return base64.urlsafe_b64encode(_DEVICE_CURSOR_PREFIX + device_id.encode()).decode().rstrip("=")


def decode_device_cursor(token: str) -> str:
    raw = _b64decode(token)
    if not raw.startswith(_DEVICE_CURSOR_PREFIX):
        raise ParamError("is not a cursor returned by this API")
    try:
        device_id = raw[len(_DEVICE_CURSOR_PREFIX) :].decode("ascii")
    except UnicodeDecodeError:
        raise ParamError("is not a cursor returned by this API") from None
    if not is_device_id(device_id):
        raise ParamError("is not a cursor returned by this API")
    return device_id


def _b64decode(token: str) -> bytes:
    if not token or len(token) > 100 or not token.isascii():
        raise ParamError("is not a cursor returned by this API")
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise ParamError("is not a cursor returned by this API") from None


def parse_bucket(text: str) -> timedelta:
    """``<n><unit>``: n a positive integer without sign or leading zero, unit s, m, h or d."""
    match = _BUCKET_RE.fullmatch(text)
    if match is None:
        raise ParamError(
            "must be a positive whole number followed by s, m, h or d (e.g. 60s, 5m, 1h, 1d)"
        )
    width = timedelta(seconds=int(match[1]) * _BUCKET_UNITS[match[2]])
    if width > MAX_BUCKET:
        raise ParamError("must be at most 366d")
    return width


def bucket_count(start: datetime, end: datetime, width: timedelta) -> int:
    """How many epoch-aligned buckets of ``width`` overlap ``[start, end)``."""
    w = width // MICROSECOND
    first = to_epoch_us(start) // w * w
    return math.ceil((to_epoch_us(end) - first) / w)


def format_bucket(width: timedelta) -> str:
    seconds = int(width.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True, slots=True)
class _MediaRange:
    kind: str
    quality: float


def _media_ranges(accept: str) -> list[_MediaRange]:
    ranges: list[_MediaRange] = []
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        kind = fields[0].lower()
        if not kind:
            continue
        quality = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
                if not 0.0 <= quality <= 1.0:
                    quality = 0.0
        ranges.append(_MediaRange(kind, quality))
    return ranges


def _quality(ranges: list[_MediaRange], media_type: str) -> float:
    """The q of the most specific range matching ``media_type`` (RFC 9110 §12.5.1)."""
    main = media_type.split("/", 1)[0]
    best: tuple[int, float] = (-1, 0.0)
    for r in ranges:
        if r.kind == media_type:
            specificity = 2
        elif r.kind == f"{main}/*":
            specificity = 1
        elif r.kind == "*/*":
            specificity = 0
        else:
            continue
        if specificity > best[0]:
            best = (specificity, r.quality)
    return best[1]


def wants_csv(accept: str | None, fmt: str | None) -> bool:
    """CSV if ``format=csv``, or no ``format`` and Accept prefers text/csv to JSON."""
    if fmt is not None:
        return fmt == "csv"
    if not accept:
        return False
    ranges = _media_ranges(accept)
    csv = _quality(ranges, "text/csv")
    return csv > 0 and csv > _quality(ranges, "application/json")
