"""The release path to EKS: gated on CI, reaching the cluster, allowed to create what it deploys.

Static checks of .github/workflows/release.yml against ci.yml, the Terraform defaults and the
deployer RBAC (deploy/kubernetes/deployer-rbac.yaml) with the chart rendered in AWS mode.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from deploy_helpers import (
    CHART,
    DEPLOY,
    REPO,
    TERRAFORM,
    check,
    load_yaml,
    load_yaml_all,
    require_tool,
)

WORKFLOWS = REPO / ".github" / "workflows"
RBAC = DEPLOY / "kubernetes" / "deployer-rbac.yaml"
# API groups whose kinds AmazonEKSAdminPolicy (namespace scope) covers: Kubernetes' own.
BUILT_IN_GROUPS = frozenset(
    {"", "apps", "batch", "autoscaling", "policy", "networking.k8s.io", "rbac.authorization.k8s.io"}
)


def _workflow(name: str) -> dict[str, Any]:
    raw: dict[Any, Any] = load_yaml(WORKFLOWS / name)
    # YAML 1.1 reads the key `on` as True.
    return {("on" if key is True else str(key)): value for key, value in raw.items()}


def _tf_default(path: str, variable: str) -> str:
    text = (TERRAFORM / path).read_text(encoding="utf-8")
    match = re.search(rf'variable "{variable}" {{[^}}]*?default\s*=\s*"([^"]*)"', text, re.DOTALL)
    assert match, f"{path}: no string default for {variable}"
    return match.group(1)


def test_release_runs_only_after_ci_passed_on_main() -> None:
    release, ci = _workflow("release.yml"), _workflow("ci.yml")
    assert set(release["on"]) == {"workflow_run"}, "no push/dispatch trigger beside the gate"
    run = release["on"]["workflow_run"]
    assert run["workflows"] == [ci["name"]]
    assert run["types"] == ["completed"]
    assert run["branches"] == ["main"]
    gated: set[str] = set()
    for name, job in release["jobs"].items():
        condition = job.get("if", "")
        needs = job.get("needs", [])
        needs = [needs] if isinstance(needs, str) else needs
        assert "github.event.workflow_run.conclusion == 'success'" in condition or (
            needs and set(needs) <= gated
        ), f"job {name} may run when CI failed"
        gated.add(name)
    assert release["jobs"]["deploy"]["needs"] == "image"


def test_release_builds_and_deploys_the_commit_ci_tested() -> None:
    release = _workflow("release.yml")
    for name, job in release["jobs"].items():
        checkouts = [
            s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/checkout")
        ]
        for step in checkouts:
            assert step["with"]["ref"] == "${{ github.event.workflow_run.head_sha }}", name
    text = (WORKFLOWS / "release.yml").read_text(encoding="utf-8")
    assert "github.sha" not in text, "github.sha is main's head, not the commit CI tested"


def test_release_rerun_reuses_the_immutable_tag() -> None:
    steps = _workflow("release.yml")["jobs"]["image"]["steps"]
    (build,) = [s for s in steps if s.get("id") == "build"]
    assert build.get("if") == "steps.existing.outputs.digest == ''"
    (existing,) = [s for s in steps if s.get("id") == "existing"]
    assert "aws ecr describe-images" in existing["run"]


def test_deploy_checks_it_can_reach_the_endpoint_before_helm() -> None:
    job = _workflow("release.yml")["jobs"]["deploy"]
    assert "vars.DEPLOY_RUNNER" in job["runs-on"]
    runs = [s.get("run", "") for s in job["steps"]]
    check_step = next(i for i, r in enumerate(runs) if "publicAccessCidrs" in r)
    helm_step = next(i for i, r in enumerate(runs) if "helm upgrade" in r)
    assert check_step < helm_step


def test_deploy_role_can_create_every_kind_the_chart_renders(tmp_path: Any) -> None:
    """Built-in kinds come with AmazonEKSAdminPolicy; custom resources need the deployer Role."""
    helm = require_tool("helm")
    release = _workflow("release.yml")
    helm_run = next(
        s["run"] for s in release["jobs"]["deploy"]["steps"] if "helm upgrade" in s.get("run", "")
    )
    assert "--create-namespace" not in helm_run, "creating a namespace is cluster-scoped"
    namespace = re.search(r"--namespace (\S+)", helm_run)
    assert namespace
    rendered = load_yaml_all(
        check(
            [
                helm,
                "template",
                "iot-collector",
                str(CHART),
                "-n",
                namespace.group(1),
                "-f",
                str(CHART / "values-aws.yaml"),
            ]
        )
    )
    rbac = load_yaml_all(RBAC.read_text(encoding="utf-8"))
    (ns,) = [d for d in rbac if d["kind"] == "Namespace"]
    assert ns["metadata"]["name"] == namespace.group(1)
    assert ns["metadata"]["name"] == _tf_default(
        "environments/prod/variables.tf", "kubernetes_namespace"
    )
    (role,) = [d for d in rbac if d["kind"] == "Role"]
    (binding,) = [d for d in rbac if d["kind"] == "RoleBinding"]
    assert (
        role["metadata"]["namespace"] == binding["metadata"]["namespace"] == ns["metadata"]["name"]
    )
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    group = _tf_default("modules/github-oidc/variables.tf", "deploy_kubernetes_group")
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}
    ]
    allowed = {
        (api_group, resource)
        for rule in role["rules"]
        if {"create", "update", "patch", "delete", "get"} <= set(rule["verbs"])
        for api_group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    for doc in rendered:
        api_group = doc["apiVersion"].rpartition("/")[0]
        assert doc["metadata"].get("namespace", namespace.group(1)) == namespace.group(1), (
            f"{doc['kind']} {doc['metadata']['name']} is outside the deploy namespace"
        )
        if api_group in BUILT_IN_GROUPS:
            continue
        resource = doc["kind"].lower() + "s"
        assert (api_group, resource) in allowed, f"the deploy role cannot create {doc['kind']}"


def test_deployer_rbac_is_valid_kubernetes() -> None:
    tool = require_tool("kubernetes-validate", "pip install kubernetes-validate")
    check([tool, "--strict", "-k", "1.30.0", str(RBAC)])


@pytest.mark.parametrize(
    "path", ["deploy/helm/iot-collector/values-aws.yaml", "docs/deployment.md"]
)
def test_no_account_or_region_hard_coded(path: str) -> None:
    """Account-specific values come from terraform outputs and HELM_VALUES_PROD, not the repo."""
    text = (REPO / path).read_text(encoding="utf-8")
    assert not re.findall(r"\b\d{12}\b", text), "an account id"
    assert not re.findall(r"\b(?:eu|us|ap|sa|ca|me|af)-[a-z]+-\d\b", text), "a region"
