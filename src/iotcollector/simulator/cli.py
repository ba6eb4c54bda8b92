"""``iot-collector simulate``: its options (cheap to import) and its entry point."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from iotcollector.config import Settings
    from iotcollector.simulator.connection import Endpoint

EPILOG = """\
Rates count readings: a single message holds one, a batch --batch-size, a multi message five.
--count and --duration bound the run (default: --duration 60); Ctrl-C or SIGTERM stops it
gracefully with the summary. Connection settings default to IOT_MQTT_URL, IOT_MQTT_USERNAME,
IOT_MQTT_PASSWORD, IOT_MQTT_CA_FILE, IOT_MQTT_CERT_FILE, IOT_MQTT_KEY_FILE and
IOT_MQTT_PROTOCOL; MQTT 5 falls back to 3.1.1 when the broker does not speak 5.
Per-device Last Will (broker-published "offline" when a device dies) needs --connections
devices; multiplexed connections publish "online"/"offline" for each device themselves.
See docs/simulator.md.
"""


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be a probability between 0 and 1")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError("must be a number >= 0")
    return value


def simulated_devices(text: str) -> int:
    """``up --simulate N``: 0 (none) to 100,000 devices."""
    value = int(text)
    if not 0 <= value <= 100_000:
        raise argparse.ArgumentTypeError("must be between 0 and 100,000")
    return value


def _connections(text: str) -> int | None:
    if text == "devices":
        return None
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive number or 'devices'")
    return value


def _start(text: str) -> int:
    ts = datetime.fromisoformat(text)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp() * 1_000_000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``simulate`` options (no heavy imports: the main parser builds this every run)."""
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    load = parser.add_argument_group("load")
    load.add_argument("-n", "--devices", type=int, default=10, help="1 to 100,000 (10)")
    load.add_argument(
        "--rate", type=_non_negative, help="readings per second per device (1; 0 = unthrottled)"
    )
    load.add_argument(
        "--total-rate", type=_non_negative, help="cap on readings per second (0 = unthrottled)"
    )
    load.add_argument("--count", type=int, help="readings to publish, then stop")
    load.add_argument("--duration", type=float, help="seconds to publish, then stop")
    load.add_argument("--qos", type=int, choices=(0, 1, 2), default=1)
    load.add_argument(
        "--format", choices=("single", "batch", "multi"), default="single", dest="fmt"
    )
    load.add_argument("--batch-size", type=int, default=10, help="readings per batch message")
    load.add_argument("--seed", type=int, default=0, help="same seed, same devices and values")
    load.add_argument(
        "--start",
        type=_start,
        metavar="ISO-TIME",
        help="virtual clock from this time: timestamps (and bytes) depend on the seed only",
    )
    load.add_argument("--device-prefix", default="sim", help="device ids are PREFIX-0042")
    load.add_argument("--topic", default="iot/data", help="may contain {device_id}")
    load.add_argument(
        "--no-status", action="store_true", help="no online/offline messages on iot/status/<id>"
    )

    conn = parser.add_argument_group("connection")
    conn.add_argument("--url", help="mqtt://host:port or mqtts://host:port (IOT_MQTT_URL)")
    conn.add_argument("--username")
    conn.add_argument("--password", help="prefer IOT_MQTT_PASSWORD: argv is visible to all")
    conn.add_argument("--ca-file", type=Path)
    conn.add_argument("--cert-file", type=Path)
    conn.add_argument("--key-file", type=Path)
    conn.add_argument(
        "--protocol",
        choices=("5", "3.1.1"),
        help="MQTT version (IOT_MQTT_PROTOCOL, 5); 5 falls back to 3.1.1 if the broker refuses it",
    )
    conn.add_argument(
        "--connections",
        type=_connections,
        default=1,
        metavar="K|devices",
        help="MQTT connections the devices share (1); 'devices' = one each, with a Last Will",
    )
    conn.add_argument("--inflight", type=int, default=1000, help="un-acked messages per conn.")
    conn.add_argument("--keepalive", type=int, default=60, help="seconds")
    conn.add_argument("--drain-timeout", type=float, default=10.0, help="seconds, at the end")

    faults = parser.add_argument_group("fault injection")
    faults.add_argument("--malformed", type=_probability, default=0.0, metavar="P")
    faults.add_argument(
        "--duplicates", type=_probability, default=0.0, metavar="P", help="re-send identically"
    )
    faults.add_argument(
        "--out-of-order", type=_probability, default=0.0, metavar="P", help="send late"
    )
    faults.add_argument(
        "--churn",
        type=_probability,
        default=0.0,
        metavar="P",
        help="per connection per second: disconnect, reconnect after --churn-downtime",
    )
    faults.add_argument("--churn-downtime", type=float, default=1.0, help="seconds")

    out = parser.add_argument_group("output")
    out.add_argument("--summary-json", type=Path, metavar="FILE", help="'-' for stdout")


