"""The ``iot-collector`` command: the only place, with service.py, that builds real objects."""

from __future__ import annotations

import argparse
import asyncio
import sys

from iotcollector import __version__
from iotcollector.config import Settings, load_settings
from iotcollector.errors import ConfigError, StorageError
from iotcollector.logs import configure_logging


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
    return parser


async def _migrate(settings: Settings) -> int:
    from iotcollector.storage.factory import open_storage  # noqa: PLC0415 - only this command

    log = configure_logging(settings.log_level, settings.log_format)
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


async def _serve(settings: Settings) -> int:
    from iotcollector.service import Service  # noqa: PLC0415 - heavy imports for one command

    log = configure_logging(settings.log_level, settings.log_format)
    return await Service(settings, log).run()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"iot-collector: {exc}", file=sys.stderr)  # noqa: T201 - before logging exists
        return 2
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    return asyncio.run(_serve(settings))
