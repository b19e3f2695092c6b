"""One metric, control vs one treatment: every test the report shows, from the sufficient statistics.

``compare(control, treatment, metric, ComparisonOptions(...))`` -> ``Comparison`` (fixed-horizon,
sequential, optionally Bayesian); ``entry`` turns one into the JSON results entry of the report.
"""

from __future__ import annotations

from dataclasses import dataclass

from armor_ab.stats.bayesian import BayesResult, Prior, bayesian
from armor_ab.stats.estimate import PairEstimate, estimate_pair
from armor_ab.stats.frequentist import FixedResult, welch
from armor_ab.stats.sequential import DEFAULT_TUNING, SequentialResult, sequential
from armor_ab.stats.status import Status
from armor_ab.stats.suffstats import VisitorSums


@dataclass(frozen=True)
class ComparisonOptions:
    """How one comparison is computed: level, CUPED, the confidence sequence's tuning, the prior."""

    alpha: float = 0.05
    cuped: bool = True
    sequential_tuning: float = DEFAULT_TUNING
    prior: Prior = Prior()


@dataclass(frozen=True)
class Comparison:
    metric: str
    pair: PairEstimate
    fixed: FixedResult
    sequential: SequentialResult
    bayes: BayesResult | None

    @property
    def status(self) -> Status:
        return self.fixed.status


def _pair(ci: tuple[float, float] | None) -> list[float] | None:
    return list(ci) if ci is not None else None


def compare(
    control: VisitorSums, treatment: VisitorSums, metric: str, options: ComparisonOptions, *, with_bayes: bool = True
) -> Comparison:
    """Fixed-horizon, sequential and (optionally) Bayesian results for one metric."""
    pair = estimate_pair(control.metric(metric, cuped=options.cuped), treatment.metric(metric, cuped=options.cuped))
    fixed = welch(pair, options.alpha)
    seq = sequential(fixed, pair.control.n + pair.treatment.n, options.alpha, options.sequential_tuning)
    bayes = bayesian(fixed, options.prior, options.alpha) if with_bayes else None
    return Comparison(metric, pair, fixed, seq, bayes)


def entry(comp: Comparison, *, variant: str, baseline: str) -> dict:
    """The JSON results entry of one metric x variant."""
    c, t, f = comp.pair.control, comp.pair.treatment, comp.fixed
    ok_means = comp.pair.status is Status.OK
    return {
        "metric": comp.metric,
        "variant": variant,
        "baseline": baseline,
        "n": t.n,
        "baseline_n": c.n,
        "mean": t.raw_mean if ok_means else None,
        "baseline_mean": c.raw_mean if ok_means else None,
        "mean_adjusted": t.mean if ok_means else None,
        "baseline_mean_adjusted": c.mean if ok_means else None,
        "lift_abs": f.lift_abs,
        "se_abs": f.se_abs,
        "ci_abs": _pair(f.ci_abs),
        "lift_rel": f.lift_rel,
        "se_rel": f.se_rel,
        "ci_rel": _pair(f.ci_rel),
        "p_value": f.p_value,
        "p_value_adjusted": None,  # filled in over the whole family by the report
        "df": f.df,
        "sequential": comp.sequential.to_dict(),
        "bayesian": comp.bayes.to_dict() if comp.bayes is not None else None,
        "status": comp.status.value,
        "cuped": comp.pair.cuped,
        "cuped_theta": comp.pair.theta if comp.pair.cuped else None,
    }
