"""The local compose stack: Compose-spec schema, commands and variables that exist, the shape."""

from __future__ import annotations

import re
from typing import Any

import pytest
from deploy_helpers import (
    DEPLOY,
    check,
    check_cli_command,
    load_yaml,
    require_tool,
    unknown_env_names,
)

COMPOSE_DIR = DEPLOY / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
MOSQUITTO_CONF = DEPLOY / "helm" / "iot-collector" / "files" / "mosquitto" / "mosquitto.conf"
COLLECTORS = ("collector-1", "collector-2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict)
    return data


def _ours(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run our image (the iot-collector entrypoint)."""
    return {
        name: svc
        for name, svc in compose["services"].items()
        if "build" in svc and svc["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    }


def test_validates_against_the_compose_spec() -> None:
    tool = require_tool("check-jsonschema", "pip install check-jsonschema")
    check([tool, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])


def test_our_services_are_migrate_two_collectors_and_the_simulator(
    compose: dict[str, Any],
) -> None:
    assert set(_ours(compose)) == {"migrate", *COLLECTORS, "simulator"}


@pytest.mark.parametrize("service", ["migrate", *COLLECTORS, "simulator"])
def test_command_exists_in_the_cli(compose: dict[str, Any], service: str) -> None:
    check_cli_command(compose["services"][service]["command"])


def test_every_environment_variable_is_read_by_the_app(compose: dict[str, Any]) -> None:
    for name, svc in _ours(compose).items():
        env = set(svc.get("environment", {}))
        assert unknown_env_names(env) == [], f"{name}: variables the app does not read"


def test_replicas_share_one_group_with_distinct_stable_client_ids(compose: dict[str, Any]) -> None:
    envs = [compose["services"][name]["environment"] for name in COLLECTORS]
    ids = {env["IOT_MQTT_CLIENT_ID"] for env in envs}
    assert len(ids) == len(COLLECTORS)
    groups = {env["IOT_MQTT_SHARED_GROUP"] for env in envs}
    assert len(groups) == 1
    assert None not in groups
    for env in envs:
        assert env["IOT_MQTT_URL"] == "mqtt://mosquitto:1883"
        assert env["IOT_DATABASE_URL"].startswith("postgresql://")


def test_start_order_uses_health_and_completion(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in COLLECTORS:
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["mosquitto"]["condition"] == "service_healthy"
        assert deps["postgres"]["condition"] == "service_healthy"
        assert "/readyz" in " ".join(services[name]["healthcheck"]["test"])
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("mosquitto", "postgres", "prometheus", "grafana"):
        assert "healthcheck" in services[name], name


def test_containers_of_ours_are_hardened(compose: dict[str, Any]) -> None:
    for name, svc in _ours(compose).items():
        assert svc["read_only"] is True, name
        assert svc["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in svc["security_opt"], name


def test_no_secret_is_written_in_the_file(compose: dict[str, Any]) -> None:
    secret_key = re.compile(r"PASSWORD|KEYS?$|SECRET|TOKEN")
    for name, svc in compose["services"].items():
        for key, value in svc.get("environment", {}).items():
            if secret_key.search(key):
                assert "${" in str(value), f"{name}.{key} must come from .env, not the file"
        url = str(svc.get("environment", {}).get("IOT_DATABASE_URL", ""))
        if url:
            assert "${POSTGRES_PASSWORD}" in url, f"{name}: database password must be interpolated"


def test_host_ports_bind_to_loopback_only(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"


def test_bind_mounts_exist(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if not source.startswith("."):
                continue
            path = (COMPOSE_DIR / source).resolve()
            assert path.exists(), f"{name} mounts {source}, which does not exist"


def _mosquitto_settings() -> dict[str, str]:
    settings: dict[str, str] = {}
    for raw in MOSQUITTO_CONF.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            settings.setdefault(key, value.strip())
    return settings


def test_mosquitto_keeps_the_backlog_and_persists_it() -> None:
    conf = _mosquitto_settings()
    # The default (1000) drops QoS 1 messages for a slow or restarting collector (measured,
    # docs/deployment.md).
    assert int(conf["max_queued_messages"]) >= 100_000
    assert int(conf["max_queued_bytes"]) > 0
    assert conf["persistence"] == "true"
    assert int(conf["autosave_interval"]) > 0
    assert conf["allow_anonymous"] == "false"
    assert "password_file" in conf
    # Rights from the dynamic-security plugin; acl_file would grant every SUBSCRIBE again.
    assert conf["plugin"].endswith("mosquitto_dynamic_security.so")
    assert "acl_file" not in conf


def test_mosquitto_entrypoint_passes_shellcheck() -> None:
    shellcheck = require_tool("shellcheck", "apt-get install shellcheck")
    check([shellcheck, str(MOSQUITTO_CONF.parent / "entrypoint.sh")])
