"""The reading, the rejection of bad input, and the result of parsing one message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime  # noqa: TC003 - a Struct's field types are read at run time

import msgspec

# Records made for every message are msgspec Structs (Reading, ParseResult), the others
# slotted dataclasses; none is frozen (a frozen dataclass's __init__ costs several times as
# much: object.__setattr__ per field). They are treated as immutable all the same.


class Reading(msgspec.Struct, gc=False):
    """One validated sensor reading. ``timestamp`` is timezone-aware UTC.

    A ``msgspec.Struct``, not a dataclass: made for every reading, in C (a third of the
    dataclass's time), and not tracked by the cyclic GC (its fields cannot form a cycle).
    """

    device_id: str
    sensor_type: str
    value: float
    unit: str
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message, or one item of a JSON array (``index``), was not accepted.

    ``code`` is a short, bounded identifier (a metric label); ``detail`` is the clear,
    human-readable reason. ``index`` is the item's position when it is one item of an array;
    ``None`` means the whole message was rejected.
    """

    code: str
    detail: str
    index: int | None = None

    @property
    def reason(self) -> str:
        """The text stored with a dead letter and returned to HTTP clients."""
        where = f"item {self.index}: " if self.index is not None else ""
        return f"{self.code}: {where}{self.detail}"


class ParseResult(msgspec.Struct):
    """What one message yielded: its valid readings and the rejections of its bad parts."""

    readings: list[Reading] = msgspec.field(default_factory=list)
    rejections: list[Rejection] = msgspec.field(default_factory=list)


@dataclass(slots=True)
class DeadLetter:
    """A rejected message kept raw (or its first bytes) with its reason in ``iot_rejected``."""

    received_at: datetime
    topic: str
    payload: bytes
    reason: str


@dataclass(slots=True)
class StatusChange:
    """A device said it is ``online`` or its Last Will said ``offline`` (``iot/status/<id>``)."""

    device_id: str
    status: str
    at: datetime


@dataclass(slots=True)
class SparkplugBirth(StatusChange):
    """A Sparkplug B birth certificate: its node or device is online, and the host keeps it.

    Stored with the batch (``sparkplug_births``, one row per edge node and device; an NBIRTH,
    ``device == ""``, replaces its node's rows) so a restarted collector knows the aliases.
    """

    node_key: str
    device: str
    topic: str
    payload: bytes
