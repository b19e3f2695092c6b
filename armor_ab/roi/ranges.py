"""Business assumptions given as a range ``{low, likely, high}`` and the PERT draws over them.

A ranged assumption is drawn from the Beta-PERT distribution on [low, high] with mode ``likely``
(shape lambda = 4): ``X = low + (high - low) * Beta(a, b)`` with
``a = 1 + 4 (likely - low) / (high - low)`` and ``b = 1 + 4 (high - likely) / (high - low)``, so
``E[X] = (low + 4 likely + high) / 6``. PERT rather than triangular: it is smooth, puts less
weight on the extremes (people's "low" and "high" are rarely as likely as the triangle's tails
make them), and its mean stays close to the likely value. ``low == high`` is a fixed value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

PERT_LAMBDA = 4.0


class Range(BaseModel):
    """An uncertain assumption: the most likely value and a plausible low and high."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    low: float
    likely: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low <= self.likely <= self.high:
            raise ValueError(f"a range needs low <= likely <= high, got {self.low:g}, {self.likely:g}, {self.high:g}")
        return self

    @property
    def fixed(self) -> bool:
        return self.low == self.high

    @property
    def mean(self) -> float:
        """The PERT mean, (low + 4 likely + high) / 6."""
        return (self.low + PERT_LAMBDA * self.likely + self.high) / (PERT_LAMBDA + 2)

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` PERT draws (always consumes ``size`` beta variates, so streams stay aligned)."""
        span = self.high - self.low
        if span <= 0:
            rng.beta(1.0, 1.0, size=size)  # keep the random stream independent of which ranges are degenerate
            return np.full(size, self.likely)
        a = 1.0 + PERT_LAMBDA * (self.likely - self.low) / span
        b = 1.0 + PERT_LAMBDA * (self.high - self.likely) / span
        return self.low + span * rng.beta(a, b, size=size)


def likely(value: float | Range) -> float:
    """The value the deterministic figures use: the number, or the range's likely value."""
    return float(value.likely) if isinstance(value, Range) else float(value)


def parts(value: float | Range) -> tuple[float, ...]:
    """Every number a value carries (for bound checks)."""
    return (value.low, value.likely, value.high) if isinstance(value, Range) else (float(value),)


def as_range(value: Any) -> Range | None:
    return value if isinstance(value, Range) else None
