"""Multiple-testing adjustment over the metrics x variants of one experiment (statsmodels)."""

from __future__ import annotations

from collections.abc import Sequence

from statsmodels.stats.multitest import multipletests

METHODS = ("holm", "fdr_bh", "none")


def adjust(p_values: Sequence[float | None], method: str = "holm") -> list[float | None]:
    """Adjusted p-values in the same order; None entries (no test) stay None and are not counted."""
    if method not in METHODS:
        raise ValueError(f"correction must be one of {METHODS}, got {method!r}")
    present = [i for i, p in enumerate(p_values) if p is not None]
    out: list[float | None] = [None] * len(p_values)
    if not present:
        return out
    # One test needs no adjustment; and statsmodels' multipletests runs gc.collect() on every call
    # (~50 ms), which the error-rate simulations, taking thousands of looks, cannot afford.
    if method == "none" or len(present) == 1:
        for i in present:
            out[i] = float(p_values[i])  # type: ignore[arg-type]
        return out
    _, adjusted, _, _ = multipletests([p_values[i] for i in present], method=method)
    for i, p in zip(present, adjusted, strict=True):
        out[i] = float(p)
    return out
