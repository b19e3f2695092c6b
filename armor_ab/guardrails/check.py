"""What a check is: a name, a function, a summary, and an optional batch step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from armor_ab.guardrails.context import CheckContext
from armor_ab.guardrails.page import Page
from armor_ab.guardrails.result import CheckResult


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Page, Any, CheckContext], CheckResult]  # (page, its policy, context) -> result
    summary: str  # one line for docs and the dashboard
    # Optional batch step before ``run``: computes what is cheaper for many pages at once (the model's
    # answers, perceptual hashes) into ``CheckContext``.
    prepare: Callable[[Sequence[Page], Any, CheckContext], None] | None = None
