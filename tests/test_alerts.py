"""The Prometheus alert rules (deploy/prometheus/alerts.yml): valid, unit-tested, and on series the server exports.

``promtool`` (Debian's ``prometheus`` package, which ``make system-deps`` installs) checks the rules and runs
their unit tests (alerts_test.yml). Without it these tests skip under plain pytest and fail under ``make test``
(ARMOR_AB_REQUIRE_BROWSER=1, the switch that also fails the browser tests instead of skipping them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from armor_ab.services.metrics import Metrics
from tests.helpers.platform import ROOT

RULES_DIR = ROOT / "deploy" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
RULE_TESTS = RULES_DIR / "alerts_test.yml"
PROMTOOL = Path(shutil.which("promtool") or "/usr/bin/promtool")
# Series a rule may use that Prometheus itself makes, not the server.
PROMETHEUS_SERIES = {"up"}
TARGET_LABELS = {"job", "instance"}  # added by the scrape
_NAME = re.compile(r"\b(armor_ab_[a-z0-9_]+|up)\b(\s*\{([^}]*)\})?")
_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)")


def promtool() -> Path:
    if not PROMTOOL.exists():
        why = f"{PROMTOOL} is missing (make system-deps installs Debian's prometheus package)"
        if os.environ.get("ARMOR_AB_REQUIRE_BROWSER") == "1":  # `make test`: no silent skip
            pytest.fail(f"{why} (ARMOR_AB_REQUIRE_BROWSER=1)", pytrace=False)
        pytest.skip(why)
    return PROMTOOL


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(promtool()), *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=60)


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_the_rules_are_valid() -> None:
    done = _run("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout, done.stdout


def test_the_rules_pass_their_unit_tests() -> None:
    done = _run("test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    assert "SUCCESS" in done.stdout


def exported() -> dict[str, set[str]]:
    """Every series name the server's /metrics can show (a counter's ``_total``, a histogram's parts), with
    the label names each takes."""
    metrics = Metrics(lambda: 0)
    out: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        name, labels = value._name, set(value._labelnames)
        suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}[value._type]
        for suffix in suffixes:
            out[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    # The registry holds exactly these (none made elsewhere, none missed above).
    families = {f.name for f in metrics.registry.collect()}
    assert families == {n.removesuffix("_total") for n in out if not n.endswith(("_bucket", "_sum", "_count"))} | {
        n.removesuffix("_bucket") for n in out if n.endswith("_bucket")}, families
    return out


def test_every_series_a_rule_uses_is_one_the_server_exports() -> None:
    series = exported()
    used: set[str] = set()
    for rule in rules():
        names = _NAME.findall(rule["expr"])
        assert names, f"{rule['alert']}: no series in {rule['expr']!r}"
        for name, _, selector in names:
            used.add(name)
            if name in PROMETHEUS_SERIES:
                continue
            assert name in series, f"{rule['alert']} uses {name}, which the server does not export"
            labels = {k for k, _ in _LABEL.findall(selector)}
            assert labels <= series[name] | TARGET_LABELS, f"{rule['alert']}: {name} has no label {labels}"
    # The health series the brief names, each alerted on (events per hour is for dashboards).
    for name in ("armor_ab_experiment_health_status", "armor_ab_experiment_srm_p_value",
                 "armor_ab_experiment_exposures_per_hour", "armor_ab_experiment_ingestion_lag_seconds",
                 "armor_ab_experiment_bot_share", "armor_ab_content_guardrail_fail_rate",
                 "armor_ab_experiment_guardrail_breached", "armor_ab_experiment_paused",
                 "armor_ab_content_fallback_total", "armor_ab_content_armor_requests_total", "up"):
        assert name in used, f"no rule uses {name}"
    assert "armor_ab_experiment_events_per_hour" in series


def test_every_rule_has_a_severity_and_a_runbook() -> None:
    for rule in rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        notes = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(notes), rule["alert"]
        assert re.match(r"1\. ", notes["runbook"]), f"{rule['alert']}: a runbook is numbered steps"
    tested = {case["alertname"] for t in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for case in t["alert_rule_test"] if case.get("exp_alerts")}
    assert tested == {r["alert"] for r in rules()}, "every alert has a unit test in which it fires"
