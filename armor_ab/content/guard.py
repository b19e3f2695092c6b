"""What content generation and ``armor-ab content check`` share to run the guardrails on pages:
a check context per generator (built once, with the pictures of the experiment's stored pages
registered for duplicate detection), pages as the checks see them, and counts for the reports."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from armor_ab.catalog.items import CatalogItem
from armor_ab.experiments.content_checks import ContentChecks
from armor_ab.guardrails.context import CheckContext
from armor_ab.guardrails.page import PageImage
from armor_ab.guardrails.result import PageChecks
from armor_ab.store.content import ContentRow, list_content


def check_context(generator, model: str | Path, catalog: Sequence[CatalogItem], policy: ContentChecks) -> CheckContext:
    """The context of ``generator``'s pages (``guardrails.model_context.context_for``): built once per generator."""
    from armor_ab.guardrails.model_context import context_for

    return context_for(generator, model, catalog, policy)


def stored_pictures(row: ContentRow, images_dir: Path) -> list[PageImage]:
    """A stored page's pictures, in page order, read from the image store (a missing file: empty bytes)."""
    out = []
    for seg in row.content["segments"]:
        if seg["type"] == "image":
            path = Path(images_dir) / f"{seg['sha256']}.png"
            out.append(PageImage(seg["sha256"], path.read_bytes() if path.is_file() else b""))
    return out


def register_stored(ctx: CheckContext, rows: Iterable[ContentRow], images_dir: Path, policy: ContentChecks) -> int:
    """Register the pictures of stored pages (not stale ones) for duplicate detection; returns the pages
    registered. Nothing is read when ``image_sanity`` is off."""
    if policy.image_sanity.action == "off":
        return 0
    from armor_ab.guardrails.image_sanity import register_pictures

    n = 0
    for row in rows:
        if row.status == "stale":
            continue
        images = stored_pictures(row, images_dir)
        if images:
            register_pictures(ctx, row.item_id, images)
            n += 1
    return n


def register_experiment(ctx: CheckContext, con: duckdb.DuckDBPyConnection, experiment: str, images_dir: Path,
                        policy: ContentChecks) -> int:
    """``register_stored`` for every stored page of ``experiment``."""
    if policy.image_sanity.action == "off":
        return 0
    return register_stored(ctx, list_content(con, experiment), images_dir, policy)


@dataclass
class VerdictCounts:
    """Pages by verdict, and by each check that did not pass on them (a page counts once per check)."""

    by_verdict: dict[str, int] = field(default_factory=dict)
    failing: dict[str, int] = field(default_factory=dict)

    def add(self, checks: PageChecks) -> None:
        self.by_verdict[checks.verdict] = self.by_verdict.get(checks.verdict, 0) + 1
        for name in checks.failing():
            self.failing[name] = self.failing.get(name, 0) + 1

    def summary(self) -> str:
        """``2 pass, 1 warn, 1 fail (terms 1, modality 1)``; empty when nothing was checked."""
        if not self.by_verdict:
            return ""
        text = ", ".join(f"{self.by_verdict[v]} {v}" for v in ("pass", "warn", "fail") if v in self.by_verdict)
        if self.failing:
            text += " (" + ", ".join(f"{name} {n}" for name, n in sorted(self.failing.items())) + ")"
        return text
