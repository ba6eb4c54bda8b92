"""``rejected list`` lines: device-supplied text cannot drive the terminal."""

from __future__ import annotations

from datetime import UTC, datetime

from iotcollector.rejected import list_line
from iotcollector.storage.base import StoredDeadLetter

AT = datetime(2026, 12, 3, 10, 0, 0, 123456, tzinfo=UTC)


def test_a_plain_dead_letter_is_one_tab_separated_line() -> None:
    letter = StoredDeadLetter(7, AT, "tele/boiler-7", b"{}", "missing_field: value", None)
    assert list_line(letter) == (
        "7\t2026-12-03T10:00:00.123456Z\ttele/boiler-7\tpending\tmissing_field: value"
    )


def test_control_characters_from_devices_are_printed_escaped() -> None:
    topic = "a/\x1b]0;owned\x07/\x1b[2J\tb\nc\\d\x9b31m\x7f"
    reason = "invalid_json: 'x\r\n\x1b[1A'"
    replayed = datetime(2026, 12, 3, 11, 0, tzinfo=UTC)
    line = list_line(StoredDeadLetter(8, AT, topic, b"", reason, replayed))
    assert line == (
        "8\t2026-12-03T10:00:00.123456Z\t"
        "a/\\x1b]0;owned\\x07/\\x1b[2J\\tb\\nc\\\\d\\x9b31m\\x7f\t"
        "replayed 2026-12-03T11:00:00Z\t"
        "invalid_json: 'x\\r\\n\\x1b[1A'"
    )
    assert set(line) <= {*map(chr, range(0x20, 0x7F)), "\t"}
    assert line.count("\t") == 4
