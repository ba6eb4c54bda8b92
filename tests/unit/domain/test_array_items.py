"""more_items_than: exact when it says True, never wrong about a body it cannot cut cleanly."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotcollector.domain.array_items import PIECE_BYTES, more_items_than

LIMIT = 10_000


def _array(items: list[bytes]) -> bytes:
    return b"[" + b",".join(items) + b"]"


@pytest.mark.parametrize(
    ("count", "expected"), [(LIMIT - 1, False), (LIMIT, False), (LIMIT + 1, True), (340_000, True)]
)
def test_dense_arrays_of_empty_objects(count: int, expected: bool) -> None:
    assert more_items_than(_array([b"{}"] * count), LIMIT) is expected


def test_readings_with_whitespace_across_many_pieces() -> None:
    item = b'{"device_id": "d", "sensor_type": "t", "value": 1.5}'
    body = b"  [\n" + b",\n ".join([item] * (LIMIT + 1)) + b"\n]  "
    assert len(body) > 5 * PIECE_BYTES
    assert more_items_than(body, LIMIT)
    assert not more_items_than(b"[" + b",".join([item] * LIMIT) + b"]", LIMIT)


@pytest.mark.parametrize(
    "body",
    [
        b'{"device_id": "d", "temperature": 1}',  # not an array
        b"[" + b",".join([b'{"s": "},{"}'] * (LIMIT + 1)) + b"]",  # '},' inside strings
        b'[{"x": [' + b",".join([b"{}"] * (LIMIT + 1)) + b"]}]",  # one item, nested
        b"[" + b",".join([b"{}"] * (LIMIT + 1)) + b"] trailing",
        b"not json " + b"," * LIMIT,
    ],
)
def test_anything_else_is_not_known(body: bytes) -> None:
    assert not more_items_than(body, LIMIT)


_ITEMS = st.lists(
    st.one_of(
        st.dictionaries(st.text(max_size=5), st.text(alphabet='{},[]"\\ab', max_size=8)),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.lists(st.dictionaries(st.text(max_size=3), st.booleans()), max_size=3),
    ),
    max_size=60,
)


@given(_ITEMS, st.integers(min_value=0, max_value=30), st.integers(min_value=1, max_value=16))
def test_true_only_when_there_are_more_items(items: list[object], limit: int, piece: int) -> None:
    """Cut everywhere (tiny pieces), through strings and nested values: never a false True."""
    body = orjson.dumps(items)
    if more_items_than(body, limit, piece_bytes=piece):
        assert len(items) > limit


@given(
    st.lists(st.dictionaries(st.sampled_from("abc"), st.integers(0, 9)), max_size=80),
    st.integers(min_value=0, max_value=40),
    st.integers(min_value=1, max_value=16),
)
def test_exact_for_plain_objects(items: list[dict[str, int]], limit: int, piece: int) -> None:
    body = orjson.dumps(items)
    assert more_items_than(body, limit, piece_bytes=piece) is (len(items) > limit)
