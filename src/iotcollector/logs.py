"""Logging set-up: human text or one JSON object per line, secrets scrubbed from both."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson

from iotcollector.redact import Redactor

if TYPE_CHECKING:
    from collections.abc import Iterable

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """The classic line, passed whole (message, arguments, traceback) through the redactor."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__(_TEXT_FORMAT)
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self._redactor.redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line; message and traceback redacted before they are encoded."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": self._redactor.redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = self._redactor.redact(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


def configure_logging(level: str, fmt: str, secrets: Iterable[str] = ()) -> logging.Logger:
    """Configure the root handler once; return the package's logger.

    ``secrets`` are masked as ``***`` wherever they appear in a line, whoever logged it
    (our code, uvicorn, asyncio, a driver's exception text).
    """
    redactor = Redactor(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(redactor) if fmt == "json" else TextFormatter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return logging.getLogger("iotcollector")
