"""Typed settings from ``IOT_*`` environment variables; built in ``main``, never at import."""

from __future__ import annotations

import difflib
import os
import re
import socket
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from iotcollector.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class ApiAuth(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


MqttProtocol = Literal["5", "3.1.1"]
EmbeddedMqtt = Literal["mosquitto", "amqtt"]


@dataclass(frozen=True, slots=True)
class SqliteTarget:
    path: str


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    url: str


def parse_database_url(url: str) -> SqliteTarget | PostgresTarget:
    """``sqlite:///relative/path``, ``sqlite:////absolute/path``, ``postgresql://…``.

    The messages never repeat the URL: it may hold a password.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigError("IOT_DATABASE_URL: not a URL: use sqlite:///path or postgresql://…")
    if scheme in {"postgresql", "postgres"}:
        if not urlsplit(url).hostname and "host=" not in url:
            raise ConfigError("IOT_DATABASE_URL: a PostgreSQL URL needs a host")
        return PostgresTarget(url)
    if scheme == "sqlite":
        if not rest.startswith("/"):
            raise ConfigError(
                "IOT_DATABASE_URL: use sqlite:///relative/path or sqlite:////absolute/path "
                "(three slashes, no host)"
            )
        path = unquote(rest[1:].split("?", 1)[0])
        if not path or path == ":memory:" or path.startswith("file::memory:"):
            raise ConfigError(
                "IOT_DATABASE_URL: an in-memory SQLite database cannot be shared with the "
                "storage thread nor survive a restart: give a file path"
            )
        if path.endswith("/"):
            raise ConfigError(f"IOT_DATABASE_URL: {path!r} is a directory, not a file")
        return SqliteTarget(path)
    raise ConfigError(
        f"IOT_DATABASE_URL: unsupported scheme {scheme!r}: use sqlite:/// or postgresql://"
    )


_HOUR = timedelta(hours=1)
_MAX_PARTITION = timedelta(days=366)
_DURATION = re.compile(r"^\s*(\d+)\s*(h|hours?|d|days?)\s*$", re.IGNORECASE)


def parse_hours_or_days(text: str) -> timedelta:
    """``"6h"``, ``"1d"``, ``"12 hours"``, ``"2 days"`` as a timedelta."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r}: expected a number of hours or days, e.g. 1d or 6h")
    count, unit = int(match[1]), match[2].lower()
    return timedelta(days=count) if unit.startswith("d") else timedelta(hours=count)


def _default_client_id() -> str:
    return f"iot-collector-{socket.gethostname()}"[:64]


