"""The shipped Prometheus alert rules: `promtool test rules` fires each alert in its case and
none in a healthy one, and every metric the rules read is one the pipeline exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import yaml

from pipeline.ops.metrics import PipelineMetrics
from pipeline.ops.readiness import Snapshot
from pipeline.state.base import StreamRecord
from tests.unit.ops.test_deploy_files import tool

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "onc-pipeline-alerts.yml"
CASES = Path(__file__).resolve().parent / "prometheus" / "onc-pipeline-alerts.test.yml"
ALERTS = {
    "OncPipelineStreamLagging",
    "OncPipelineCoverageLow",
    "OncPipelineQuarantineGrowing",
    "OncPipelineRegistryFailing",
    "OncPipelineErddapFlagFailing",
}


def _promtool_test(tmp_path: Path, cases: str) -> subprocess.CompletedProcess[str]:
    promtool = tool("promtool")  # a failure, not a skip, when CI=true
    shutil.copy(RULES, tmp_path / RULES.name)
    (tmp_path / CASES.name).write_text(cases)
    return subprocess.run(
        [promtool, "test", "rules", CASES.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_promtool_fires_each_alert_in_its_case(tmp_path: Path) -> None:
    result = _promtool_test(tmp_path, CASES.read_text())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_cases_cover_every_alert_firing_and_silent() -> None:
    shipped = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert shipped == ALERTS
    checks = [c for t in yaml.safe_load(CASES.read_text())["tests"] for c in t["alert_rule_test"]]
    assert {c["alertname"] for c in checks if c["exp_alerts"]} == ALERTS
    assert {c["alertname"] for c in checks if not c["exp_alerts"]} == ALERTS


def test_a_wrong_expectation_makes_promtool_fail(tmp_path: Path) -> None:
    # The coverage case with the holey stream at the threshold: the alert must not fire, so
    # the expected alert is missing and promtool reports the case as failed.
    cases = CASES.read_text().replace("values: '0.9x200'", "values: '0.99x200'")
    result = _promtool_test(tmp_path, cases)
    assert result.returncode != 0
    assert "coverage below threshold" in result.stdout + result.stderr


def test_every_metric_the_rules_read_is_exported() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    metrics = PipelineMetrics(clock=lambda: now)
    metrics.update(
        Snapshot(
            taken_at=now,
            store_ok=True,
            store_error=None,
            scheduler_running=True,
            enabled=("s",),
            records={
                "s": StreamRecord(name="s", cursor_time=now, last_success=now, updated_at=now)
            },
        )
    )
    exposition = metrics.render().decode()
    families = set(re.findall(r"^# TYPE (\w+) (\w+)$", exposition, flags=re.MULTILINE))
    exported = {name for name, _ in families} | {
        f"{name}_total" for name, kind in families if kind == "counter"
    }
    used = set(re.findall(r"\bonc_pipeline_\w+", RULES.read_text()))
    assert used
    assert used <= exported, sorted(used - exported)
