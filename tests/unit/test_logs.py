"""Both log formats scrub configured secrets from messages and tracebacks."""

from __future__ import annotations

import logging

import orjson
import pytest

from iotcollector.logs import configure_logging

SECRET = 'S3CRET%ZZ"PW'


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_are_masked_in_messages_and_tracebacks(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        log = configure_logging("INFO", fmt, [SECRET])
        log.warning("database not available (token: %s); retrying", SECRET)
        error = ValueError(f"bad url postgresql://u:{SECRET}@h/db")
        logging.getLogger("uvicorn.error").error("failed", exc_info=error)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    err = capsys.readouterr().err
    assert "S3CRET" not in err
    assert "***" in err
    if fmt == "json":
        lines = [orjson.loads(line) for line in err.splitlines() if line.startswith("{")]
        assert lines[0]["message"] == "database not available (token: ***); retrying"
        assert "ValueError" in lines[1]["exception"]