class Settings(BaseSettings):
    """Every setting of the collector; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="IOT_", env_file=".env", extra="ignore", frozen=True
    )

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_topics: Annotated[tuple[str, ...], NoDecode] = ("iot/data",)
    mqtt_client_id: str = Field(default_factory=_default_client_id, min_length=1, max_length=128)
    mqtt_shared_group: str | None = None
    mqtt_status_topic: str = "iot/status/+"
    # Per-device data topics (iot/data/<device_id>): readings for another device are refused.
    mqtt_device_topics: bool = False
    mqtt_broker_stats: bool = True
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    # *_FILE: read the secret from a file (Docker/Kubernetes secrets); see _read_secret_files.
    mqtt_password_file: Path | None = None
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    mqtt_keepalive_s: int = Field(default=30, ge=5, le=3600)
    mqtt_max_inflight: int = Field(default=20_000, ge=10, le=1_000_000)
    # Payload bytes of the un-acknowledged messages held; see the README for the default.
    mqtt_max_inflight_bytes: int = Field(default=32 * 1024 * 1024, ge=1024 * 1024, le=1 << 34)
    mqtt_reconnect_max_s: float = Field(default=30.0, gt=0, le=600)
    mqtt_protocol: MqttProtocol = Field(default="5")
    embedded_mqtt_port: int = Field(default=1883, ge=0, le=65535)
    # The broker `up` runs: None = Mosquitto when installed, else amqtt.
    embedded_mqtt: EmbeddedMqtt | None = None

    database_url: SecretStr = SecretStr("sqlite:///./data/iot.db")
    database_url_file: Path | None = None

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=3000, ge=0, le=65535)
    # Bearer keys for /api/*: comma-separated, and/or one per line in IOT_API_KEYS_FILE
    # (blank lines and # comments ignored). Secret: never logged nor echoed.
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    api_keys_file: Path | None = None
    # "disabled" only allows serving without keys; keys that are set are always enforced.
    api_auth: ApiAuth = ApiAuth.ENABLED
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # HTTP connection limits (api/server.py): what one hostile connection may cost.
    http_max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=1024 * 1024)
    http_max_headers: int = Field(default=100, ge=10, le=10_000)
    http_header_timeout_s: float = Field(default=10.0, gt=0, le=600)
    http_keepalive_s: int = Field(default=5, ge=1, le=3600)
    http_max_connections: int = Field(default=512, ge=1, le=100_000)
    http_body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    _file_api_keys: tuple[str, ...] = PrivateAttr(default=())

    batch_max_size: int = Field(default=5000, ge=1, le=100_000)
    batch_max_delay_ms: int = Field(default=50, ge=1, le=60_000)
    shutdown_timeout_s: float = Field(default=8.0, gt=0, le=600)

    max_payload_bytes: int = Field(default=256 * 1024, ge=1024, le=64 * 1024 * 1024)
    # Readings one message may yield (array items, multi-sensor fields); more: dead-lettered whole.
    max_readings_per_message: int = Field(default=10_000, ge=1, le=1_000_000)
    max_future_skew_s: float = Field(default=300.0, ge=0)

    device_offline_after_s: int = Field(default=300, ge=1)
    retention_days: int | None = Field(default=None, ge=1)
    # How often the running service purges (the first purge runs shortly after start-up).
    retention_interval_s: float = Field(default=300.0, ge=1, le=86_400)
    # PostgreSQL time partitions of iot_data: "1d", "6h", "2 days", "12 hours" (whole hours).
    partition_interval: timedelta = timedelta(days=1)

    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.TEXT

    # Mapping rules (docs/devices.md): read and parsed here, compiled by domain/mapping.py.
    mappings_file: Path | None = None
    _mappings_document: Any = PrivateAttr(default=None)
    # Sparkplug B: ask an edge node whose aliases are unknown to send its births again.
    sparkplug_rebirth: bool = False

    @field_validator("mqtt_topics", mode="before")
    @classmethod
    def _split_topics(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value

    @field_validator("mqtt_topics")
    @classmethod
    def _check_topics(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one topic filter is required")
        for topic in value:
            parts = topic.split("/")
            for i, part in enumerate(parts):
                if part == "#" and i != len(parts) - 1:
                    raise ValueError(f"{topic!r}: '#' must be the last level")
                if ("#" in part or "+" in part) and len(part) > 1:
                    raise ValueError(f"{topic!r}: a wildcard must fill a whole level")
        return value

    @field_validator("partition_interval", mode="before")
    @classmethod
    def _parse_partition_interval(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_hours_or_days(value)
        return value

    @field_validator("partition_interval")
    @classmethod
    def _check_partition_interval(cls, value: timedelta) -> timedelta:
        if not _HOUR <= value <= _MAX_PARTITION or value % _HOUR:
            raise ValueError("a whole number of hours from 1 hour to 366 days")
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_api_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_api_keys(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for position, key in enumerate(value, start=1):
            _check_api_key(key.get_secret_value(), f"key {position}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: object) -> object:
        """IOT_MQTT_PASSWORD_FILE / IOT_DATABASE_URL_FILE give the secret's value from a file.

        One trailing newline is dropped (``echo secret > file``); setting both a variable and
        its ``_FILE`` is refused, as is a file that is missing, unreadable or empty.
        """
        if not isinstance(data, dict):
            return data
        for name in ("mqtt_password", "database_url"):
            path = data.get(f"{name}_file")
            if path in {None, ""}:
                continue
            env = f"IOT_{name.upper()}"
            if data.get(name) not in {None, ""}:
                raise ValueError(f"set {env} or {env}_FILE, not both")
            data = {**data, name: read_secret_file(Path(str(path)), f"{env}_FILE")}
        return data

    @model_validator(mode="after")
    def _read_api_keys_file(self) -> Settings:
        if self.api_keys_file is not None:
            try:
                self._file_api_keys = read_api_keys_file(self.api_keys_file)
            except ValueError as exc:
                raise ValueError(f"IOT_API_KEYS_FILE: {exc}") from None
        return self

    @model_validator(mode="after")
    def _read_mappings_file(self) -> Settings:
        if self.mappings_file is not None:
            self._mappings_document = read_mappings_file(self.mappings_file)
        return self

    @property
    def mappings_document(self) -> Any:
        """The parsed IOT_MAPPINGS_FILE (``None`` when unset), for ``compile_mappings``."""
        return self._mappings_document

    @field_validator("mqtt_status_topic")
    @classmethod
    def _check_status_topic(cls, value: str) -> str:
        if value and (not value.endswith("/+") or any(c in value[:-1] for c in "+#")):
            raise ValueError("must end with '/+' (the device id level), e.g. iot/status/+")
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
            raise ValueError("must look like mqtt://host:port or mqtts://host:port")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr) -> SecretStr:
        try:
            parse_database_url(value.get_secret_value())
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("IOT_DATABASE_URL: ")) from None
        return value

    @field_validator("mqtt_shared_group")
    @classmethod
    def _check_group(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c in value for c in "/+#")):
            raise ValueError("a shared group name must be non-empty without '/', '+' or '#'")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @model_validator(mode="after")
    def _check_device_topics(self) -> Settings:
        if self.mqtt_device_topics:
            for topic in self.mqtt_topics:
                if not topic.endswith("/+"):
                    raise ValueError(
                        f"IOT_MQTT_DEVICE_TOPICS=true needs topic filters whose last level is "
                        f"the device id, e.g. iot/data/+ (IOT_MQTT_TOPICS has {topic!r})"
                    )
        return self

    @model_validator(mode="after")
    def _check_tls_pair(self) -> Settings:
        if (self.mqtt_cert_file is None) != (self.mqtt_key_file is None):
            raise ValueError("IOT_MQTT_CERT_FILE and IOT_MQTT_KEY_FILE must be set together")
        return self

    @property
    def api_key_values(self) -> tuple[str, ...]:
        """Every accepted bearer key (IOT_API_KEYS and IOT_API_KEYS_FILE), without repeats."""
        keys = [k.get_secret_value() for k in self.api_keys] + list(self._file_api_keys)
        return tuple(dict.fromkeys(keys))

    @property
    def mqtt_host(self) -> str:
        return urlsplit(self.mqtt_url).hostname or "127.0.0.1"

    @property
    def mqtt_port(self) -> int:
        parts = urlsplit(self.mqtt_url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def mqtt_tls(self) -> bool:
        return urlsplit(self.mqtt_url).scheme == "mqtts"

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The topic filters as subscribed, with the shared-subscription prefix if any."""
        return self.subscriptions_with(())

    def topic_filters_with(self, rule_filters: tuple[str, ...]) -> tuple[str, ...]:
        """The data and status topic filters and the mapping rules' ones, once each."""
        filters = self.mqtt_topics + ((self.mqtt_status_topic,) if self.mqtt_status_topic else ())
        return tuple(dict.fromkeys(filters + rule_filters))

    def subscriptions_with(self, rule_filters: tuple[str, ...]) -> tuple[str, ...]:
        """:attr:`subscriptions` with the mapping rules' topic filters too, once each."""
        filters = self.topic_filters_with(rule_filters)
        if self.mqtt_shared_group:
            return tuple(f"$share/{self.mqtt_shared_group}/{t}" for t in filters)
        return filters

    @property
    def status_topic_prefix(self) -> str | None:
        """``iot/status/`` for ``iot/status/+``: messages under it are presence, not readings."""
        return self.mqtt_status_topic[:-1] if self.mqtt_status_topic else None


