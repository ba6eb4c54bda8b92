"""``/api/data``: query readings (JSON or streamed CSV), write readings, aggregate them."""

from __future__ import annotations

import asyncio
import csv
import functools
import io
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from iotcollector.api.errors import ApiError, invalid_param
from iotcollector.api.params import (
    DEVICE_ID_PATTERN,
    SENSOR_TYPE_PATTERN,
    ParamError,
    bucket_count,
    check_range,
    decode_cursor,
    encode_cursor,
    format_bucket,
    parse_bucket,
    parse_time,
    wants_csv,
)
from iotcollector.api.responses import json_response
from iotcollector.api.schemas import (
    INVALID_PARAMS,
    UNAVAILABLE,
    AggregateResult,
    DataPage,
    MultiSensorIn,
    ReadingIn,
    WriteAccepted,
    error_example,
    error_response,
)
from iotcollector.domain.array_items import more_items_than
from iotcollector.domain.parse import RejectionCode, parse_message
from iotcollector.domain.reading import ParseResult, Rejection
from iotcollector.errors import IotCollectorError
from iotcollector.storage.base import Position, ReadingFilter

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from iotcollector.api.context import ApiContext
    from iotcollector.storage.base import StoredReading

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100
MAX_BUCKETS = 10_000
# POST bodies larger than this are parsed in a worker thread: at ~1.5 µs per reading, a
# 64 KiB body (~600 readings) holds the event loop for about 1 ms.
THREAD_PARSE_BYTES = 64 * 1024
# Bodies larger than that (or of unknown length) received or parsed at once, and how long a
# request waits for its turn before a 503.
LARGE_BODIES = 4
LARGE_BODY_WAIT_S = 5.0
# A 422 lists this many invalid items, then counts the rest.
LISTED_REJECTIONS = 100
CSV_COLUMNS = ("id", "device_id", "sensor_type", "value", "unit", "timestamp")

_TIME_HELP = (
    "ISO 8601 (`2026-11-28T00:00:00Z`; no offset = UTC; a date alone = midnight UTC) or epoch "
    "seconds / milliseconds (above 1e11)."
)
DeviceId = Annotated[
    str | None,
    Query(pattern=DEVICE_ID_PATTERN, description="Only this device.", examples=["sim-0042"]),
]
SensorType = Annotated[
    str | None,
    Query(pattern=SENSOR_TYPE_PATTERN, description="Only this sensor type.", examples=["temp"]),
]
From = Annotated[
    str | None,
    Query(
        alias="from",
        max_length=64,
        description=f"Readings at or after this time. {_TIME_HELP}",
        examples=["2026-11-28T00:00:00Z"],
    ),
]
To = Annotated[
    str | None,
    Query(
        max_length=64,
        description=f"Readings before this time (exclusive). {_TIME_HELP}",
        examples=["1795824000"],
    ),
]


_CSV_TYPE = "text/csv; charset=utf-8"


_NOT_JSON = (
    "the body must be JSON, sent with the header Content-Type: application/json "
    "(curl: -H 'Content-Type: application/json')"
)


def _time(name: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except ParamError as exc:
        raise invalid_param(name, str(exc)) from None


def _range(start: datetime | None, end: datetime | None) -> None:
    try:
        check_range(start, end)
    except ParamError as exc:
        raise invalid_param("to", str(exc)) from None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def csv_rows(rows: list[StoredReading]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerows(
        (r.id, r.device_id, r.sensor_type, repr(r.value), r.unit, _iso(r.timestamp)) for r in rows
    )
    return buffer.getvalue().encode()


def _csv_header() -> bytes:
    return (",".join(CSV_COLUMNS) + "\r\n").encode()


def _request_body_schema() -> dict[str, Any]:
    reading = ReadingIn.model_json_schema()
    multi = MultiSensorIn.model_json_schema()
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        reading,
                        multi,
                        {"type": "array", "minItems": 1, "items": {"anyOf": [reading, multi]}},
                    ]
                },
                "examples": {
                    "one": {"value": ReadingIn.model_config["json_schema_extra"]["examples"][0]},  # type: ignore[index]
                    "array": {
                        "value": [
                            {"device_id": "sim-0042", "sensor_type": "temperature", "value": 21.5},
                            {"device_id": "sim-0042", "sensor_type": "humidity", "value": "48.2"},
                        ]
                    },
                    "multi_sensor": {
                        "value": MultiSensorIn.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]
                    },
                },
            }
        },
    }


