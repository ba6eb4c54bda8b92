"""The embedded MQTT broker that ``iot-collector up`` runs when no broker is configured.

amqtt (MQTT 3.1.1, in-process, a few thousand messages/s) is enough for a laptop and needs
nothing installed; production uses Mosquitto or AWS IoT Core.
"""

from __future__ import annotations

import logging
from typing import Any

from amqtt.broker import Broker
from amqtt.errors import BrokerError

from iotcollector.errors import IotCollectorError


class EmbeddedBrokerError(IotCollectorError):
    """The embedded broker could not start (most often: its port is taken)."""


class EmbeddedBroker:
    """An amqtt broker listening on ``host:port``, anonymous, for local use only."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._broker: Broker | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        config: dict[str, Any] = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        broker = Broker(config)
        try:
            await broker.start()
        except BrokerError as exc:
            raise EmbeddedBrokerError(str(exc)) from exc
        self._broker = broker

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