_MIN_API_KEY_CHARS = 16


def _check_api_key(key: str, where: str) -> None:
    """Refuse keys too short to resist guessing, or with characters a header cannot carry."""
    if len(key) < _MIN_API_KEY_CHARS:
        raise ValueError(f"{where} is shorter than {_MIN_API_KEY_CHARS} characters")
    if not key.isascii() or not key.isprintable() or any(c.isspace() or c == "," for c in key):
        raise ValueError(f"{where} must be printable ASCII without spaces or commas")


def read_secret_file(path: Path, variable: str) -> str:
    """A secret's value from ``path``: the whole file less one trailing newline."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{variable}: cannot read {path}: {type(exc).__name__}") from None
    value = text.removesuffix("\n").removesuffix("\r")
    if not value:
        raise ValueError(f"{variable}: {path} is empty")
    return value


_MAX_MAPPINGS_FILE_BYTES = 1024 * 1024


def read_mappings_file(path: Path) -> Any:
    """The YAML document of IOT_MAPPINGS_FILE (safe loader: data only, no Python objects)."""
    try:
        with path.open("rb") as file:
            text = file.read(_MAX_MAPPINGS_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"IOT_MAPPINGS_FILE: cannot read {path}: {type(exc).__name__}") from None
    if len(text) > _MAX_MAPPINGS_FILE_BYTES:
        raise ValueError(f"IOT_MAPPINGS_FILE: {path} is larger than 1 MiB")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"IOT_MAPPINGS_FILE: {path} is not valid YAML: {exc}") from None


def read_api_keys_file(path: Path) -> tuple[str, ...]:
    """One key per line; blank lines and lines starting with ``#`` are ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {type(exc).__name__}") from None
    keys: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        _check_api_key(line, f"{path} line {number}")
        keys.append(line)
    return tuple(keys)


