"""Settings from IOT_* variables: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from iotcollector.config import Settings, load_settings, unknown_variables
from iotcollector.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("IOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(str(tmp_path))


def test_defaults_follow_the_design() -> None:
    s = load_settings()
    assert (s.mqtt_host, s.mqtt_port, s.mqtt_tls) == ("127.0.0.1", 1883, False)
    assert s.mqtt_topics == ("iot/data",)
    assert s.subscriptions == ("iot/data", "iot/status/+")
    assert s.status_topic_prefix == "iot/status/"
    assert s.mqtt_client_id.startswith("iot-collector-")
    assert s.database_url.get_secret_value() == "sqlite:///./data/iot.db"
    assert (s.api_host, s.api_port) == ("127.0.0.1", 3000)
    assert s.device_offline_after_s == 300
    assert s.retention_days is None


def test_topics_shared_group_and_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOT_MQTT_TOPICS", "iot/data, plant/+/data")
    monkeypatch.setenv("IOT_MQTT_SHARED_GROUP", "collectors")
    monkeypatch.setenv("IOT_MQTT_URL", "mqtts://example.iot.eu-west-1.amazonaws.com")
    s = load_settings()
    assert s.subscriptions == (
        "$share/collectors/iot/data",
        "$share/collectors/plant/+/data",
        "$share/collectors/iot/status/+",
    )
    assert (s.mqtt_port, s.mqtt_tls) == (8883, True)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IOT_MQTT_URL", "http://x"),
        ("IOT_MQTT_URL", "mqtt://host:99999"),
        ("IOT_MQTT_TOPICS", "a/#/b"),
        ("IOT_MQTT_TOPICS", "a/b+"),
        ("IOT_MQTT_TOPICS", " , "),
        ("IOT_MQTT_SHARED_GROUP", "a/b"),
        ("IOT_DATABASE_URL", "mysql://x"),
        ("IOT_API_PORT", "70000"),
        ("IOT_BATCH_MAX_SIZE", "0"),
        ("IOT_LOG_LEVEL", "LOUD"),
        ("IOT_LOG_FORMAT", "xml"),
        ("IOT_MQTT_STATUS_TOPIC", "iot/status/#"),
        ("IOT_MQTT_STATUS_TOPIC", "iot/+/x/+"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_certificate_and_key_go_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOT_MQTT_CERT_FILE", "/x/cert.pem")
    with pytest.raises(ConfigError, match="IOT_MQTT_KEY_FILE"):
        load_settings()


def test_per_device_topics_need_a_device_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOT_MQTT_DEVICE_TOPICS", "true")
    with pytest.raises(ConfigError, match=r"IOT_MQTT_TOPICS has 'iot/data'"):
        load_settings()
    monkeypatch.setenv("IOT_MQTT_TOPICS", "iot/data/+,plant/+/data/+")
    assert load_settings().mqtt_device_topics


def test_password_is_not_in_the_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOT_MQTT_PASSWORD", "s3cret-value")
    monkeypatch.setenv("IOT_DATABASE_URL", "postgresql://u:db-s3cret@h/db")
    text = repr(load_settings())
    assert "s3cret-value" not in text
    assert "db-s3cret" not in text


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///:memory:", "in-memory SQLite"),
        ("sqlite://host/iot.db", "three slashes"),
        ("mysql://u:hunter2@db/iot", "unsupported scheme"),
    ],
)
def test_the_database_url_is_validated_in_the_settings(
    monkeypatch: pytest.MonkeyPatch, url: str, message: str
) -> None:
    monkeypatch.setenv("IOT_DATABASE_URL", url)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "IOT_DATABASE_URL" in str(raised.value)
    assert message in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_a_bad_value_from_dotenv_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("IOT_API_PORT=abc\nIOT_BATCH_MAX_SIZE=0\n")
    monkeypatch.setenv("IOT_BATCH_MAX_SIZE", "-1")  # the environment wins over .env
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert "IOT_API_PORT (set in .env):" in message
    assert "IOT_BATCH_MAX_SIZE:" in message


def test_unknown_variables_are_named_with_the_closest_setting(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("IOT_API_PROT=3001\n")
    environ = {"IOT_LOG_LEVL": "DEBUG", "IOT_API_PORT": "1", "IOT_ZZZZZZ": "1", "HOME": "/"}
    assert unknown_variables(environ) == [
        "IOT_API_PROT is not a setting and is ignored: did you mean IOT_API_PORT?",
        "IOT_LOG_LEVL is not a setting and is ignored: did you mean IOT_LOG_LEVEL?",
        "IOT_ZZZZZZ is not a setting and is ignored",
    ]


def test_every_setting_is_known() -> None:
    environ = {f"IOT_{name.upper()}": "x" for name in Settings.model_fields}
    assert unknown_variables(environ) == []


# The README's configuration table and the settings agree: every IOT_* setting is documented,
# nothing documented is unknown, and each documented default is the real one.

README = Path(__file__).resolve().parents[2] / "README.md"
_HEADER = "| variable | default | meaning |"


def _table() -> dict[str, str]:
    """Documented variable -> its default cell's text for that variable."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(_HEADER) + 2
    rows: dict[str, str] = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        name_cell, default_cell = (cell.strip() for cell in line.strip("|").split("|")[:2])
        names = re.findall(r"`(IOT_\w+)`", name_cell)
        literals = re.findall(r"`([^`]*)`", default_cell)
        if not literals:
            defaults = [default_cell] * len(names)  # "(none)", "(off)", "(... when installed)"
        elif len(literals) == len(names):
            defaults = literals
        else:
            defaults = [literals[0]] * len(names)
        rows.update(zip(names, defaults, strict=True))
    return rows


def test_every_setting_is_in_the_readme_table_and_nothing_else() -> None:
    settings = {f"IOT_{name.upper()}" for name in Settings.model_fields}
    documented = set(_table())
    assert sorted(settings - documented) == []
    assert sorted(documented - settings) == []


def test_documented_defaults_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = load_settings()
    checked = 0
    for variable, documented in _table().items():
        field = variable.removeprefix("IOT_").lower()
        actual = getattr(defaults, field)
        if documented.startswith("("):  # no default value: (none), (off), (chosen at run time)
            assert actual in (None, ()), f"{variable}: README says {documented}, default {actual}"
            continue
        if "<" in documented:  # a pattern such as iot-collector-<hostname>
            continue
        monkeypatch.setenv(variable, documented)
        assert getattr(load_settings(), field) == actual, f"{variable}: README says {documented}"
        monkeypatch.delenv(variable)
        checked += 1
    assert checked > 30