def invalid_readings(rejections: list[Rejection]) -> ApiError:
    """The 422 of a POST body: the first :data:`LISTED_REJECTIONS` problems and their count."""
    listed = [
        {"index": r.index, "code": r.code, "reason": r.detail}
        for r in rejections[:LISTED_REJECTIONS]
    ]
    if len(rejections) == 1 and rejections[0].index is None:
        return ApiError(
            422, "invalid_readings", "the body is not valid; nothing was stored", listed, count=1
        )
    shown = "" if len(rejections) <= LISTED_REJECTIONS else f"; the first {len(listed)} are listed"
    return ApiError(
        422,
        "invalid_readings",
        f"{len(rejections)} of the readings are not valid; nothing was stored{shown}",
        listed,
        count=len(rejections),
    )


def _parser(body: bytes, ctx: ApiContext) -> Callable[[], ParseResult]:
    return functools.partial(
        parse_message,
        body,
        received_at=ctx.clock(),
        max_future_skew_s=ctx.max_future_skew_s,
        max_payload_bytes=ctx.max_body_bytes,
        max_readings=ctx.max_readings_per_message,
    )


async def _take_slot(slots: asyncio.Semaphore) -> None:
    """A place to receive a large body, or 503 when none frees up within a few seconds."""
    try:
        async with asyncio.timeout(LARGE_BODY_WAIT_S):
            await slots.acquire()
    except TimeoutError:
        raise ApiError(
            503,
            "busy",
            f"{LARGE_BODIES} large bodies are being received already; retry later",
            headers={"Retry-After": "1"},
        ) from None


def _parse_large(body: bytes, parse: Callable[[], ParseResult], max_readings: int) -> ParseResult:
    """A large body: an array of too many items is refused from its first pieces, without
    decoding it whole (domain/array_items.py); anything else is parsed as usual."""
    if more_items_than(body, max_readings):
        detail = (
            f"message holds more than {max_readings:,} array items, more than the limit of "
            f"{max_readings:,} (IOT_MAX_READINGS_PER_MESSAGE)"
        )
        return ParseResult(rejections=[Rejection(RejectionCode.TOO_MANY_READINGS.value, detail)])
    return parse()


def data_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(tags=["data"])
    _add_get_data(router, ctx)
    _add_post_data(router, ctx)
    _add_aggregate(router, ctx)
    return router


