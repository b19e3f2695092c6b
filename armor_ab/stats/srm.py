"""Sample ratio mismatch: chi-square goodness of fit of visitors per variant to the planned weights."""

from __future__ import annotations

import math
from collections.abc import Mapping

from scipy import stats

SRM_THRESHOLD = 0.001  # the usual bar: a real mismatch is rarely subtle, and checks run daily


def srm_test(observed: Mapping[str, int], weights: Mapping[str, float], threshold: float = SRM_THRESHOLD) -> dict:
    """{p_value, flag, observed, expected, chi2, df}; flagged when p < ``threshold``.

    ``weights`` are the configured shares (normalised here); visitors of a variant that is not
    configured, or of one with weight 0, are a mismatch on their own (p = 0).
    """
    if not weights or any(not (isinstance(w, int | float) and w >= 0) for w in weights.values()):
        raise ValueError(f"weights must be non-negative numbers, got {dict(weights)!r}")
    total_weight = math.fsum(weights.values())
    if total_weight <= 0:
        raise ValueError("weights must not all be 0")
    obs = {k: int(observed.get(k, 0)) for k in weights}
    total = sum(obs.values())
    expected = {k: total * w / total_weight for k, w in weights.items()}
    stray = {k: int(v) for k, v in observed.items() if (k not in weights or weights[k] == 0) and v}
    result = {"observed": obs, "expected": expected, "threshold": threshold}
    if stray:
        return {**result, "p_value": 0.0, "flag": True, "chi2": None, "df": None, "unexpected": stray}
    live = [k for k, w in weights.items() if w > 0]
    if total == 0 or len(live) < 2:
        return {**result, "p_value": 1.0, "flag": False, "chi2": 0.0, "df": max(len(live) - 1, 0)}
    chi2, p = stats.chisquare([obs[k] for k in live], [expected[k] for k in live])
    return {**result, "p_value": float(p), "flag": bool(p < threshold), "chi2": float(chi2), "df": len(live) - 1}
