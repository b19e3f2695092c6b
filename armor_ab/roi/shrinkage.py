"""Empirical-Bayes shrinkage of the measured effect toward zero.

The prior is Normal(0, tau^2) on the RELATIVE lift (lift / baseline): relative effects are what
past experiments on other pages and metrics have in common, absolute ones depend on each
baseline. On the absolute lift of this experiment it is Normal(0, (tau x baseline)^2).

With the estimate ``L_hat ~ Normal(L, s^2)`` (s = its standard error) and ``tau_abs = tau x baseline``:

* shrinkage ``B = s^2 / (s^2 + tau_abs^2)`` (the share of the estimate pulled back to 0)
* posterior mean ``(1 - B) L_hat``, posterior sd ``sqrt((1 - B)) s = s tau_abs / sqrt(s^2 + tau_abs^2)``

Default tau = 0.10 (``DEFAULT_PRIOR``): most A/B tests move their metric by a few percent and
relative effects beyond +/-20% (two sd) are rare (Kohavi, Tang & Xu, *Trustworthy Online
Controlled Experiments*, 2020, ch. 2-3; Azevedo et al., "A/B testing with fat tails", 2020), while a
new kind of page content can plausibly move inquiries by ~10%. Replace it with the spread of your
own past experiments: ``prior_from_history``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_PRIOR_SD_REL = 0.10
PRIOR_FLOOR_SD_REL = 0.01  # a history of null results cannot shrink every future effect to exactly 0
MIN_HISTORY = 3  # fewer past experiments than this: the method of moments is too noisy; keep the default


@dataclass(frozen=True)
class EffectPrior:
    """Normal(0, sd_rel^2) on the relative lift."""

    sd_rel: float
    source: str = "default"  # "default" | "history" | "request" | free text
    n_experiments: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.sd_rel, bool) or not isinstance(self.sd_rel, int | float) or not math.isfinite(self.sd_rel):
            raise ValueError(f"EffectPrior.sd_rel must be a finite number, got {self.sd_rel!r}")
        if self.sd_rel <= 0:
            raise ValueError(f"EffectPrior.sd_rel must be > 0, got {self.sd_rel!r}")

    def to_dict(self) -> dict:
        return {"mean_rel": 0.0, "sd_rel": float(self.sd_rel), "source": self.source,
                "n_experiments": self.n_experiments}


DEFAULT_PRIOR = EffectPrior(DEFAULT_PRIOR_SD_REL, "default")


def prior_from_history(
    estimates: Iterable[tuple[float, float]],
    *,
    floor_sd_rel: float = PRIOR_FLOOR_SD_REL,
    min_experiments: int = MIN_HISTORY,
) -> EffectPrior:
    """The prior's sd from past experiments' ``(lift_rel, se_rel)`` pairs, by the method of moments.

    Each estimate is its true effect plus noise, so ``E[lift^2] = tau^2 + E[se^2]``:
    ``tau^2 = max(floor_sd_rel^2, mean(lift_i^2 - se_i^2))``. Pairs with a non-finite value or a
    negative se are skipped. With fewer than ``min_experiments`` usable pairs the default prior
    comes back (``source`` says so), because a variance from one or two numbers is noise.
    """
    usable = [(float(x), float(s)) for x, s in estimates
              if math.isfinite(float(x)) and math.isfinite(float(s)) and float(s) >= 0]
    n = len(usable)
    if n < min_experiments:
        return EffectPrior(DEFAULT_PRIOR_SD_REL, f"default (only {n} usable past experiment(s), need {min_experiments})",
                           n)
    moment = sum(x * x - s * s for x, s in usable) / n
    tau2 = max(floor_sd_rel**2, moment)
    return EffectPrior(math.sqrt(tau2), "history", n)


@dataclass(frozen=True)
class Posterior:
    """The shrunk effect on the absolute lift (inquiries per visitor)."""

    mean: float
    sd: float
    shrinkage: float  # B in [0, 1]; 0 = taken as measured
    prior_sd_abs: float | None  # tau x baseline; None when the prior could not be applied
    applied: bool
    reason: str | None = None  # why it was not applied


def shrink(lift_abs: float, lift_abs_se: float, baseline: float, prior: EffectPrior) -> Posterior:
    """Normal-normal posterior of the absolute lift under the relative prior (see the module doc)."""
    if baseline <= 0:
        return Posterior(lift_abs, lift_abs_se, 0.0, None, False,
                         "baseline inquiries per visitor is 0: a relative prior cannot be turned into an absolute one")
    tau = prior.sd_rel * baseline
    if lift_abs_se == 0:
        return Posterior(lift_abs, 0.0, 0.0, tau, True)
    b = lift_abs_se**2 / (lift_abs_se**2 + tau**2)
    return Posterior((1.0 - b) * lift_abs, math.sqrt(1.0 - b) * lift_abs_se, b, tau, True)
