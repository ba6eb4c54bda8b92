"""JSON responses serialised by orjson (UTC times as RFC 3339 with ``Z``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from fastapi.responses import Response

if TYPE_CHECKING:
    from collections.abc import Mapping

JSON_TYPE = "application/json"


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_UTC_Z),
        status_code=status,
        media_type=JSON_TYPE,
        headers=headers,
    )


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}