def _add_get_data(router: APIRouter, ctx: ApiContext) -> None:
    @router.get(
        "/api/data",
        summary="Readings, newest first",
        description=(
            "Filters combine with AND. Pages are keyset-paginated: pass `next_cursor` back as "
            "`cursor` with the same filters until it is null; no reading is missed or repeated "
            "even while new ones arrive. `format=csv` or `Accept: text/csv` streams CSV "
            "(columns " + ", ".join(CSV_COLUMNS) + "): every matching reading, or at most "
            "`limit` if given, read from the database page by page."
        ),
        response_model=None,
        responses={
            200: {
                "model": DataPage,
                "description": "A page of readings (JSON), or all of them (CSV).",
                "content": {
                    "text/csv": {
                        "schema": {"type": "string"},
                        "example": "id,device_id,sensor_type,value,unit,timestamp\r\n"
                        "1042,sim-0042,temperature,21.57,C,2026-11-28T00:00:00.123Z\r\n",
                    }
                },
            },
            422: INVALID_PARAMS,
            503: UNAVAILABLE,
        },
    )
    async def get_data(  # noqa: PLR0913 - the query parameters of the route
        *,
        device_id: DeviceId = None,
        sensor_type: SensorType = None,
        from_: From = None,
        to: To = None,
        limit: Annotated[
            int | None,
            Query(
                ge=1,
                le=MAX_LIMIT,
                description=f"Page size for JSON (default {DEFAULT_LIMIT}); for CSV, the "
                "maximum number of rows (default: all).",
            ),
        ] = None,
        cursor: Annotated[
            str | None,
            Query(max_length=100, description="`next_cursor` of the previous page."),
        ] = None,
        fmt: Annotated[
            Literal["json", "csv"] | None,
            Query(alias="format", description="Overrides the Accept header."),
        ] = None,
        accept: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Response:
        start, end = _time("from", from_), _time("to", to)
        _range(start, end)
        before: Position | None = None
        if cursor is not None:
            try:
                before = decode_cursor(cursor)
            except ParamError as exc:
                raise invalid_param("cursor", str(exc)) from None
        where = ReadingFilter(device_id, sensor_type, start, end)
        if wants_csv(accept, fmt):
            return await _csv_response(ctx, where, before, limit)
        size = limit or DEFAULT_LIMIT
        rows = await ctx.queries.read_readings(where, before=before, limit=size + 1)
        next_cursor = None
        if len(rows) > size:
            rows = rows[:size]
            next_cursor = encode_cursor(Position(rows[-1].timestamp, rows[-1].id))
        return json_response({"data": rows, "next_cursor": next_cursor})


def _add_post_data(router: APIRouter, ctx: ApiContext) -> None:
    # Bodies over THREAD_PARSE_BYTES (or of unknown length) being received or parsed: at most
    # LARGE_BODIES at once, so memory does not grow with the number of clients sending them.
    large_bodies = asyncio.Semaphore(LARGE_BODIES)
    parsing = asyncio.Semaphore(1)

    @router.post(
        "/api/data",
        summary="Store readings (one, an array, or a multi-sensor object)",
        description=(
            "The same validation as MQTT messages, through the same batched writer; answers "
            "after the commit. All or nothing: any invalid item answers 422 naming each bad "
            "item, and nothing is stored. Idempotent: a reading already stored (same "
            "device_id, sensor_type, timestamp) counts as a duplicate, so retrying after a "
            "timeout or a 503 is safe."
        ),
        status_code=201,
        response_model=None,
        openapi_extra={"requestBody": _request_body_schema()},
        responses={
            201: {"model": WriteAccepted, "description": "Committed."},
            413: error_response(
                "The body is larger than IOT_MAX_BODY_BYTES.",
                too_large=error_example(
                    "payload_too_large", "the body is larger than the limit of 1,048,576 bytes"
                ),
            ),
            415: error_response(
                "The body is not JSON.",
                not_json=error_example("unsupported_media_type", _NOT_JSON),
            ),
            422: error_response(
                "An item is not valid; nothing was stored.",
                invalid_items=error_example(
                    "invalid_readings",
                    "1 of the readings is not valid; nothing was stored",
                    [
                        {
                            "index": 1,
                            "code": "invalid_value",
                            "reason": "value must be a finite number or a decimal string "
                            "(got 'abc')",
                        }
                    ],
                ),
                not_json=error_example(
                    "invalid_readings",
                    "the body is not valid; nothing was stored",
                    [
                        {
                            "index": None,
                            "code": "invalid_json",
                            "reason": "payload is not valid JSON: unexpected character "
                            "(line 1, column 1)",
                        }
                    ],
                ),
            ),
            503: UNAVAILABLE,
        },
    )
    async def post_data(request: Request) -> Response:
        content_type = request.headers.get("content-type")
        if content_type is not None and not _is_json_media_type(content_type):
            raise ApiError(415, "unsupported_media_type", _NOT_JSON)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) <= THREAD_PARSE_BYTES:
            body = await _read_body(request, ctx.max_body_bytes, ctx.body_timeout_s)
            result = _parser(body, ctx)()
        else:
            await _take_slot(large_bodies)
            try:
                body = await _read_body(request, ctx.max_body_bytes, ctx.body_timeout_s)
                parse = _parser(body, ctx)
                if len(body) <= THREAD_PARSE_BYTES:
                    result = parse()
                else:
                    # Off the event loop (MQTT ingest and other requests go on), one at a time
                    # (the parsed document of a 1 MiB body can take tens of MB).
                    async with parsing:
                        result = await asyncio.to_thread(
                            _parse_large, body, parse, ctx.max_readings_per_message
                        )
            finally:
                large_bodies.release()
        if result.rejections:
            raise invalid_readings(result.rejections)
        try:
            async with asyncio.timeout(ctx.write_timeout_s):
                written = await ctx.writer.write(result.readings)
        except TimeoutError:
            raise ApiError(
                503,
                "write_timeout",
                f"the readings were not committed within {ctx.write_timeout_s:g} s; retry "
                "(a retry is safe: readings already stored count as duplicates)",
                headers={"Retry-After": "5"},
            ) from None
        except IotCollectorError as exc:
            raise ApiError(
                503, "busy", f"{exc}; retry later", headers={"Retry-After": "1"}
            ) from None
        return json_response({"stored": written.stored, "duplicates": written.duplicates}, 201)


