"""Simulated devices running beside the collector in one process: ``iot-collector up --simulate N``.

The devices start once the collector is ready (subscribed, database open), so that their first
readings are stored, and publish until the collector stops: its ``run`` owns SIGINT/SIGTERM and
returns on them, then the devices finish cleanly (the last acknowledgements, ``offline``,
DISCONNECT) within a couple of seconds while the broker is still up.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from iotcollector.backoff import Backoff
from iotcollector.errors import MqttError
from iotcollector.simulator.cli import endpoint_from_settings
from iotcollector.simulator.payloads import Format
from iotcollector.simulator.runner import Simulation, SimulatorOptions, Summary

if TYPE_CHECKING:
    import logging
    from collections.abc import Awaitable, Callable

    from iotcollector.config import Settings
    from iotcollector.simulator.connection import Endpoint

DRAIN_S = 2.0  # the devices' last acknowledgements, after the collector has stopped
_READY_POLL_S = 0.2
_RETRY_MAX_S = 30.0


def data_topic(topic_filter: str) -> str:
    """A topic the collector's filter matches: ``+`` becomes the device id, ``#`` ``data``."""
    topic = topic_filter.replace("+", "{device_id}")
    return topic[:-1] + "data" if topic.endswith("#") else topic


def options_for(devices: int, topic_filter: str = "iot/data") -> SimulatorOptions:
    """What ``up --simulate N`` runs: one reading per device per second, ``single`` messages,
    QoS 1, online/offline statuses, on one connection, until stopped."""
    return SimulatorOptions(
        devices=devices,
        rate=1.0,
        fmt=Format.SINGLE,
        qos=1,
        topic=data_topic(topic_filter),
        connections=1,
        drain_s=DRAIN_S,
    )


class SimulatedDevices:
    """A :class:`Simulation` that waits for ``ready()``, retries failed connects, stops on call."""

    def __init__(
        self, options: SimulatorOptions, endpoint: Endpoint, logger: logging.Logger
    ) -> None:
        options.validate()
        self.options = options
        self.endpoint = endpoint
        self.log = logger
        self.summary: Summary | None = None
        self._stopping = asyncio.Event()
        self._simulation: Simulation | None = None

    async def run(self, ready: Callable[[], bool]) -> None:
        """Publish until :meth:`stop`; reconnects are the connections' own business."""
        backoff = Backoff(1.0, _RETRY_MAX_S)
        while not self._stopping.is_set():
            if not ready():
                await self._pause(_READY_POLL_S)
                continue
            simulation = Simulation(self.options, self.endpoint)
            self._simulation = simulation
            self.log.info(
                "%d simulated devices publish to %s:%d",
                self.options.devices,
                self.endpoint.host,
                self.endpoint.port,
            )
            try:
                # No await between the check above and run(): stop() always reaches it.
                summary = await simulation.run()
            except MqttError as exc:
                delay = backoff.next_delay()
                self.log.warning(
                    "the simulated devices cannot connect (%s); retrying in %.1f s", exc, delay
                )
                await self._pause(delay)
                continue
            finally:
                self._simulation = None
            self.summary = summary
            if self._stopping.is_set():
                self.log.info(
                    "simulated devices stopped: %d readings published, %d acknowledged",
                    summary.readings,
                    summary.acknowledged,
                )
                return
            delay = backoff.next_delay()
            self.log.warning(
                "the simulated devices stopped (%s: %s); restarting in %.1f s",
                summary.stopped_by,
                summary.last_error or "no detail",
                delay,
            )
            await self._pause(delay)

    def stop(self) -> None:
        self._stopping.set()
        if self._simulation is not None:
            self._simulation.stop("service stopped")

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()


async def run_alongside(
    run_service: Callable[[], Awaitable[int]],
    *,
    devices: int,
    settings: Settings,
    ready: Callable[[], bool],
    logger: logging.Logger,
) -> int:
    """Run the service and ``devices`` simulated devices on its broker (``settings``); when the
    service returns, stop the devices; return the service's exit code (2: bad TLS files)."""
    try:
        endpoint = endpoint_from_settings(settings)
    except (ValueError, OSError) as exc:
        logger.error("cannot simulate devices: %s", exc)  # noqa: TRY400 - the diagnosis
        return 2
    options = options_for(devices, settings.mqtt_topics[0])
    simulated = SimulatedDevices(options, endpoint, logger.getChild("simulator"))
    task = asyncio.create_task(simulated.run(ready), name="simulated-devices")
    try:
        return await run_service()
    finally:
        simulated.stop()
        # Bounded: the drain, one connect attempt for a connection that is down, DISCONNECT.
        done, _ = await asyncio.wait({task}, timeout=2 * simulated.options.drain_s + 5)
        if not done:
            simulated.log.warning("the simulated devices did not stop in time: abandoned")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elif not task.cancelled() and task.exception() is not None:
            simulated.log.error("the simulated devices failed", exc_info=task.exception())
