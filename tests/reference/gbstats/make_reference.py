"""Reference values from GrowthBook's ``gbstats``, to check armor_ab.stats against an independent implementation.

Why this exists
---------------
armor_ab.stats reimplements the maths gbstats uses (Welch t-test with delta-method relative lift, the
Waudby-Smith et al. normal-mixture confidence sequence, the Gaussian effect-based Bayesian test, the
SRM chi-square). ``tests/test_gbstats_reference.py`` compares our numbers with the ones this script
writes to ``reference.json``. gbstats pins numpy<2 and pandas<2, so it is NOT a dependency of the
project: this script runs in a throwaway virtualenv, and the test only reads the JSON.

How to rerun it (from the repository root; python3 is 3.11 here)
------------------------------------------------------------------
    python3 -m venv /tmp/gbenv
    /tmp/gbenv/bin/pip install gbstats==0.8.0
    /tmp/gbenv/bin/python tests/reference/gbstats/make_reference.py

The reference.json committed was made with gbstats 0.8.0, numpy 1.26.4, scipy 1.17.1, pandas 1.5.3
(the versions are also written into the JSON); to reproduce it bit for bit pin them too:

    /tmp/gbenv/bin/pip install gbstats==0.8.0 numpy==1.26.4 scipy==1.17.1 pandas==1.5.3

What it computes, for every case in CASES (inputs are sufficient statistics, hard-coded below)
----------------------------------------------------------------------------------------------
* ``fixed``: gbstats.frequentist.tests.TwoSidedTTest, alpha 0.05, relative and absolute.
* ``sequential``: SequentialTwoSidedTTest with (tuning 5000, alpha 0.05) and (tuning 1000, alpha 0.1),
  relative and absolute: point estimate, CI, p-value, stddev of the estimate.
* ``bayesian``: EffectBayesianABTest (relative), flat prior (the gbstats default) and two proper
  Gaussian priors: chance to win, CI, posterior mean and sd, risk [control, treatment].
* ``arms``: gbstats' per-arm mean and per-unit variance (``Statistic.variance``).
and, separately, ``srm``: gbstats.gbstats.check_srm for a few observed counts and weights.

Proportions are computed twice: with gbstats' ProportionStatistic (variance p(1 - p), ddof 0) and
as a SampleMeanStatistic of a 0/1 variable (sum_squares = sum, ddof 1), which is how armor_ab
treats a proportion; the test explains the difference.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
from pathlib import Path

from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig, GaussianPrior
from gbstats.frequentist.tests import (
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.gbstats import check_srm
from gbstats.models.statistics import ProportionStatistic, RatioStatistic, SampleMeanStatistic

OUT = Path(__file__).resolve().parent / "reference.json"

# Sufficient statistics per arm. Made once from seeded synthetic data (lognormal dwell seconds,
# binomial conversions, Poisson views with lognormal dwell per view), rounded to integers so that
# every sum is exact in float64, then frozen here.
#   mean:       n, sum, sum_squares                      (SampleMeanStatistic / armor SampleStats)
#   proportion: n, sum                                   (ProportionStatistic; 0/1 so sum_sq = sum)
#   ratio:      n, sum_x, sum_x2, sum_y, sum_y2, sum_xy  (RatioStatistic x / y / armor RatioStats)
CASES: dict[str, dict] = {
    "mean_small": {
        "kind": "mean",
        "control": {"n": 87, "sum": 4070, "sum_squares": 365322},
        "treatment": {"n": 93, "sum": 6372, "sum_squares": 703326},
    },
    "mean_large": {
        "kind": "mean",
        "control": {"n": 48213, "sum": 3163463, "sum_squares": 565162259},
        "treatment": {"n": 47998, "sum": 3193087, "sum_squares": 580286771},
    },
    "mean_unequal_negative": {  # 75/25 split, treatment lower
        "kind": "mean",
        "control": {"n": 30117, "sum": 7536555, "sum_squares": 8411443271},
        "treatment": {"n": 9961, "sum": 2328058, "sum_squares": 2098721900},
    },
    "proportion_small": {
        "kind": "proportion",
        "control": {"n": 150, "sum": 19},
        "treatment": {"n": 160, "sum": 27},
    },
    "proportion_large": {
        "kind": "proportion",
        "control": {"n": 50000, "sum": 1877},
        "treatment": {"n": 50210, "sum": 2084},
    },
    "ratio_small": {
        "kind": "ratio",
        "control": {
            "n": 240,
            "sum_x": 26741,
            "sum_x2": 6145673,
            "sum_y": 746,
            "sum_y2": 2774,
            "sum_xy": 96960,
        },
        "treatment": {
            "n": 250,
            "sum_x": 29963,
            "sum_x2": 6296411,
            "sum_y": 782,
            "sum_y2": 2948,
            "sum_xy": 108106,
        },
    },
    "ratio_large": {
        "kind": "ratio",
        "control": {
            "n": 20000,
            "sum_x": 2071219,
            "sum_x2": 492314999,
            "sum_y": 59678,
            "sum_y2": 218014,
            "sum_xy": 7584678,
        },
        "treatment": {
            "n": 20100,
            "sum_x": 2140764,
            "sum_x2": 519416572,
            "sum_y": 60446,
            "sum_y2": 221632,
            "sum_xy": 7863711,
        },
    },
}

SEQUENTIAL_SETTINGS = [
    {"tuning": 5000.0, "alpha": 0.05},
    {"tuning": 1000.0, "alpha": 0.1},
]
FIXED_ALPHA = 0.05

# Priors on the relative lift, as gbstats takes them (a variance, not a stddev).
BAYES_SETTINGS = [
    {"prior": {"mean": 0.0, "variance": 1.0, "proper": False}, "alpha": 0.05},  # gbstats' default
    {"prior": {"mean": 0.0, "variance": 0.3**2, "proper": True}, "alpha": 0.05},
    {"prior": {"mean": 0.02, "variance": 0.05**2, "proper": True}, "alpha": 0.1},
]

SRM_CASES = [
    {"observed": [5000, 5000], "weights": [0.5, 0.5]},
    {"observed": [5100, 4900], "weights": [0.5, 0.5]},
    {"observed": [5300, 4700], "weights": [0.5, 0.5]},
    {"observed": [5100, 4900], "weights": [1, 1]},  # unnormalised weights
    {"observed": [7400, 2600], "weights": [0.75, 0.25]},
    {"observed": [3400, 3300, 3300], "weights": [1 / 3, 1 / 3, 1 / 3]},
    {"observed": [3510, 3205, 3285], "weights": [1 / 3, 1 / 3, 1 / 3]},
    {"observed": [2050, 4890, 3060], "weights": [0.2, 0.5, 0.3]},
    {"observed": [131, 97], "weights": [0.5, 0.5]},
]


def statistic(kind: str, arm: dict):
    if kind == "mean":
        return SampleMeanStatistic(n=arm["n"], sum=arm["sum"], sum_squares=arm["sum_squares"])
    if kind == "proportion":
        return ProportionStatistic(n=arm["n"], sum=arm["sum"])
    if kind == "proportion_as_mean":  # a 0/1 variable: x^2 = x
        return SampleMeanStatistic(n=arm["n"], sum=arm["sum"], sum_squares=arm["sum"])
    if kind == "ratio":
        n = arm["n"]
        return RatioStatistic(
            n=n,
            m_statistic=SampleMeanStatistic(n=n, sum=arm["sum_x"], sum_squares=arm["sum_x2"]),
            d_statistic=SampleMeanStatistic(n=n, sum=arm["sum_y"], sum_squares=arm["sum_y2"]),
            m_d_sum_of_products=arm["sum_xy"],
        )
    raise ValueError(kind)


def f(x) -> float:
    return float(x)


def frequentist_out(test) -> dict:
    res = test.compute_result()
    if res.error_message:
        raise RuntimeError(res.error_message)
    return {
        "expected": f(res.expected),
        "ci": [f(res.ci[0]), f(res.ci[1])],
        "p_value": f(res.p_value),
        "stddev": f(res.uplift.stddev),
        "dof": f(test.dof),
    }


def run_case(kind: str, control: dict, treatment: dict) -> dict:
    def pair():  # fresh objects per test: gbstats tests may set attributes on them
        return statistic(kind, control), statistic(kind, treatment)

    a, b = pair()
    out: dict = {
        "gbstats_statistic": type(a).__name__,
        "arms": {
            "control": {"n": a.n, "mean": f(a.mean), "variance": f(a.variance)},
            "treatment": {"n": b.n, "mean": f(b.mean), "variance": f(b.variance)},
        },
    }
    out["fixed"] = {
        "alpha": FIXED_ALPHA,
        **{
            dt: frequentist_out(
                TwoSidedTTest(*pair(), FrequentistConfig(alpha=FIXED_ALPHA, difference_type=dt))
            )
            for dt in ("relative", "absolute")
        },
    }
    out["sequential"] = []
    for s in SEQUENTIAL_SETTINGS:
        entry = dict(s)
        for dt in ("relative", "absolute"):
            cfg = SequentialConfig(
                alpha=s["alpha"], difference_type=dt, sequential_tuning_parameter=s["tuning"]
            )
            test = SequentialTwoSidedTTest(*pair(), cfg)
            entry[dt] = {**frequentist_out(test), "rho": f(test.rho)}
        out["sequential"].append(entry)
    out["bayesian"] = []
    for s in BAYES_SETTINGS:
        cfg = EffectBayesianConfig(
            alpha=s["alpha"],
            difference_type="relative",
            prior_type="relative",
            prior_effect=GaussianPrior(**s["prior"]),
        )
        res = EffectBayesianABTest(*pair(), cfg).compute_result()
        if res.error_message:
            raise RuntimeError(res.error_message)
        out["bayesian"].append(
            {
                **s,
                "chance_to_win": f(res.chance_to_win),
                "ci": [f(res.ci[0]), f(res.ci[1])],
                "expected": f(res.expected),
                "stddev": f(res.uplift.stddev),
                # gbstats: risk[0] = E[max(lift, 0)] (risk of keeping control),
                #          risk[1] = E[max(-lift, 0)] (expected loss of shipping the treatment)
                "risk": [f(res.risk[0]), f(res.risk[1])],
                "risk_type": res.risk_type,
            }
        )
    return out


def main() -> None:
    versions = {p: importlib.metadata.version(p) for p in ("gbstats", "numpy", "scipy", "pandas", "pydantic")}
    cases = {}
    for name, case in CASES.items():
        kinds = [case["kind"]] + (["proportion_as_mean"] if case["kind"] == "proportion" else [])
        for kind in kinds:
            key = name if kind == case["kind"] else f"{name}_as_sample_mean"
            cases[key] = {
                "kind": kind,
                "control": case["control"],
                "treatment": case["treatment"],
                **run_case(kind, case["control"], case["treatment"]),
            }
    srm = [{**c, "p_value": f(check_srm(c["observed"], c["weights"]))} for c in SRM_CASES]
    doc = {
        "generator": "tests/reference/gbstats/make_reference.py",
        "gbstats_version": versions["gbstats"],
        "versions": versions,
        "python": platform.python_version(),
        "cases": cases,
        "srm": srm,
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT} (gbstats {versions['gbstats']}, {len(cases)} cases, {len(srm)} SRM checks)")


if __name__ == "__main__":
    main()
