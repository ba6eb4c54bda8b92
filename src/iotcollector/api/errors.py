"""Errors the routes raise, turned into the one JSON error shape by the app's handlers."""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError

from iotcollector.errors import IotCollectorError


def invalid_param(name: str, message: str, where: str = "query") -> RequestValidationError:
    """A 422 naming the parameter, in the same shape as FastAPI's own validation errors."""
    return RequestValidationError(
        [{"loc": (where, name), "msg": f"'{name}' {message}", "type": "value_error"}]
    )


class ApiError(IotCollectorError):
    """An HTTP error with its status, code, message and details."""

    def __init__(  # noqa: PLR0913 - what the error shape carries, options keyword-only
        self,
        status: int,
        code: str,
        message: str,
        details: object = None,
        *,
        headers: dict[str, str] | None = None,
        count: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers
        self.count = count
