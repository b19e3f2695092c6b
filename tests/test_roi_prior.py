"""`armor-ab roi prior`: the shrinkage prior from the database's own past experiments, and the
report using it once it is set as ``analysis.roi_prior_sd``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from armor_ab.cli import app
from armor_ab.event_schema import COLUMN_NAMES
from armor_ab.experiments.models import ExperimentSpec
from armor_ab.reporting.report import experiment_report
from armor_ab.roi.shrinkage import prior_from_history
from armor_ab.store.db import connect
from armor_ab.store.experiments import get_experiment, upsert_experiment

ROW_COLUMNS = ", ".join(COLUMN_NAMES)  # commit_seq is the database's (its DEFAULT)

START = datetime(2026, 2, 2, tzinfo=UTC)
DAYS, PER_DAY = 10, 600  # visitors per arm per day
DAY_US = 86_400 * 1_000_000
LIFTS = {"past-a": 0.30, "past-b": -0.20, "past-c": 0.10, "past-d": 0.0}


def _spec(key: str, **analysis) -> ExperimentSpec:
    return ExperimentSpec.model_validate({
        "key": key, "name": key, "variants": [{"key": "control", "weight": 0.5}, {"key": "armor", "weight": 0.5}],
        "metrics": {"primary": "inquiries_per_visitor"}, "roi": {}, "analysis": analysis,
    })


def _events(key: str, lift: float, rng: np.random.Generator) -> pa.Table:
    start_us = int(START.timestamp()) * 1_000_000
    parts = []
    for variant, p in (("control", 0.08), ("armor", 0.08 * (1 + lift))):
        n = DAYS * PER_DAY
        users = np.array([f"{key}-{variant}-{i}" for i in range(n)])
        t0 = start_us + np.repeat(np.arange(DAYS), PER_DAY) * DAY_US + rng.integers(0, DAY_US // 2, n)
        hit = rng.random(n) < p
        parts.append((variant, users, "exposure", t0))
        parts.append((variant, users[hit], "inquiry", t0[hit] + 60_000_000))
    return pa.table({
        "experiment": np.concatenate([np.full(len(u), key) for _, u, _, _ in parts]),
        "variant": np.concatenate([np.full(len(u), v) for v, u, _, _ in parts]),
        "user_id": np.concatenate([u for _, u, _, _ in parts]),
        "type": np.concatenate([np.full(len(u), k) for _, u, k, _ in parts]),
        "ts": pa.array(np.concatenate([t for _, _, _, t in parts]), pa.timestamp("us", tz="UTC")),
    })


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prior") / "armor_ab.duckdb"
    rng = np.random.default_rng(17)
    con = connect(path)
    try:
        for key, lift in LIFTS.items():
            con.register("gen", _events(key, lift, rng))
            con.execute(f"INSERT INTO events ({ROW_COLUMNS}) SELECT gen_random_uuid(), experiment, variant, user_id, "
                        "NULL, type, NULL, "
                        "ts, ts, NULL, 'server' FROM gen")
            con.unregister("gen")
            upsert_experiment(con, _spec(key))
            con.execute("UPDATE experiments SET status = 'stopped', started_at = ?, stopped_at = ? WHERE key = ?",
                        [START, START + timedelta(days=DAYS), key])
        upsert_experiment(con, _spec("running"))  # not stopped: not part of the history
    finally:
        con.close()
    return path


def test_prior_from_the_databases_past_experiments(db: Path) -> None:
    out = CliRunner().invoke(app, ["roi", "prior", "--db", str(db), "--json"])
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)
    assert [e["experiment"] for e in got["experiments"]] == sorted(LIFTS)
    # Each effect is the windowed inquiry lift over mature visitors (exposed on days 0..7 of 10),
    # within 4 standard errors of the true lift the data were generated with.
    for e in got["experiments"]:
        assert e["lift_rel"] == pytest.approx(LIFTS[e["experiment"]], abs=4 * e["se_rel"])
    want = prior_from_history((e["lift_rel"], e["se_rel"]) for e in got["experiments"])
    assert got["sd_rel"] == pytest.approx(want.sd_rel) and got["source"] == "history"
    assert got["n_experiments"] == 4
    text = CliRunner().invoke(app, ["roi", "prior", "--db", str(db)])
    assert f"roi_prior_sd: {want.sd_rel:.3f}" in text.stdout


def test_the_report_uses_the_prior_once_set(db: Path) -> None:
    con = connect(db)
    try:
        upsert_experiment(con, _spec("past-a", roi_prior_sd=0.25))
        roi = experiment_report(con, get_experiment(con, "past-a"))["roi"]
    finally:
        con.close()
    prior = roi["effect"]["prior"]
    assert prior["sd_rel"] == 0.25 and prior["source"] == "analysis.roi_prior_sd"
    # A wider prior shrinks less than the default's 0.1.
    assert roi["effect"]["shrinkage"] < 0.5
