"""Run an experiment's checks on pages, and decide what each page's review status may be."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from armor_ab.experiments.content_checks import ContentChecks, Expects
from armor_ab.experiments.models import ContentSpec
from armor_ab.guardrails.context import CheckContext
from armor_ab.guardrails.modality import expects_from_prompt
from armor_ab.guardrails.page import Page
from armor_ab.guardrails.registry import CHECKS
from armor_ab.guardrails.result import CheckResult, PageChecks

log = logging.getLogger("armor_ab.guardrails")

GUARDRAILS_REVIEWER = "guardrails"  # reviewed_by of a page approved by ``auto_approve``


def policy_hash(policy: ContentChecks) -> str:
    return hashlib.sha256(policy.model_dump_json().encode()).hexdigest()


def resolve_expects(content: ContentSpec) -> Expects:
    """The variant's declared ``expects``, else what its prompt template asks for."""
    return content.expects if content.expects is not None else expects_from_prompt(content.prompt or "")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("armor-ab")
    except PackageNotFoundError:
        return "unknown"


def check_pages(pages: Sequence[Page], policy: ContentChecks, ctx: CheckContext) -> list[PageChecks]:
    """Every enabled check on every page (batch steps first); one ``PageChecks`` per page, in order.

    A check that raises is reported as a failure of that check (the page is not served on a bug)."""
    enabled = [(c, getattr(policy, name)) for name, c in CHECKS.items() if getattr(policy, name).action != "off"]
    for check, check_policy in enabled:
        if check.prepare is not None and pages:
            check.prepare(pages, check_policy, ctx)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    made_by = {"armor_ab": _version(), **({"model": ctx.model_name} if ctx.model_name else {})}
    digest = policy_hash(policy)
    out: list[PageChecks] = []
    for page in pages:
        results = []
        for check, check_policy in enabled:
            try:
                result = check.run(page, check_policy, ctx)
            except Exception as exc:  # noqa: BLE001 - a broken check must not let a page through
                log.exception("guardrail check raised", extra={"check": check.name, "item_id": page.item.id})
                result = CheckResult(check.name, "fail", f"the check raised {type(exc).__name__}: {exc}")
            results.append(CheckResult(result.check, result.status, result.reason, result.evidence,
                                       check_policy.action))
        out.append(PageChecks(tuple(results), stamp, digest, made_by))
    return out


def review_status(checks: PageChecks, policy: ContentChecks, *, on_demand: bool) -> tuple[str, str | None]:
    """(status, reviewed_by) a freshly checked page is stored with: approved by the guardrails when it
    passes and the policy auto-approves, else pending (a failing page stays pending: never served)."""
    if checks.verdict == "pass" and policy.auto_approves(on_demand):
        return "approved", GUARDRAILS_REVIEWER
    return "pending", None