def _add_aggregate(router: APIRouter, ctx: ApiContext) -> None:
    @router.get(
        "/api/data/aggregate",
        summary="Count, min, max, average per time bucket",
        description=(
            "Computed in the database over `[from, to)` for one sensor type (of one device, "
            "or of every device). Buckets are aligned to the Unix epoch in UTC (a `1d` bucket "
            f"starts at midnight UTC); buckets without readings are absent. At most "
            f"{MAX_BUCKETS} buckets per request."
        ),
        response_model=None,
        responses={
            200: {"model": AggregateResult, "description": "The buckets, oldest first."},
            422: error_response(
                "A parameter is not valid, or the range holds too many buckets.",
                too_many=error_example(
                    "invalid_request",
                    "the request is not valid",
                    [
                        {
                            "loc": ["query", "bucket"],
                            "message": "'bucket' makes 43200 buckets over the range; at most "
                            "10000 are allowed: use a wider bucket or a shorter range",
                        }
                    ],
                ),
            ),
            503: UNAVAILABLE,
        },
    )
    async def aggregate(
        *,
        sensor_type: Annotated[
            str,
            Query(pattern=SENSOR_TYPE_PATTERN, description="The sensor type.", examples=["temp"]),
        ],
        from_: Annotated[
            str,
            Query(
                alias="from",
                max_length=64,
                description=f"Start (inclusive). {_TIME_HELP}",
                examples=["2026-11-28T00:00:00Z"],
            ),
        ],
        to: Annotated[
            str | None,
            Query(
                max_length=64,
                description=f"End (exclusive; default: now). {_TIME_HELP}",
                examples=["2026-11-29T00:00:00Z"],
            ),
        ] = None,
        device_id: DeviceId = None,
        bucket: Annotated[
            str,
            Query(
                max_length=16,
                description="Bucket width: a whole number and s, m, h or d (at most 366d).",
                examples=["60s", "5m", "1h", "1d"],
            ),
        ] = "60s",
    ) -> Response:
        start = _time("from", from_)
        assert start is not None
        end = _time("to", to) or ctx.clock()
        _range(start, end)
        try:
            width = parse_bucket(bucket)
        except ParamError as exc:
            raise invalid_param("bucket", str(exc)) from None
        count = bucket_count(start, end, width)
        if count > MAX_BUCKETS:
            raise invalid_param(
                "bucket",
                f"makes {count} buckets over the range; at most {MAX_BUCKETS} are allowed: "
                "use a wider bucket or a shorter range",
            )
        buckets = await ctx.queries.aggregate(
            sensor_type=sensor_type, device_id=device_id, start=start, end=end, bucket=width
        )
        return json_response(
            {
                "device_id": device_id,
                "sensor_type": sensor_type,
                "bucket": format_bucket(width),
                "from": start,
                "to": end,
                "data": buckets,
            }
        )


def _is_json_media_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def _read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes, and with
    408 when it takes longer than ``timeout_s`` to arrive (a slow sender holds a connection
    and up to ``limit`` bytes)."""
    too_large = ApiError(
        413, "payload_too_large", f"the body is larger than the limit of {limit:,} bytes"
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(
            408,
            "request_timeout",
            f"the body did not arrive within {timeout_s:g} s",
            headers={"Connection": "close"},
        ) from None
    return b"".join(chunks)


async def _csv_response(
    ctx: ApiContext, where: ReadingFilter, before: Position | None, limit: int | None
) -> Response:
    page = ctx.csv_page_rows
    first_ask = page if limit is None else min(page, limit)
    # The first page is read before answering: a database error is still a clean 503.
    first = await ctx.queries.read_readings(where, before=before, limit=first_ask)

    async def chunks() -> AsyncIterator[bytes]:
        rows, ask, remaining = first, first_ask, limit
        yield _csv_header()
        while True:
            if rows:
                yield csv_rows(rows)
            if len(rows) < ask:
                return
            if remaining is not None:
                remaining -= len(rows)
                if remaining <= 0:
                    return
            ask = page if remaining is None else min(page, remaining)
            position = Position(rows[-1].timestamp, rows[-1].id)
            try:
                rows = await ctx.queries.read_readings(where, before=position, limit=ask)
            except Exception:
                ctx.logger.exception("CSV download aborted: a page could not be read")
                raise

    return StreamingResponse(
        chunks(),
        media_type=_CSV_TYPE,
        headers={"Content-Disposition": 'attachment; filename="readings.csv"'},
    )
