"""Singular JSONPath queries (RFC 9535 §2.3.5), compiled once into a key walk.

A mapping rule names one value of a document: ``$.AM2301.Temperature``, ``$.sensors[0].v``,
``$['Temp Unit']``. That is RFC 9535's *singular query*: ``$`` followed by name segments
(``.name`` or ``['name']`` / ``["name"]``) and index segments (``[2]``, ``[-1]``). Filters,
wildcards, slices and descendants select several nodes and are refused at start-up: a rule
maps one path to one value.

Why not a library: the three JSONPath libraries measured cost an order of magnitude more per
evaluation than a compiled key walk, a large part of a reading's whole budget (the figures
are in bench/README.md, "JSONPath"). Pure, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["MISSING", "JsonPath", "JsonPathError"]

_NAME_RE: Final = re.compile(r"[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*")
_INDEX_RE: Final = re.compile(r"-?(?:0|[1-9][0-9]{0,15})")
_MAX_SEGMENTS: Final = 32
MISSING: Final = object()


class JsonPathError(ValueError):
    """The text is not a singular JSONPath query; the message says where and why."""


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A compiled singular query: ``segments`` are object keys (str) and array indexes (int)."""

    text: str
    segments: tuple[str | int, ...]

    @classmethod
    def compile(cls, text: str) -> JsonPath:
        """Parse ``text``; raise :class:`JsonPathError` naming the first problem."""
        if not text.startswith("$"):
            raise JsonPathError(f"{text!r} must start with '$' (e.g. $.temperature)")
        segments: list[str | int] = []
        pos = 1
        while pos < len(text):
            if len(segments) == _MAX_SEGMENTS:
                raise JsonPathError(f"{text!r} has more than {_MAX_SEGMENTS} segments")
            if text[pos] == ".":
                match = _NAME_RE.match(text, pos + 1)
                if match is None:
                    raise JsonPathError(
                        f"{text!r}: expected a member name after '.' at position {pos} "
                        "(wildcards and '..' select several values: a rule maps one value)"
                    )
                segments.append(match.group())
                pos = match.end()
            elif text[pos] == "[":
                segment, pos = _bracket(text, pos)
                segments.append(segment)
            else:
                raise JsonPathError(f"{text!r}: unexpected {text[pos]!r} at position {pos}")
        return cls(text, tuple(segments))

    def find(self, document: Any) -> Any:
        """The value at this path, or :data:`MISSING` if the document has none there.

        A key on something that is not an object, or an index on something that is not an
        array, is missing too (RFC 9535: such a query selects nothing).
        """
        node = document
        for segment in self.segments:
            if isinstance(segment, str):
                if type(node) is not dict:
                    return MISSING
                node = node.get(segment, MISSING)
                if node is MISSING:
                    return MISSING
            else:
                if type(node) is not list or not -len(node) <= segment < len(node):
                    return MISSING
                node = node[segment]
        return node


def _bracket(text: str, pos: int) -> tuple[str | int, int]:
    """One ``[...]`` segment starting at ``pos``: its key or index and the position after it."""
    end = pos + 1
    if end < len(text) and text[end] in "'\"":
        quote = text[end]
        chars: list[str] = []
        end += 1
        while end < len(text) and text[end] != quote:
            if text[end] == "\\" and end + 1 < len(text):
                end += 1
            chars.append(text[end])
            end += 1
        if end + 1 >= len(text) or text[end + 1] != "]":
            raise JsonPathError(f"{text!r}: unterminated ['name'] at position {pos}")
        return "".join(chars), end + 2
    close = text.find("]", end)
    if close < 0:
        raise JsonPathError(f"{text!r}: '[' at position {pos} is never closed")
    inner = text[end:close].strip()
    if _INDEX_RE.fullmatch(inner) is None:
        raise JsonPathError(
            f"{text!r}: [{inner}] at position {pos} must be an index like [0] or [-1], or a "
            "quoted name like ['key'] (filters, slices and '*' select several values)"
        )
    return int(inner), close + 1
