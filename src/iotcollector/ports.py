"""Listening ports: bound before anything is announced, and the broker's port remembered.

A port that is taken is a configuration problem the person can fix (another program holds it),
so it is reported as one line naming the variable that chooses the port, never a traceback.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Final

from iotcollector.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["PortTakenError", "bind_listener", "choose_broker_port", "port_free"]

_BACKLOG: Final = 2048  # uvicorn's default
PORT_FILE: Final = "broker.port"


class PortTakenError(ConfigError):
    """A port the configuration names cannot be bound; the message names the variable."""


def bind_listener(host: str, port: int, variable: str) -> socket.socket:
    """A listening TCP socket on ``host:port`` (the HTTP server is handed this socket).

    Raises :class:`PortTakenError` naming ``variable`` when the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=_BACKLOG)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise PortTakenError(
            f"cannot listen on {host}:{port} ({reason.lower()}): another program holds it? "
            f"Set {variable} to a free port"
        ) from None


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now (SO_REUSEADDR, as servers bind: the
    connections a stopped server leaves in TIME_WAIT do not hold its port)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _any_free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def choose_broker_port(host: str, default: int, data_dir: Path) -> tuple[int, str | None]:
    """The port for the embedded broker when ``IOT_EMBEDDED_MQTT_PORT`` is not set, and a note
    for the person when it is not ``default``.

    The port of the last start (remembered in ``data_dir``) when it is free, else ``default``
    when free, else any free port; the choice is remembered, so devices pointed at it keep
    working across restarts.
    """
    remembered = _read_port(data_dir / PORT_FILE)
    note = None
    if remembered is not None and port_free(host, remembered):
        port = remembered
    elif port_free(host, default):
        port = default
    else:
        port = _any_free_port(host)
        taken = [default] if remembered in {None, default} else [remembered, default]
        note = (
            f"port {' and '.join(str(p) for p in taken)} taken (another broker?): the embedded "
            f"broker uses {port} from now on (remembered in {data_dir / PORT_FILE})"
        )
    if remembered is not None and port != remembered:
        note = note or f"port {remembered} is taken: the embedded broker uses {port} from now on"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / PORT_FILE).write_text(f"{port}\n", encoding="ascii")
    return port, note


def _read_port(path: Path) -> int | None:
    try:
        port = int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    return port if 0 < port < 65536 else None