ENV_FILE: Final = Path(".env")


def _dotenv_names(env_file: Path) -> set[str]:
    """The variable names ``env_file`` sets (upper case: settings ignore case)."""
    from dotenv import dotenv_values  # noqa: PLC0415 - only when there is such a file

    if not env_file.is_file():
        return set()
    return {name.upper() for name in dotenv_values(env_file)}


def load_settings(env_file: Path = ENV_FILE) -> Settings:
    """Read and validate the settings; a ``ConfigError`` names each bad variable, and says when
    its value came from ``.env`` rather than the environment."""
    try:
        return Settings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        in_env = {name.upper() for name in os.environ}
        in_file = _dotenv_names(env_file) - in_env
        problems = []
        for error in exc.errors():
            name = "IOT_" + "_".join(str(p) for p in error["loc"]).upper() if error["loc"] else ""
            origin = f" (set in {env_file})" if name in in_file else ""
            problems.append(f"{name or 'settings'}{origin}: {error['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


def unknown_variables(
    environ: Mapping[str, str] | None = None, env_file: Path = ENV_FILE
) -> list[str]:
    """A warning for each ``IOT_*`` variable (environment or ``.env``) that is no setting,
    with the closest setting's name: a misspelt variable is otherwise silently ignored."""
    env = os.environ if environ is None else environ
    known = sorted(f"IOT_{name.upper()}" for name in Settings.model_fields)
    names = {name.upper() for name in env} | _dotenv_names(env_file)
    warnings = []
    for name in sorted(n for n in names if n.startswith("IOT_") and n not in known):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f": did you mean {close[0]}?" if close else ""
        warnings.append(f"{name} is not a setting and is ignored{hint}")
    return warnings