def endpoint_from_settings(  # noqa: PLR0913 - each overrides one setting
    settings: Settings,
    *,
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    protocol: str | None = None,
    keepalive_s: int = 60,
) -> Endpoint:
    """The broker of ``settings`` (IOT_MQTT_*), each given argument overriding its setting.

    Raises ``ValueError`` for a URL that is not ``mqtt://`` or ``mqtts://``, ``OSError`` for
    TLS files that cannot be read.
    """
    from iotcollector.ingest.handshake import protocol_version  # noqa: PLC0415
    from iotcollector.ingest.tls import client_tls_context  # noqa: PLC0415
    from iotcollector.simulator.connection import Endpoint  # noqa: PLC0415 - heavy imports

    url = url or settings.mqtt_url
    parts = urlsplit(url)
    if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
        raise ValueError(f"bad --url {url!r}")
    if password is None and settings.mqtt_password is not None:
        password = settings.mqtt_password.get_secret_value()
    tls = (
        client_tls_context(
            ca_file or settings.mqtt_ca_file,
            cert_file or settings.mqtt_cert_file,
            key_file or settings.mqtt_key_file,
            port=parts.port or 8883,
        )
        if parts.scheme == "mqtts"
        else None
    )
    return Endpoint(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        ssl=tls,
        username=username or settings.mqtt_username,
        password=password,
        keepalive_s=keepalive_s,
        protocol=protocol_version(protocol or settings.mqtt_protocol),
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Build the options and endpoint from ``args`` over ``settings``; run; print the summary."""
    import orjson  # noqa: PLC0415 - heavy imports for one command

    from iotcollector.errors import MqttError  # noqa: PLC0415
    from iotcollector.simulator.payloads import Format  # noqa: PLC0415
    from iotcollector.simulator.runner import (  # noqa: PLC0415
        Simulation,
        SimulatorOptions,
        install_signal_handlers,
        progress_stream,
    )

    duration = args.duration
    if args.count is None and duration is None:
        duration = 60.0
    try:
        endpoint = endpoint_from_settings(
            settings,
            url=args.url,
            username=args.username,
            password=args.password,
            ca_file=args.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
            protocol=args.protocol,
            keepalive_s=args.keepalive,
        )
        options = SimulatorOptions(
            devices=args.devices,
            rate=args.rate,
            total_rate=args.total_rate,
            count=args.count,
            duration_s=duration,
            qos=args.qos,
            fmt=Format(args.fmt),
            batch_size=args.batch_size,
            seed=args.seed,
            prefix=args.device_prefix,
            topic=args.topic,
            connections=args.connections,
            inflight=args.inflight,
            status=not args.no_status,
            malformed=args.malformed,
            duplicates=args.duplicates,
            out_of_order=args.out_of_order,
            churn=args.churn,
            churn_downtime_s=args.churn_downtime,
            start_us=args.start,
            drain_s=args.drain_timeout,
        )
        options.validate()
    except (ValueError, OSError) as exc:
        print(f"iot-collector simulate: {exc}", file=sys.stderr)  # noqa: T201
        return 2

    async def main() -> int:
        simulation = Simulation(options, endpoint, progress=progress_stream())
        install_signal_handlers(simulation)
        try:
            summary = await simulation.run()
        except MqttError as exc:
            print(f"iot-collector simulate: {exc}", file=sys.stderr)  # noqa: T201
            return 1
        data = summary.as_dict()
        if args.summary_json is not None:
            blob = orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"
            if str(args.summary_json) == "-":
                sys.stdout.buffer.write(blob)
                sys.stdout.flush()
            else:
                args.summary_json.write_bytes(blob)
        print(  # noqa: T201 - the one line a user sees at the end
            f"simulate: {summary.published:,} published, {summary.acknowledged:,} acknowledged, "
            f"{summary.readings:,} readings in {summary.elapsed_s:.1f}s "
            f"({summary.readings_per_s:,.0f}/s) over MQTT {summary.protocol}, "
            f"{summary.errors:,} errors "
            f"[stopped by {summary.stopped_by}]",
            file=sys.stderr,
        )
        if summary.stopped_by != "signal" and (
            summary.unacknowledged or summary.stopped_by == "stalled"
        ):
            return 1
        return 0

    return asyncio.run(main())
