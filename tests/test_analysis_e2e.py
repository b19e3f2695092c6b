"""End to end: simulated traffic with a known effect, through the API, analysed from DuckDB."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from armor_ab.cli import app
from armor_ab.reporting.models import ExperimentReport
from tests.helpers.platform import Server, seed_database

runner = CliRunner()
EXP = "catalog-interleaved"
TRUE_DWELL = 0.12


def entry(report: dict, metric: str) -> dict:
    return next(r for r in report["results"] if r["metric"] == metric and r["variant"] == "armor")


def test_true_effect_is_inside_the_ci_in_api_and_cli(tmp_path) -> None:
    db = tmp_path / "e2e.duckdb"
    keys = seed_database(db, started_days_ago=11)
    server = Server(db).start()
    try:
        sim = runner.invoke(app, ["simulate", "--experiment", EXP, "--visitors", "4000", "--seed", "11",
                                  "--effect", f"dwell=+{TRUE_DWELL * 100:.0f}%", "--days", "10",
                                  "--api", server.url, "--key", keys["client"], "--read-key", keys["read"]])
        assert sim.exit_code == 0, sim.output
        r = httpx.get(f"{server.url}/v1/experiments/{EXP}/results", headers={"Authorization": f"Bearer {keys['read']}"},
                      timeout=120)
        assert r.status_code == 200, r.text
        api_report = r.json()
        forbidden = httpx.get(f"{server.url}/v1/experiments/{EXP}/results",
                              headers={"Authorization": f"Bearer {keys['client']}"})
        assert forbidden.status_code == 403
    finally:
        server.stop()
    dwell = entry(api_report, "dwell_time_per_view")
    lo, hi = dwell["ci_rel"]
    assert lo < TRUE_DWELL < hi, dwell
    assert dwell["p_value"] < 0.05 and dwell["status"] == "ok"
    slo, shi = dwell["sequential"]["ci_rel"]
    assert slo <= lo and shi >= hi  # the always-valid interval is the wider one
    assert slo < TRUE_DWELL < shi
    assert api_report["srm"]["flag"] is False
    assert sum(api_report["visitors"].values()) == 4000
    inquiry = entry(api_report, "inquiry_rate")
    assert inquiry["ci_rel"][0] < 0 < inquiry["ci_rel"][1] or inquiry["p_value"] > 0.001  # no true inquiry effect
    assert api_report["roi"] is not None and "verdict" in api_report
    ExperimentReport.model_validate(api_report)  # the served JSON keeps the report's contract

    # The CLI reads the same file (the server is stopped) and shows the same numbers.
    cli = runner.invoke(app, ["report", EXP, "--db", str(db), "--json"])
    assert cli.exit_code == 0, cli.output
    cli_report = json.loads(cli.stdout)
    assert entry(cli_report, "dwell_time_per_view")["ci_rel"] == pytest.approx(dwell["ci_rel"], rel=1e-9)
    table = runner.invoke(app, ["report", EXP, "--db", str(db)])
    assert table.exit_code == 0 and "dwell_time_per_view" in table.output
