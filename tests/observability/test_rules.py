"""Alert rules, dashboards and routing as code: generated from the catalogue, checked in,
and checked by the real tools (promtool, amtool from Debian's packages)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from pipelines import metrics
from pipelines.observability import rules
from pipelines.observability.alertmanager import RECEIVERS, alertmanager_config
from pipelines.observability.dashboards import PANELS, dashboard, queries
from pipelines.observability.render import documents

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "platform" / "monitoring"
RUNBOOK = REPO / "docs" / "runbook.md"
SERIES = re.compile(r"\b((?:mlops|bentoml)_[a-z0-9_]+|mlops:[a-z0-9_:]+)")


def test_the_checked_in_files_are_what_the_catalogue_generates() -> None:
    generated = documents()
    on_disk = {str(p.relative_to(MONITORING)): p.read_text() for p in MONITORING.rglob("*.yaml")}
    assert sorted(on_disk) == sorted(generated), "run: make golden"
    stale = [name for name, text in generated.items() if on_disk[name] != text]
    assert stale == [], f"stale (run `make golden` and review the diff): {stale}"


def github_anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_alert_has_a_severity_a_receiver_and_a_runbook_section() -> None:
    anchors = {
        github_anchor(line.lstrip("#"))
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("## ")
    }
    names = [a.name for a in rules.alerts(rules.Windows())]
    assert len(names) == len(set(names))
    for alert in rules.alerts(rules.Windows()):
        rule = alert.rule()
        assert rule["labels"]["severity"] in RECEIVERS, alert.name
        path, anchor = rule["annotations"]["runbook_url"].split("#")
        assert path == "docs/runbook.md" and anchor in anchors, (alert.name, anchor)


def test_the_issues_alerts_are_all_there() -> None:
    names = {a.name for a in rules.alerts(rules.Windows())}
    assert {
        "MlopsTrainingStale",
        "MlopsStepFailing",
        "MlopsDriftOverLimit",
        "MlopsLiveAucBelowFloor",
        "MlopsServingErrors",
        "MlopsServingLatencyP99",
        "MlopsInferenceLogDropping",
        "MlopsChampionChanged",
    } <= names
    burn = {n for n in names if "BudgetBurn" in n}
    assert len(burn) == 2 * len(rules.Windows().burn)


def referenced(expr: str) -> set[str]:
    return set(SERIES.findall(expr))


def test_rules_and_dashboards_name_only_catalogued_series_or_recorded_slis() -> None:
    recorded = {r["record"] for r in rules.recording_rules(rules.Windows())}
    exprs = [r["expr"] for g in rules.rule_groups()["groups"] for r in g["rules"]]
    exprs += [q for name in PANELS for q in queries(dashboard(name))]
    unknown = []
    for expr in exprs:
        for name in referenced(expr):
            if name in recorded:
                continue
            try:
                metrics.by_name(name)
            except KeyError:
                unknown.append(name)
    assert unknown == []
    # the check itself catches a misspelt name
    with pytest.raises(KeyError):
        metrics.by_name(referenced("rate(mlops_step_reslt_total[5m])").pop())


def test_a_dashboard_is_valid_grafana_json_with_every_panel_querying_prometheus() -> None:
    for name in PANELS:
        board = dashboard(name)
        assert board["uid"] == f"mlops-{name}" and board["title"]
        assert len(board["panels"]) == len(PANELS[name])
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
            assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])
        assert "null" not in repr(board).lower()


# -- the real tools ------------------------------------------------------------------------


def rule_file(tmp_path: Path, windows: rules.Windows | None = None) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules.rule_groups(windows), sort_keys=False))
    return path


@pytest.mark.integration
def test_promtool_checks_the_checked_in_rules(tmp_path: Path) -> None:
    spec = yaml.safe_load((MONITORING / "prometheus-rule.yaml").read_text())["spec"]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    done = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    count = sum(len(g["rules"]) for g in spec["groups"])
    assert f"SUCCESS: {count} rules found" in done.stdout
    broken = tmp_path / "broken.yaml"
    spec["groups"][0]["rules"][-1]["expr"] = "rate(mlops_step_result_total[5m]"
    broken.write_text(yaml.safe_dump(spec))
    failed = subprocess.run(
        ["promtool", "check", "rules", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert failed.returncode != 0 and "unclosed left parenthesis" in failed.stdout + failed.stderr


@pytest.mark.integration
def test_amtool_routes_each_alert_to_the_receiver_of_its_severity(tmp_path: Path) -> None:
    config = tmp_path / "alertmanager.yaml"
    config.write_text(yaml.safe_dump(alertmanager_config()))

    def route(*labels: str) -> str:
        done = subprocess.run(
            ["amtool", "config", "routes", "test", f"--config.file={config}", *labels],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    for alert in rules.alerts(rules.Windows()):
        severity = alert.rule()["labels"]["severity"]
        assert route(f"alertname={alert.name}", f"severity={severity}") == RECEIVERS[severity]
    assert route("alertname=Watchdog", "severity=none") == "null"
    assert route("alertname=SomethingNew") == "ticket", "an unlabelled alert still reaches us"
