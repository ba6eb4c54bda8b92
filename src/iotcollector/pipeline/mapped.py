"""Messages on topics of the mapping rules: the rule decides how the payload is read.

JSON and bare-value rules are pure parsing (``domain/mapping.py``); Sparkplug B rules go
through the host's alias memory (``sparkplug_host.py``). The pipeline and the dead-letter
replay read messages through the same object, so a replay parses exactly as live ingest does.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from iotcollector.domain.mapping import PayloadKind, apply_rule
from iotcollector.domain.parse import parse_message
from iotcollector.domain.sparkplug import rebirth_request
from iotcollector.pipeline.sparkplug_host import Outcome, SparkplugHost

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from iotcollector.domain.mapping import Mappings, Match

_MAX_REBIRTH_NODES: Final = 10_000


class MappedTopics:
    """The mapping rules and the Sparkplug host memory, read with the pipeline's limits."""

    def __init__(  # noqa: PLR0913 - the rules, the limits and one optional callback
        self,
        mappings: Mappings,
        *,
        max_payload_bytes: int = 256 * 1024,
        max_future_skew_s: float = 300.0,
        max_readings: int = 10_000,
        request_rebirth: Callable[[str, bytes], object] | None = None,
        rebirth_interval_s: float = 30.0,
    ) -> None:
        self.mappings = mappings
        self.sparkplug = SparkplugHost(
            max_future_skew_s=max_future_skew_s, max_metrics=max_readings
        )
        self._max_payload = max_payload_bytes
        self._skew = max_future_skew_s
        self._max_readings = max_readings
        self._request_rebirth = request_rebirth
        self._rebirth_interval_s = rebirth_interval_s
        self._rebirths: dict[str, float] = {}

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
            outcome = self.sparkplug.receive(topic, payload, received_at=received_at)
            if outcome.rebirth_topic is not None and self._request_rebirth is not None:
                self._rebirth(outcome.rebirth_topic, received_at)
            return outcome
        result = apply_rule(
            match,
            payload,
            received_at=received_at,
            max_future_skew_s=self._skew,
            max_payload_bytes=self._max_payload,
            max_readings=self._max_readings,
        )
        return Outcome(readings=result.readings, rejections=result.rejections)

    def _rebirth(self, ncmd_topic: str, now: datetime) -> None:
        """IOT_SPARKPLUG_REBIRTH: ask the node again at most every ``rebirth_interval_s``."""
        clock = time.monotonic()
        last = self._rebirths.get(ncmd_topic)
        if last is not None and clock - last < self._rebirth_interval_s:
            return
        if len(self._rebirths) >= _MAX_REBIRTH_NODES:
            self._rebirths.clear()  # bounded memory; at worst one extra request per node
        self._rebirths[ncmd_topic] = clock
        assert self._request_rebirth is not None
        self._request_rebirth(ncmd_topic, rebirth_request(int(now.timestamp() * 1000)))
