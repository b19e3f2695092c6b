"""Bayesian summary of the relative lift: Gaussian posterior, chance to beat control, expected loss.

As gbstats' effect-based Bayesian engine: the data enter through the delta-method estimate of the
relative lift, r_hat ~ Normal(r, se^2) (the same r_hat and se as the fixed-horizon test). With a
proper Normal(mu0, tau^2) prior on r the posterior is Normal with

    precision = 1 / se^2 + 1 / tau^2,  mean = (r_hat / se^2 + mu0 / tau^2) / precision;

with a flat (improper) prior it is Normal(r_hat, se^2). Then, for posterior mean m and sd s
(phi, Phi the standard normal density and cdf):

* chance to win = P(r > 0) = Phi(m / s)
* expected loss of shipping the treatment = E[max(0, -r)] = s phi(m / s) - m Phi(-m / s)
* risk of keeping control = E[max(0, r)] = s phi(m / s) + m Phi(m / s)
* credible interval m +/- z_{1 - alpha/2} s.

All metrics here are "higher is better"; loss and risk are in relative-lift units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special

from armor_ab.stats.frequentist import FixedResult, check_alpha
from armor_ab.stats.status import Status

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Prior:
    mean: float = 0.0
    stddev: float = 0.3
    proper: bool = False  # gbstats' default is a flat prior

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and math.isfinite(self.stddev) and self.stddev > 0):
            raise ValueError(f"prior needs a finite mean and a stddev > 0, got {self.mean!r}, {self.stddev!r}")


@dataclass(frozen=True)
class BayesResult:
    status: Status
    chance_to_win: float | None = None
    expected_loss: float | None = None
    risk_control: float | None = None
    ci_rel: tuple[float, float] | None = None
    mean: float | None = None
    stddev: float | None = None

    def to_dict(self) -> dict:
        return {
            "chance_to_win": self.chance_to_win,
            "expected_loss": self.expected_loss,
            "risk_control": self.risk_control,
            "ci_rel": list(self.ci_rel) if self.ci_rel else None,
            "posterior_mean": self.mean,
            "posterior_sd": self.stddev,
        }


def posterior(lift: float, se: float, prior: Prior) -> tuple[float, float]:
    """Posterior mean and sd of the relative lift."""
    if not prior.proper:
        return lift, se
    precision = 1.0 / se**2 + 1.0 / prior.stddev**2
    mean = (lift / se**2 + prior.mean / prior.stddev**2) / precision
    return mean, math.sqrt(1.0 / precision)


def bayesian(fixed: FixedResult, prior: Prior = Prior(), alpha: float = 0.05) -> BayesResult:
    check_alpha(alpha)
    if fixed.status is not Status.OK or fixed.lift_rel is None or fixed.se_rel is None:
        return BayesResult(fixed.status)
    if fixed.se_rel == 0.0:
        return BayesResult(Status.ZERO_VARIANCE)
    m, s = posterior(fixed.lift_rel, fixed.se_rel, prior)
    z = m / s
    pdf = _INV_SQRT_2PI * math.exp(-0.5 * z * z)
    ctw = float(special.ndtr(z))
    loss = max(0.0, s * pdf - m * float(special.ndtr(-z)))
    risk = max(0.0, s * pdf + m * ctw)
    q = float(special.ndtri(1.0 - alpha / 2.0))
    return BayesResult(Status.OK, ctw, loss, risk, (m - q * s, m + q * s), m, s)
