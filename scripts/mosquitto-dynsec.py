#!/usr/bin/env python3
"""Register identities in the production broker's dynamic-security file.

Usage (from the repository root; FILE is your copy of deploy/mosquitto/dynamic-security.json):

    python scripts/mosquitto-dynsec.py --file FILE add-device sensor-0042 [sensor-0043 ...]
    python scripts/mosquitto-dynsec.py --file FILE add-collector iot-collector-3
    python scripts/mosquitto-dynsec.py --file FILE remove sensor-0042
    python scripts/mosquitto-dynsec.py --file FILE per-device-topics-only

Mosquitto 2.0's dynamic-security plugin has no ``%c`` in its ACLs, so each device gets a role of
its own, ``device:<CN>``, allowing it to publish to ``iot/data/<CN>`` and ``iot/status/<CN>``, and
joins group ``devices`` (the shared topic ``iot/data``, no subscription at all). A collector joins
group ``collectors``. The CN is the one in the identity's certificate
(``scripts/make-certs.py``). ``per-device-topics-only`` removes the devices' right to publish to
the shared ``iot/data`` (for collectors on ``IOT_MQTT_TOPICS=iot/data/+`` with
``IOT_MQTT_DEVICE_TOPICS=true``). Restart the broker after a change: the plugin reads the file
at start. Identities not in the file may do nothing.
"""

# ruff: noqa: T201 - a command-line tool: it reports with print
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

_DEVICE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,50}$")
_COLLECTOR = re.compile(r"^iot-collector-[A-Za-z0-9._-]{1,40}$")
DEVICES, COLLECTORS, DEVICE_ROLE = "devices", "collectors", "device"


def device_role(cn: str) -> str:
    return f"device:{cn}"


def _group(config: dict[str, Any], name: str) -> dict[str, Any]:
    for group in config["groups"]:
        if group["groupname"] == name:
            found: dict[str, Any] = group
            return found
    raise SystemExit(f"the file has no group {name!r}: is it deploy/mosquitto's?")


def _known(config: dict[str, Any], cn: str) -> bool:
    return any(c["username"] == cn for c in config["clients"])


def add_device(config: dict[str, Any], cn: str) -> None:
    if not _DEVICE_ID.fullmatch(cn):
        raise SystemExit(f"{cn!r} is not a device id (1-50 of A-Z a-z 0-9 . _ : -)")
    if _known(config, cn):
        raise SystemExit(f"{cn!r} is already registered")
    config["roles"].append(
        {
            "rolename": device_role(cn),
            "textdescription": f"device {cn}: its own readings and presence topics",
            "acls": [
                {"acltype": "publishClientSend", "topic": f"iot/data/{cn}", "allow": True},
                {"acltype": "publishClientSend", "topic": f"iot/status/{cn}", "allow": True},
            ],
        }
    )
    config["clients"].append(
        {
            "username": cn,
            "textdescription": f"device {cn} (certificate CN)",
            "roles": [{"rolename": device_role(cn)}],
        }
    )
    _group(config, DEVICES)["clients"].append({"username": cn})


def add_collector(config: dict[str, Any], cn: str) -> None:
    if not _COLLECTOR.fullmatch(cn):
        raise SystemExit(f"{cn!r} is not a collector identity (iot-collector-<name>)")
    if _known(config, cn):
        raise SystemExit(f"{cn!r} is already registered")
    config["clients"].append({"username": cn, "textdescription": f"collector {cn}"})
    _group(config, COLLECTORS)["clients"].append({"username": cn})


def remove(config: dict[str, Any], cn: str) -> None:
    if not _known(config, cn):
        raise SystemExit(f"{cn!r} is not registered")
    config["clients"] = [c for c in config["clients"] if c["username"] != cn]
    config["roles"] = [r for r in config["roles"] if r["rolename"] != device_role(cn)]
    for group in config["groups"]:
        group["clients"] = [c for c in group.get("clients", []) if c["username"] != cn]


def per_device_topics_only(config: dict[str, Any]) -> None:
    for role in config["roles"]:
        if role["rolename"] == DEVICE_ROLE:
            role["acls"] = [
                acl
                for acl in role["acls"]
                if not (acl["acltype"] == "publishClientSend" and acl["topic"] == "iot/data")
            ]
            return
    raise SystemExit(f"the file has no role {DEVICE_ROLE!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, required=True, help="dynamic-security.json")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("add-device", "add-collector", "remove"):
        commands.add_parser(name).add_argument("cn", nargs="+", help="certificate CN(s)")
    commands.add_parser("per-device-topics-only")
    args = parser.parse_args(argv)
    config = json.loads(args.file.read_text(encoding="utf-8"))
    action = {"add-device": add_device, "add-collector": add_collector, "remove": remove}
    if args.command == "per-device-topics-only":
        per_device_topics_only(config)
    else:
        for cn in args.cn:
            action[args.command](config, cn)
    args.file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    print(f"{args.file}: {args.command} {' '.join(getattr(args, 'cn', []))}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
