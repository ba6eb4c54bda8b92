"""A private Mosquitto broker on a free port in a temp dir, which tests may stop and restart."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def mosquitto_binary() -> str | None:
    """The ``mosquitto`` on ``PATH``: a broker hidden from ``PATH`` counts as missing."""
    return shutil.which("mosquitto")


def mosquitto_available() -> bool:
    return mosquitto_binary() is not None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Queue limits are deliberate: Mosquitto's default max_queued_messages (1000) drops QoS 1
# messages for a subscriber that falls behind, which is exactly what a collector restarting
# or waiting for its database does.
CONFIG = """\
{head}
persistence {persistence}
persistence_location {data}/
autosave_interval 30
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 0
log_dest file {data}/mosquitto.log
log_type error
log_type warning
log_type notice
{listeners}
"""

ANONYMOUS_LISTENER = "listener {port} 127.0.0.1\nallow_anonymous true\n"

# Client certificates required (a CA and a broker certificate in {dir}/ca/).
TLS_LISTENER = """\
listener {port} 127.0.0.1
allow_anonymous false
cafile {dir}/ca/ca.pem
certfile {dir}/ca/broker.pem
keyfile {dir}/ca/broker.key
require_certificate true
use_identity_as_username true
tls_version tlsv1.2
"""

# User name and password from {dir}/passwd (mosquitto_passwd).
PASSWORD_LISTENER = """\
listener {port} 127.0.0.1
allow_anonymous false
password_file {dir}/passwd
"""


class MosquittoServer:
    def __init__(
        self,
        *,
        persistence: bool = True,
        listeners: str = ANONYMOUS_LISTENER,
        per_listener_settings: bool = False,
    ) -> None:
        """``listeners`` is the listener section; ``{port}`` and ``{dir}`` are filled in."""
        self.dir = Path(tempfile.mkdtemp(prefix="iot-mosquitto-"))
        self.port = free_port()
        self.conf = self.dir / "mosquitto.conf"
        head = "per_listener_settings true\n" if per_listener_settings else ""
        if os.geteuid() == 0:
            head += "user root\n"
        self.conf.write_text(
            CONFIG.format(
                head=head,
                persistence="true" if persistence else "false",
                data=self.dir,
                listeners=listeners.format(port=self.port, dir=self.dir),
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed (not on PATH)")
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.dir / "mosquitto.log").read_text(errors="replace")
                raise RuntimeError(f"mosquitto exited: {log[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
