from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotcollector.api.params import (
    ParamError,
    bucket_count,
    check_range,
    decode_cursor,
    decode_device_cursor,
    encode_cursor,
    encode_device_cursor,
    format_bucket,
    parse_bucket,
    parse_time,
    wants_csv,
)
from iotcollector.storage.base import Position

T = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T00:00:00Z", T),
        ("2026-11-28T00:00:00.123456Z", T + timedelta(microseconds=123456)),
        ("2026-11-28T01:00:00+01:00", T),
        ("2026-11-28T01:00:00 01:00", T),  # "+" decoded as a space in a query string
        ("2026-11-27T23:00:00-01:00", T),
        ("2026-11-28T00:00:00", T),  # no offset: UTC
        ("2026-11-28", T),  # a date alone: midnight UTC
        ("2026-11-28 00:00:00Z", T),
        (" 2026-11-28T00:00:00Z ", T),
        ("1795824000", T),  # epoch seconds
        ("1795824000000", T),  # epoch milliseconds (above 1e11)
        ("1795824000.5", T + timedelta(milliseconds=500)),
        ("1795824000000.25", T + timedelta(microseconds=250)),
        ("0", datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_time_accepts(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "yesterday",
        "2026-13-01",
        "2026-11-28T25:00:00Z",
        "1e9",
        "0x10",
        "NaN",
        "99999999999999999",  # too many digits
        "9999999999999999",  # epoch ms beyond year 9999
        "0001-01-01T00:00:00+01:00",  # before year 1 once in UTC
        "9" * 65,
        "2026-11-28T00:00:00Z\n",
    ],
)
def test_parse_time_refuses(text: str) -> None:
    if text == "2026-11-28T00:00:00Z\n":  # strip() accepts surrounding whitespace
        assert parse_time(text) == T
        return
    with pytest.raises(ParamError):
        parse_time(text)


def test_check_range() -> None:
    check_range(None, None)
    check_range(T, None)
    check_range(T, T + timedelta(microseconds=1))
    with pytest.raises(ParamError, match=r"^must be later than 'from'$"):
        check_range(T, T)


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),  # noqa: DTZ001 - hypothesis wants naive bounds
        max_value=datetime(9999, 12, 30),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
def test_cursor_round_trips(moment: datetime, row_id: int) -> None:
    token = encode_cursor(Position(moment, row_id))
    assert token.isascii()
    assert "=" not in token
    assert "/" not in token
    assert "+" not in token
    assert decode_cursor(token) == Position(moment, row_id)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage!",
        "AAAA",
        "A" * 101,
        "é",
        encode_device_cursor("dev-1"),
        "AgAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_bad_cursors_are_refused(token: str) -> None:
    with pytest.raises(ParamError):
        decode_cursor(token)


def test_cursor_with_an_impossible_time_is_refused() -> None:
    import base64  # noqa: PLC0415
    import struct  # noqa: PLC0415

    raw = struct.pack(">Bqq", 1, 2**62, 1)
    with pytest.raises(ParamError):
        decode_cursor(base64.urlsafe_b64encode(raw).decode().rstrip("="))


@given(st.from_regex(r"[A-Za-z0-9._:-]{1,50}", fullmatch=True))
def test_device_cursor_round_trips(device_id: str) -> None:
    assert decode_device_cursor(encode_device_cursor(device_id)) == device_id


@pytest.mark.parametrize("token", ["", "!!", encode_cursor(Position(T, 1)), "ZDE6"])
def test_bad_device_cursors_are_refused(token: str) -> None:
    with pytest.raises(ParamError):
        decode_device_cursor(token)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1),
        ("60s", 60),
        ("5m", 300),
        ("1h", 3600),
        ("24h", 86400),
        ("1d", 86400),
        ("366d", 366 * 86400),
        ("999999s", 999999),
    ],
)
def test_parse_bucket(text: str, seconds: int) -> None:
    assert parse_bucket(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0s",
        "05m",
        "-1s",
        "+1s",
        "1",
        "s",
        "1.5h",
        "1 h",
        " 1h",
        "1H",
        "1w",
        "1mo",
        "1y",
        "367d",
        "1000000s",
        "1h30m",
        "\uff11s",  # a full-width digit
    ],
)
def test_parse_bucket_is_strict(text: str) -> None:
    with pytest.raises(ParamError):
        parse_bucket(text)


def test_bucket_count_counts_epoch_aligned_buckets() -> None:
    minute = timedelta(minutes=1)
    assert bucket_count(T, T + timedelta(days=1), minute) == 1440
    assert bucket_count(T + timedelta(seconds=30), T + timedelta(seconds=90), minute) == 2
    assert bucket_count(T, T + timedelta(seconds=1), timedelta(days=1)) == 1


@pytest.mark.parametrize(
    ("seconds", "text"), [(1, "1s"), (60, "1m"), (90, "90s"), (3600, "1h"), (86400, "1d")]
)
def test_format_bucket(seconds: int, text: str) -> None:
    assert format_bucket(timedelta(seconds=seconds)) == text


@pytest.mark.parametrize(
    ("accept", "fmt", "csv"),
    [
        (None, None, False),
        ("", None, False),
        ("application/json", None, False),
        ("*/*", None, False),
        ("text/csv", None, True),
        ("text/*", None, True),
        ("text/csv, application/json", None, False),  # a tie: JSON
        ("text/csv;q=0.5, application/json", None, False),
        ("text/csv, application/json;q=0.9", None, True),
        ("text/csv;q=0", None, False),
        ("text/csv;q=abc", None, False),
        ("text/html", None, False),
        ("text/csv", "json", False),
        ("application/json", "csv", True),
    ],
)
def test_wants_csv(accept: str | None, fmt: str | None, csv: bool) -> None:
    assert wants_csv(accept, fmt) is csv


def test_offsets_are_normalised_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert parse_time(T.astimezone(plus_two).isoformat()) == T
