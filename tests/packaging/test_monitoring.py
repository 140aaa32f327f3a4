"""The shipped alert rules and dashboard work on the metrics the worker really exports.

``promtool`` (Prometheus's own checker) checks the rules, runs their unit tests
(config/monitoring/alerts-tests.yml), lints the worker's /metrics output against Prometheus's
naming conventions, and parses every dashboard query. .ci/run puts promtool on PATH; where it
is missing the tests skip, naming what to install.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from worker.metrics import WorkerMetrics

MONITORING = Path(__file__).resolve().parents[2] / "config" / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian's package prometheus has it)"
)
_METRIC = re.compile(r"\bmailworker_[a-z_]+")


def _promtool(*args: str, stdin: str | None = None, cwd: Path = MONITORING) -> str:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, *args], cwd=cwd, input=stdin, capture_output=True, text=True, check=False
    )
    assert 0 == done.returncode, done.stdout + done.stderr
    return done.stdout + done.stderr


def _exported() -> set[str]:
    """Every series name the worker's registry exposes (histograms with their suffixes)."""
    body, _ = WorkerMetrics().exposition()
    names = set()
    for family in WorkerMetrics().registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    names.update(re.findall(r"^# TYPE (\S+)", body.decode(), re.MULTILINE))
    return names | {"mailworker_attempt_duration_seconds_bucket"}


def _dashboard_queries() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _rule_queries() -> list[str]:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text(encoding="utf-8"))
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


@needs_promtool
def test_the_alert_rules_are_valid_and_fire_as_their_tests_say() -> None:
    """``promtool check rules`` and ``promtool test rules``: each alert fires when it should."""
    assert "SUCCESS" in _promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in _promtool("test", "rules", "alerts-tests.yml")


@needs_promtool
def test_the_metrics_follow_prometheus_naming() -> None:
    """``promtool check metrics`` finds nothing to say about the worker's /metrics."""
    metrics = WorkerMetrics()
    body, _ = metrics.exposition()
    assert "" == _promtool("check", "metrics", stdin=body.decode()).strip()


@needs_promtool
def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """Each panel's PromQL, checked by promtool as a recording rule."""
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": query}
                    for n, query in enumerate(_dashboard_queries())
                ],
            }
        ]
    }
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    _promtool("check", "rules", "dashboard.yml", cwd=tmp_path)


def test_every_query_names_a_metric_the_worker_exports() -> None:
    """No rule or panel asks for a metric that does not exist (a renamed one, say)."""
    named = {
        name
        for query in [*_rule_queries(), *_dashboard_queries()]
        for name in _METRIC.findall(query)
    }
    assert named
    assert set() == named - _exported()
