"""The API's documented shapes (OpenAPI). Responses are serialised with orjson directly."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from iotcollector.api.params import DEVICE_ID_PATTERN, SENSOR_TYPE_PATTERN

_TS = "2026-11-28T00:00:00.123Z"


class ReadingOut(BaseModel):
    """One stored reading."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 1042,
                    "device_id": "sim-0042",
                    "sensor_type": "temperature",
                    "value": 21.57,
                    "unit": "C",
                    "timestamp": _TS,
                }
            ]
        }
    )

    id: int = Field(description="Row id; ties between readings of one instant sort by it.")
    device_id: str
    sensor_type: str
    value: float
    unit: str
    timestamp: datetime = Field(description="Device time, UTC (RFC 3339, `Z`).")


class DataPage(BaseModel):
    """A page of readings, newest first."""

    data: list[ReadingOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same filters) for the next, older page; "
        "`null` on the last page.",
        examples=["AQAGRdxBY4fAAAAAAAAABBI"],
    )


class WriteAccepted(BaseModel):
    """Every reading of the request is committed."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"stored": 2, "duplicates": 1}]})

    stored: int = Field(description="Readings stored now.")
    duplicates: int = Field(
        description="Readings already stored (same device_id, sensor_type, timestamp): "
        "a retried request is safe."
    )


class Device(BaseModel):
    """A device of the registry."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "device_id": "sim-0042",
                    "first_seen": "2026-11-01T08:00:00.5Z",
                    "last_seen": _TS,
                    "status": "online",
                    "sensor_types": ["humidity", "temperature"],
                }
            ]
        }
    )

    device_id: str
    first_seen: datetime = Field(description="When the collector first stored its reading.")
    last_seen: datetime = Field(description="When the collector last stored its reading.")
    status: Literal["online", "offline"] = Field(
        description="`offline` when last_seen is older than IOT_DEVICE_OFFLINE_AFTER_S."
    )
    sensor_types: list[str] = Field(description="Sensor types of its stored readings, sorted.")


class DevicePage(BaseModel):
    """A page of devices, by device_id."""

    data: list[Device]
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same filters) for the next page; `null` on "
        "the last page."
    )


class BucketOut(BaseModel):
    """Aggregate of the readings in ``[bucket_start, bucket_start + bucket)``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "bucket_start": "2026-11-28T00:00:00Z",
                    "count": 60,
                    "min": 21.1,
                    "max": 22.4,
                    "avg": 21.73,
                }
            ]
        }
    )

    bucket_start: datetime
    count: int
    min: float
    max: float
    avg: float


class AggregateResult(BaseModel):
    """Buckets holding at least one reading, oldest first, aligned to the Unix epoch (UTC)."""

    model_config = ConfigDict(populate_by_name=True)

    device_id: str | None = Field(description="The device, or null for every device.")
    sensor_type: str
    bucket: str = Field(description="The bucket width, normalised (e.g. `5m`).", examples=["60s"])
    from_: datetime = Field(alias="from")
    to: datetime
    data: list[BucketOut]


class Health(BaseModel):
    status: Literal["ok"]


class MqttInfo(BaseModel):
    broker: str = Field(description="The broker the collector reads, credentials masked")
    topics: list[str] = Field(description="The topic filters it subscribes to")


class Info(BaseModel):
    """Where devices publish, for the dashboard's first steps."""

    version: str
    mqtt: MqttInfo


class ParamIssue(BaseModel):
    """A request parameter that is not valid."""

    loc: list[str | int] = Field(examples=[["query", "limit"]])
    message: str = Field(examples=["Input should be less than or equal to 10000"])


class ItemIssue(BaseModel):
    """A reading of a POST body that is not valid (``index`` null: the whole body)."""

    index: int | None = Field(description="Position in the JSON array; null for the body.")
    code: str = Field(examples=["invalid_value"])
    reason: str = Field(examples=["value must be a finite number or a decimal string (got 'x')"])


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable, machine-readable.", examples=["invalid_request"])
    message: str = Field(description="For humans.")
    details: list[ParamIssue | ItemIssue] | None = None
    count: int | None = Field(
        default=None,
        description="`invalid_readings` only: how many items are invalid; `details` lists the "
        "first 100.",
    )


class ErrorResponse(BaseModel):
    """The one shape of every 4xx and 5xx response."""

    error: ErrorInfo


def error_example(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(description: str, **examples: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI ``responses`` entry in the error shape, with named examples."""
    return {
        "model": ErrorResponse,
        "description": description,
        "content": {
            "application/json": {
                "examples": {name: {"value": value} for name, value in examples.items()}
            }
        },
    }


UNAUTHORIZED = error_response(
    "No or wrong bearer key (`WWW-Authenticate: Bearer`).",
    missing=error_example("unauthorized", "an Authorization: Bearer <key> header is required"),
    wrong=error_example("unauthorized", "the bearer key is not valid"),
)
INVALID_PARAMS = error_response(
    "A parameter is not valid.",
    bad_limit=error_example(
        "invalid_request",
        "the request is not valid",
        [{"loc": ["query", "limit"], "message": "Input should be less than or equal to 10000"}],
    ),
)
UNAVAILABLE = error_response(
    "The database is unreachable, or the writer busy: retry after `Retry-After` seconds.",
    database=error_example("database_unavailable", "the database is not available, retry later"),
)

# --- request body of POST /api/data (documentation; the parser is the domain's) -------------


class ReadingIn(BaseModel):
    """One reading. Unknown extra fields are ignored."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "device_id": "sim-0042",
                    "sensor_type": "temperature",
                    "value": 21.57,
                    "unit": "C",
                    "timestamp": _TS,
                }
            ]
        },
    )

    device_id: str = Field(pattern=DEVICE_ID_PATTERN, description="Alias: `deviceId`.")
    sensor_type: str = Field(pattern=SENSOR_TYPE_PATTERN)
    value: float | str = Field(description="A finite number, or a decimal string.")
    unit: str | None = Field(default=None, max_length=10)
    timestamp: str | float | None = Field(
        default=None,
        description="ISO 8601 (no offset = UTC) or epoch seconds/milliseconds as a number; "
        "absent: the time of receipt. Before 2000 or too far in the future is refused.",
    )


class MultiSensorIn(BaseModel):
    """Several sensors of one device at once (older devices): every other numeric field is a
    reading of that sensor type, with a default unit (temperature C, humidity %, ...)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "additionalProperties": {"anyOf": [{"type": "number"}, {"type": "string"}]},
            "examples": [
                {
                    "deviceId": "sensor-local",
                    "temperature": "27.41",
                    "humidity": "51.02",
                    "timestamp": _TS,
                }
            ],
        },
    )

    device_id: str | None = Field(default=None, pattern=DEVICE_ID_PATTERN)
    deviceId: str | None = Field(default=None, pattern=DEVICE_ID_PATTERN)  # noqa: N815 - wire name
    timestamp: str | float | None = None
