"""Placeholder: being written."""

from __future__ import annotations

from collections.abc import Sequence

from armor_ab.guardrails.check import Check
from armor_ab.guardrails.context import CheckContext
from armor_ab.guardrails.page import PageImage
from armor_ab.guardrails.result import CheckResult


def run(page, policy, ctx) -> CheckResult:
    raise NotImplementedError("image_sanity")


def register_pictures(ctx: CheckContext, item_id: str, images: Sequence[PageImage]) -> None:
    """Make the pictures of an already stored page of ``item_id`` known to duplicate detection."""


CHECK = Check("image_sanity", run, "image_sanity")
