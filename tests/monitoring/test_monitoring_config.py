"""Monitoring as code: Prometheus config, alert rules and their tests, Grafana dashboards.

- ``promtool check config`` / ``check rules`` / ``test rules`` pass (skipped, with the reason,
  where promtool is missing: ``scripts/setup.sh`` installs it);
- every alert has severity, summary, description and a runbook that exists, and promtool test
  cases where it fires and where it must not;
- every PromQL expression of the rules and dashboards parses (through ``promtool check rules``
  on a generated file) and names only metrics of ``monitoring/metrics.txt``;
- dashboards have stable uids and refer only to the provisioned datasources;
- the SQL of the Sensor-trends dashboard runs against the real schema (``integration``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
PROMETHEUS_DIR = MONITORING / "prometheus"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"
GRAFANA_DIR = MONITORING / "grafana"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
RUNBOOKS_DIR = REPO / "docs" / "runbooks"
METRICS_FILE = MONITORING / "metrics.txt"
# Metrics of the exporters beside the collector (node-exporter, kubelet, postgres-exporter).
EXPORTER_METRICS_FILE = MONITORING / "metrics-exporters.txt"
PROMETHEUS_CONFIGS = ("prometheus.yml", "prometheus-kubernetes.yml")

RUNBOOK_URL_PREFIX = "https://github.com/iot-collector/iot-collector/blob/main/docs/runbooks/"
SEVERITIES = {"critical", "warning", "info"}
JOB = "iot-collector"

# The dashboards' uids are their permanent addresses (links, bookmarks, alerts): never change.
DASHBOARD_UIDS = {
    "mqtt-message-rate.json": "iot-mqtt-message-rate",
    "database-performance.json": "iot-database-performance",
    "system.json": "iot-system",
    "sensor-trends.json": "iot-sensor-trends",
}
DATASOURCES = {"prometheus": "prometheus", "iot-postgres": "postgres"}  # uid -> type
POSTGRES_TYPES = {"postgres", "grafana-postgresql-datasource"}

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed: `apt-get install prometheus` "
    "(scripts/setup.sh); CI installs it",
)

Json = dict[str, Any]


# -- loading ------------------------------------------------------------------------------


def _load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def _rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.yml"))


def _rules() -> list[Json]:
    rules: list[Json] = []
    for path in _rule_files():
        for group in _load_yaml(path)["groups"]:
            rules.extend(group["rules"])
    return rules


def _alerts() -> list[Json]:
    return [rule for rule in _rules() if "alert" in rule]


def _recorded_names() -> set[str]:
    return {rule["record"] for rule in _rules() if "record" in rule}


def _dashboards() -> dict[str, Json]:
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARDS_DIR.glob("*.json"))
    }


def _panels(dashboard: Json) -> Iterator[Json]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # panels inside a collapsed row


@dataclass(frozen=True)
class Query:
    where: str  # for messages: file, panel, refId
    datasource_uid: str
    text: str


def _dashboard_queries() -> list[Query]:
    """Every query of every panel target and template variable, with its datasource."""
    queries: list[Query] = []
    for name, dashboard in _dashboards().items():
        for panel in _panels(dashboard):
            panel_uid = (panel.get("datasource") or {}).get("uid", "")
            for target in panel.get("targets", []):
                uid = (target.get("datasource") or {}).get("uid", panel_uid)
                text = target.get("expr") or target.get("rawSql")
                where = f"{name} panel {panel['id']} {panel.get('title')!r} {target['refId']}"
                if text:
                    queries.append(Query(where, uid, text))
        for variable in dashboard.get("templating", {}).get("list", []):
            query = variable.get("query")
            if isinstance(query, dict):
                query = query.get("query")
            if variable.get("type") == "query" and query:
                uid = variable["datasource"]["uid"]
                queries.append(Query(f"{name} variable {variable['name']}", uid, query))
    return queries


def _prometheus_queries() -> list[Query]:
    return [q for q in _dashboard_queries() if q.datasource_uid == "prometheus"]


def _sql_queries() -> list[Query]:
    return [q for q in _dashboard_queries() if q.datasource_uid == "iot-postgres"]


def _known_metrics(
    files: tuple[Path, ...] = (METRICS_FILE, EXPORTER_METRICS_FILE),
) -> dict[str, str]:
    """``monitoring/metrics.txt`` and the exporters' list: metric name -> type."""
    metrics: dict[str, str] = {}
    for raw in (line for path in files for line in path.read_text(encoding="utf-8").splitlines()):
        line = raw.split("#", 1)[0].strip()
        if line:
            name, kind = line.split()
            metrics[name] = kind
    return metrics


