"""The Sparkplug B host application's memory: metric aliases and devices per edge node.

NBIRTH starts an edge node's session afresh (its aliases and devices are forgotten, then
defined by the NBIRTH and the DBIRTHs that follow); NDATA/DDATA metrics that carry only an
alias are named from that memory. Births are handed back as status changes
(:class:`~iotcollector.domain.reading.SparkplugBirth`) and stored with their batch;
:meth:`SparkplugHost.remember` reloads them after a restart, so alias-only data is still
decoded. NBIRTH/DBIRTH mark the node or device online, NDEATH (the node and all its devices)
and DDEATH offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from iotcollector.domain.reading import Reading, Rejection, SparkplugBirth, StatusChange
from iotcollector.domain.sparkplug import (
    MessageType,
    MetricDef,
    Topic,
    decode_payload,
    parse_topic,
    read_metrics,
    too_many_metrics,
)

if TYPE_CHECKING:
    from datetime import datetime


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


class SparkplugHost:
    """Alias memory per edge node; owned by the pipeline (one per collector process)."""

    def __init__(self, *, max_future_skew_s: float = 300.0, max_metrics: int = 10_000) -> None:
        self._skew = max_future_skew_s
        self._max_metrics = max_metrics
        self._nodes: dict[str, _EdgeNode] = {}

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
            self._death(parsed, received_at, out)
            return out
        message = decode_payload(payload)
        if isinstance(message, Rejection):
            out.rejections.append(message)
            return out
        if len(message.metrics) > self._max_metrics:
            out.rejections.append(too_many_metrics(len(message.metrics), self._max_metrics))
            return out
        node = self._node(parsed, fresh=kind is MessageType.NBIRTH)
        decoded = read_metrics(
            parsed, message, node.aliases, received_at=received_at, max_future_skew_s=self._skew
        )
        out.readings = decoded.readings
        if decoded.rejection is not None:
            out.rejections.append(decoded.rejection)
        if kind in {MessageType.NBIRTH, MessageType.DBIRTH}:
            node.aliases.update(decoded.defined)
            if parsed.device is not None:
                node.devices.add(parsed.device)
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
        """Reload a persisted birth's aliases (no readings, no status); False if unusable."""
        parsed = parse_topic(topic)
        if not isinstance(parsed, Topic) or parsed.kind not in {
            MessageType.NBIRTH,
            MessageType.DBIRTH,
        }:
            return False
        message = decode_payload(payload)
        if isinstance(message, Rejection):
            return False
        node = self._node(parsed, fresh=parsed.kind is MessageType.NBIRTH)
        decoded = read_metrics(
            parsed, message, node.aliases, received_at=received_at, max_future_skew_s=self._skew
        )
        node.aliases.update(decoded.defined)
        if parsed.device is not None:
            node.devices.add(parsed.device)
        return True

    def _node(self, topic: Topic, *, fresh: bool) -> _EdgeNode:
        node = self._nodes.get(topic.node_key)
        if node is None or fresh:
            node = self._nodes[topic.node_key] = _EdgeNode()
        return node

    def _death(self, topic: Topic, at: datetime, out: Outcome) -> None:
        out.statuses.append(StatusChange(topic.device_id, "offline", at))
        node = self._nodes.get(topic.node_key)
        if topic.device is not None:
            if node is not None:
                node.devices.discard(topic.device)
            return
        if node is not None:
            for device in sorted(node.devices):
                device_topic = Topic(topic.group, MessageType.DDEATH, topic.node, device)
                out.statuses.append(StatusChange(device_topic.device_id, "offline", at))
