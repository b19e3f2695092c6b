"""Placeholder: being written."""

from __future__ import annotations

from armor_ab.guardrails.check import Check
from armor_ab.guardrails.result import CheckResult


def run(page, policy, ctx) -> CheckResult:
    raise NotImplementedError("modality")


CHECK = Check("modality", run, "modality")


def expects_from_prompt(prompt: str):
    from armor_ab.experiments.content_checks import Expects

    return Expects()
