"""image_text: every picture shows the item's category, as the model itself and its judge see it.

ARMOR's image-text agreement check in production: each generated picture goes back through the model's own
understanding path (ViT -> projector -> LM, greedy) with ``policy.question``, and the answer is one vote: it
names the item's category (``armor_ab.catalog.categories.names_category`` over ``CheckContext.categories``:
"This is a pump." names "pumps", and names no other category of the catalog). The judge classifier shipped
beside the model (``CheckContext.judge``), where there is one, is the other vote: it predicts the item's
category. A judge that does not know the item's category (a model fine-tuned on another catalog) abstains.

Per picture: every vote for -> pass; every vote against -> fail (evidence: the answer, the judge's category);
votes split -> warn. The page takes its worst picture. Without a model to ask (no understanding path and no
judge) -> warn "not checked"; a page without pictures passes. ``prepare`` asks once for all the batch's
pictures (one ``understand`` call, one ``judge`` call) and caches the answers by picture
(``ctx.cache[("image_text", sha256)]``).

How far the votes go, on the demo model (``armor-demo``, "What is this?"): on drawn catalog pictures (50 per
category, 300 in all) the model names the category of 296 (98.7 %) and the judge of 300; on 82 pictures the
model drew itself for the 42 demo items the model names the item's category for 64 (78 %), the judge for
60 (73 %), and they agree on 66: its blurred or garbled pictures are what this check is for.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from armor_ab.catalog.categories import names_category
from armor_ab.experiments.content_checks import ImageTextPolicy
from armor_ab.guardrails.check import Check
from armor_ab.guardrails.context import CheckContext
from armor_ab.guardrails.page import Page, PageImage
from armor_ab.guardrails.result import CheckResult, Evidence, Status

log = logging.getLogger("armor_ab.guardrails")

NAME = "image_text"
_RANK: dict[Status, int] = {"pass": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class Opinions:
    """What the model answered about one picture (None: not asked) and what the judge said (None: no judge)."""

    question: str
    answer: str | None
    judged: str | None


def _key(image: PageImage) -> tuple[str, str]:
    return (NAME, image.sha256)


def _cached(ctx: CheckContext, image: PageImage, policy: ImageTextPolicy) -> Opinions | None:
    """The cached opinions about ``image``; re-raises what asking about it raised in ``prepare``."""
    found = ctx.cache.get(_key(image))
    if isinstance(found, _Failed):
        raise found.error
    return found if isinstance(found, Opinions) and found.question == policy.question else None


@dataclass(frozen=True)
class _Failed:
    """Asking about the batch's pictures raised: each of their pages' ``run`` raises it (the pipeline reports
    the check as failed on those pages, and the rest of the batch is still checked)."""

    error: Exception


def prepare(pages: Sequence[Page], policy: ImageTextPolicy, ctx: CheckContext) -> None:
    """Ask the model (one ``understand`` call) and the judge (one call) about every decodable picture of the
    batch not asked yet, and cache the answers by picture."""
    if ctx.understand is None and ctx.judge is None:
        return
    todo: dict[str, PageImage] = {}
    for page in pages:
        for image in page.images:
            found = ctx.cache.get(_key(image))
            asked = isinstance(found, _Failed) or (isinstance(found, Opinions) and found.question == policy.question)
            if image.sha256 not in todo and not asked and image.pil is not None:
                todo[image.sha256] = image
    if not todo:
        return
    images = list(todo.values())
    try:
        opinions = _ask(images, policy, ctx)
    except Exception as exc:  # noqa: BLE001 - reported per page by run, as the pipeline reports a raising check
        log.exception("asking the model about the pictures raised", extra={"check": NAME})
        opinions = [_Failed(exc)] * len(images)
    for image, opinion in zip(images, opinions, strict=True):
        ctx.cache[_key(image)] = opinion


def _ask(images: Sequence[PageImage], policy: ImageTextPolicy, ctx: CheckContext) -> list[Opinions]:
    pictures = [image.pil for image in images]
    answers: list[str | None] = [None] * len(images)
    judged: list[str | None] = [None] * len(images)
    if ctx.understand is not None:
        answers = list(ctx.understand(pictures, [policy.question] * len(pictures)))
    if ctx.judge is not None:
        judged = list(ctx.judge(pictures))
    if len(answers) != len(images) or len(judged) != len(images):
        raise ValueError(f"asked about {len(images)} pictures, got {len(answers)} answers and {len(judged)} "
                         "judgements")
    return [Opinions(policy.question, answer, category) for answer, category in zip(answers, judged, strict=True)]


def _judge_knows(ctx: CheckContext, category: str) -> bool:
    known = getattr(ctx.judge, "categories", None)
    return known is None or category in known


def run(page: Page, policy: ImageTextPolicy, ctx: CheckContext) -> CheckResult:
    if not page.images:
        return CheckResult(NAME, "pass", "no pictures to check")
    if ctx.understand is None and ctx.judge is None:
        return CheckResult(NAME, "warn", "not checked: no model to ask")
    category = page.item.category
    categories = tuple(dict.fromkeys((*ctx.categories, category)))
    judge_votes = ctx.judge is not None and _judge_knows(ctx, category)
    missing = [image for image in page.images if image.pil is not None and _cached(ctx, image, policy) is None]
    if missing:  # run without prepare (or a picture prepare did not see): ask for this page now
        prepare([page], policy, ctx)

    statuses: list[Status] = []
    notes: list[str] = []
    evidence: list[Evidence] = []
    for index, image in enumerate(page.images):
        label = f"picture {index + 1}"
        if image.pil is None:
            statuses.append("warn")
            notes.append(f"{label} not checked: it does not decode")
            evidence.append(Evidence(f"{label} does not decode", image=index))
            continue
        opinions = _cached(ctx, image, policy)
        votes: list[bool] = []
        said: list[str] = []
        if opinions is not None and opinions.answer is not None:
            votes.append(names_category(opinions.answer, category, categories))
            said.append(f"the model answered {opinions.answer!r} to {opinions.question!r}")
        if opinions is not None and opinions.judged is not None and judge_votes:
            votes.append(opinions.judged == category)
            said.append(f"the judge says {opinions.judged}")
        if not votes:
            statuses.append("warn")
            notes.append(f"{label} not checked: the judge does not know the category {category!r}")
            evidence.append(Evidence(f"{label}: no vote", image=index))
            continue
        share = sum(votes) / len(votes)
        if share == 1.0:
            statuses.append("pass")
            continue
        status: Status = "fail" if share == 0.0 else "warn"
        statuses.append(status)
        what = "does not show" if status == "fail" else "may not show"
        notes.append(f"{label} {what} {category}: " + ", ".join(said))
        evidence.append(Evidence("; ".join(said), image=index, score=round(share, 3)))

    worst = max(statuses, key=_RANK.__getitem__)
    if worst == "pass":
        n = len(page.images)
        return CheckResult(NAME, "pass", f"{n} picture{'s' if n != 1 else ''} show{'s' if n == 1 else ''} "
                           f"{category}")
    return CheckResult(NAME, worst, "; ".join(notes), tuple(evidence))


CHECK = Check(NAME, run, "the model's own answer about each picture (and its judge) names the item's category",
              prepare)
