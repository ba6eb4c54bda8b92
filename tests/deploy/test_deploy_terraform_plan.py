"""``terraform test`` plan tests: every environment and module planned with AWS mocked.

Each root has ``tests/*.tftest.hcl`` with ``mock_provider "aws"`` and ``command = plan``: a first
plan on a new account (empty state) and, for an environment, a plan with its example tfvars.
`validate` never plans; these catch a ``for_each``/``count`` over values known only after apply
and the provider's plan-time checks (policy JSON, ARNs), and assert the properties the
deployment relies on (KMS grants for Auto Scaling, the deploy role's Kubernetes group, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from deploy_helpers import TERRAFORM, check
from terraform_support import copy_terraform, init, terraform_env, terraform_tool

if TYPE_CHECKING:
    from pathlib import Path

ROOTS = sorted(
    str(p.relative_to(TERRAFORM))
    for p in [*TERRAFORM.glob("environments/*"), *TERRAFORM.glob("modules/*")]
    if p.is_dir()
)
TEST_FILES = sorted(str(p.relative_to(TERRAFORM)) for p in TERRAFORM.glob("*/*/tests/*.tftest.hcl"))
# A test file of this name plans with the root's <env>.tfvars.example.
EXAMPLE_TFVARS_TEST = "example_tfvars.tftest.hcl"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict[str, str]]:
    terraform = terraform_tool()
    home = tmp_path_factory.mktemp("terraform-plan")
    return terraform, copy_terraform(home / "terraform"), terraform_env(home)


@pytest.fixture(scope="module")
def initialised(workdir: tuple[str, Path, dict[str, str]]) -> set[str]:
    return set()


@pytest.mark.parametrize("root", ROOTS)
def test_every_root_has_plan_tests(root: str) -> None:
    assert list((TERRAFORM / root / "tests").glob("*.tftest.hcl")), f"{root} has no plan test"


@pytest.mark.parametrize("test_file", TEST_FILES)
def test_plan(
    workdir: tuple[str, Path, dict[str, str]], initialised: set[str], test_file: str
) -> None:
    terraform, copy, env = workdir
    root, _, name = test_file.partition("/tests/")
    cwd = copy / root
    if root not in initialised:
        init(terraform, cwd, env)
        initialised.add(root)
    cmd = [terraform, "test", "-no-color", f"-filter=tests/{name}"]
    if name == EXAMPLE_TFVARS_TEST:
        (example,) = cwd.glob("*.tfvars.example")
        cmd.append(f"-var-file={example.name}")
    out = check(cmd, cwd=cwd, env=env, timeout=300)
    assert "0 failed" in out, out
