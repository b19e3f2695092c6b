"""Experiment reports from synthetic daily sufficient statistics (no event log, no DuckDB).

``synthetic_report(...)`` feeds exact normal sufficient statistics per arm and day to the production
``report_from_sums``: the scenarios the report's schema must hold for (A/A, ship, guardrail breach,
no data, several treatments, ROI unavailable) in milliseconds each.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np

from armor_ab.experiments.models import ExperimentSpec
from armor_ab.reporting.report import report_from_sums
from armor_ab.stats.sql import ExperimentSums
from armor_ab.stats.suffstats import SUM_COLUMNS, VisitorSums
from armor_ab.store.experiments import ExperimentRecord

START = datetime(2026, 1, 5, tzinfo=UTC)
_IDX = {name: i for i, name in enumerate(SUM_COLUMNS)}
# Per-visitor means and sds of the simulated variables.
MEANS = {"views": 4.0, "dwell": 60_000.0, "inq": 0.05, "any": 0.04, "inqv": 50.0, "wq": 0.05}
SDS = {"views": 2.0, "dwell": 60_000.0, "inq": 0.02, "any": 0.2, "inqv": 200.0, "wq": 0.1}


def spec(*, treatments: tuple[str, ...] = ("armor",), roi: bool = True, guardrail: bool = True,
         mode: str = "sequential", key: str = "synthetic") -> ExperimentSpec:
    """A spec with a dwell primary metric, an inquiry guardrail, and (by default) an roi block."""
    share = 1.0 / (1 + len(treatments))
    body: dict = {
        "key": key,
        "name": "synthetic report",
        "variants": [{"key": "control", "weight": share}, *({"key": t, "weight": share} for t in treatments)],
        "metrics": {"primary": "dwell_time_per_visitor", "secondary": ["dwell_time_per_view"],
                    "guardrails": [{"metric": "inquiries_per_visitor", "margin": 0.02}] if guardrail else []},
        "mde": 0.05,
        "analysis": {"mode": mode, "cuped": False},
    }
    if roi:
        body["roi"] = {}
    return ExperimentSpec.model_validate(body)


def _day(rng: np.random.Generator, n: int, lift: float, guardrail_lift: float, mature: bool) -> VisitorSums:
    out = [0.0] * len(SUM_COLUMNS)
    out[_IDX["n"]] = float(n)
    if n < 2:
        return VisitorSums(tuple(out))
    for var, mean in MEANS.items():
        if var == "wq" and not mature:
            continue
        change = guardrail_lift if var == "inq" else lift
        sd = SDS[var]
        s = rng.normal(n * mean * (1 + change), sd * math.sqrt(n))
        out[_IDX[f"s_{var}"]] = s
        out[_IDX[f"ss_{var}"]] = sd * sd * rng.chisquare(n - 1) + s * s / n
    out[_IDX["x_dwell__views"]] = out[_IDX["s_dwell"]] * out[_IDX["s_views"]] / n  # independent
    if mature:
        out[_IDX["s_mature"]] = out[_IDX["ss_mature"]] = float(n)
        out[_IDX["x_wq__mature"]] = out[_IDX["s_wq"]]
    return VisitorSums(tuple(out))


def synthetic_report(
    *,
    lift: float = 0.0,
    guardrail_lift: float = 0.0,
    treatments: tuple[str, ...] = ("armor",),
    days: int = 21,
    visitors_per_day: int = 3_000,
    roi: bool = True,
    mature: bool = True,
    seed: int = 0,
    guardrail: bool = True,
) -> dict:
    """The report of a stopped experiment after ``days`` days (``days=0``: no data at all).

    ``lift`` is every treatment's true relative lift on every variable but the guardrail's
    (``guardrail_lift``); ``mature=False`` leaves no visitor whose ROI window has closed.
    """
    rng = np.random.default_rng(seed)
    s = spec(treatments=treatments, roi=roi, guardrail=guardrail)
    arms = ("control", *treatments)
    daily: dict[str, dict] = {arm: {} for arm in arms} if days else {}
    for d in range(days):
        for arm in arms:
            n = int(rng.binomial(visitors_per_day, 1 / len(arms)))
            is_t = arm != "control"
            daily[arm][(START + timedelta(days=d)).date()] = _day(
                rng, n, lift if is_t else 0.0, guardrail_lift if is_t else 0.0, mature)
    end = START + timedelta(days=max(days, 1))
    record = ExperimentRecord(spec=s, status="stopped", bucket_version=0, created_at=START, updated_at=end,
                              started_at=START, stopped_at=end)
    sums = ExperimentSums(cap=None, daily=daily, segments={}, multi_variant_visitors=0, deduplicated_in_sql=False,
                          caps={"views": None, "dwell": 3.0e6, "inq": 4.0, "inqv": None})
    return report_from_sums(record, sums, now=end)
