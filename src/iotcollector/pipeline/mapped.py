"""Messages on topics of the mapping rules: the rule decides how the payload is read.

JSON and bare-value rules are pure parsing (``domain/mapping.py``); Sparkplug B rules go
through the host's alias memory (``sparkplug_host.py``). The pipeline and the dead-letter
replay read messages through the same object, so a replay parses exactly as live ingest does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from iotcollector.domain.mapping import PayloadKind, apply_rule
from iotcollector.domain.parse import parse_message
from iotcollector.pipeline.sparkplug_host import Outcome, SparkplugHost

if TYPE_CHECKING:
    from datetime import datetime

    from iotcollector.domain.mapping import Mappings, Match


class MappedTopics:
    """The mapping rules and the Sparkplug host memory, read with the pipeline's limits."""

    def __init__(
        self,
        mappings: Mappings,
        *,
        max_payload_bytes: int = 256 * 1024,
        max_future_skew_s: float = 300.0,
        max_readings: int = 10_000,
    ) -> None:
        self.mappings = mappings
        self.sparkplug = SparkplugHost(
            max_future_skew_s=max_future_skew_s, max_metrics=max_readings
        )
        self._max_payload = max_payload_bytes
        self._skew = max_future_skew_s
        self._max_readings = max_readings

    def match(self, topic: str) -> Match | None:
        return self.mappings.match(topic)

    def decode(self, match: Match, topic: str, payload: bytes, received_at: datetime) -> Outcome:
        """What the message yields under its rule; never raises for any payload."""
        if match.rule.payload is PayloadKind.SPARKPLUG_B:
            if len(payload) > self._max_payload:  # the too_large rejection of every format
                too_large = parse_message(
                    payload, received_at=received_at, max_payload_bytes=self._max_payload
                )
                return Outcome(rejections=too_large.rejections)
            return self.sparkplug.receive(topic, payload, received_at=received_at)
        result = apply_rule(
            match,
            payload,
            received_at=received_at,
            max_future_skew_s=self._skew,
            max_payload_bytes=self._max_payload,
            max_readings=self._max_readings,
        )
        return Outcome(readings=result.readings, rejections=result.rejections)
