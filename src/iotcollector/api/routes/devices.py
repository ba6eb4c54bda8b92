"""``/api/devices``: the registry, with presence from status messages and ``last_seen``."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Path, Query

from iotcollector.api.errors import ApiError, invalid_param
from iotcollector.api.params import (
    DEVICE_ID_PATTERN,
    ParamError,
    decode_device_cursor,
    encode_device_cursor,
)
from iotcollector.api.responses import json_response
from iotcollector.api.schemas import (
    INVALID_PARAMS,
    UNAVAILABLE,
    Device,
    DevicePage,
    error_example,
    error_response,
)

if TYPE_CHECKING:
    from datetime import datetime

    from fastapi.responses import Response

    from iotcollector.api.context import ApiContext
    from iotcollector.storage.base import DeviceRecord

MAX_DEVICES = 1000
DEFAULT_DEVICES = 100


def device_view(record: DeviceRecord, online_since: datetime) -> dict[str, object]:
    return {
        "device_id": record.device_id,
        "first_seen": record.first_seen,
        "last_seen": record.last_seen,
        "status": "online" if record.is_online(online_since) else "offline",
        "sensor_types": list(record.sensor_types),
    }


def devices_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(tags=["devices"])
    offline_after = timedelta(seconds=ctx.device_offline_after_s)

    @router.get(
        "/api/devices",
        summary="The devices registry",
        description=(
            "Devices ordered by device_id, paginated with `cursor`. A device is `online` while "
            "it has not announced `offline` (its Last Will on iot/status/<device_id>) and it was "
            "heard from less than IOT_DEVICE_OFFLINE_AFTER_S ago."
        ),
        response_model=None,
        responses={
            200: {"model": DevicePage, "description": "A page of devices."},
            422: INVALID_PARAMS,
            503: UNAVAILABLE,
        },
    )
    async def list_devices(
        *,
        status: Annotated[
            Literal["online", "offline"] | None, Query(description="Only devices in this status.")
        ] = None,
        limit: Annotated[
            int,
            Query(ge=1, le=MAX_DEVICES, description="Page size."),
        ] = DEFAULT_DEVICES,
        cursor: Annotated[
            str | None, Query(max_length=100, description="`next_cursor` of the previous page.")
        ] = None,
    ) -> Response:
        after = None
        if cursor is not None:
            try:
                after = decode_device_cursor(cursor)
            except ParamError as exc:
                raise invalid_param("cursor", str(exc)) from None
        online_since = ctx.clock() - offline_after
        records = await ctx.queries.list_devices(
            after=after,
            limit=limit + 1,
            status=status,
            online_since=online_since,
        )
        next_cursor = None
        if len(records) > limit:
            records = records[:limit]
            next_cursor = encode_device_cursor(records[-1].device_id)
        return json_response(
            {
                "data": [device_view(r, online_since) for r in records],
                "next_cursor": next_cursor,
            }
        )

    @router.get(
        "/api/devices/{device_id}",
        summary="One device",
        response_model=None,
        responses={
            200: {"model": Device, "description": "The device."},
            404: error_response(
                "No reading of this device was ever stored.",
                unknown=error_example("not_found", "device 'sim-9999' is not known"),
            ),
            422: INVALID_PARAMS,
            503: UNAVAILABLE,
        },
    )
    async def get_device(
        device_id: Annotated[str, Path(pattern=DEVICE_ID_PATTERN, examples=["sim-0042"])],
    ) -> Response:
        record = await ctx.queries.get_device(device_id)
        if record is None:
            raise ApiError(404, "not_found", f"device {device_id!r} is not known")
        return json_response(device_view(record, ctx.clock() - offline_after))

    return router
