"""A private, throw-away PostgreSQL server for tests and benchmarks.

``initdb`` into a fresh temporary directory, ``postgres`` listening on 127.0.0.1 only (unix
socket inside that directory), trust authentication. Durability settings are PostgreSQL's
defaults (``fsync=on``, ``synchronous_commit=on``): the no-loss tests must measure the real
thing. ``stop(mode="immediate")`` kills it like a crash; ``start()`` brings it back on the
same port with the same data directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Literal, Self

import psycopg

DEFAULT_BIN_DIR = Path(os.environ.get("IOT_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))

_STOP_SIGNALS = {
    "smart": signal.SIGTERM,
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def postgres_available(bin_dir: Path = DEFAULT_BIN_DIR) -> bool:
    return (bin_dir / "initdb").is_file() and (bin_dir / "postgres").is_file()


class PostgresServer:
    """One private PostgreSQL cluster: ``start()``, ``stop()``, ``restart()``, ``cleanup()``."""

    def __init__(
        self,
        *,
        database: str = "iot",
        bin_dir: Path = DEFAULT_BIN_DIR,
        port: int | None = None,
        extra_settings: dict[str, str] | None = None,
        start_timeout_s: float = 30.0,
        base_dir: Path | None = None,
    ) -> None:
        """``base_dir``: keep the cluster there (made by the first ``start()``, reused by the
        next ones, e.g. a benchmark's data set); default a fresh temporary directory."""
        self.database = database
        self.bin_dir = bin_dir
        self.port = port if port is not None else free_port()
        self.extra_settings = dict(extra_settings or {})
        self.start_timeout_s = start_timeout_s
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="iot-pg-"))
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "sock"
        self.log_path = self.base_dir / "postgres.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._initialised = (self.data_dir / "PG_VERSION").is_file()
        # initdb and postgres refuse to run as root: run them as the postgres OS user.
        self._user: str | None = "postgres" if os.geteuid() == 0 else None

    # -- addresses -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> Self:
        if self.running:
            return self
        if not self._initialised:
            self._initdb()
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "shared_buffers": "64MB",
            "max_connections": "50",
            "synchronous_commit": "on",
            "fsync": "on",
            "logging_collector": "off",
        }
        settings.update(self.extra_settings)
        args = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            user=self._user,
            start_new_session=True,
        )
        self._wait_ready()
        self._ensure_database(self.database)
        return self

    def stop(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(_STOP_SIGNALS[mode])
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        self.stop(mode)
        self.start()

    def cleanup(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.cleanup()

    # -- helpers ---------------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create database ``name`` (an identifier chosen by the caller); return its URL."""
        self._ensure_database(name)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _initdb(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            shutil.chown(self.base_dir, user=self._user)
            shutil.chown(self.socket_dir, user=self._user)
        # --no-sync only skips initdb's own final fsync of the template files; the server
        # itself runs with fsync on.
        result = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            check=False,
            user=self._user,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
            )
        self._initialised = True

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited at start-up:\n{self.log_tail()}")
            try:
                with psycopg.connect(self.url_for("postgres"), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
            except psycopg.OperationalError as exc:
                last_error = exc
                time.sleep(0.05)
            else:
                return
        self.stop("immediate")
        raise RuntimeError(f"postgres not ready: {last_error}\n{self.log_tail()}")

    def _ensure_database(self, name: str) -> None:
        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(f'CREATE DATABASE "{name}"'.encode())


def refresh_all_rollups(url: str) -> int:
    """Recompute every pending rollup minute and hour, however recent (what the collector's
    refresher does once they are closed); return how many were recomputed."""
    with psycopg.connect(url, autocommit=True) as conn:
        return refresh_rollups_on(conn)


def refresh_rollups_on(conn: psycopg.Connection[Any], step: int = 1_000_000) -> int:
    """:func:`refresh_all_rollups` on an autocommit connection, ``step`` minutes at a time."""
    done = 0
    while True:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            row = conn.execute("SELECT iot_refresh_rollups('infinity', %s)", (step,)).fetchone()
        made = int(row[0]) if row is not None else 0
        if not made:
            return done
        done += made
