"""Run Terraform offline on a copy of deploy/terraform: provider from the local mirror only.

The AWS provider (700 MB) is linked from the unpacked mirror (design §8: /opt/tf-plugins), not
copied per root as ``init -plugin-dir`` does, and the CLI configuration names no other source:
``init`` cannot reach a registry.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from deploy_helpers import TERRAFORM, check, require_tool

# Where the AWS provider lies on disk (IOT_TF_PLUGIN_DIR, as CI mirrors it): an unpacked mirror.
PLUGIN_DIR = Path(os.environ.get("IOT_TF_PLUGIN_DIR", "/opt/tf-plugins"))

_CLI_CONFIG = """provider_installation {{
  filesystem_mirror {{
    path    = "{path}"
    include = ["registry.terraform.io/hashicorp/aws"]
  }}
}}
"""


def terraform_tool() -> str:
    """The terraform binary; skips when it or the offline provider is missing."""
    tool = require_tool("terraform", "install terraform >= 1.11")
    if not PLUGIN_DIR.is_dir():
        pytest.skip(f"{PLUGIN_DIR} (the AWS provider for offline init) is absent")
    return tool


def copy_terraform(target: Path) -> Path:
    """A copy of deploy/terraform: init writes .terraform/ and lock files there, not in the repo."""
    shutil.copytree(
        TERRAFORM, target, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*", "*.tfvars")
    )
    return target


def terraform_env(home: Path) -> dict[str, str]:
    """Environment of an offline terraform: local mirror only, no checkpoint, no AWS profile."""
    config = home / "terraform.rc"
    if not config.exists():
        config.write_text(_CLI_CONFIG.format(path=PLUGIN_DIR), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
    return {
        **env,
        "TF_CLI_CONFIG_FILE": str(config),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
    }


def init(terraform: str, cwd: Path, env: dict[str, str], *, backend: bool = False) -> None:
    """``terraform init``; with ``backend``, the root's (e.g. a local override) is initialised."""
    check(
        [terraform, "init", f"-backend={str(backend).lower()}", "-input=false", "-no-color"],
        cwd=cwd,
        env=env,
    )
