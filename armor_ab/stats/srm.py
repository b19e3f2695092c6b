"""Sample ratio mismatch: are visitors split between the configured variants as planned?

Two tests over the configured variants only (visitors of an unknown variant are a data-quality
warning of their own, never an SRM):

* ``chi_square_p``: the fixed-horizon chi-square goodness of fit (what gbstats' ``check_srm`` does).
  Valid once; checked every day it flags far more often than its threshold says.
* ``sequential_srm``: the anytime-valid test of Lindon & Malek (2022), "Anytime-valid inference for
  multinomial count data" (NeurIPS), which the verdict and the live health check use, so it can be
  looked at after every batch of visitors. Under H0 the counts are multinomial with the planned
  shares p0; the alternative mixes over a Dirichlet(k p0) prior on the shares (k = 100, the
  concentration Optimizely's ssrm-test and savvi default to). The Bayes factor after counts n is

      BF(n) = [Gamma(k) / Gamma(k + N)] prod_i Gamma(k p0_i + n_i) / Gamma(k p0_i) / prod_i p0_i^{n_i},

  a nonnegative martingale under H0, so by Ville's inequality P(sup_t BF_t >= 1/alpha) <= alpha and
  ``p_t = min(1, min_{s <= t} 1 / BF_s)`` is an anytime-valid p-value. With daily cumulative counts
  the minimum runs over the days; with one set of counts it is ``min(1, 1 / BF)``, still valid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import special, stats

SRM_THRESHOLD = 0.001  # the usual bar: a real mismatch is rarely subtle, and checks run daily
DIRICHLET_CONCENTRATION = 100.0


def _live_weights(weights: Mapping[str, float]) -> dict[str, float]:
    if not weights or any(not (isinstance(w, int | float) and math.isfinite(w) and w >= 0) for w in weights.values()):
        raise ValueError(f"weights must be finite non-negative numbers, got {dict(weights)!r}")
    total = math.fsum(weights.values())
    if total <= 0:
        raise ValueError("weights must not all be 0")
    return {k: w / total for k, w in weights.items() if w > 0}


def chi_square_p(observed: Sequence[int], weights: Sequence[float]) -> float:
    """Fixed-horizon chi-square p-value of counts against planned shares (zero-weight arms left out)."""
    live = [(int(o), float(w)) for o, w in zip(observed, weights, strict=True) if w > 0]
    total = sum(o for o, _ in live)
    if total == 0 or len(live) < 2:
        return 1.0
    wsum = math.fsum(w for _, w in live)
    _, p = stats.chisquare([o for o, _ in live], [total * w / wsum for _, w in live])
    return float(p)


def log_bayes_factor(counts: np.ndarray, p0: np.ndarray, concentration: float = DIRICHLET_CONCENTRATION) -> np.ndarray:
    """log BF of "shares differ from p0" for each row of ``counts`` (rows: looks, columns: arms)."""
    counts = np.atleast_2d(np.asarray(counts, dtype=float))
    a = concentration * p0
    n = counts.sum(axis=1)
    return (
        special.gammaln(concentration) - special.gammaln(concentration + n)
        + (special.gammaln(a + counts) - special.gammaln(a)).sum(axis=1)
        - (counts * np.log(p0)).sum(axis=1)
    )


@dataclass(frozen=True)
class SrmResult:
    """The SRM verdict over the configured variants; ``flag`` when the sequential p-value < threshold."""

    observed: dict[str, int]
    expected: dict[str, float]
    p_value: float  # anytime-valid (sequential)
    chi_square_p_value: float  # fixed-horizon, for reference (gbstats' check_srm)
    flag: bool
    threshold: float
    looks: int  # how many cumulative looks the running minimum covers
    method: str = "sequential_dirichlet_multinomial"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "observed": self.observed,
            "expected": self.expected,
            "p_value": self.p_value,
            "chi_square_p_value": self.chi_square_p_value,
            "flag": self.flag,
            "threshold": self.threshold,
            "looks": self.looks,
            **self.extra,
        }


def sequential_srm(
    looks: Sequence[Mapping[str, int]] | Mapping[str, int],
    weights: Mapping[str, float],
    threshold: float = SRM_THRESHOLD,
    concentration: float = DIRICHLET_CONCENTRATION,
) -> SrmResult:
    """Anytime-valid SRM test over cumulative counts per look (oldest first; the last is "now").

    Counts of variants outside ``weights`` are ignored here: the report counts them separately.
    """
    if not (0 < threshold < 1):
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    if isinstance(looks, Mapping):
        looks = [looks]
    live = _live_weights(weights)
    names = list(live)
    p0 = np.array([live[k] for k in names])
    last = looks[-1] if looks else {}
    observed = {k: int(last.get(k, 0)) for k in weights}
    total = sum(observed.values())
    expected = {k: total * live.get(k, 0.0) for k in weights}
    chi_p = chi_square_p([observed[k] for k in weights], [weights[k] for k in weights])
    if len(names) < 2 or total == 0:
        return SrmResult(observed, expected, 1.0, chi_p, False, threshold, len(looks))
    counts = np.array([[int(look.get(k, 0)) for k in names] for look in looks], dtype=float)
    # Visitors in a zero-weight configured arm: impossible under the plan, so the mismatch is certain.
    impossible = any(observed[k] > 0 for k in weights if k not in live)
    log_bf = log_bayes_factor(counts, p0, concentration)
    p = 0.0 if impossible else float(min(1.0, math.exp(-float(np.max(log_bf)))))
    return SrmResult(observed, expected, p, chi_p, p < threshold, threshold, len(looks))
