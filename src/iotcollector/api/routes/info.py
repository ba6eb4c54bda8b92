"""``/api/info``: where devices publish (the broker and topics), for the dashboard's empty state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter

from iotcollector import __version__
from iotcollector.api.responses import json_response
from iotcollector.api.schemas import Info

if TYPE_CHECKING:
    from fastapi.responses import Response

    from iotcollector.api.context import ApiContext


def info_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get(
        "/api/info",
        summary="Where devices publish: the broker and topic filters",
        response_model=Info,
    )
    async def info() -> Response:
        return json_response(
            {
                "version": __version__,
                "mqtt": {"broker": ctx.mqtt_broker, "topics": list(ctx.mqtt_topics)},
            }
        )

    return router
