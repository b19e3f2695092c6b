"""Placeholder: being written."""

from __future__ import annotations

from armor_ab.guardrails.check import Check
from armor_ab.guardrails.result import CheckResult


def run(page, policy, ctx) -> CheckResult:
    raise NotImplementedError("image_text")


CHECK = Check("image_text", run, "image_text")
