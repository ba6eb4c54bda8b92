"""The ``iot-collector`` command: the only place, with service.py, that builds real objects."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from iotcollector import __version__
from iotcollector.config import ApiAuth, Settings, load_settings, unknown_variables
from iotcollector.errors import ConfigError, StorageError
from iotcollector.logs import configure_logging
from iotcollector.redact import redact_url, settings_secrets
from iotcollector.rejected import add_arguments as add_rejected_arguments
from iotcollector.simulator.cli import add_arguments as add_simulate_arguments
from iotcollector.simulator.cli import simulated_devices

if TYPE_CHECKING:
    import logging
    import socket
    from collections.abc import Coroutine

    from iotcollector.broker import EmbeddedBroker
    from iotcollector.domain.mapping import Mappings
    from iotcollector.service import Service

# Where `up` keeps what must survive it: the SQLite database (the default IOT_DATABASE_URL),
# the broker's port and Mosquitto's configuration, database and log.
DATA_DIR: Final = Path("data")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iot-collector",
        description="Collect IoT sensor readings over MQTT into PostgreSQL or SQLite.",
        epilog="Configuration comes from IOT_* environment variables (see the README).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    up = commands.add_parser(
        "up",
        help="try it on this machine: a broker (unless IOT_MQTT_URL is set), SQLite, API, "
        "dashboard",
    )
    up.add_argument(
        "--simulate",
        type=simulated_devices,
        default=0,
        metavar="N",
        help="also run N simulated devices, each publishing a reading per second (0: none)",
    )
    commands.add_parser("serve", help="production: MQTT ingest and the HTTP API")
    commands.add_parser("migrate", help="apply pending database migrations and exit")
    add_simulate_arguments(
        commands.add_parser("simulate", help="simulate devices publishing readings over MQTT")
    )
    add_rejected_arguments(
        commands.add_parser("rejected", help="list dead letters, or replay them with today's rules")
    )
    backup = commands.add_parser(
        "backup",
        help="write a consistent backup of the database to a file (pg_dump / SQLite backup API)",
    )
    backup.add_argument("--output", type=Path, required=True, metavar="FILE", help="backup file")
    backup.add_argument(
        "--force", action="store_true", help="replace FILE if it exists (refused otherwise)"
    )
    restore = commands.add_parser(
        "restore", help="restore a backup made by `backup` (stop the collectors first)"
    )
    restore.add_argument("--input", type=Path, required=True, metavar="FILE", help="backup file")
    restore.add_argument(
        "--force",
        action="store_true",
        help="replace the data of a database that is not empty (refused otherwise)",
    )
    return parser


def _configure_logging(settings: Settings) -> logging.Logger:
    """Logging as configured, with every configured secret masked in every line."""
    return configure_logging(settings.log_level, settings.log_format, settings_secrets(settings))


def _backup_or_restore(settings: Settings, args: argparse.Namespace) -> int:
    """0 done; 1 refused or failed, with the reason logged."""
    from iotcollector.storage import backup  # noqa: PLC0415 - only these commands

    log = _configure_logging(settings)
    url = settings.database_url.get_secret_value()
    try:
        if args.command == "backup":
            backup.backup(url, args.output, logger=log, force=args.force)
        else:
            backup.restore(url, args.input, force=args.force, logger=log)
    except (backup.BackupError, ConfigError) as exc:
        log.error("%s failed: %s", args.command, exc)  # noqa: TRY400 - the message is the diagnosis
        return 1
    return 0


async def _migrate(settings: Settings) -> int:
    from iotcollector.storage.factory import open_storage  # noqa: PLC0415 - only this command

    log = _configure_logging(settings)
    storage = open_storage(
        settings.database_url.get_secret_value(), partition_interval=settings.partition_interval
    )
    try:
        await storage.open()
        applied = await storage.migrate()
    except StorageError as exc:
        log.error("migration failed: %s", exc)  # noqa: TRY400 - the message is the diagnosis
        return 1
    finally:
        await storage.close()
    log.info("applied: %s", ", ".join(applied) if applied else "nothing, already up to date")
    return 0


def load_mappings(settings: Settings) -> Mappings | None:
    """The compiled IOT_MAPPINGS_FILE rules; ``ConfigError`` names the bad rule and field."""
    from iotcollector.domain.mapping import MappingError, compile_mappings  # noqa: PLC0415

    if settings.mappings_file is None:
        return None
    try:
        return compile_mappings(settings.mappings_document)
    except MappingError as exc:
        raise ConfigError(
            f"invalid configuration: IOT_MAPPINGS_FILE {settings.mappings_file}: {exc}"
        ) from None


async def _serve(settings: Settings, mappings: Mappings | None) -> int:
    from iotcollector.service import Service  # noqa: PLC0415 - heavy imports for one command

    listener = _bind_api(settings)
    if listener is None:
        return 2
    log = _configure_logging(settings)
    with listener:
        return await Service(settings, log, mappings=mappings).run(listener)


def _bind_api(settings: Settings) -> socket.socket | None:
    """The API's listening socket (``up`` and ``serve``); None when its port is taken (said in
    one line naming IOT_API_PORT)."""
    from iotcollector.ports import PortTakenError, bind_listener  # noqa: PLC0415

    try:
        return bind_listener(settings.api_host, settings.api_port, "IOT_API_PORT")
    except PortTakenError as exc:
        print(f"iot-collector: {exc}", file=sys.stderr)  # noqa: T201 - one line, no traceback
        return None


# After the simulated devices stopped: how long the collector must have received nothing
# before what the broker held for it counts as received (it sends at once on 127.0.0.1).
_SETTLE_QUIET_S = 0.5


async def _up(settings: Settings, simulate: int = 0, mappings: Mappings | None = None) -> int:
    """Bind every port, print the banner, run; on SIGINT/SIGTERM stop in order: the simulated
    devices (waiting for their acknowledgements), the collector (draining and committing what
    the broker holds for it), the broker."""
    from iotcollector.broker import EmbeddedBrokerError, stop_leftover  # noqa: PLC0415
    from iotcollector.service import Service  # noqa: PLC0415

    development = "api_auth" not in settings.model_fields_set and not settings.api_key_values
    if development and not _loopback(settings.api_host):
        print(  # noqa: T201 - one line, no traceback
            f"iot-collector: IOT_API_HOST={settings.api_host} serves /api/* to other machines: "
            f"set IOT_API_KEYS (or IOT_API_AUTH=disabled to serve it without keys); without "
            f"keys `up` listens on 127.0.0.1 only",
            file=sys.stderr,
        )
        return 2
    listener = _bind_api(settings)
    if listener is None:
        return 2
    log = _configure_logging(settings)
    with listener:
        broker = None
        if "mqtt_url" not in settings.model_fields_set:
            try:
                await stop_leftover(DATA_DIR, log)
                broker = _embedded_broker(settings, log)
            except (ConfigError, EmbeddedBrokerError) as exc:
                print(f"iot-collector: {exc}", file=sys.stderr)  # noqa: T201
                return 2
            try:
                await broker.start()
            except EmbeddedBrokerError as exc:
                log.error("cannot start the embedded MQTT broker: %s", exc)  # noqa: TRY400
                return 1
            settings = settings.model_copy(
                update={"mqtt_url": broker.url, "mqtt_protocol": broker.protocol}
            )
        try:
            if development:
                # Zero set-up on one machine: without keys, /api/* is open (127.0.0.1 default).
                settings = settings.model_copy(update={"api_auth": ApiAuth.DISABLED})
            service = Service(settings, log, mappings=mappings, development=development)
            print(_banner(settings, broker, simulate), flush=True)  # noqa: T201
            return await _run_in_order(service, listener, settings, simulate, log)
        finally:
            if broker is not None:
                await broker.stop()


def _loopback(host: str) -> bool:
    """Whether an API host reaches this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _embedded_broker(settings: Settings, log: logging.Logger) -> EmbeddedBroker:
    """Mosquitto when installed (or asked for), else amqtt, on the sticky or given port."""
    from iotcollector.broker import (  # noqa: PLC0415
        MAX_PACKET_BYTES,
        SBIN_DIRS,
        AmqttBroker,
        MosquittoBroker,
        find_mosquitto,
    )
    from iotcollector.ports import PortTakenError, choose_broker_port, port_free  # noqa: PLC0415

    binary = find_mosquitto() if settings.embedded_mqtt != "amqtt" else None
    if settings.embedded_mqtt == "mosquitto" and binary is None:
        raise ConfigError(
            f"IOT_EMBEDDED_MQTT=mosquitto, but no mosquitto binary is on PATH nor in "
            f"{', '.join(SBIN_DIRS)}: install it (Debian: apt-get install mosquitto) or set "
            f"IOT_EMBEDDED_MQTT=amqtt"
        )
    host = "127.0.0.1"
    if "embedded_mqtt_port" in settings.model_fields_set:
        port = settings.embedded_mqtt_port
        if not port_free(host, port):
            raise PortTakenError(
                f"cannot listen on {host}:{port}: another program holds it? "
                f"Set IOT_EMBEDDED_MQTT_PORT to a free port (or unset it: `up` then picks one)"
            )
    else:
        port, note = choose_broker_port(host, settings.embedded_mqtt_port, DATA_DIR)
        if note:
            log.warning("%s", note)
    if binary is None:
        return AmqttBroker(host, port)
    # Room for the topic and headers around the largest payload a dead letter may hold.
    max_packet = max(MAX_PACKET_BYTES, settings.max_payload_bytes + 64 * 1024)
    return MosquittoBroker(
        binary, host, port, DATA_DIR, log.getChild("mosquitto"), max_packet_bytes=max_packet
    )


