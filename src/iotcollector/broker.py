"""The MQTT broker that ``iot-collector up`` runs when no broker is configured.

Mosquitto, when it is installed, runs as a child process with a configuration written into the
data directory: 127.0.0.1 only, MQTT 5 and 3.1.1, persistence in the data directory and no
queue limits (the collector's persistent session must never lose a message). Otherwise amqtt
runs inside the process: nothing to install, but MQTT 3.1.1 only and in memory.

What Mosquitto's persistence guarantees: it writes its database on shutdown and every
``autosave_interval`` seconds, not on each message. The child runs in its own session (a
Ctrl-C in the terminal reaches ``up`` only, which stops the devices and the collector before
the broker) and gets SIGTERM when ``up`` dies, even by ``kill -9``: it then shuts down cleanly
and saves everything it acknowledged (and the next ``up`` stops one still running on its data
directory, see :func:`stop_leftover`). Only if Mosquitto itself is killed (or the machine
loses power) can the messages of the last second that the collector had not yet committed be
lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from iotcollector.errors import IotCollectorError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "AmqttBroker",
    "BrokerKind",
    "EmbeddedBroker",
    "EmbeddedBrokerError",
    "MosquittoBroker",
    "find_mosquitto",
    "stop_leftover",
]

# Debian installs daemons in sbin, which is not on a normal user's PATH.
SBIN_DIRS: Final = ("/usr/local/sbin", "/usr/sbin", "/sbin")
AUTOSAVE_INTERVAL_S: Final = 1
_START_TIMEOUT_S: Final = 10.0
_STOP_TIMEOUT_S: Final = 15.0
_POLL_S: Final = 0.05
_PR_SET_PDEATHSIG: Final = 1


class EmbeddedBrokerError(IotCollectorError):
    """The embedded broker could not start (most often: its port is taken)."""


class BrokerKind(StrEnum):
    MOSQUITTO = "mosquitto"
    AMQTT = "amqtt"


class EmbeddedBroker(Protocol):
    """What ``up`` needs of the broker it runs."""

    port: int

    @property
    def url(self) -> str: ...

    @property
    def protocol(self) -> Literal["5", "3.1.1"]:
        """The MQTT version the collector should speak to it."""
        ...

    @property
    def description(self) -> str:
        """Which broker, and what it can and cannot do (for the banner)."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def find_mosquitto(path: str | None = None, extra_dirs: tuple[str, ...] = SBIN_DIRS) -> str | None:
    """The ``mosquitto`` binary on ``path`` (default ``$PATH``), else in the sbin directories."""
    return shutil.which("mosquitto", path=path) or shutil.which(
        "mosquitto", path=os.pathsep.join(extra_dirs)
    )


