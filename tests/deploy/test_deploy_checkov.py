"""checkov on the Dockerfile, Terraform, the rendered Kubernetes manifests and the workflows.

One checkov run per framework (module-scoped): no failed check, and every skipped check carries
its justification in place (a `checkov:skip=ID:reason` comment in Terraform, a
`checkov.io/skipN: ID=reason` annotation in the chart).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest
from deploy_helpers import CHART, DEPLOY, REPO, TERRAFORM, check, require_tool, run

if TYPE_CHECKING:
    from pathlib import Path

CheckovReport = dict[str, Any]


@pytest.fixture(scope="module")
def checkov() -> str:
    return require_tool("checkov", "scripts/install-deploy-tools.sh installs it in .tools/")


def _run_checkov(checkov: str, framework: str, *target: str) -> list[CheckovReport]:
    result = run(
        [
            checkov,
            *target,
            "--framework",
            framework,
            "--output",
            "json",
            "--skip-download",
            "--quiet",
            "--compact",
        ],
        timeout=300,
    )
    assert result.returncode in {0, 1}, result.stderr[-4000:]
    data: CheckovReport | list[CheckovReport] = json.loads(result.stdout)
    reports = data if isinstance(data, list) else [data]
    assert reports
    return reports


def _assert_clean(reports: list[CheckovReport]) -> None:
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for report in reports
        for c in report.get("results", {}).get("failed_checks", [])
    ]
    assert failed == [], "\n".join(failed)
    for report in reports:
        for skipped in report.get("results", {}).get("skipped_checks", []):
            reason = (skipped.get("check_result") or {}).get("suppress_comment", "")
            assert len(reason.strip()) >= 15, f"{skipped['check_id']} skipped without a reason"
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    assert passed > 0, "checkov checked nothing"


@pytest.fixture(scope="module")
def rendered_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    helm = require_tool("helm", "run scripts/install-deploy-tools.sh")
    out = tmp_path_factory.mktemp("checkov-k8s")
    for name, extra in (
        ("default", []),
        ("local", ["-f", str(CHART / "values-local.yaml")]),
        ("aws", ["-f", str(CHART / "values-aws.yaml")]),
    ):
        text = check([helm, "template", "iot", str(CHART), "--namespace", "iot", *extra])
        (out / f"{name}.yaml").write_text(text, encoding="utf-8")
    return out


def test_dockerfile(checkov: str) -> None:
    _assert_clean(_run_checkov(checkov, "dockerfile", "-f", str(DEPLOY / "docker" / "Dockerfile")))


def test_terraform(checkov: str) -> None:
    _assert_clean(_run_checkov(checkov, "terraform", "-d", str(TERRAFORM)))


def test_kubernetes_manifests(checkov: str, rendered_chart: Path) -> None:
    _assert_clean(_run_checkov(checkov, "kubernetes", "-d", str(rendered_chart)))


def test_github_workflows(checkov: str) -> None:
    _assert_clean(
        _run_checkov(checkov, "github_actions", "-d", str(REPO / ".github" / "workflows"))
    )


def test_every_skip_in_the_sources_has_a_reason() -> None:
    terraform_skip = re.compile(r"checkov:skip=([A-Z0-9_]+)(:?)(.*)")
    for path in TERRAFORM.rglob("*.tf"):
        for match in terraform_skip.finditer(path.read_text(encoding="utf-8")):
            assert match.group(2) == ":", f"{path}: {match.group(1)} skipped without a reason"
            assert len(match.group(3).strip()) >= 15, f"{path}: {match.group(1)}: reason too short"
    annotation = re.compile(r'checkov\.io/skip\d+: "([A-Z0-9_]+)=([^"]*)"')
    helpers = (CHART / "templates" / "_helpers.tpl").read_text(encoding="utf-8")
    skips = annotation.findall(helpers)
    assert skips
    for check_id, reason in skips:
        assert len(reason.strip()) >= 15, f"{check_id}: reason too short"
