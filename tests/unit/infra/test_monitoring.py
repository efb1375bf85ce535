"""The monitoring files: rules pass promtool's checks and unit tests, every metric the
rules and the Grafana dashboard name is one the services export, and the scrape
configuration follows settings.

The exported names are read from the metric definitions in the services' source
(prometheus_client's Counter/Gauge/Histogram and the collector families), not
imported: importing every processor pulls in torch, far too slow for a unit test.
tests/integration/infra/test_monitoring_scrape.py checks a real Prometheus against
real services.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from infra import demo
from infra.monitoring import MONITORING_DIR, RULES_DIR, prometheus_config, scrape_targets
from learnstream.settings import REPO_ROOT, Settings

SOURCE_PACKAGES = ("learnstream", "ingest", "processors", "api")
DASHBOARD = MONITORING_DIR / "grafana" / "dashboards" / "learnstream.json"
DATASOURCE = MONITORING_DIR / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
# Sample names per metric type, from the name given to prometheus_client.
_SUFFIXES = {
    "Counter": ("_total",),
    "CounterMetricFamily": ("_total",),
    "Gauge": ("",),
    "GaugeMetricFamily": ("",),
    "Histogram": ("_bucket", "_sum", "_count"),
    "HistogramMetricFamily": ("_bucket", "_sum", "_count"),
    "Summary": ("", "_sum", "_count"),
}
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_IDENTIFIER = re.compile(r"(?<![\w:.$])[a-zA-Z_:][\w:]*")


def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool missing: `make setup-ops-tools` installs Debian's prometheus")
    return binary


def exported_samples() -> set[str]:
    """Every sample name the services' metric definitions produce."""
    names: set[str] = set()
    for package in SOURCE_PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            if "events" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                func = node.func
                kind = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                first = node.args[0]
                if kind not in _SUFFIXES or not isinstance(first, ast.Constant):
                    continue
                if not isinstance(first.value, str) or not first.value.startswith("learnstream_"):
                    continue
                base = first.value.removesuffix("_total") if "Counter" in kind else first.value
                names.update(base + suffix for suffix in _SUFFIXES[kind])
    return names


def recorded_names() -> set[str]:
    text = (RULES_DIR / "recording.yml").read_text()
    return set(re.findall(r"^\s*- record: (\S+)$", text, re.MULTILINE))


def named_metrics(expression: str) -> set[str]:
    """Metric names in a PromQL expression: learnstream_* samples and learnstream:* rules."""
    tokens = _IDENTIFIER.findall(_QUOTED.sub('""', expression))
    return {t for t in tokens if t.startswith(("learnstream_", "learnstream:")) or t == "up"}


def rule_expressions() -> list[str]:
    """The ``expr`` of every rule, folded blocks (``>-``) joined."""
    expressions = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            stripped = line.strip()
            if not stripped.startswith("expr:"):
                continue
            value = stripped.removeprefix("expr:").strip()
            if value == ">-":
                indent = len(lines[index + 1]) - len(lines[index + 1].lstrip())
                block = []
                for following in lines[index + 1 :]:
                    if following.strip() and len(following) - len(following.lstrip()) < indent:
                        break
                    block.append(following.strip())
                value = " ".join(block)
            expressions.append(value)
    return expressions


def dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def test_promtool_accepts_the_rules_and_the_compose_config() -> None:
    rules = subprocess.run(
        [promtool(), "check", "rules", *sorted(map(str, RULES_DIR.glob("*.yml")))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = subprocess.run(
        [promtool(), "check", "config", "--syntax-only", str(MONITORING_DIR / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    tests = sorted(map(str, (MONITORING_DIR / "tests").glob("*.yml")))
    assert tests, "no promtool unit tests under infra/monitoring/tests/"
    result = subprocess.run(
        [promtool(), "test", "rules", *tests],
        capture_output=True,
        text=True,
        check=False,
        cwd=MONITORING_DIR / "tests",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_promtool_test_and_a_runbook() -> None:
    alerts = set(re.findall(r"- alert: (\w+)", (RULES_DIR / "alerts.yml").read_text()))
    tested = "".join(p.read_text() for p in (MONITORING_DIR / "tests").glob("*.yml"))
    runbooks = (REPO_ROOT / "docs" / "operations.md").read_text()
    assert alerts
    for alert in sorted(alerts):
        assert f"alertname: {alert}\n" in tested, f"{alert} has no promtool test"
        assert f"#### {alert}" in runbooks, f"{alert} has no runbook in docs/operations.md"


def test_rules_name_only_exported_metrics() -> None:
    exported, recorded = exported_samples(), recorded_names()
    assert "learnstream_ingest_producer_replacements_total" in exported  # a collector family
    assert "learnstream_processor_consumer_lag" in exported
    expressions = rule_expressions()
    assert len(expressions) >= 20
    for expression in expressions:
        names = named_metrics(expression)
        assert names, f"no metric in {expression!r}"
        unknown = {n for n in names if n != "up" and n not in exported | recorded}
        assert not unknown, f"{expression!r} names {unknown}, which no service exports"


def test_dashboard_is_valid_json_and_every_panel_names_an_existing_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids repeat"
    datasource_uid = re.search(r"uid: (\S+)", DATASOURCE.read_text())
    assert datasource_uid is not None
    exported, recorded = exported_samples(), recorded_names()
    graphs = [p for p in panels if p["type"] != "row"]
    assert len(graphs) >= 15
    for panel in graphs:
        assert panel["datasource"]["uid"] == datasource_uid.group(1), panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
    for title, expression in dashboard_expressions():
        names = named_metrics(expression)
        assert names, f"panel {title!r}: no metric in {expression!r}"
        unknown = {n for n in names if n != "up" and n not in exported | recorded}
        assert not unknown, f"panel {title!r} names {unknown}, which no service exports"


def test_named_metrics_sees_names_not_labels_or_strings() -> None:
    expression = (
        'sum by (processor) (increase(learnstream_processor_events_total{outcome="learnstream_x"}'
        "[10m])) / learnstream:api_5xx:ratio_rate5m"
    )
    assert named_metrics(expression) == {
        "learnstream_processor_events_total",
        "learnstream:api_5xx:ratio_rate5m",
    }


def test_scrape_targets_follow_the_settings() -> None:
    settings = Settings(ingest_port=18000, api_port=18001, processor_web_port=17000)
    targets = scrape_targets(settings)
    by_service = {t.service: t.address for t in targets}
    assert by_service.pop("ingest").endswith(f":{getattr(settings, 'ingest_metrics_port', 18000)}")
    assert by_service.pop("api").endswith(f":{getattr(settings, 'api_metrics_port', 18001)}")
    assert by_service == {
        f"processor-{name}": f"127.0.0.1:{17000 + index}"
        for index, name in enumerate(demo.PROCESSORS)
    }
    no_web = scrape_targets(settings.model_copy(update={"processor_web_port": 0}))
    assert {t.service for t in no_web} == {"ingest", "api"}

    config = prometheus_config(targets, scrape_interval_s=1)
    assert config["global"] == {"scrape_interval": "1s", "evaluation_interval": "1s"}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}  # type: ignore[attr-defined]
    assert set(jobs) == {"learnstream-ingest", "learnstream-api", "learnstream-processors"}
    assert len(jobs["learnstream-processors"]["static_configs"]) == len(demo.PROCESSORS)


def test_compose_config_scrapes_every_service() -> None:
    text = (MONITORING_DIR / "prometheus.yml").read_text()
    for name in demo.PROCESSORS:
        assert f'"processor-{name.replace("_", "-")}:6066"' in text, name
        assert f"service: processor-{name}}}" in text, name
    # Ingest and the API: their metrics ports (the public ports serve no /metrics).
    defaults = Settings.model_fields
    assert f'"ingest:{defaults["ingest_metrics_port"].default}"' in text
    assert f'"api:{defaults["api_metrics_port"].default}"' in text
    for job in ("learnstream-ingest", "learnstream-api", "learnstream-processors"):
        assert f"job_name: {job}\n" in text
    assert "/etc/prometheus/rules/*.yml" in text


def test_rules_folder_is_where_the_config_points(tmp_path: Path) -> None:
    config = prometheus_config([], scrape_interval_s=15)
    assert config["rule_files"] == [str(RULES_DIR / "*.yml")]
    assert sorted(p.name for p in RULES_DIR.glob("*.yml")) == ["alerts.yml", "recording.yml"]
