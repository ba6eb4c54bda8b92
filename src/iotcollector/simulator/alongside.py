"""Simulated devices running beside the collector in one process: ``iot-collector up --simulate N``.

The devices start once the collector is ready (subscribed, database open), so that their first
readings are stored, and publish until ``up`` stops them: first of all, so that they finish
cleanly (the last acknowledgements, ``offline``, DISCONNECT) while the collector still reads
and the broker is still up.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from iotcollector.backoff import Backoff
from iotcollector.errors import MqttError
from iotcollector.simulator.payloads import Format
from iotcollector.simulator.runner import Simulation, SimulatorOptions, Summary

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable

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
        self.summary: Summary | None = None  # of the last run (they restart after a failure)
        self.readings = 0  # over every run
        self.acknowledged = 0
        self._stopping = asyncio.Event()
        self._simulation: Simulation | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, ready: Callable[[], bool]) -> None:
        """Run :meth:`run` in the background until :meth:`close`."""
        self._task = asyncio.create_task(self.run(ready), name="simulated-devices")

    async def close(self) -> Summary | None:
        """Stop publishing and wait (bounded: the drain, one connect attempt of a connection
        that is down, DISCONNECT) for the last acknowledgements; the run's summary."""
        self.stop()
        task, self._task = self._task, None
        if task is None:
            return self.summary
        done, _ = await asyncio.wait({task}, timeout=2 * self.options.drain_s + 5)
        if not done:
            self.log.warning("the simulated devices did not stop in time: abandoned")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elif not task.cancelled() and task.exception() is not None:
            self.log.error("the simulated devices failed", exc_info=task.exception())
        return self.summary

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
            self.readings += summary.readings
            self.acknowledged += summary.acknowledged
            if self._stopping.is_set():
                self.log.info(
                    "simulated devices stopped: %s readings published, %s acknowledged",
                    f"{self.readings:,}",
                    f"{self.acknowledged:,}",
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
