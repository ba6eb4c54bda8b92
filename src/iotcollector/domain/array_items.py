"""Count a JSON array's items in small pieces, to refuse a huge one without decoding it whole.

Decoding ``[{},{},…]`` of 1 MiB (340,000 items) takes orjson 20-60 ms, all of it holding the
GIL: a worker thread does not spare the event loop that stall. :func:`more_items_than` decodes
the array 64 KiB at a time, cut after a ``},``, and stops as soon as the count passes the limit
(the first piece already does for such a body). A cut that falls inside a string or a nested
value leaves that piece unterminated or unbalanced, so it fails to decode: the answer is then
"not known" (``False``), and the caller's full parse decides. When every piece decodes, every
cut was between top-level items and the count is exact.
"""

from __future__ import annotations

from typing import Final

import orjson

__all__ = ["more_items_than"]

PIECE_BYTES: Final = 64 * 1024


def more_items_than(payload: bytes, limit: int, piece_bytes: int = PIECE_BYTES) -> bool:
    """Whether ``payload`` is a JSON array of more than ``limit`` items (``False``: it is not,
    or it is not known)."""
    if payload.count(b",") < limit:  # n items need n - 1 commas
        return False
    start, end = payload.find(b"["), payload.rfind(b"]")
    if start < 0 or end < start or payload[:start].strip() or payload[end + 1 :].strip():
        return False
    count = 0
    position = start + 1
    while position < end:
        cut = payload.find(b"},", position + piece_bytes, end)
        piece_end = end if cut < 0 else cut + 1
        try:
            count += len(orjson.loads(b"[" + payload[position:piece_end] + b"]"))
        except orjson.JSONDecodeError:
            return False
        if count > limit:
            return True
        position = piece_end + 1  # past the comma
    return False
