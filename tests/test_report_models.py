"""The report's contract: every report the assembly builds validates against ``ExperimentReport``."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from pydantic import ValidationError

from armor_ab.reporting.models import (
    ExperimentReport,
    PowerPlanPublic,
    ReportRoi,
    RoiUnavailable,
    VerdictBlock,
)
from armor_ab.roi.assumptions import RoiAssumptions
from armor_ab.roi.engine import EffectInput, compute_roi
from armor_ab.roi.models import RoiPublic
from armor_ab.stats.power import plan_for_mode
from tests.helpers.report import synthetic_report

SCENARIOS = {
    "aa": {"lift": 0.0},
    "ship": {"lift": 0.15},
    "guardrail_breach": {"lift": 0.0, "guardrail_lift": -0.5},
    "no_data": {"days": 0},
    "multi_variant": {"lift": 0.05, "treatments": ("a", "b", "c")},
    "roi_unavailable": {"lift": 0.15, "mature": False},
    "no_roi_block": {"lift": 0.15, "roi": False},
    "one_day": {"lift": 0.0, "days": 1, "visitors_per_day": 50},
}


@pytest.fixture(scope="module")
def reports() -> dict[str, dict]:
    return {name: synthetic_report(**kw) for name, kw in SCENARIOS.items()}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_validates_and_round_trips(reports: dict[str, dict], name: str) -> None:
    served = json.loads(json.dumps(reports[name], allow_nan=False))  # what the API serves
    model = ExperimentReport.model_validate(served)
    # The model keeps every key and value: what was set dumps back to the served JSON (timestamps
    # compared as instants: pydantic writes UTC as "Z").
    dumped = model.model_dump(mode="json", exclude_unset=True)
    assert model.generated_at == datetime.fromisoformat(served["generated_at"])
    assert model.window.end == datetime.fromisoformat(served["window"]["end"])
    for block in (dumped, served):
        block.pop("generated_at"), block.pop("window")
    assert dumped == served


def test_the_scenarios_reach_their_verdicts(reports: dict[str, dict]) -> None:
    v = {name: VerdictBlock.model_validate(r["verdict"]) for name, r in reports.items()}
    assert v["ship"].decision == "ship" and v["ship"].reason == "ship"
    assert v["guardrail_breach"].decision == "stop" and v["guardrail_breach"].reason == "guardrail"
    assert v["aa"].decision != "ship"
    assert v["no_data"].reason == "no_usable_result"
    assert v["roi_unavailable"].reason == "roi_unavailable"
    assert v["no_roi_block"].decision == "ship"
    assert reports["no_roi_block"]["roi"] is None
    assert isinstance(ExperimentReport.model_validate(reports["ship"]).roi, ReportRoi)
    assert isinstance(ExperimentReport.model_validate(reports["roi_unavailable"]).roi, RoiUnavailable)
    multi = ExperimentReport.model_validate(reports["multi_variant"])
    assert {r.variant for r in multi.results} == {"a", "b", "c"} and multi.analysis.treatments == 3


def test_the_verdict_block_is_what_decide_report_says(reports: dict[str, dict]) -> None:
    from armor_ab.reporting.verdict import decide_report

    for report in reports.values():
        assert report["verdict"] == decide_report(report)
        assert set(report["verdict"]) == {"decision", "reason", "headline", "reasons", "days_remaining"}


def test_drift_is_caught(reports: dict[str, dict]) -> None:
    report = json.loads(json.dumps(reports["ship"]))
    report["results"][0]["surprise"] = 1
    with pytest.raises(ValidationError, match="surprise"):
        ExperimentReport.model_validate(report)
    report = json.loads(json.dumps(reports["ship"]))
    report["verdict"]["reason"] = "because"
    with pytest.raises(ValidationError, match="reason"):
        ExperimentReport.model_validate(report)
    report = json.loads(json.dumps(reports["ship"]))
    report["roi"]["npv"]["mean"] = 1.0
    with pytest.raises(ValidationError):
        ExperimentReport.model_validate(report)


def test_planning_answers_validate() -> None:
    roi = compute_roi(RoiAssumptions(), EffectInput(0.05, 0.002, 0.001, window_days=3))
    RoiPublic.model_validate(json.loads(json.dumps(roi)))
    for mode in ("sequential", "fixed", "hybrid"):
        plan = plan_for_mode(mode, 1.0, 2.0, 0.05, alpha_sequential=0.025, alpha_fixed=0.025, power=0.8,
                             control_share=0.5, treatment_share=0.5, visitors_per_day=1000.0)
        PowerPlanPublic.model_validate(plan.to_dict())


def test_results_route_declares_the_report_and_serves_json_that_validates(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from armor_ab.api.app import create_app, settings_from_env
    from tests.helpers.platform import seed_database

    db = tmp_path / "results.duckdb"
    keys = seed_database(db, started_days_ago=3)
    with TestClient(create_app(settings_from_env(db))) as client:
        auth = {"Authorization": f"Bearer {keys['read']}"}
        key = client.get("/v1/experiments", headers=auth).json()[0]["key"]
        r = client.get(f"/v1/experiments/{key}/results", headers=auth)
        assert r.status_code == 200, r.text
        ExperimentReport.model_validate(r.json())
        paths = client.get("/openapi.json").json()["paths"]

    def ref(path: str, method: str) -> str:
        return paths[path][method]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]

    assert ref("/v1/experiments/{key}/results", "get").endswith("/ExperimentReport")
    assert ref("/v1/roi", "post").endswith("/RoiWhatIfPublic")
    assert ref("/v1/power", "post").endswith("/PowerPlanPublic")
