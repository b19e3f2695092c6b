"""Typed outcomes for data problems: the statistics never answer NaN and never raise on data."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Why a result is (or is not) usable; the value is what the JSON report carries."""

    OK = "ok"
    TOO_FEW_UNITS = "too_few_units"  # fewer than 2 visitors in an arm: no variance to estimate
    ZERO_DENOMINATOR = "zero_denominator"  # a ratio metric whose denominator sums to 0 in an arm
    ZERO_VARIANCE = "zero_variance"  # both arms constant: no standard error, no test
    ZERO_BASELINE = "zero_baseline"  # control mean 0: the absolute lift is fine, a relative one is undefined
