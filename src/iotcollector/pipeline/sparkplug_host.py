"""The Sparkplug B host application's memory: metric aliases and devices per edge node.

NBIRTH starts an edge node's session afresh (its aliases and devices are forgotten, then
defined by the NBIRTH and the DBIRTHs that follow); NDATA/DDATA metrics that carry only an
alias are named from that memory. Births are handed back as status changes
(:class:`~iotcollector.domain.reading.SparkplugBirth`) and stored with their batch;
:func:`restore_births` reloads them after a restart (and for a replay), so alias-only data
is still decoded. NBIRTH/DBIRTH mark the node or device online, NDEATH (the node and all its
devices) and DDEATH offline. An NDEATH whose ``bdSeq`` differs from that of the node's last
NBIRTH is ignored: it is the will of an earlier session, published by the broker after the
node had already connected and was born again (Sparkplug B 3.0, the host's bdSeq check).

The memory is bounded: at most ``max_entries`` aliases' worth (about 175 bytes each; an edge
node counts four, a device two: their names are at most 256 characters, see
:data:`~iotcollector.domain.sparkplug.MAX_TOPIC_CHARS`). Births beyond it make the host
forget the edge nodes born longest ago; their alias-only data is then dead-lettered as
``unknown_alias`` (a rebirth is asked for with IOT_SPARKPLUG_REBIRTH) and can be replayed
once they are born again: nothing is lost, and no publisher can grow the memory without end
with births of made-up edge nodes. Restoring reads the kept births newest first, in pages,
and stops at the same bound: start-up memory does not depend on how many births are kept.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

from iotcollector.domain.reading import Reading, Rejection, SparkplugBirth, StatusChange
from iotcollector.domain.sparkplug import (
    MessageType,
    MetricDef,
    Topic,
    birth_death_seq,
    decode_payload,
    parse_topic,
    read_metrics,
    too_many_metrics,
)

if TYPE_CHECKING:
    from datetime import datetime

    from iotcollector.storage.base import StoredBirth

# Aliases' worth remembered: about 90 MB at most, room for 900 edge nodes of 500 metrics and
# ten devices each.
MAX_ENTRIES: Final = 500_000
_NODE_ENTRIES: Final = 4
_DEVICE_ENTRIES: Final = 2
# Kept births read at a time when restoring: each at most IOT_MAX_PAYLOAD_BYTES.
_RESTORE_PAGE: Final = 64


@dataclass(slots=True)
class Outcome:
    """What one message on a mapped topic yields (Sparkplug B or a JSON/value rule)."""

    readings: list[Reading] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    statuses: list[StatusChange] = field(default_factory=list)  # births among them
    rebirth_topic: str | None = None  # NCMD topic of an edge node whose aliases are unknown


@dataclass(slots=True)
class _EdgeNode:
    aliases: dict[int, MetricDef] = field(default_factory=dict)
    devices: set[str] = field(default_factory=set)
    bd_seq: int | None = None  # of its last NBIRTH

    @property
    def entries(self) -> int:
        """Its memory in aliases' worth (~175 bytes): a node with its name of up to 256
        characters costs about four, a device two."""
        return _NODE_ENTRIES + len(self.aliases) + _DEVICE_ENTRIES * len(self.devices)


class SparkplugHost:
    """Alias memory per edge node; owned by the pipeline (one per collector process)."""

    def __init__(
        self,
        *,
        max_future_skew_s: float = 300.0,
        max_metrics: int = 10_000,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._skew = max_future_skew_s
        self._max_metrics = max_metrics
        self._max_entries = max_entries
        self._nodes: OrderedDict[str, _EdgeNode] = OrderedDict()  # oldest birth first
        self._entries = 0

    @property
    def entries(self) -> int:
        """Edge nodes, devices and aliases remembered (bounded by ``max_entries``)."""
        return self._entries

    def receive(self, topic: str, payload: bytes, *, received_at: datetime) -> Outcome:
        """Decode one message on a Sparkplug topic; never raises for any input."""
        out = Outcome()
        parsed = parse_topic(topic)
        if parsed is None:
            return out
        if isinstance(parsed, Rejection):
            out.rejections.append(parsed)
            return out
        kind = parsed.kind
        if kind in {MessageType.NDEATH, MessageType.DDEATH}:
            self._death(parsed, payload, received_at, out)
            return out
        message = decode_payload(payload)
        if isinstance(message, Rejection):
            out.rejections.append(message)
            return out
        if len(message.metrics) > self._max_metrics:
            out.rejections.append(too_many_metrics(len(message.metrics), self._max_metrics))
            return out
        birth = kind in {MessageType.NBIRTH, MessageType.DBIRTH}
        # Data never adds a node: only births are remembered (and counted against the bound).
        node = (
            self._node(parsed, fresh=kind is MessageType.NBIRTH)
            if birth
            else self._nodes.get(parsed.node_key)
        )
        decoded = read_metrics(
            parsed,
            message,
            node.aliases if node is not None else {},
            received_at=received_at,
            max_future_skew_s=self._skew,
        )
        out.readings = decoded.readings
        if decoded.rejection is not None:
            out.rejections.append(decoded.rejection)
        if birth:
            assert node is not None
            if kind is MessageType.NBIRTH:
                node.bd_seq = birth_death_seq(message)
            self._learn(parsed, node, decoded.defined)
            out.statuses.append(
                SparkplugBirth(
                    parsed.device_id,
                    "online",
                    received_at,
                    parsed.node_key,
                    parsed.device or "",
                    topic,
                    payload,
                )
            )
        elif decoded.unknown_aliases:
            out.rebirth_topic = f"spBv1.0/{parsed.group}/NCMD/{parsed.node}"
        return out

    def remember(self, topic: str, payload: bytes, *, received_at: datetime) -> bool:
        """Reload a kept birth's aliases (no readings, no status), as born before every node
        remembered: kept births are fed newest first, each node's NBIRTH after its DBIRTHs
        (what a newer birth defined stays). False once the memory is full: the edge nodes
        remembered last (born longest ago) are then forgotten down to the bound. An
        unusable birth is skipped."""
        parsed = parse_topic(topic)
        if not isinstance(parsed, Topic) or parsed.kind not in {
            MessageType.NBIRTH,
            MessageType.DBIRTH,
        }:
            return True
        message = decode_payload(payload)
        if isinstance(message, Rejection):
            return True
        key = parsed.node_key
        node = self._nodes.get(key)
        if node is None:
            node = self._nodes[key] = _EdgeNode()
            self._nodes.move_to_end(key, last=False)
            self._entries += node.entries
        decoded = read_metrics(
            parsed, message, node.aliases, received_at=received_at, max_future_skew_s=self._skew
        )
        before = node.entries
        if parsed.kind is MessageType.NBIRTH and node.bd_seq is None:
            node.bd_seq = birth_death_seq(message)  # the newest NBIRTH's
        for alias, metric in decoded.defined.items():
            node.aliases.setdefault(alias, metric)
        if parsed.device is not None:
            node.devices.add(parsed.device)
        self._entries += node.entries - before
        if self._entries <= self._max_entries:
            return True
        self._forget_oldest()
        return False

    def _node(self, topic: Topic, *, fresh: bool) -> _EdgeNode:
        key = topic.node_key
        node = self._nodes.get(key)
        if node is None or fresh:
            if node is not None:
                self._entries -= self._nodes.pop(key).entries
            node = self._nodes[key] = _EdgeNode()
            self._entries += node.entries
        return node

    def _learn(self, topic: Topic, node: _EdgeNode, defined: dict[int, MetricDef]) -> None:
        """Remember a birth's aliases (and device); forget the oldest other nodes beyond the
        bound. The node is now the most recently born."""
        before = node.entries
        node.aliases.update(defined)
        if topic.device is not None:
            node.devices.add(topic.device)
        self._entries += node.entries - before
        self._nodes.move_to_end(topic.node_key)
        self._forget_oldest()

    def _forget_oldest(self) -> None:
        while self._entries > self._max_entries and len(self._nodes) > 1:
            self._entries -= self._nodes.popitem(last=False)[1].entries

    def _death(self, topic: Topic, payload: bytes, at: datetime, out: Outcome) -> None:
        node = self._nodes.get(topic.node_key)
        if topic.device is None and node is not None and _earlier_will(node, payload):
            return
        out.statuses.append(StatusChange(topic.device_id, "offline", at))
        if topic.device is not None:
            if node is not None and topic.device in node.devices:
                node.devices.discard(topic.device)
                self._entries -= _DEVICE_ENTRIES
            return
        if node is not None:
            for device in sorted(node.devices):
                device_topic = Topic(topic.group, MessageType.DDEATH, topic.node, device)
                out.statuses.append(StatusChange(device_topic.device_id, "offline", at))


def _earlier_will(node: _EdgeNode, ndeath: bytes) -> bool:
    """The NDEATH carries a ``bdSeq`` other than that of the node's last NBIRTH."""
    if node.bd_seq is None:
        return False
    message = decode_payload(ndeath)
    seq = None if isinstance(message, Rejection) else birth_death_seq(message)
    return seq is not None and seq != node.bd_seq


class KeptBirths(Protocol):
    """Where the births are kept (both storage backends)."""

    async def load_births(self, *, before: StoredBirth | None, limit: int) -> list[StoredBirth]:
        """Up to ``limit`` births, newest received first, strictly after ``before``."""


async def restore_births(host: SparkplugHost, store: KeptBirths) -> int:
    """Feed ``host`` the kept births, newest first, until its memory is full: at most one
    page beyond the bound is read whatever the table holds. Returns the births read."""
    read = 0
    before: StoredBirth | None = None
    while True:
        page = await store.load_births(before=before, limit=_RESTORE_PAGE)
        for birth in page:
            read += 1
            if not host.remember(birth.topic, birth.payload, received_at=birth.received_at):
                return read
        if len(page) < _RESTORE_PAGE:
            return read
        before = page[-1]
