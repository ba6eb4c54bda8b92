"""Terraform for AWS: fmt, validate every root offline, and the properties the issue asks for."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from deploy_helpers import DEPLOY, REPO, TERRAFORM, check
from terraform_support import copy_terraform, init, terraform_env, terraform_tool

if TYPE_CHECKING:
    from pathlib import Path

# Account ids that are not ours: the placeholder, and AWS's own publisher of the Secrets Manager
# rotation functions in the Serverless Application Repository.
PUBLIC_ACCOUNT_IDS = frozenset({"000000000000", "297356227824"})
TEXT_SUFFIXES = frozenset(
    {".tf", ".hcl", ".example", ".yaml", ".yml", ".md", ".sh", ".tpl", ".txt"}
)
ROOTS = [
    "environments/prod",
    *sorted(f"modules/{p.name}" for p in (TERRAFORM / "modules").iterdir() if p.is_dir()),
]


def _blocks(text: str, kind: str) -> dict[str, str]:
    """The bodies of the top-level `kind "[type]" "name" { ... }` blocks of an HCL file, by name."""
    blocks = {}
    for match in re.finditer(rf'^{kind} "([^"]+)"(?: "([^"]+)")? \{{', text, re.MULTILINE):
        depth, i = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        name = f"{match.group(1)}.{match.group(2)}" if match.group(2) else match.group(1)
        blocks[name] = text[match.end() : i - 1]
    return blocks


def _all(kind: str, root: Path = TERRAFORM) -> dict[str, str]:
    found = {}
    for path in sorted(root.rglob("*.tf")):
        if ".terraform" in path.parts:
            continue
        rel = path.relative_to(TERRAFORM)
        for name, body in _blocks(path.read_text(encoding="utf-8"), kind).items():
            found[f"{rel}:{name}"] = body
    return found


@pytest.fixture(scope="module")
def terraform() -> str:
    return terraform_tool()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A copy of deploy/terraform: init writes .terraform/ and lock files there, not in the repo."""
    home = tmp_path_factory.mktemp("terraform")
    return copy_terraform(home / "terraform"), terraform_env(home)


def test_fmt_check_recursive(terraform: str) -> None:
    check([terraform, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)])


@pytest.mark.parametrize("root", ROOTS)
def test_validate(terraform: str, workdir: tuple[Path, dict[str, str]], root: str) -> None:
    copy, env = workdir
    init(terraform, copy / root, env)
    check([terraform, "validate", "-no-color"], cwd=copy / root, env=env)


def test_every_variable_is_typed_and_described() -> None:
    variables = _all("variable")
    assert variables
    for name, body in variables.items():
        assert re.search(r"^\s*type\s*=", body, re.MULTILINE), f"{name} has no type"
        assert re.search(r'^\s*description\s*=\s*"\S', body, re.MULTILINE), f"{name}: description"
    for name, body in _all("output").items():
        assert re.search(r'^\s*description\s*=\s*"\S', body, re.MULTILINE), f"{name}: description"


def test_modules_pin_the_aws_provider_major_version() -> None:
    for path in [
        *TERRAFORM.glob("modules/*/versions.tf"),
        *TERRAFORM.glob("environments/*/versions.tf"),
    ]:
        text = path.read_text(encoding="utf-8")
        assert 'source  = "hashicorp/aws"' in text, path
        assert 'version = "~> 5.0"' in text, path


def test_prod_wires_every_module_and_keeps_state_in_s3_with_locking() -> None:
    text = "".join(
        p.read_text(encoding="utf-8") for p in (TERRAFORM / "environments/prod").glob("*.tf")
    )
    modules = {p.name for p in (TERRAFORM / "modules").iterdir() if p.is_dir()}
    assert modules == {"network", "eks", "rds", "iot", "secrets", "ecr", "backup", "github-oidc"}
    for module in modules:
        assert f'source = "../../modules/{module}"' in text, module
    assert 'backend "s3"' in text
    assert "use_lockfile = true" in text
    assert "encrypt      = true" in text


