"""The ROI's effect does not depend on how long the test ran: a fixed per-visitor window, mature visitors only.

Visitors come back: each one inquires on the k-th day after its first exposure with a probability
that decays with k, so inquiries per visitor over "the whole test" grow with the test's length,
and so did the old ROI. The same daily traffic is analysed after 7 and after 21 days, through the
real DuckDB query and report.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from armor_ab.event_schema import COLUMN_NAMES
from armor_ab.experiments.models import ExperimentSpec
from armor_ab.reporting.report import experiment_report
from armor_ab.store.db import connect
from armor_ab.store.experiments import get_experiment, upsert_experiment

ROW_COLUMNS = ", ".join(COLUMN_NAMES)  # commit_seq is the database's (its DEFAULT)

START = datetime(2026, 3, 2, tzinfo=UTC)
PER_DAY = 3_000  # new visitors per arm per day
DAYS = 21
LIFT = 0.10  # true relative lift of every day's inquiry probability
DAY_US = 86_400 * 1_000_000


def _events(seed: int) -> pa.Table:
    """Every visitor: one exposure, 1-3 page views with dwell, and an inquiry on the k-th day after
    exposure with probability 0.03 * 0.8^k (more with the treatment), vectorised with numpy.

    "The same daily traffic" literally: one day's cohort of visitors is drawn once and arrives again
    every day (new ids, same behaviour), so the 7- and 21-day analyses see the same per-cohort
    truth and differ only by how many cohorts they hold and how long those were followed.
    """
    rng = np.random.default_rng(seed)
    start_us = int(START.timestamp()) * 1_000_000
    cols: dict[str, list] = {k: [] for k in ("variant", "user_id", "type", "value", "ts")}

    def add(variant: str, users: np.ndarray, kind: str, value: np.ndarray | None, ts: np.ndarray) -> None:
        cols["variant"].append(np.full(len(users), variant, dtype=object))
        cols["user_id"].append(users)
        cols["type"].append(np.full(len(users), kind, dtype=object))
        cols["value"].append(np.full(len(users), np.nan) if value is None else value)
        cols["ts"].append(ts)

    for variant, lift in (("control", 0.0), ("armor", LIFT)):
        n = PER_DAY * DAYS
        users = np.array([f"{variant}-{i}" for i in range(n)], dtype=object)
        offset = np.tile(rng.integers(0, DAY_US - 60_000_000, PER_DAY), DAYS)  # one cohort, every day
        t0 = start_us + np.repeat(np.arange(DAYS), PER_DAY) * DAY_US + offset
        add(variant, users, "exposure", None, t0)
        views = np.tile(rng.integers(1, 4, PER_DAY), DAYS)
        for v in range(3):
            has = views > v
            dwell = np.tile(rng.lognormal(10.5, 0.8, PER_DAY), DAYS)[has]
            add(variant, users[has], "page_view", None, t0[has] + (v + 1) * 1_000_000)
            add(variant, users[has], "dwell", dwell, t0[has] + (v + 2) * 1_000_000)
        for k in range(DAYS):
            hit = np.tile(rng.random(PER_DAY) < 0.03 * 0.8**k * (1 + lift), DAYS)
            add(variant, users[hit], "inquiry", None, t0[hit] + k * DAY_US + 10_000_000)
    value = np.concatenate(cols["value"])
    return pa.table({
        "variant": np.concatenate(cols["variant"]).astype(str),
        "user_id": np.concatenate(cols["user_id"]).astype(str),
        "type": np.concatenate(cols["type"]).astype(str),
        "value": pa.array(value, mask=np.isnan(value)),
        "ts": pa.array(np.concatenate(cols["ts"]), pa.timestamp("us", tz="UTC")),
    })


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict]:
    path: Path = tmp_path_factory.mktemp("roiwin") / "armor_ab.duckdb"
    con = connect(path)
    try:
        table = _events(7)
        con.register("gen", table)
        con.execute(f"INSERT INTO events ({ROW_COLUMNS}) SELECT gen_random_uuid(), 'win', variant, user_id, "
                    "'pumps-01', type, value, ts,"
                    " ts, NULL, 'server' FROM gen")
        spec = ExperimentSpec.model_validate({
            "key": "win", "name": "ROI window",
            "variants": [{"key": "control", "weight": 0.5}, {"key": "armor", "weight": 0.5}],
            "metrics": {"primary": "dwell_time_per_view", "secondary": ["inquiries_per_visitor"]},
            "roi": {}, "analysis": {"roi_window_days": 3},
        })
        upsert_experiment(con, spec)
        con.execute("UPDATE experiments SET status = 'running', started_at = ? WHERE key = 'win'", [START])
        record = get_experiment(con, "win")
        return {d: experiment_report(con, record, now=START + timedelta(days=d)) for d in (7, 21)}
    finally:
        con.close()


def test_incremental_profit_per_month_does_not_depend_on_test_length(reports: dict[int, dict]) -> None:
    short, long = (reports[d]["roi"] for d in (7, 21))
    assert short["status"] == long["status"] == "ok"
    a, b = (r["incremental_profit_per_month"] for r in (short, long))
    # Same cohorts, same window: the same measured lift; only the empirical-Bayes shrinkage differs
    # (the shorter test is less sure, so it is shrunk more), by well under a standard error.
    assert short["effect"]["lift_abs"] == pytest.approx(long["effect"]["lift_abs"], rel=1e-9)
    assert abs(a["expected"] - b["expected"]) <= min(a["se"], b["se"]), (a, b)
    assert short["effect"]["window_days"] == long["effect"]["window_days"] == 3


def test_the_whole_window_rate_would_have_drifted(reports: dict[int, dict]) -> None:
    """The old ROI input, inquiries per visitor over the whole test, grows with the test's length
    (visitors followed longer keep inquiring), and the old ROI with it; the windowed rate does not."""
    whole = {d: next(r for r in rep["results"] if r["metric"] == "inquiries_per_visitor")["baseline_mean"]
             for d, rep in reports.items()}
    windowed = {d: rep["roi"]["effect"]["baseline_inquiries_per_visitor"] for d, rep in reports.items()}
    assert whole[21] > 1.3 * whole[7]
    assert windowed[21] == pytest.approx(windowed[7], rel=1e-9)
