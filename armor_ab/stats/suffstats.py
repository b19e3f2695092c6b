"""Sufficient statistics: the few sums SQL hands to the maths, as small frozen dataclasses.

Every class holds plain sums over visitors (n, sums, sums of squares, cross-products), so two
disjoint groups of visitors merge with ``+`` (two days, two shards, two segments). ``moments()``
turns the sums into the mean vector and the sample covariance matrix (ddof=1) the estimators use.

Variables, per visitor, inside the analysis window (and its conversion window, when one is set)
and at or after its first exposure:

* ``views``  page views                  * ``dwell`` dwell milliseconds (sum over views)
* ``inq``    inquiries                   * ``any``   1 when the visitor made at least one inquiry
* ``inqv``   money value of inquiries

and the same five over the pre-exposure window (prefix ``q_``), the CUPED covariate. ``views``,
``dwell``, ``inq`` and ``inqv`` (and their ``q_`` values) are capped per visitor (see
``armor_ab.stats.sql``); ``any`` is never capped. Two more variables cover the ROI's fixed window
(``roi_window_days`` UTC days from the first exposure):

* ``wq``     inquiries in the ROI window (0 while the window is still open)
* ``mature`` 1 when the visitor's ROI window has closed by the analysis end, else 0

so ``inquiries_per_visitor_window`` = sum wq / sum mature is the inquiries per visitor within the
window over the visitors whose window is complete: it does not grow with the test's length.
Whether a window is complete is decided as of the analysis end, so the daily series of these two
is not meaningful (only totals and segments are). They have no pre-exposure values, so that
metric never gets CUPED.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

POST = ("views", "dwell", "inq", "any", "inqv")
PRE = tuple(f"q_{v}" for v in POST)
ROI_WINDOW = ("wq", "mature")  # the ROI window's variables: no pre-exposure (CUPED) values

# (metric, numerator variable, denominator variable or None for a per-visitor mean)
METRIC_VARIABLES: dict[str, tuple[str, str | None]] = {
    "dwell_time_per_view": ("dwell", "views"),
    "dwell_time_per_visitor": ("dwell", None),
    "inquiry_rate": ("any", None),
    "inquiries_per_visitor": ("inq", None),
    "inquiry_value_per_visitor": ("inqv", None),
    # Internal (the ROI's effect), not selectable in a spec: see ROI_WINDOW.
    "inquiries_per_visitor_window": ("wq", "mature"),
}

# The pairs whose cross-product sums SQL computes (besides each variable's square).
CROSS: tuple[tuple[str, str], ...] = (
    ("dwell", "views"),
    ("q_dwell", "q_views"),
    ("dwell", "q_dwell"),
    ("dwell", "q_views"),
    ("views", "q_dwell"),
    ("views", "q_views"),
    ("inq", "q_inq"),
    ("any", "q_any"),
    ("inqv", "q_inqv"),
    ("wq", "mature"),
)

# Column order of ``VisitorSums.values``: the SQL query selects exactly these.
SUM_COLUMNS: tuple[str, ...] = (
    "n",
    *(f"s_{v}" for v in (*POST, *PRE, *ROI_WINDOW)),
    *(f"ss_{v}" for v in (*POST, *PRE, *ROI_WINDOW)),
    *(f"x_{a}__{b}" for a, b in CROSS),
)
_INDEX = {name: i for i, name in enumerate(SUM_COLUMNS)}


class _Summable:
    """``+`` field by field, for frozen dataclasses of sums."""

    def __add__(self, other):  # type: ignore[no-untyped-def]
        if type(other) is not type(self):
            return NotImplemented
        return type(self)(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))  # type: ignore[arg-type]


@dataclass(frozen=True)
class SampleStats(_Summable):
    """One per-visitor variable: n, sum, sum of squares."""

    n: int
    sum: float
    sum_sq: float

    def moments(self) -> tuple[int, np.ndarray, np.ndarray]:
        return _moments(self.n, [self.sum], [[self.sum_sq]])


@dataclass(frozen=True)
class RatioStats(_Summable):
    """A ratio of per-visitor sums, x / y (e.g. dwell / views), for the delta method."""

    n: int
    sum_x: float
    sum_x2: float
    sum_y: float
    sum_y2: float
    sum_xy: float

    def moments(self) -> tuple[int, np.ndarray, np.ndarray]:
        return _moments(self.n, [self.sum_x, self.sum_y], [[self.sum_x2, self.sum_xy], [self.sum_xy, self.sum_y2]])


@dataclass(frozen=True)
class CupedStats(_Summable):
    """A per-visitor variable y and its pre-exposure value x (the CUPED covariate)."""

    n: int
    sum_y: float
    sum_y2: float
    sum_x: float
    sum_x2: float
    sum_xy: float

    def moments(self) -> tuple[int, np.ndarray, np.ndarray]:
        return _moments(self.n, [self.sum_y, self.sum_x], [[self.sum_y2, self.sum_xy], [self.sum_xy, self.sum_x2]])


@dataclass(frozen=True)
class RatioCupedStats(_Summable):
    """A ratio metric with its pre-exposure ratio: variables (num, den, pre num, pre den)."""

    n: int
    sum_m: float
    sum_m2: float
    sum_d: float
    sum_d2: float
    sum_md: float
    sum_pm: float
    sum_pm2: float
    sum_pd: float
    sum_pd2: float
    sum_pm_pd: float
    sum_m_pm: float
    sum_m_pd: float
    sum_d_pm: float
    sum_d_pd: float

    def moments(self) -> tuple[int, np.ndarray, np.ndarray]:
        sums = [self.sum_m, self.sum_d, self.sum_pm, self.sum_pd]
        cross = [
            [self.sum_m2, self.sum_md, self.sum_m_pm, self.sum_m_pd],
            [self.sum_md, self.sum_d2, self.sum_d_pm, self.sum_d_pd],
            [self.sum_m_pm, self.sum_d_pm, self.sum_pm2, self.sum_pm_pd],
            [self.sum_m_pd, self.sum_d_pd, self.sum_pm_pd, self.sum_pd2],
        ]
        return _moments(self.n, sums, cross)


MetricStats = SampleStats | RatioStats | CupedStats | RatioCupedStats


def _moments(n: int, sums: list[float], cross: list[list[float]]) -> tuple[int, np.ndarray, np.ndarray]:
    """Mean vector and sample covariance (ddof=1) from sums; n < 2 gives a zero covariance."""
    s = np.asarray(sums, dtype=float)
    if n <= 0:
        return 0, np.zeros_like(s), np.zeros((len(s), len(s)))
    mean = s / n
    if n < 2:
        return n, mean, np.zeros((len(s), len(s)))
    cov = (np.asarray(cross, dtype=float) - np.outer(s, s) / n) / (n - 1)
    # sum_sq - sum^2 / n cancels: a constant variable (say 0.1 for everyone) comes out with a
    # variance of ~1e-16 x mean^2 of either sign, not 0. Far below any real spread, treat it as 0
    # so a constant metric reports ZERO_VARIANCE instead of a spurious, infinitely precise test.
    for i in np.flatnonzero(np.diag(cov) <= 1e-12 * mean**2):
        cov[i, :] = 0.0
        cov[:, i] = 0.0
    return n, mean, cov


@dataclass(frozen=True)
class VisitorSums:
    """Every sum SQL returns for one group of visitors (a variant, a day, a segment), in ``SUM_COLUMNS`` order."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.values) != len(SUM_COLUMNS):
            raise ValueError(f"VisitorSums needs {len(SUM_COLUMNS)} values, got {len(self.values)}")

    @classmethod
    def zero(cls) -> VisitorSums:
        return cls((0.0,) * len(SUM_COLUMNS))

    def __add__(self, other: VisitorSums) -> VisitorSums:
        if not isinstance(other, VisitorSums):
            return NotImplemented
        return VisitorSums(tuple(a + b for a, b in zip(self.values, other.values, strict=True)))

    def __getitem__(self, name: str) -> float:
        return self.values[_INDEX[name]]

    @property
    def n(self) -> int:
        return int(round(self["n"]))

    def _x(self, a: str, b: str) -> float:
        return self[f"x_{a}__{b}"] if f"x_{a}__{b}" in _INDEX else self[f"x_{b}__{a}"]

    def metric(self, name: str, *, cuped: bool = False) -> MetricStats:
        """The sufficient statistics of one metric, with its pre-exposure covariate when ``cuped``.

        A metric whose variables have no pre-exposure values (``ROI_WINDOW``) returns its plain
        statistics even when ``cuped``: the estimators then report it without CUPED.
        """
        if name not in METRIC_VARIABLES:
            raise ValueError(f"unknown metric {name!r}; expected one of {sorted(METRIC_VARIABLES)}")
        num, den = METRIC_VARIABLES[name]
        cuped = cuped and num in POST
        n = self.n
        if den is None:
            if not cuped:
                return SampleStats(n, self[f"s_{num}"], self[f"ss_{num}"])
            q = f"q_{num}"
            return CupedStats(n, self[f"s_{num}"], self[f"ss_{num}"], self[f"s_{q}"], self[f"ss_{q}"], self._x(num, q))
        ratio = RatioStats(n, self[f"s_{num}"], self[f"ss_{num}"], self[f"s_{den}"], self[f"ss_{den}"], self._x(num, den))
        if not cuped:
            return ratio
        qn, qd = f"q_{num}", f"q_{den}"
        return RatioCupedStats(
            n,
            ratio.sum_x, ratio.sum_x2, ratio.sum_y, ratio.sum_y2, ratio.sum_xy,
            self[f"s_{qn}"], self[f"ss_{qn}"], self[f"s_{qd}"], self[f"ss_{qd}"], self._x(qn, qd),
            self._x(num, qn), self._x(num, qd), self._x(den, qn), self._x(den, qd),
        )
