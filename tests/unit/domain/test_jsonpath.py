"""Tests of iotcollector.domain.jsonpath: singular queries, refused forms, missing values."""

from __future__ import annotations

from typing import Any

import pytest

from iotcollector.domain.jsonpath import MISSING, JsonPath, JsonPathError

DOC: dict[str, Any] = {
    "Time": "2026-12-02T12:00:00",
    "AM2301": {"Temperature": 21.3, "Humidity": 45.1},
    "Temp Unit": "C",
    "list": [{"v": 1}, {"v": 2}],
    "it's": 5,
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", DOC),
        ("$.Time", "2026-12-02T12:00:00"),
        ("$.AM2301.Temperature", 21.3),
        ("$['AM2301']['Humidity']", 45.1),
        ('$["Temp Unit"]', "C"),
        ("$.list[0].v", 1),
        ("$.list[-1].v", 2),
        ("$['it\\'s']", 5),
    ],
)
def test_finds_the_value(path: str, expected: Any) -> None:
    assert JsonPath.compile(path).find(DOC) == expected


@pytest.mark.parametrize(
    "path",
    ["$.nope", "$.AM2301.Pressure", "$.list[2]", "$.list[-3]", "$.Time.x", "$.AM2301[0]"],
)
def test_missing_is_missing_not_an_error(path: str) -> None:
    assert JsonPath.compile(path).find(DOC) is MISSING


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("AM2301", "must start with '$'"),
        ("$.*", "expected a member name"),
        ("$..Temperature", "expected a member name"),
        ("$.list[*]", "must be an index"),
        ("$.list[0:2]", "must be an index"),
        ("$.list[?@.v]", "must be an index"),
        ("$.list[0", "never closed"),
        ("$['open", "unterminated"),
        ("$x", "unexpected 'x'"),
        ("$" + ".a" * 33, "more than 32 segments"),
    ],
)
def test_refuses_what_is_not_a_singular_query(path: str, says: str) -> None:
    with pytest.raises(JsonPathError) as raised:
        JsonPath.compile(path)
    assert says in str(raised.value)


def test_never_raises_on_any_document() -> None:
    path = JsonPath.compile("$.a[0].b")
    for doc in (None, 1, "a", [], [1], {"a": "text"}, {"a": [None]}, {"a": [{"b": None}]}):
        result = path.find(doc)
        assert result is MISSING or result is None