async def _run_in_order(
    service: Service,
    listener: socket.socket,
    settings: Settings,
    simulate: int,
    log: logging.Logger,
) -> int:
    from iotcollector.simulator.alongside import SimulatedDevices, options_for  # noqa: PLC0415
    from iotcollector.simulator.cli import endpoint_from_settings  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    devices = None
    if simulate:
        try:
            endpoint = endpoint_from_settings(settings)
        except (ValueError, OSError) as exc:
            log.error("cannot simulate devices: %s", exc)  # noqa: TRY400 - the diagnosis
            return 2
        options = options_for(simulate, settings.mqtt_topics[0])
        devices = SimulatedDevices(options, endpoint, log.getChild("simulator"))
    running = asyncio.create_task(service.run(listener, handle_signals=False), name="service")
    if devices is not None:
        devices.start(lambda: all(service.readiness().values()))
    stopping = asyncio.create_task(stop.wait(), name="stop")
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if devices is not None:
        await devices.close()
    if not running.done():
        if not await service.settle(_SETTLE_QUIET_S, settings.shutdown_timeout_s):
            log.warning(
                "messages were still arriving after %.0f s (IOT_SHUTDOWN_TIMEOUT_S): stopping; "
                "what the broker still holds for the collector is delivered at the next start "
                "if the broker keeps it (Mosquitto, or your own), lost with amqtt",
                settings.shutdown_timeout_s,
            )
        service.request_stop()
    return await running