class AmqttBroker:
    """amqtt inside this process: anonymous, 127.0.0.1, MQTT 3.1.1, in memory."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def protocol(self) -> Literal["5", "3.1.1"]:
        return "3.1.1"

    @property
    def description(self) -> str:
        return (
            "amqtt, in this process: MQTT 3.1.1 only, messages in memory "
            "(install Mosquitto for MQTT 5 and persistence)"
        )

    async def start(self) -> None:
        from amqtt.broker import Broker  # noqa: PLC0415 - only when amqtt is the broker
        from amqtt.errors import BrokerError  # noqa: PLC0415

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
        except (BrokerError, OSError) as exc:
            raise EmbeddedBrokerError(str(exc)) from exc
        self._broker = broker

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None


# The largest MQTT packet `up`'s Mosquitto accepts unless IOT_MAX_PAYLOAD_BYTES asks for more
# (as deploy/mosquitto/mosquitto.conf).
MAX_PACKET_BYTES: Final = 1024 * 1024


_CONFIG: Final = """\
# Written by `iot-collector up` at every start: edits are lost.
listener {port} {host}
allow_anonymous true
persistence true
persistence_location {data}/
persistence_file mosquitto.db
autosave_interval {autosave}
# The collector's persistent session must never drop a QoS 1 message (the default limit of
# 1000 queued messages does, for a subscriber that falls behind).
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 0
# The collector reads a packet whole before it keeps only a prefix of an oversize payload:
# bound what one publish may cost it (messages between IOT_MAX_PAYLOAD_BYTES and this are
# dead-lettered as too_large; larger ones the broker refuses to their publisher).
max_packet_size {max_packet}
pid_file {data}/mosquitto.pid
log_dest stderr
log_type error
log_type warning
log_type notice
{user}"""


class MosquittoBroker:
    """Mosquitto as a child process, configured and persisted in ``data_dir``."""

    def __init__(  # noqa: PLR0913 - each is one fact about the broker
        self,
        binary: str,
        host: str,
        port: int,
        data_dir: Path,
        logger: logging.Logger,
        *,
        max_packet_bytes: int = MAX_PACKET_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.binary = binary
        self.max_packet_bytes = max_packet_bytes
        self.host = host
        self.port = port
        self.data_dir = data_dir.resolve()
        self._log = logger
        self._clock = clock
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def protocol(self) -> Literal["5", "3.1.1"]:
        return "5"

    @property
    def description(self) -> str:
        return f"Mosquitto ({self.binary}): MQTT 5 and 3.1.1, persistent in {self.data_dir}"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "mosquitto.log"

    def config(self) -> str:
        return _CONFIG.format(
            host=self.host,
            port=self.port,
            data=self.data_dir,
            autosave=AUTOSAVE_INTERVAL_S,
            max_packet=self.max_packet_bytes,
            # As root, Mosquitto would switch to the user "mosquitto", who cannot write here.
            user="user root\n" if os.geteuid() == 0 else "",
        )

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config(), encoding="utf-8")
        with self.log_file.open("ab") as log:
            # Popen returns once the child has exec'd; it runs in the loop's thread on purpose:
            # the parent-death signal fires when the thread that forked it ends.
            self._proc = subprocess.Popen(  # noqa: S603, ASYNC220 - our binary and config
                [self.binary, "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # Ctrl-C reaches `up`, which stops the broker last
                preexec_fn=_terminate_with_parent(),  # noqa: PLW1509 - no threads yet
            )
        deadline = self._clock() + _START_TIMEOUT_S
        while self._clock() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                raise EmbeddedBrokerError(f"mosquitto exited: {self._last_log_line()}")
            if _accepts(self.host, self.port):
                return
            await asyncio.sleep(_POLL_S)
        await self.stop()
        raise EmbeddedBrokerError(f"mosquitto did not listen within {_START_TIMEOUT_S:.0f} s")

    async def stop(self) -> None:
        """SIGTERM: Mosquitto saves its database and exits; SIGKILL only if it hangs."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        if not await _wait_exit(proc.poll, self._clock):
            self._log.warning("mosquitto did not stop within %.0f s: killed", _STOP_TIMEOUT_S)
            proc.kill()
            proc.wait()

    def _last_log_line(self) -> str:
        try:
            lines = self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "no log"


async def stop_leftover(
    data_dir: Path, logger: logging.Logger, clock: Callable[[], float] = time.monotonic
) -> None:
    """Stop a Mosquitto that an earlier ``up`` left running on ``data_dir`` (it holds the
    broker's port and database: where the parent-death signal does not exist, or after a
    kill of ``up`` between fork and exec). SIGTERM, so that it saves what it holds; called
    before the port is chosen."""
    config = (data_dir / "mosquitto.conf").resolve()
    pid = _read_pid(data_dir / "mosquitto.pid")
    if pid is None or not _is_our_mosquitto(pid, config):
        return
    owner = _running_up(pid)
    if owner is not None:
        raise EmbeddedBrokerError(
            f"another `iot-collector up` (pid {owner}) is running on {data_dir}: stop it "
            f"first, or start this one in another directory"
        )
    logger.warning("stopping the Mosquitto (pid %d) that a previous `up` left running", pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not await _wait_exit(lambda: None if _is_our_mosquitto(pid, config) else 0, clock):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def _wait_exit(exited: Callable[[], int | None], clock: Callable[[], float]) -> bool:
    deadline = clock() + _STOP_TIMEOUT_S
    while clock() < deadline:
        if exited() is not None:
            return True
        await asyncio.sleep(_POLL_S)
    return False


def _terminate_with_parent() -> Callable[[], None] | None:
    """Linux: the child gets SIGTERM when ``up`` dies, however it dies (``kill -9`` too)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def in_child() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl
            os._exit(1)

    return in_child


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def _running_up(pid: int) -> int | None:
    """The pid of the ``iot-collector up`` whose child Mosquitto ``pid`` is, if it still runs
    (then the broker is in use, not left over)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        argv = Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")
    except (OSError, IndexError, ValueError):
        return None
    ours = any(arg.endswith((b"iot-collector", b"iotcollector")) for arg in argv)
    return parent if ours and b"up" in argv else None


def _is_our_mosquitto(pid: int, config_file: Path) -> bool:
    """Whether ``pid`` is a live Mosquitto running ``config_file`` (Linux: /proc)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return (
        state != "Z"
        and bool(argv)
        and argv[0].endswith(b"mosquitto")
        and (str(config_file).encode() in argv)
    )
