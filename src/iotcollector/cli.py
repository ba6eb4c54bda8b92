"""The ``iot-collector`` command: the only place, with service.py, that builds real objects."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iotcollector import __version__
from iotcollector.config import ApiAuth, Settings, load_settings
from iotcollector.errors import ConfigError, StorageError
from iotcollector.logs import configure_logging
from iotcollector.redact import redact_url, settings_secrets
from iotcollector.rejected import add_arguments as add_rejected_arguments
from iotcollector.simulator.cli import add_arguments as add_simulate_arguments
from iotcollector.simulator.cli import simulated_devices

if TYPE_CHECKING:
    import logging
    from collections.abc import Coroutine

    from iotcollector.domain.mapping import Mappings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iot-collector",
        description="Collect IoT sensor readings over MQTT into PostgreSQL or SQLite.",
        epilog="Configuration comes from IOT_* environment variables (see the README).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="run MQTT ingest and the HTTP API")
    commands.add_parser("migrate", help="apply pending database migrations and exit")
    up = commands.add_parser(
        "up",
        help="zero set-up: embedded broker (unless IOT_MQTT_URL is set), SQLite, API",
    )
    up.add_argument(
        "--simulate",
        type=simulated_devices,
        default=0,
        metavar="N",
        help="also run N simulated devices, each publishing a reading per second (0: none)",
    )
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
            backup.backup(url, args.output, logger=log)
        else:
            backup.restore(url, args.input, force=args.force, logger=log)
    except (backup.BackupError, ConfigError) as exc:
        log.error("%s failed: %s", args.command, exc)  # noqa: TRY400 - the message is the diagnosis
        return 1
    return 0


async def _migrate(settings: Settings) -> int:
    from iotcollector.storage.factory import open_storage  # noqa: PLC0415 - only this command

    log = _configure_logging(settings)
    storage = open_storage(settings.database_url.get_secret_value())
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

    log = _configure_logging(settings)
    return await Service(settings, log, mappings=mappings).run()


async def _up(settings: Settings, simulate: int = 0, mappings: Mappings | None = None) -> int:
    from iotcollector.broker import (  # noqa: PLC0415 - heavy imports for one command
        EmbeddedBroker,
        EmbeddedBrokerError,
    )
    from iotcollector.service import Service  # noqa: PLC0415

    log = _configure_logging(settings)
    broker = None
    if "mqtt_url" not in settings.model_fields_set:
        port = settings.embedded_mqtt_port
        if "embedded_mqtt_port" not in settings.model_fields_set and not _port_free(port):
            port = _free_port()
            log.warning(
                "port %d is taken (another broker?): the embedded one uses %d",
                settings.embedded_mqtt_port,
                port,
            )
        broker = EmbeddedBroker("127.0.0.1", port)
        try:
            await broker.start()
        except EmbeddedBrokerError as exc:
            log.error(  # noqa: TRY400 - the message is the diagnosis
                "cannot start the embedded MQTT broker (%s); set IOT_EMBEDDED_MQTT_PORT to a "
                "free port, or IOT_MQTT_URL to your broker",
                exc,
            )
            return 1
        settings = settings.model_copy(update={"mqtt_url": broker.url, "mqtt_protocol": "3.1.1"})
    if "api_auth" not in settings.model_fields_set and not settings.api_key_values:
        # Zero set-up on one machine: without keys, /api/* is open (on 127.0.0.1 by default).
        settings = settings.model_copy(update={"api_auth": ApiAuth.DISABLED})
    service = Service(settings, log, mappings=mappings)
    base = f"http://{settings.api_host}:{settings.api_port}"
    print(  # noqa: T201 - the banner is for the person who ran the command
        f"iot-collector is up\n"
        f"  dashboard      {base}/\n"
        f"  API docs       {base}/docs\n"
        f"  metrics        {base}/metrics\n"
        f"  MQTT broker    {redact_url(settings.mqtt_url)}{' (embedded)' if broker else ''}, topic "
        f"{','.join(settings.mqtt_topics)}\n"
        f"  database       {redact_url(settings.database_url.get_secret_value())}\n"
        + (
            f"  simulation     {simulate} simulated devices publish a reading per second each\n"
            if simulate
            else ""
        )
        + "Ctrl-C stops everything.",
        flush=True,
    )
    try:
        if simulate:
            from iotcollector.simulator.alongside import run_alongside  # noqa: PLC0415

            return await run_alongside(
                service.run,
                devices=simulate,
                settings=settings,
                ready=lambda: all(service.readiness().values()),
                logger=log,
            )
        return await service.run()
    finally:
        if broker is not None:
            await broker.stop()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _run_fast(main: Coroutine[Any, Any, int]) -> int:
    """Run the service on uvloop: its transports cut the per-message cost of the socket path."""
    import uvloop  # noqa: PLC0415 - only the long-running commands

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0911 - one return per command
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        mappings = load_mappings(settings)
    except ConfigError as exc:
        print(f"iot-collector: {exc}", file=sys.stderr)  # noqa: T201 - before logging exists
        return 2
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
