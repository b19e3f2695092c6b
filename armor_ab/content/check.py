"""Re-run the guardrails on an experiment's stored pages (``armor-ab content check KEY``).

Every stored page (stale ones aside: they are regenerated or re-approved, never served as they are)
is checked again under the experiment's current ``content_checks:`` policy, e.g. after it changed,
and its checks and verdict are recorded. Status follows the rules of generation, with one
difference: nothing is ever taken off a human's decision but the verdict itself.

* A pending page that now passes is approved by ``guardrails`` when the policy says
  ``auto_approve: when_all_pass`` (an unset policy approves nothing here: the page may be a batch
  page waiting for a human).
* An approved page that now fails a blocking check stays approved in status, but its verdict is
  ``fail``: it is no longer served (control's copy, fallback ``guardrail``) until a re-check passes it.
* A page that failed and now passes is served again if it is approved.

The model is loaded once per model (the checks ask it about the pictures: ``image_text``), as in
generation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from armor_ab.content.generate import ContentError, load_generator, resolve_model
from armor_ab.content.guard import VerdictCounts, check_context, register_stored
from armor_ab.store.content import ContentRow, list_content, set_checks, set_review
from armor_ab.store.experiments import ExperimentRecord

log = logging.getLogger("armor_ab.content")

BATCH = 16  # pages checked at once (the checks' batch steps ask the model about all their pictures together)


@dataclass
class CheckReport:
    checked: int = 0
    by_verdict: dict[str, int] = field(default_factory=dict)
    failing: dict[str, int] = field(default_factory=dict)  # check -> pages it did not pass
    changed: int = 0  # pages whose verdict is not the one they had
    approved: int = 0  # pending pages approved by the guardrails (auto_approve: when_all_pass)
    unknown_items: int = 0  # pages of items no longer in the catalog: not checked
    by_variant: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return VerdictCounts(self.by_verdict, self.failing).summary()

    def to_json(self) -> dict:
        return {"checked": self.checked, "by_verdict": self.by_verdict, "failing": self.failing,
                "changed": self.changed, "approved": self.approved, "unknown_items": self.unknown_items,
                "by_variant": self.by_variant}


def check_content(
    con: duckdb.DuckDBPyConnection,
    record: ExperimentRecord,
    images_dir: Path,
    *,
    model: str | Path | None = None,
    backend: str = "torch",
    engine_dir: Path | None = None,
    variant: str | None = None,
    progress: bool = True,
) -> CheckReport:
    """Check every stored page of ``record`` (of ``variant`` only, when given) again under its current policy."""
    from tqdm import tqdm

    from armor_ab.guardrails.page import Page
    from armor_ab.guardrails.pipeline import GUARDRAILS_REVIEWER, check_pages, resolve_expects
    from armor_ab.store.catalog import list_items

    spec = record.spec
    policy = spec.content_checks
    variants = [(i, v) for i, v in enumerate(spec.variants) if v.content.source == "armor"]
    if variant is not None:
        if spec.variant(variant) is None:
            raise ContentError(f"experiment {spec.key}: no variant {variant!r} "
                               f"(variants: {', '.join(v.key for v in spec.variants)})")
        variants = [(i, v) for i, v in variants if v.key == variant]
        if not variants:
            raise ContentError(f"experiment {spec.key}: variant {variant!r} shows the catalog's copy, "
                               "not ARMOR pages: nothing to check")
    report = CheckReport()
    rows = list_content(con, spec.key)
    catalog = {item.id: item for item in list_items(con)}
    plans: list[tuple] = []
    for i, v in variants:
        pages = [r for r in rows if r.variant == v.key and r.status != "stale"]
        known = [r for r in pages if r.item_id in catalog]
        report.unknown_items += len(pages) - len(known)
        if known:
            plans.append((i, v, known))
    total = sum(len(pages) for _, _, pages in plans)
    if total == 0:
        return report

    counts = VerdictCounts(report.by_verdict, report.failing)
    contexts: dict[str, object] = {}  # model -> check context, each model loaded once
    auto = policy.auto_approves(on_demand=False)
    with tqdm(total=total, desc=f"check {spec.key}", unit="page", disable=not progress) as bar:
        for index, v, pages in plans:
            name = resolve_model(v.content.model, model)
            if name not in contexts:
                try:
                    generator = load_generator(name, backend, engine_dir)
                except (OSError, ValueError) as exc:
                    where = "--model" if model else f"experiment {spec.key}: variants[{index}].content.model"
                    raise ContentError(f"{where}: cannot load {name!r}: {exc}") from None
                ctx = check_context(generator, name, list(catalog.values()), policy)
                register_stored(ctx, rows, images_dir, policy)  # duplicates among the stored pictures
                contexts[name] = ctx
            ctx = contexts[name]
            expects = resolve_expects(v.content)
            for start in range(0, len(pages), BATCH):
                batch: list[ContentRow] = pages[start : start + BATCH]
                checked = check_pages([Page.from_json(r.content, images_dir, catalog[r.item_id], r.prompt, expects,
                                                      v.key) for r in batch], policy, ctx)
                for row, checks in zip(batch, checked, strict=True):
                    set_checks(con, spec.key, row.variant, row.item_id, checks.to_json(), checks.verdict)
                    counts.add(checks)
                    report.checked += 1
                    report.changed += row.verdict != checks.verdict
                    report.by_variant[v.key] = report.by_variant.get(v.key, 0) + 1
                    if row.status == "pending" and checks.verdict == "pass" and auto:
                        report.approved += set_review(con, spec.key, "approved", item_id=row.item_id, variant=row.variant,
                                                     reviewed_by=GUARDRAILS_REVIEWER).changed
                    bar.update(1)
    log.info("content checked", extra={"experiment": spec.key, **report.to_json()})
    return report
