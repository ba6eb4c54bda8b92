"""``iot-collector rejected list|replay``: see why messages were rejected, replay them.

``list`` prints the dead letters (newest first); ``replay`` parses the pending ones again with
today's rules and formats and stores what is now valid through the storage's normal writer
(``pipeline/replay.py``), then prints the counts. It may run while collectors run: dedup
keeps a reading stored once whoever writes it.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from iotcollector.api.params import ParamError, parse_time
from iotcollector.errors import StorageError
from iotcollector.storage.base import DeadLetterFilter

if TYPE_CHECKING:
    import logging
    from datetime import datetime

    from iotcollector.config import Settings
    from iotcollector.domain.mapping import Mappings
    from iotcollector.storage.base import StoredDeadLetter

_SHOW_REASON = 100
# Topics and reasons come from devices: their control characters (C0, DEL, C1) and the
# backslash are printed escaped, so that one cannot move the terminal's cursor, set its title
# or split the tab-separated line.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))} | {
    0x09: "\\t",
    0x0A: "\\n",
    0x0D: "\\r",
    0x5C: "\\\\",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "replay"], help="list or replay")
    parser.add_argument("--reason", metavar="CODE", help="only this code, e.g. invalid_json")
    parser.add_argument("--topic", help="only this topic, or a prefix ending in # (tele/#)")
    parser.add_argument(
        "--from", dest="start", type=_time, metavar="TIME", help="received at or after"
    )
    parser.add_argument("--to", dest="end", type=_time, metavar="TIME", help="received before")
    parser.add_argument("--limit", type=int, default=50, help="list: how many (default 50)")
    parser.add_argument("--dry-run", action="store_true", help="replay: count, store nothing")


def _time(text: str) -> datetime:
    try:
        return parse_time(text)
    except ParamError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} {exc}") from None


def list_line(letter: StoredDeadLetter) -> str:
    """One dead letter as ``rejected list`` prints it: id, received, topic, state, reason."""
    state = f"replayed {letter.replayed_at:%Y-%m-%dT%H:%M:%SZ}" if letter.replayed_at else "pending"
    return (
        f"{letter.id}\t{letter.received_at:%Y-%m-%dT%H:%M:%S.%fZ}\t"
        f"{letter.topic.translate(_ESCAPES)}\t{state}\t"
        f"{letter.reason[:_SHOW_REASON].translate(_ESCAPES)}"
    )


async def run(
    settings: Settings, mappings: Mappings | None, args: argparse.Namespace, log: logging.Logger
) -> int:
    """0 done; 1 when the database cannot be used (the reason is logged)."""
    from iotcollector.pipeline.replay import ParseSettings, Replayer  # noqa: PLC0415 - heavy
    from iotcollector.storage.factory import open_storage  # noqa: PLC0415

    storage = open_storage(settings.database_url.get_secret_value())
    try:
        await storage.open()
        await storage.migrate()
        if args.action == "list":
            where = DeadLetterFilter(args.reason, args.topic, args.start, args.end)
            for letter in await storage.list_rejected(where, after=None, limit=args.limit):
                print(list_line(letter))  # noqa: T201 - the command's output
            return 0
        where = DeadLetterFilter(args.reason, args.topic, args.start, args.end, pending=True)
        replayer = Replayer(
            storage,
            lambda readings: storage.write_batch(readings, ()),
            mappings=mappings,
            parsing=ParseSettings.of(settings),
        )
        report = await replayer.replay(where, dry_run=args.dry_run)
    except StorageError as exc:
        log.error("rejected %s failed: %s", args.action, exc)  # noqa: TRY400 - the diagnosis
        return 1
    finally:
        await storage.close()
    verb = "would replay" if report.dry_run else "replayed"
    print(  # noqa: T201 - the command's output
        f"{verb} {report.replayed} of {report.examined} pending dead letters: "
        f"{report.readings} readings, {report.stored} stored, {report.duplicates} duplicates"
        + (" (dry run: nothing stored)" if report.dry_run else "")
    )
    for code, count in sorted(report.still_rejected.items()):
        print(f"still rejected: {code} {count}")  # noqa: T201
    return 0
