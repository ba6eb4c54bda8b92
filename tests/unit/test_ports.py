"""Ports: a taken port is one clear error; the broker's port is remembered across starts."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import pytest

from iotcollector.errors import ConfigError
from iotcollector.ports import PORT_FILE, bind_listener, choose_broker_port, port_free

if TYPE_CHECKING:
    from pathlib import Path


def _free() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_bind_listener_names_the_variable_when_the_port_is_taken() -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        assert not port_free("127.0.0.1", port)
        with pytest.raises(ConfigError) as raised:
            bind_listener("127.0.0.1", port, "IOT_API_PORT")
    message = str(raised.value)
    assert "IOT_API_PORT" in message
    assert f"127.0.0.1:{port}" in message
    assert "\n" not in message


def test_bind_listener_listens() -> None:
    port = _free()
    with bind_listener("127.0.0.1", port, "IOT_API_PORT") as listener:
        assert listener.getsockname() == ("127.0.0.1", port)
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass


def test_default_port_when_free_and_remembered(tmp_path: Path) -> None:
    default = _free()
    assert choose_broker_port("127.0.0.1", default, tmp_path) == (default, None)
    assert (tmp_path / PORT_FILE).read_text() == f"{default}\n"


def test_taken_default_falls_back_once_then_sticks(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        default = holder.getsockname()[1]
        port, note = choose_broker_port("127.0.0.1", default, tmp_path)
        assert port != default
        assert note is not None
        assert str(default) in note
        assert str(port) in note
        # Next start, the default still taken (or not): the remembered port is reused, quietly.
        assert choose_broker_port("127.0.0.1", default, tmp_path) == (port, None)
    assert choose_broker_port("127.0.0.1", default, tmp_path) == (port, None)


def test_taken_remembered_port_is_replaced_and_said(tmp_path: Path) -> None:
    default = _free()
    with socket.create_server(("127.0.0.1", 0)) as holder:
        remembered = holder.getsockname()[1]
        (tmp_path / PORT_FILE).write_text(f"{remembered}\n")
        port, note = choose_broker_port("127.0.0.1", default, tmp_path)
    assert port == default
    assert note is not None
    assert str(remembered) in note


@pytest.mark.parametrize("content", ["", "x", "0", "70000"])
def test_unreadable_port_file_is_ignored(tmp_path: Path, content: str) -> None:
    default = _free()
    (tmp_path / PORT_FILE).write_text(content)
    assert choose_broker_port("127.0.0.1", default, tmp_path) == (default, None)
