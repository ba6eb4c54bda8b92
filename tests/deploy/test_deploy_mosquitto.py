"""The shipped Mosquitto configuration, run for real: the broker starts with it through our
entrypoint, refuses anonymous clients, applies the ACL and persists its state."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from deploy_helpers import CHART, find_tool, run

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

FILES = CHART / "files" / "mosquitto"
PASSWORDS = {"collector": "collector-secret", "simulator": "simulator-secret"}
DEBIAN_DYNSEC = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def broker() -> Iterator[tuple[int, Path]]:
    for tool in ("mosquitto", "mosquitto_passwd", "mosquitto_pub", "mosquitto_sub"):
        if find_tool(tool) is None and not os.access(f"/usr/sbin/{tool}", os.X_OK):
            pytest.skip(f"{tool} is not installed (apt-get install mosquitto mosquitto-clients)")
    if not Path(DEBIAN_DYNSEC).exists():
        pytest.skip(f"{DEBIAN_DYNSEC} is missing (Debian's mosquitto package ships it)")
    # Not under pytest's 0700 temp root: run as root, the broker drops to the mosquitto user.
    work = Path(tempfile.mkdtemp(prefix="iot-mosquitto-"))
    work.chmod(0o755)
    port = _free_port()
    data = work / "data"
    data.mkdir()
    conf = (FILES / "mosquitto.conf").read_text(encoding="utf-8")
    conf = conf.replace("/mosquitto/auth/passwd", str(work / "auth" / "passwd"))
    dynsec = "/mosquitto/config/dynamic-security.json"
    assert dynsec in conf
    conf = conf.replace(dynsec, str(work / "dynamic-security.json"))
    # The plugin where Debian's package installs it, not where the image has it.
    conf = conf.replace("/usr/lib/mosquitto_dynamic_security.so", DEBIAN_DYNSEC)
    conf = conf.replace("/mosquitto/data/", f"{data}/")
    conf = conf.replace("listener 1883 0.0.0.0", f"listener {port} 127.0.0.1")
    assert f"listener {port} 127.0.0.1" in conf
    (work / "mosquitto.conf").write_text(conf, encoding="utf-8")
    shutil.copy(FILES / "dynamic-security.json", work / "dynamic-security.json")
    env = {
        **os.environ,
        "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin",
        "MQTT_COLLECTOR_PASSWORD": PASSWORDS["collector"],
        "MQTT_SIMULATOR_PASSWORD": PASSWORDS["simulator"],
        "MOSQUITTO_AUTH_DIR": str(work / "auth"),
        "MOSQUITTO_DATA_DIR": str(data),
        "MOSQUITTO_CONFIG": str(work / "mosquitto.conf"),
    }
    log = (work / "broker.log").open("w")
    process = subprocess.Popen(
        ["sh", str(FILES / "entrypoint.sh")], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert process.poll() is None, (work / "broker.log").read_text(encoding="utf-8")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("the broker did not listen within 10 s")
        yield port, data
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def _client(kind: str, port: int, user: str | None, *args: str) -> list[str]:
    cmd = [f"mosquitto_{kind}", "-h", "127.0.0.1", "-p", str(port), "-q", "1"]
    if user:
        cmd += ["-u", user, "-P", PASSWORDS[user]]
    return [*cmd, *args]


def test_anonymous_clients_are_refused(broker: tuple[int, Path]) -> None:
    port, _ = broker
    result = run(_client("pub", port, None, "-t", "iot/data", "-m", "{}"), timeout=15)
    assert result.returncode != 0


def test_collector_receives_what_the_simulator_publishes(broker: tuple[int, Path]) -> None:
    port, _ = broker
    with subprocess.Popen(
        _client("sub", port, "collector", "-t", "iot/data", "-C", "1", "-W", "10"),
        stdout=subprocess.PIPE,
        text=True,
    ) as sub:
        time.sleep(0.5)
        published = run(_client("pub", port, "simulator", "-t", "iot/data", "-m", "hello"))
        assert published.returncode == 0, published.stderr
        out, _ = sub.communicate(timeout=15)
    assert out.strip() == "hello"


def test_the_simulator_cannot_read_readings(broker: tuple[int, Path]) -> None:
    port, _ = broker
    with subprocess.Popen(
        _client("sub", port, "simulator", "-t", "iot/data", "-C", "1", "-W", "2"),
        stdout=subprocess.PIPE,
        text=True,
    ) as sub:
        time.sleep(0.5)
        run(_client("pub", port, "simulator", "-t", "iot/data", "-m", "secret"))
        out, _ = sub.communicate(timeout=15)
    assert "secret" not in out


def test_the_simulator_cannot_join_the_collectors_shared_subscription(
    broker: tuple[int, Path],
) -> None:
    """Its SUBSCRIBE is refused: the broker never hands it the collectors' messages."""
    port, _ = broker
    with subprocess.Popen(
        _client(
            "sub", port, "collector", "-t", "$share/collectors/iot/data", "-C", "4", "-W", "10"
        ),
        stdout=subprocess.PIPE,
        text=True,
    ) as collector:
        refused = run(
            _client(
                "sub",
                port,
                "simulator",
                "-V",
                "5",
                "-t",
                "$share/collectors/iot/data",
                "-C",
                "1",
                "-W",
                "3",
            ),
            timeout=15,
        )
        time.sleep(0.5)
        for i in range(4):
            published = run(_client("pub", port, "simulator", "-t", "iot/data", "-m", f"r{i}"))
            assert published.returncode == 0, published.stderr
        out, _ = collector.communicate(timeout=15)
    assert "All subscription requests were denied" in refused.stderr
    assert out.split() == ["r0", "r1", "r2", "r3"]
