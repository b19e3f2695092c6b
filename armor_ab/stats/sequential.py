"""Always-valid inference: asymptotic confidence sequences, safe under continuous peeking.

Source: Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2023), "Time-uniform central limit theory
and asymptotic confidence sequences", Annals of Statistics (arXiv:2103.06476), Theorem 2.2 with
the normal-mixture boundary; the form GrowthBook's gbstats uses for its sequential testing.

For an estimate with variance V after N = n_c + n_t units, write sigma^2 = N V (per-unit scale).
The (1 - alpha) confidence sequence is estimate +/- half-width with

    half-width = sigma * sqrt( 2 (N rho^2 + 1) / (N^2 rho^2) * log( sqrt(N rho^2 + 1) / alpha ) )

and rho chosen so the sequence is tightest at N* = ``tuning`` units (gbstats'
``sequential_tuning_parameter``, default 5000; the paper's eq. for the optimal mixing width):

    rho = sqrt( (-2 log(alpha) + log(-2 log(alpha) + 1)) / N* ).

The always-valid p-value is the smallest alpha whose sequence excludes 0; solving
half-width(alpha) = |d| for alpha with rho held at the design alpha gives

    p = min(1, sqrt(N rho^2 + 1) * exp( -d^2 N^2 rho^2 / (2 sigma^2 (N rho^2 + 1)) )),

so p < alpha exactly when the interval excludes 0. The relative-lift sequence uses the delta-method
variance of the relative lift in V.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from armor_ab.stats.frequentist import FixedResult, check_alpha
from armor_ab.stats.status import Status

DEFAULT_TUNING = 5000.0


def rho(alpha: float, tuning: float = DEFAULT_TUNING) -> float:
    """Mixing width making the boundary tightest at ``tuning`` units."""
    check_alpha(alpha)
    if not (isinstance(tuning, int | float) and tuning > 0):
        raise ValueError(f"tuning must be > 0, got {tuning!r}")
    la = -2.0 * math.log(alpha)
    return math.sqrt((la + math.log(la + 1.0)) / tuning)


def half_width(var: float, n_total: int, alpha: float, tuning: float = DEFAULT_TUNING) -> float:
    """Half-width of the (1 - alpha) asymptotic confidence sequence for an estimate of variance ``var``."""
    r2 = rho(alpha, tuning) ** 2
    n = float(n_total)
    sigma2 = var * n
    return math.sqrt(sigma2 * 2.0 * (n * r2 + 1.0) / (n * n * r2) * math.log(math.sqrt(n * r2 + 1.0) / alpha))


def p_value(estimate: float, var: float, n_total: int, alpha: float, tuning: float = DEFAULT_TUNING) -> float:
    """Always-valid two-sided p-value for H0: effect = 0."""
    r2 = rho(alpha, tuning) ** 2
    n = float(n_total)
    sigma2 = var * n
    exponent = -(estimate**2) * n * n * r2 / (2.0 * sigma2 * (n * r2 + 1.0))
    return float(min(1.0, math.sqrt(n * r2 + 1.0) * math.exp(exponent)))


@dataclass(frozen=True)
class SequentialResult:
    status: Status
    ci_abs: tuple[float, float] | None = None
    ci_rel: tuple[float, float] | None = None
    p_value: float | None = None

    def to_dict(self) -> dict:
        return {
            "ci_abs": list(self.ci_abs) if self.ci_abs else None,
            "ci_rel": list(self.ci_rel) if self.ci_rel else None,
            "p_value": self.p_value,
        }


def sequential(fixed: FixedResult, n_total: int, alpha: float = 0.05, tuning: float = DEFAULT_TUNING) -> SequentialResult:
    """The confidence sequences around the fixed-horizon point estimates (same variances)."""
    check_alpha(alpha)
    if fixed.lift_abs is None or fixed.se_abs is None or n_total < 2:
        return SequentialResult(fixed.status)
    var = fixed.se_abs**2
    hw = half_width(var, n_total, alpha, tuning)
    ci_abs = (fixed.lift_abs - hw, fixed.lift_abs + hw)
    p = p_value(fixed.lift_abs, var, n_total, alpha, tuning)
    ci_rel = None
    if fixed.lift_rel is not None and fixed.se_rel is not None:
        hw_rel = half_width(fixed.se_rel**2, n_total, alpha, tuning)
        ci_rel = (fixed.lift_rel - hw_rel, fixed.lift_rel + hw_rel)
    return SequentialResult(fixed.status, ci_abs, ci_rel, p)


@dataclass(frozen=True)
class SequentialGuardrail:
    """Always-valid non-inferiority of one guardrail metric: is its relative change above -margin?

    ``passed`` when the sequential interval's lower bound is above -margin, ``breached`` when its
    upper bound is below -margin (worse than tolerated, shown), else ``pending``. The lower bound
    of a two-sided (1 - alpha) confidence sequence crosses -margin wrongly with probability at most
    alpha at ANY look (Ville's inequality bounds the two-sided crossing, hence each side), so daily
    looks cannot turn a harmful change into "passed".
    """

    status: Status
    state: str  # passed | breached | pending | unavailable
    margin: float
    lower: float | None
    upper: float | None
    alpha: float

    @property
    def passed(self) -> bool:
        return self.state == "passed"

    def to_dict(self) -> dict:
        return {
            "margin": self.margin,
            "state": self.state,
            "passed": self.passed,
            "sequential_lower": self.lower,
            "sequential_upper": self.upper,
            "alpha": self.alpha,
            "status": self.status.value,
        }


def sequential_guardrail(
    fixed: FixedResult, n_total: int, margin: float, alpha: float = 0.05, tuning: float = DEFAULT_TUNING
) -> SequentialGuardrail:
    check_alpha(alpha)
    if not (isinstance(margin, int | float) and 0.0 <= margin < 1.0):
        raise ValueError(f"margin must be in [0, 1), got {margin!r}")
    seq = sequential(fixed, n_total, alpha, tuning)
    if fixed.status is not Status.OK or seq.ci_rel is None:
        return SequentialGuardrail(fixed.status, "unavailable", margin, None, None, alpha)
    lo, hi = seq.ci_rel
    state = "passed" if lo > -margin else "breached" if hi < -margin else "pending"
    return SequentialGuardrail(Status.OK, state, margin, lo, hi, alpha)