def _banner(settings: Settings, broker: EmbeddedBroker | None, simulate: int) -> str:
    from iotcollector.simulator.alongside import data_topic  # noqa: PLC0415

    base = f"http://{settings.api_host}:{settings.api_port}"
    topic = data_topic(settings.mqtt_topics[0]).format(device_id="sensor-1")
    url = redact_url(settings.mqtt_url)
    lines = [
        "iot-collector is up",
        f"  dashboard      {base}/",
        f"  API docs       {base}/docs",
        f"  metrics        {base}/metrics",
        f"  MQTT broker    {url}, topic {','.join(settings.mqtt_topics)}",
    ]
    if broker is not None:
        lines.append(f"                 {broker.description}")
    lines.append(f"  database       {redact_url(settings.database_url.get_secret_value())}")
    if simulate:
        lines.append(
            f"  simulation     {simulate:,} simulated devices publish a reading per second each"
        )
    lines.append(f"  try            iot-collector simulate --url {url} --devices 10")
    if broker is not None:
        reading = '{"device_id":"sensor-1","sensor_type":"temperature","value":21.5,"unit":"C"}'
        lines.append(
            f"                 mosquitto_pub -h 127.0.0.1 -p {broker.port} -q 1 -t {topic} "
            f"-m '{reading}'"
        )
    if settings.api_auth is ApiAuth.DISABLED and not settings.api_key_values:
        lines.append("  development mode: no API keys; use `serve` with IOT_API_KEYS in production")
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


def _run_fast(main: Coroutine[Any, Any, int]) -> int:
    """Run the service on uvloop: its transports cut the per-message cost of the socket path."""
    import uvloop  # noqa: PLC0415 - only the long-running commands

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def _run(args: argparse.Namespace, settings: Settings, mappings: Mappings | None) -> int:
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    if args.command == "up":
        return _run_fast(_up(settings, args.simulate, mappings))
    if args.command == "rejected":
        from iotcollector import rejected  # noqa: PLC0415

        log = _configure_logging(settings)
        return asyncio.run(rejected.run(settings, mappings, args, log))
    if args.command in {"backup", "restore"}:
        return _backup_or_restore(settings, args)
    if args.command == "simulate":
        from iotcollector.simulator.cli import run as simulate  # noqa: PLC0415

        return simulate(args, settings)
    return _run_fast(_serve(settings, mappings))


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    for warning in unknown_variables():
        print(f"iot-collector: warning: {warning}", file=sys.stderr)  # noqa: T201
    try:
        settings = load_settings()
        mappings = load_mappings(settings)
    except ConfigError as exc:
        print(f"iot-collector: {exc}", file=sys.stderr)  # noqa: T201 - before logging exists
        return 2
    return _run(args, settings, mappings)