def _series_names(metrics: dict[str, str]) -> set[str]:
    """Names PromQL may select: histograms as their _bucket, _sum and _count series."""
    names: set[str] = set()
    for name, kind in metrics.items():
        if kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(name)
    return names


# -- PromQL helpers -----------------------------------------------------------------------

# Grafana's variables, replaced by values of the right kind so that the expression is PromQL.
GRAFANA_PROMQL_VARIABLES = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "instance": ".*",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def substitute_grafana_variables(expr: str, values: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def promql_of_variable_query(query: str) -> str:
    """Grafana's ``label_values(selector, label)`` holds a PromQL selector; PromQL stays."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query, flags=re.DOTALL)
    return match.group(1) if match else query


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_KEYWORDS |= {"and", "or", "unless", "inf", "nan", "atan2"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (a lexical scan, enough for our expressions)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # label lists
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"#[^\n]*", " ", text)  # comments
    names: set[str] = set()
    for match in re.finditer(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, is_call = match.group(1), match.group(2)
        if not is_call and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def _run_promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


# -- the helpers themselves ------------------------------------------------------------


def test_promql_metric_names_finds_selected_metrics_only() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{x="b_total", y=~"$i"}[5m])))'
        " > on () group_left () (0.9 * rec:limit:cores) unless absent(up{job='j'})"
        " or vector(1) and ignoring (reason) c_total offset 5m"
    )
    assert promql_metric_names(expr) == {"a_bucket", "rec:limit:cores", "up", "c_total"}


def test_grafana_variables_are_substituted_and_unknown_ones_refused() -> None:
    expr = 'rate(x{instance=~"$instance"}[$__rate_interval]) / ${__range}'
    assert substitute_grafana_variables(expr, GRAFANA_PROMQL_VARIABLES) == (
        'rate(x{instance=~".*"}[5m]) / 1h'
    )
    with pytest.raises(KeyError, match="nope"):
        substitute_grafana_variables("x{a=~'$nope'}", GRAFANA_PROMQL_VARIABLES)


# -- metrics.txt ----------------------------------------------------------------------------


def test_metrics_file_follows_prometheus_naming() -> None:
    metrics = _known_metrics((METRICS_FILE,))
    assert metrics, "monitoring/metrics.txt is empty"
    for name, kind in metrics.items():
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", name), name
        assert kind in {"counter", "gauge", "histogram"}, f"{name}: unknown type {kind}"
        assert name.endswith("_total") == (kind == "counter"), f"{name}: counters end in _total"
        assert name.startswith(("iotcollector_", "process_", "python_")), name


def test_every_collector_metric_is_used_by_a_rule_or_dashboard() -> None:
    used: set[str] = set()
    for rule in _rules():
        used |= promql_metric_names(rule["expr"])
    for query in _prometheus_queries():
        used |= promql_metric_names(promql_of_variable_query(query.text))
    for name, kind in _known_metrics().items():
        if not name.startswith("iotcollector_"):
            continue
        series = {name} if kind != "histogram" else {f"{name}_bucket", f"{name}_sum"}
        assert used & series, f"{name} is exported but neither alerted on nor graphed"


# -- YAML style -------------------------------------------------------------------------

YAMLLINT = shutil.which("yamllint")


@pytest.mark.skipif(YAMLLINT is None, reason="yamllint not installed: `apt-get install yamllint`")
def test_yamllint_monitoring() -> None:
    assert YAMLLINT is not None
    result = subprocess.run(
        [YAMLLINT, "--strict", "-c", str(MONITORING / ".yamllint.yml"), str(MONITORING)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- Prometheus configuration ------------------------------------------------------------


def _kubernetes_sd_compiled_out(result: subprocess.CompletedProcess[str]) -> bool:
    return "field kubernetes_sd_configs not found" in result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize("config", PROMETHEUS_CONFIGS)
def test_promtool_check_config(config: str, tmp_path: Path) -> None:
    result = _run_promtool("check", "config", config)
    if result.returncode != 0 and _kubernetes_sd_compiled_out(result):
        # Debian builds Prometheus without Kubernetes service discovery. Check everything
        # else with the discovery block replaced by a static one; its keys are checked in
        # test_kubernetes_config_discovers_collector_pods.
        document = _load_yaml(PROMETHEUS_DIR / config)
        document["rule_files"] = [str(RULES_DIR / "*.yml")]
        for scrape in document["scrape_configs"]:
            if scrape.pop("kubernetes_sd_configs", None) is not None:
                scrape["static_configs"] = [{"targets": ["collector-pod:3000"]}]
        patched = tmp_path / config
        patched.write_text(yaml.safe_dump(document), encoding="utf-8")
        result = _run_promtool("check", "config", str(patched))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@pytest.mark.parametrize("config", PROMETHEUS_CONFIGS)
def test_config_scrapes_collector_and_loads_all_rules(config: str) -> None:
    document = _load_yaml(PROMETHEUS_DIR / config)
    assert document["global"]["scrape_interval"] == "15s"
    assert document["rule_files"] == ["rules/*.yml"]
    jobs = {scrape["job_name"]: scrape for scrape in document["scrape_configs"]}
    assert jobs[JOB]["metrics_path"] == "/metrics"
    if config == "prometheus.yml":
        replicas = ["collector-1:3000", "collector-2:3000"]
        assert jobs[JOB]["static_configs"] == [{"targets": replicas}]


def test_kubernetes_config_discovers_collector_pods() -> None:
    scrape = {
        scrape["job_name"]: scrape
        for scrape in _load_yaml(PROMETHEUS_DIR / "prometheus-kubernetes.yml")["scrape_configs"]
    }[JOB]
    assert [sd["role"] for sd in scrape["kubernetes_sd_configs"]] in (["pod"], ["endpoints"])
    relabel = scrape["relabel_configs"]
    keep = [r for r in relabel if r.get("action") == "keep"]
    assert {
        "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
        "regex": "iot-collector",
        "action": "keep",
    } in keep
    for rule in relabel:
        assert all(label.startswith("__meta_kubernetes_") for label in rule["source_labels"])
        assert rule.get("action", "replace") in {"keep", "drop", "replace"}
        re.compile(rule.get("regex", "(.*)"))
    targets = {r["target_label"] for r in relabel if r.get("action", "replace") == "replace"}
    assert {"namespace", "pod"} <= targets, "the rules aggregate by (job, namespace)"


# -- rules --------------------------------------------------------------------------------


@needs_promtool
def test_promtool_check_rules() -> None:
    result = _run_promtool("check", "rules", *map(str, _rule_files()))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_test_rules() -> None:
    result = _run_promtool("test", "rules", *map(str, _rule_test_files()), cwd=RULE_TESTS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_names_are_unique() -> None:
    names = [alert["alert"] for alert in _alerts()]
    assert len(names) == len(set(names)), names
    assert len(names) >= 10


@pytest.mark.parametrize("alert", _alerts(), ids=lambda alert: alert["alert"])
def test_alert_has_severity_summary_description_and_runbook(alert: Json) -> None:
    assert alert.get("labels", {}).get("severity") in SEVERITIES
    annotations = alert.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"{alert['alert']}: no {key}"
    url = annotations["runbook_url"]
    assert url.startswith(RUNBOOK_URL_PREFIX), url
    runbook = RUNBOOKS_DIR / url.removeprefix(RUNBOOK_URL_PREFIX)
    assert runbook.is_file(), f"{alert['alert']}: runbook {runbook} missing"
    first_line = runbook.read_text(encoding="utf-8").splitlines()[0]
    assert first_line == f"# {alert['alert']}", f"{runbook.name} is not the page of this alert"


def test_every_runbook_belongs_to_an_alert() -> None:
    referenced = {alert["annotations"]["runbook_url"].rsplit("/", 1)[1] for alert in _alerts()}
    # disaster-recovery.md is a procedure (backup, restore, restore drill), not an alert's page.
    procedures = {"README.md", "disaster-recovery.md"}
    pages = {path.name for path in RUNBOOKS_DIR.glob("*.md")} - procedures
    assert pages == referenced
    index = (RUNBOOKS_DIR / "README.md").read_text(encoding="utf-8")
    for alert in _alerts():
        assert f"| {alert['alert']} |" in index, f"{alert['alert']} missing in the runbook index"


def _alert_test_cases() -> dict[str, dict[str, list[str]]]:
    """alertname -> {"fires": [...], "silent": [...]}: where each case is."""
    cases: dict[str, dict[str, list[str]]] = {}
    for path in _rule_test_files():
        for test in _load_yaml(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                kind = "fires" if case.get("exp_alerts") else "silent"
                where = f"{path.name}: {test.get('name')} @ {case['eval_time']}"
                entry = cases.setdefault(case["alertname"], {"fires": [], "silent": []})
                entry[kind].append(where)
    return cases


def test_rule_tests_load_every_rule_file() -> None:
    loaded: set[Path] = set()
    for path in _rule_test_files():
        loaded |= {(path.parent / f).resolve() for f in _load_yaml(path)["rule_files"]}
    assert loaded == {path.resolve() for path in _rule_files()}


@pytest.mark.parametrize("alert", _alerts(), ids=lambda alert: alert["alert"])
def test_alert_has_firing_and_silent_test_cases(alert: Json) -> None:
    cases = _alert_test_cases().get(alert["alert"], {"fires": [], "silent": []})
    assert cases["fires"], f"{alert['alert']}: no promtool case where it fires"
    assert cases["silent"], f"{alert['alert']}: no promtool case where it must not fire"


def test_rule_tests_name_only_existing_alerts() -> None:
    assert set(_alert_test_cases()) <= {alert["alert"] for alert in _alerts()}


def test_firing_cases_check_labels_and_annotations() -> None:
    for path in _rule_test_files():
        for test in _load_yaml(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                for expected in case.get("exp_alerts") or []:
                    where = f"{path.name}: {test.get('name')}"
                    assert "severity" in expected.get("exp_labels", {}), where
                    assert set(expected.get("exp_annotations", {})) == {
                        "summary",
                        "description",
                        "runbook_url",
                    }, where


# -- every expression parses and names known metrics ------------------------------------


def _all_promql() -> list[tuple[str, str]]:
    """(where, PromQL) for every rule and every Prometheus query of the dashboards."""
    expressions = [(f"rule {r.get('alert') or r.get('record')}", r["expr"]) for r in _rules()]
    for query in _prometheus_queries():
        promql = promql_of_variable_query(query.text)
        expressions.append(
            (query.where, substitute_grafana_variables(promql, GRAFANA_PROMQL_VARIABLES))
        )
    return expressions


@needs_promtool
def test_every_promql_expression_parses(tmp_path: Path) -> None:
    expressions = _all_promql()
    rules = [
        {"record": f"parse_check:expression_{index}", "expr": expr}
        for index, (_, expr) in enumerate(expressions)
    ]
    rules_file = tmp_path / "parse-check.yml"
    rules_file.write_text(
        yaml.safe_dump({"groups": [{"name": "parse-check", "rules": rules}]}), encoding="utf-8"
    )
    result = _run_promtool("check", "rules", str(rules_file))
    if result.returncode != 0:
        failing = [
            f"{where}: {expr}"
            for index, (where, expr) in enumerate(expressions)
            if f'"parse_check:expression_{index}"' in result.stdout + result.stderr
        ]
        pytest.fail(f"{result.stdout}{result.stderr}\n" + "\n".join(failing))


def test_every_promql_expression_names_known_metrics() -> None:
    allowed = _series_names(_known_metrics()) | _recorded_names() | {"up"}
    unknown = [
        f"{where}: {name}"
        for where, expr in _all_promql()
        for name in sorted(promql_metric_names(expr))
        if name not in allowed
    ]
    assert not unknown, "metrics not in monitoring/metrics.txt:\n" + "\n".join(unknown)


def test_collector_metrics_are_selected_from_the_collector_job_only() -> None:
    """process_* and up exist for every job: the rules must say which one."""
    for rule in _alerts():
        for name in promql_metric_names(rule["expr"]):
            if name.startswith(("process_", "python_")) or name == "up":
                assert re.search(rf'{name}\{{[^}}]*job="{JOB}"', rule["expr"]), rule["alert"]


# -- Grafana -----------------------------------------------------------------------------


def test_dashboards_have_stable_unique_uids_and_titles() -> None:
    dashboards = _dashboards()
    assert set(dashboards) == set(DASHBOARD_UIDS)
    titles = set()
    for name, dashboard in dashboards.items():
        assert dashboard["uid"] == DASHBOARD_UIDS[name]
        assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
        assert dashboard.get("id") is None, f"{name}: a provisioned dashboard has no id"
        assert dashboard["title"].strip()
        titles.add(dashboard["title"])
        assert "iot-collector" in dashboard.get("tags", [])
    assert len(titles) == len(dashboards)


@pytest.mark.parametrize("name", sorted(DASHBOARD_UIDS))
def test_dashboard_refers_only_to_provisioned_datasources(name: str) -> None:
    dashboard = _dashboards()[name]
    panel_ids = []
    refs: list[tuple[str, Json]] = []
    for panel in _panels(dashboard):
        panel_ids.append(panel["id"])
        if panel["type"] == "row":
            continue
        refs.append((f"panel {panel['id']}", panel["datasource"]))
        assert panel.get("targets"), f"panel {panel['id']} has no query"
        refs.extend((f"panel {panel['id']} target", t["datasource"]) for t in panel["targets"])
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
    refs.extend(
        (f"variable {v['name']}", v["datasource"])
        for v in dashboard["templating"]["list"]
        if v.get("type") == "query"
    )
    assert len(panel_ids) == len(set(panel_ids)), "duplicate panel ids"
    for where, ref in refs:
        assert ref["uid"] in DATASOURCES, f"{where}: unknown datasource {ref}"
        expected_type = DATASOURCES[ref["uid"]]
        types = POSTGRES_TYPES if expected_type == "postgres" else {expected_type}
        assert ref["type"] in types, f"{where}: {ref}"


@pytest.mark.parametrize("name", sorted(DASHBOARD_UIDS))
def test_dashboard_uses_only_defined_variables(name: str) -> None:
    dashboard = _dashboards()[name]
    defined = {variable["name"] for variable in dashboard["templating"]["list"]}
    for query in _dashboard_queries():
        if not query.where.startswith(name):
            continue
        for match in _VARIABLE.finditer(query.text):
            variable = match.group(1) or match.group(2)
            assert variable.startswith("__") or variable in defined, f"{query.where}: ${variable}"


def test_datasource_provisioning_matches_dashboards() -> None:
    path = GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yml"
    document = _load_yaml(path)
    assert document["apiVersion"] == 1
    provisioned = {ds["uid"]: ds for ds in document["datasources"]}
    assert set(provisioned) == set(DATASOURCES)
    assert provisioned["prometheus"]["type"] == "prometheus"
    assert provisioned["iot-postgres"]["type"] in POSTGRES_TYPES
    assert "password" in provisioned["iot-postgres"]["secureJsonData"]
    # credentials come from the environment, never from the file
    text = path.read_text(encoding="utf-8")
    variables = set(re.findall(r"\$\{(IOT_GRAFANA_\w+)\}", text))
    assert {"IOT_GRAFANA_DB_USER", "IOT_GRAFANA_DB_PASSWORD"} <= variables
    assert provisioned["iot-postgres"]["secureJsonData"]["password"].startswith("${")
    readme = (MONITORING / "README.md").read_text(encoding="utf-8")
    for variable in variables:
        assert variable in readme, f"{variable} is not documented in monitoring/README.md"


def test_dashboard_provider_points_at_the_mounted_dashboards() -> None:
    document = _load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml")
    (provider,) = document["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] in {"/var/lib/grafana/dashboards", "/etc/grafana/dashboards"}


# -- Sensor trends SQL ---------------------------------------------------------------------


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def render_grafana_sql(
    sql: str,
    *,
    devices: Sequence[str],
    sensor_types: Sequence[str],
    time_from: datetime,
    time_to: datetime,
    interval_ms: int,
) -> str:
    """Expand the Grafana macros and variables our dashboards use, as Grafana does."""

    def time_filter(match: re.Match[str]) -> str:
        column = match.group(1).strip()
        start, end = (
            t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for t in (time_from, time_to)
        )
        return f"{column} BETWEEN '{start}' AND '{end}'"

    text = re.sub(r"\$__timeFilter\(([^)]*)\)", time_filter, sql)
    text = text.replace("$__interval_ms", str(interval_ms))
    values = {
        "device": ",".join(map(_sql_literal, devices)),
        "sensor_type": ",".join(map(_sql_literal, sensor_types)),
    }
    return substitute_grafana_variables(text, values)


def test_render_grafana_sql_expands_macros_and_quotes_values() -> None:
    sql = 'SELECT 1 WHERE $__timeFilter("timestamp") AND d IN ($device) AND $__interval_ms > 0'
    rendered = render_grafana_sql(
        sql,
        devices=["a", "o'b"],
        sensor_types=[],
        time_from=datetime(2026, 1, 1, tzinfo=UTC),
        time_to=datetime(2026, 1, 2, tzinfo=UTC),
        interval_ms=60_000,
    )
    assert rendered == (
        "SELECT 1 WHERE \"timestamp\" BETWEEN '2026-01-01T00:00:00Z' AND '2026-01-02T00:00:00Z'"
        " AND d IN ('a','o''b') AND 60000 > 0"
    )


def test_sensor_trends_queries_are_sql_with_aggregation() -> None:
    queries = [q for q in _sql_queries() if q.where.startswith("sensor-trends.json")]
    assert queries, "the Sensor trends dashboard has no SQL"
    panels = [q for q in queries if " panel " in q.where]
    time_series = [q for q in panels if '"time"' in q.text]
    assert len(time_series) >= 3
    for query in time_series:
        # aggregate in the database, per $__interval bucket: a year renders fast
        assert "date_bin(" in query.text, query.where
        assert "$__interval_ms" in query.text, query.where
        assert "GROUP BY" in query.text, query.where
    for query in panels:
        if "FROM iot_data" in query.text:
            assert '$__timeFilter("timestamp")' in query.text, query.where


def run_sensor_trends_sql(database_url: str) -> None:
    """Run every Sensor-trends query against ``database_url`` (already migrated)."""
    import psycopg  # noqa: PLC0415 - only the integration test needs a driver

    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO devices (device_id, first_seen, last_seen, status) VALUES"
            " ('sim-0001', %(t)s, %(t)s, 'online'), ('sim-0002', %(t)s, %(t)s, 'offline')",
            {"t": now},
        )
        for minute in range(120):
            for device, sensor, unit, value in (
                ("sim-0001", "temperature", "C", 20 + minute / 100),
                ("sim-0001", "humidity", "%", 50.0),
                ("sim-0002", "temperature", "C", 21.0),
                ("sim-0002", "co2", "ppm", 0.004),
            ):
                conn.execute(
                    'INSERT INTO iot_data (device_id, sensor_type, value, unit, "timestamp")'
                    " VALUES (%s, %s, %s, %s, %s)",
                    (device, sensor, value, unit, now - timedelta(minutes=minute)),
                )
        for query in _sql_queries():
            if not query.where.startswith("sensor-trends.json"):
                continue
            sql = render_grafana_sql(
                query.text,
                devices=["sim-0001", "sim-0002"],
                sensor_types=["temperature", "humidity", "co2"],
                time_from=now - timedelta(hours=3),
                time_to=now,
                interval_ms=600_000,
            )
            cursor = conn.execute(sql.encode())
            rows = cursor.fetchall()
            assert rows, f"{query.where}: no rows\n{sql}"
            columns = [column.name for column in cursor.description or []]
            if '"time"' in query.text:
                assert columns == ["time", "metric", "value"], query.where
                assert all(isinstance(row[0], datetime) for row in rows), query.where
                buckets = {row[0] for row in rows}
                assert len(buckets) <= 3 * 6 + 1, f"{query.where}: not bucketed by 10 min"


@pytest.mark.integration
def test_sensor_trends_sql_runs_against_the_migrated_schema(postgres_url: str) -> None:
    env = {**os.environ, "IOT_DATABASE_URL": postgres_url}
    result = subprocess.run(
        [sys.executable, "-m", "iotcollector", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    run_sensor_trends_sql(postgres_url)
