"""Placeholder: being written."""

from __future__ import annotations

from armor_ab.guardrails.check import Check
from armor_ab.guardrails.result import CheckResult


def run(page, policy, ctx) -> CheckResult:
    raise NotImplementedError("terms")


CHECK = Check("terms", run, "terms")
