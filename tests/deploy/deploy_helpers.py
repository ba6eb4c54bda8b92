"""Shared helpers for the deployment-as-code tests: find the linters, run them, know the app.

Every tool is looked up in the repository's ``.tools/`` (what ``scripts/install-deploy-tools.sh``
installs), then beside the running interpreter (the venv's console scripts), then on ``PATH``.
A missing tool skips the test with the reason, never passes it silently (and under
``CI=true`` the skip is a failure: tests/conftest.py).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "iot-collector"
TERRAFORM = DEPLOY / "terraform"
TOOLS = REPO / ".tools"
INSTALL_HINT = "run scripts/install-deploy-tools.sh"

# The environment variables of the README's configuration table that every deployment knows.
DESIGN_ENV = frozenset(
    {
        "IOT_MQTT_URL",
        "IOT_MQTT_TOPICS",
        "IOT_MQTT_CLIENT_ID",
        "IOT_MQTT_SHARED_GROUP",
        "IOT_MQTT_USERNAME",
        "IOT_MQTT_PASSWORD",
        "IOT_MQTT_CA_FILE",
        "IOT_MQTT_CERT_FILE",
        "IOT_MQTT_KEY_FILE",
        "IOT_DATABASE_URL",
        "IOT_API_HOST",
        "IOT_API_PORT",
        "IOT_API_KEYS",
        "IOT_API_AUTH",
        "IOT_BATCH_MAX_SIZE",
        "IOT_BATCH_MAX_DELAY_MS",
        "IOT_DEVICE_OFFLINE_AFTER_S",
        "IOT_RETENTION_DAYS",
        "IOT_EMBEDDED_MQTT_PORT",
        "IOT_LOG_LEVEL",
        "IOT_LOG_FORMAT",
    }
)
# The subcommands a deployment may run (README, "Commands").
DESIGN_SUBCOMMANDS = frozenset({"serve", "up", "migrate", "simulate", "backup", "restore"})


def find_tool(name: str) -> str | None:
    """The path of a tool, or None."""
    candidates = [
        TOOLS / "bin" / name,
        TOOLS / f"{name}-venv" / "bin" / name,
        Path(sys.executable).parent / name,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return shutil.which(name)


def require_tool(name: str, hint: str = INSTALL_HINT) -> str:
    """The path of a tool; skips the calling test when it is missing."""
    path = find_tool(name)
    if path is None:
        pytest.skip(f"{name} is not installed ({hint})")
    return path


def run(
    cmd: list[str], *, cwd: Path = REPO, timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output."""
    return subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def check(
    cmd: list[str], *, cwd: Path = REPO, timeout: float = 240, env: dict[str, str] | None = None
) -> str:
    """Run a command that must succeed; return its stdout. The failure shows all output."""
    result = run(cmd, cwd=cwd, timeout=timeout, env=env)
    assert result.returncode == 0, (
        f"{' '.join(cmd)} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout[-8000:]}\n--- stderr\n{result.stderr[-8000:]}"
    )
    return result.stdout


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (kubectl's strict decoding refuses them too)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys = [loader.construct_object(key, deep=True) for key, _ in node.value]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        raise yaml.constructor.ConstructorError(
            None, None, f"duplicate keys {sorted(map(str, duplicates))}", node.start_mark
        )
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def load_yaml_all(text: str) -> list[dict[str, Any]]:
    """Every non-empty document of a multi-document YAML text; duplicate keys are an error."""
    return [doc for doc in yaml.load_all(text, Loader=_UniqueKeyLoader) if doc]


@functools.cache
def settings_env_names() -> frozenset[str]:
    """IOT_* names of the Settings fields (iotcollector/config.py): mqtt_url ↔ IOT_MQTT_URL."""
    from iotcollector.config import Settings  # noqa: PLC0415 - only for the tests that need it

    return frozenset(f"IOT_{name.upper()}" for name in Settings.model_fields)


def unknown_env_names(names: set[str]) -> list[str]:
    """Names the application does not read: not a Settings field."""
    return sorted(name for name in names if name not in settings_env_names())


@functools.cache
def cli_help(subcommand: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "iotcollector", subcommand, "--help"], timeout=60)


def check_cli_command(argv: list[str]) -> None:
    """A container command of ours (arguments after the `iot-collector` entrypoint) exists.

    The subcommand must be one a deployment may run; it must accept `--help`, and every
    `--option` the deployment passes must appear in that help.
    """
    assert argv, "empty command"
    sub = argv[0]
    assert sub in DESIGN_SUBCOMMANDS, f"{sub!r} is not an iot-collector subcommand"
    result = cli_help(sub)
    if result.returncode != 0:
        pytest.fail(f"iot-collector {sub} --help failed:\n{result.stdout}\n{result.stderr}")
    for arg in argv[1:]:
        if arg.startswith("--"):
            flag = arg.split("=", 1)[0]
            assert flag in result.stdout, f"iot-collector {sub} has no option {flag}"
