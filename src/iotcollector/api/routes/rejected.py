"""``/api/rejected``: the dead letters, why each was rejected, and their replay.

``GET /api/rejected`` lists them newest first (keyset cursor on the id); the payload is its
text when it is valid UTF-8, else base64 (``payload_encoding`` says which).
``POST /api/rejected/replay`` parses the pending ones again with today's rules and stores what
is now valid through the normal writer (``pipeline/replay.py``), like
``iot-collector rejected replay``.
"""

from __future__ import annotations

import asyncio
import base64
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from iotcollector.api.errors import ApiError, invalid_param
from iotcollector.api.params import ParamError, check_range, parse_time
from iotcollector.api.responses import json_response
from iotcollector.api.schemas import INVALID_PARAMS, UNAVAILABLE, error_example, error_response
from iotcollector.storage.base import DeadLetterFilter

if TYPE_CHECKING:
    from datetime import datetime

    from fastapi.responses import Response

    from iotcollector.api.context import ApiContext
    from iotcollector.storage.base import StoredDeadLetter

MAX_REJECTED = 1000
DEFAULT_REJECTED = 50
# A page ends after the dead letter that brings its payloads to 4 MiB (a thousand payloads of
# IOT_MAX_PAYLOAD_BYTES would be 256 MiB in one answer); they are read 50 at a time.
MAX_PAGE_PAYLOAD_BYTES = 4 * 1024 * 1024
_CHUNK = 50
_CURSOR_PREFIX = b"rej:"
_CODE_PATTERN = r"^[a-z0-9_]{1,40}$"
_TOPIC_MAX = 1024
# An MQTT topic never holds U+0000 (MQTT 5 §1.5.4), and PostgreSQL text cannot hold it.
_TOPIC_PATTERN = r"^[^\x00]*$"


class DeadLetterItem(BaseModel):
    id: int
    received_at: str = Field(description="When the collector received the message (UTC).")
    topic: str
    reason: str = Field(description="`<code>: <detail>`; the code is a metric label value.")
    payload: str
    payload_encoding: str = Field(description="`utf-8`, or `base64` for binary payloads.")
    replayed_at: str | None = Field(description="When a replay stored it; null: pending.")


class DeadLetterPage(BaseModel):
    data: list[DeadLetterItem]
    next_cursor: str | None