def test_network_has_the_architecture_cidrs() -> None:
    text = (TERRAFORM / "modules/network/variables.tf").read_text(encoding="utf-8")
    assert '"10.0.0.0/16"' in text
    assert '["10.0.1.0/24", "10.0.2.0/24"]' in text
    assert '["10.0.10.0/24", "10.0.11.0/24"]' in text
    main = (TERRAFORM / "modules/network/main.tf").read_text(encoding="utf-8")
    assert 'resource "aws_nat_gateway"' in main
    # ALB open on 80/443 only; nodes reachable from the ALB only on the API port.
    alb_rules = [b for n, b in _all("resource").items() if n.endswith(("alb_https", "alb_http"))]
    assert len(alb_rules) == 2
    nodes_from_alb = _all("resource")[
        "modules/network/main.tf:aws_vpc_security_group_ingress_rule.nodes_from_alb"
    ]
    assert "aws_security_group.alb.id" in nodes_from_alb


def test_rds_is_multi_az_encrypted_backed_up_protected_and_private() -> None:
    body = _all("resource")["modules/rds/main.tf:aws_db_instance.this"]
    for setting in (
        "multi_az               = true",
        "storage_encrypted     = true",
        "publicly_accessible    = false",
        "manage_master_user_password         = true",
        "deletion_protection       = var.deletion_protection",
        "backup_retention_period   = var.backup_retention_days",
    ):
        assert setting in body, setting
    ingress = _all("resource")["modules/rds/main.tf:aws_vpc_security_group_ingress_rule.from_nodes"]
    assert "referenced_security_group_id = each.value" in ingress
    assert "cidr" not in ingress


def test_iot_policies_bind_devices_to_their_own_client_id_and_topics() -> None:
    text = (TERRAFORM / "modules/iot/main.tf").read_text(encoding="utf-8")
    device = _all("resource")["modules/iot/main.tf:aws_iot_policy.device"]
    assert "client/$${iot:Connection.Thing.ThingName}" in device
    assert '"iot:Connection.Thing.IsAttached" = "true"' in device
    assert "topic/${var.status_topic_prefix}/$${iot:Connection.Thing.ThingName}" in device
    assert "iot:Subscribe" not in device
    collector = _all("resource")["modules/iot/main.tf:aws_iot_policy.collector"]
    assert "topicfilter/$share/${var.shared_group}/${local.data_filter}" in collector
    # Per-device topics (var.device_topics): a device publishes only under its thing name.
    assert "topic/${local.device_data_topic}" in device
    assert 'device_data_topic = var.device_topics ? "${var.data_topic}/$${iot:Connection' in text
    assert "iot:Publish" not in collector
    assert 'data "aws_iot_endpoint" "ats"' in text


def test_backup_bucket_is_encrypted_private_and_has_lifecycle_rules() -> None:
    text = (TERRAFORM / "modules/backup/main.tf").read_text(encoding="utf-8")
    for needle in (
        'sse_algorithm     = "aws:kms"',
        "block_public_acls       = true",
        "restrict_public_buckets = true",
        'resource "aws_s3_bucket_lifecycle_configuration"',
        "aws:SecureTransport",
    ):
        assert needle in text, needle


def test_spot_node_group_and_log_retention_are_variables() -> None:
    prod = (TERRAFORM / "environments/prod/variables.tf").read_text(encoding="utf-8")
    assert 'variable "spot_enabled"' in prod
    assert 'variable "log_retention_days"' in prod
    eks = (TERRAFORM / "modules/eks/main.tf").read_text(encoding="utf-8")
    assert 'capacity_type   = "SPOT"' in eks


def test_readme_documents_every_input_and_output() -> None:
    readme = (TERRAFORM / "README.md").read_text(encoding="utf-8")
    for name in [*_all("variable"), *_all("output")]:
        short = name.split(":", 1)[1]
        assert f"`{short}`" in readme, f"README.md does not document {name}"


def test_no_state_files_or_real_account_ids_committed() -> None:
    leftovers = [
        p
        for p in TERRAFORM.rglob("*")
        if p.name.endswith((".tfstate", ".tfstate.backup", ".tfplan")) or p.name == "backend.hcl"
    ]
    assert leftovers == []
    gitignore = (TERRAFORM / ".gitignore").read_text(encoding="utf-8")
    for pattern in (".terraform/", "*.tfstate", "*.tfvars", ".terraform.lock.hcl"):
        assert pattern in gitignore
    account_id = re.compile(r"(?<![\w.])\d{12}(?![\w.])")
    for path in [*DEPLOY.rglob("*"), *(REPO / ".github").rglob("*")]:
        if path.is_file() and ".terraform" not in path.parts and path.suffix in TEXT_SUFFIXES:
            ids = set(account_id.findall(path.read_text(encoding="utf-8", errors="ignore")))
            assert ids <= PUBLIC_ACCOUNT_IDS, f"{path}: {ids}"
