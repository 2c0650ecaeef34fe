"""The Prometheus rules in deploy/prometheus: valid, unit-tested with promtool, and documented in the README.

`promtool` comes from Debian's `prometheus` package (`make monitoring-tools`). Without it these tests fail,
they do not skip: rules nobody checked are worse than no rules.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULE_FILES = [PROMETHEUS / "rules" / "recording.yml", PROMETHEUS / "rules" / "alerts.yml"]
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))
README = ROOT / "README.md"
OPERATIONS_HEADING = "## Operations: metrics, alerts and runbooks"
RUNBOOK_BASE = "https://github.com/example/agent-ops-platform#"

DASHBOARD_RULES = {
    "tool_call_success_rate",
    "tool_call_p95_latency",
    "agent_step_retry_rate",
    "token_input_per_request",
    "token_output_per_request",
    "cost_per_successful_task",
    "manual_handoff_ratio",
}
SEVERITIES = {"page", "ticket"}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run `make monitoring-tools` (as root) to install Debian's prometheus")
    return path


def _run(*args: str) -> None:
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}", pytrace=False)


def _rules(path: Path) -> list[dict[str, Any]]:
    document = yaml.safe_load(path.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _recording_names() -> list[str]:
    return [rule["record"] for path in RULE_FILES for rule in _rules(path) if "record" in rule]


def _alerts() -> list[dict[str, Any]]:
    return [rule for path in RULE_FILES for rule in _rules(path) if "alert" in rule]


def _test_groups() -> list[dict[str, Any]]:
    return [group for path in TEST_FILES for group in yaml.safe_load(path.read_text())["tests"]]


def _operations_section() -> str:
    text = README.read_text()
    assert OPERATIONS_HEADING in text, f"README.md has no section {OPERATIONS_HEADING!r}"
    section = text.split(OPERATIONS_HEADING, 1)[1]
    return section.split("\n## ", 1)[0]


def _github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_rule_files_pass_promtool_check() -> None:
    _run(_promtool(), "check", "rules", *(str(path) for path in RULE_FILES))


def test_rule_unit_tests_pass() -> None:
    assert TEST_FILES, f"no promtool test files in {PROMETHEUS / 'tests'}"
    _run(_promtool(), "test", "rules", *(str(path) for path in TEST_FILES))


def test_recording_rules_are_the_seven_dashboard_rules_plus_named_helpers() -> None:
    names = _recording_names()
    assert len(names) == len(set(names)), "a recording rule is defined twice"
    assert {name for name in names if ":" not in name} == DASHBOARD_RULES
    for name in names:
        if ":" in name:
            assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", name), f"{name} is not level:metric:operations"


def test_every_alert_has_severity_summary_and_a_runbook_in_the_readme() -> None:
    alerts = _alerts()
    names = [alert["alert"] for alert in alerts]
    assert len(names) == len(set(names)), "an alert is defined twice"
    section = _operations_section()
    anchors = {_github_anchor(match.group(1)) for match in re.finditer(r"^#{3,6} (.+)$", section, flags=re.MULTILINE)}
    for alert in alerts:
        name = alert["alert"]
        assert alert.get("labels", {}).get("severity") in SEVERITIES, f"{name}: labels.severity is page or ticket"
        annotations = alert.get("annotations", {})
        assert annotations.get("summary"), f"{name}: no annotations.summary"
        anchor = f"alert-{name.lower()}"
        assert annotations.get("runbook_url") == RUNBOOK_BASE + anchor, f"{name}: runbook_url is not the README's"
        assert anchor in anchors, f"{name}: README's operations section has no heading 'Alert: {name}'"
        assert annotations["summary"] in section, f"{name}: its summary is not quoted in the README's runbook"


def test_every_rule_has_a_unit_test() -> None:
    groups = _test_groups()
    tested_exprs = " ".join(case["expr"] for group in groups for case in group.get("promql_expr_test", []))
    for name in _recording_names():
        assert re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", tested_exprs), f"no promql_expr_test of {name}"
    firing = {
        case["alertname"] for group in groups for case in group.get("alert_rule_test", []) if case.get("exp_alerts")
    }
    for alert in _alerts():
        assert alert["alert"] in firing, f"no alert_rule_test where {alert['alert']} fires"