class ReplayRequest(BaseModel):
    """Which pending dead letters to replay (every field optional)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    reason: str | None = Field(default=None, pattern=_CODE_PATTERN, examples=["invalid_json"])
    topic: str | None = Field(
        default=None, max_length=_TOPIC_MAX, pattern=_TOPIC_PATTERN, examples=["zigbee2mqtt/#"]
    )
    from_: str | None = Field(default=None, alias="from", max_length=64)
    to: str | None = Field(default=None, max_length=64)
    dry_run: bool = False


class ReplayResult(BaseModel):
    dry_run: bool
    examined: int = Field(description="Pending dead letters read.")
    replayed: int = Field(description="Dead letters now stored and marked replayed.")
    readings: int = Field(description="Readings they yielded.")
    stored: int = Field(description="Readings stored (new).")
    duplicates: int = Field(description="Readings already stored (dedup).")
    still_rejected: dict[str, int] = Field(description="Dead letters still rejected, by code.")


def dead_letter_view(letter: StoredDeadLetter) -> dict[str, object]:
    try:
        payload, encoding = letter.payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(letter.payload).decode("ascii"), "base64"
    return {
        "id": letter.id,
        "received_at": letter.received_at,
        "topic": letter.topic,
        "reason": letter.reason,
        "payload": payload,
        "payload_encoding": encoding,
        "replayed_at": letter.replayed_at,
    }


def rejected_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(tags=["dead letters"])
    replaying = asyncio.Lock()

    @router.get(
        "/api/rejected",
        summary="Dead letters: rejected messages and why",
        description=(
            "Newest first, paginated with `cursor`. `reason` is a rejection code "
            "(`invalid_json`, `unknown_alias`, ...); `topic` a topic, or a prefix ending in `#`."
        ),
        response_model=None,
        responses={
            200: {"model": DeadLetterPage, "description": "A page of dead letters."},
            422: INVALID_PARAMS,
            503: UNAVAILABLE,
        },
    )
    async def list_rejected(  # noqa: PLR0913 - one argument per query parameter
        *,
        reason: Annotated[str | None, Query(pattern=_CODE_PATTERN)] = None,
        topic: Annotated[str | None, Query(max_length=_TOPIC_MAX, pattern=_TOPIC_PATTERN)] = None,
        from_: Annotated[str | None, Query(alias="from", max_length=64)] = None,
        to: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_REJECTED)] = DEFAULT_REJECTED,
        cursor: Annotated[str | None, Query(max_length=100)] = None,
    ) -> Response:
        where = _filter(reason, topic, from_, to, pending=False)
        after = _decode_cursor(cursor) if cursor is not None else None
        letters, more = await _page(ctx, where, after, limit)
        next_cursor = _encode_cursor(letters[-1].id) if more else None
        return json_response(
            {"data": [dead_letter_view(d) for d in letters], "next_cursor": next_cursor}
        )

    @router.post(
        "/api/rejected/replay",
        summary="Replay pending dead letters with today's rules",
        description=(
            "Each pending dead letter the filters select is parsed again (mapping rules, "
            "formats) and what is now valid is stored through the normal writer: dedup applies, "
            "so a second replay stores nothing new. A reading without its own timestamp gets the "
            "dead letter's receipt time."
        ),
        response_model=None,
        responses={
            200: {"model": ReplayResult, "description": "What the replay did."},
            400: error_response(
                "The body is not valid JSON.",
                bad_body=error_example("bad_request", "There was an error parsing the body"),
            ),
            413: error_response(
                "The body is larger than 64 KiB.",
                too_large=error_example(
                    "payload_too_large", "the body is larger than the limit of 65,536 bytes"
                ),
            ),
            409: error_response(
                "Another replay is running.",
                busy=error_example("conflict", "another replay is running"),
            ),
            422: INVALID_PARAMS,
            503: UNAVAILABLE,
        },
    )
    async def replay(body: ReplayRequest) -> Response:
        if ctx.replay is None:
            raise ApiError(503, "unavailable", "replay is not available in this process")
        where = _filter(body.reason, body.topic, body.from_, body.to, pending=True)
        if replaying.locked():
            raise ApiError(409, "conflict", "another replay is running")
        async with replaying:
            report = await ctx.replay(where, dry_run=body.dry_run)
        return json_response(report)

    return router


async def _page(
    ctx: ApiContext, where: DeadLetterFilter, after: int | None, limit: int
) -> tuple[list[StoredDeadLetter], bool]:
    """Up to ``limit`` dead letters, read :data:`_CHUNK` at a time and cut after the one that
    brings their payloads to :data:`MAX_PAGE_PAYLOAD_BYTES`; and whether more may follow."""
    letters: list[StoredDeadLetter] = []
    size = 0
    while True:
        wanted = min(_CHUNK, limit + 1 - len(letters))
        chunk = await ctx.queries.list_rejected(where, after=after, limit=wanted)
        for letter in chunk:
            if len(letters) == limit:
                return letters, True
            letters.append(letter)
            size += len(letter.payload)
            if size >= MAX_PAGE_PAYLOAD_BYTES:
                return letters, True
        if len(chunk) < wanted:
            return letters, False
        after = chunk[-1].id


def _filter(
    reason: str | None, topic: str | None, start: str | None, end: str | None, *, pending: bool
) -> DeadLetterFilter:
    times: list[datetime | None] = []
    for name, text in (("from", start), ("to", end)):
        try:
            times.append(None if text is None else parse_time(text))
        except ParamError as exc:
            raise invalid_param(name, str(exc)) from None
    try:
        check_range(times[0], times[1])
    except ParamError as exc:
        raise invalid_param("from", str(exc)) from None
    return DeadLetterFilter(reason, topic, times[0], times[1], pending=pending)


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(_CURSOR_PREFIX + str(last_id).encode()).decode().rstrip("=")


def _decode_cursor(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        raw = b""
    digits = raw[len(_CURSOR_PREFIX) :]
    if not raw.startswith(_CURSOR_PREFIX) or not digits.isdigit() or len(digits) > 19:
        raise invalid_param("cursor", "is not a cursor returned by this API")
    return int(digits)
