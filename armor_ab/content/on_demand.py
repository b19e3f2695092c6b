"""On-demand pages: generate a missing ARMOR page while the visitor waits, up to a timeout.

An experiment opts in per variant (``content: {source: armor, on_demand: true}``). When such a
variant's visitor asks for an item that has no stored page at all, the server starts generating it
in a worker process (the model never loads into the API process) and waits up to ``timeout_s``.
Ready in time: the visitor gets it. Not ready: the visitor gets control's copy (counted in
``/metrics`` as fallback ``generating``) and generation goes on; the page goes live for later
visitors as soon as it is stored. The worker checks each page it writes (``armor_ab.guardrails``,
under the experiment's ``content_checks:``): a page that passes is stored ``approved`` by
``guardrails`` with no review time (unless the policy says ``auto_approve: never``), so the Content
dashboard tells them apart; rejecting one takes it off the site. A page that fails a blocking check
is stored (pending, verdict ``fail``) but never served: the visitor who waited, and every later one,
gets control's copy with fallback ``guardrail``; it is not generated again. A page that exists
in any state (pending, rejected) is never regenerated here, and one item is generated once even
when many visitors ask for it at the same moment. A failed generation is retried after
``retry_after_s``, not on every request.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from armor_ab.catalog.items import CatalogItem
from armor_ab.content.generate import page_sampling, render_prompt, resolve_model
from armor_ab.content.pages import PageKey, PageStore
from armor_ab.experiments.content_checks import ContentChecks
from armor_ab.experiments.models import ContentSpec, ExperimentSpec

log = logging.getLogger("armor_ab.content")

GENERATING = "generating"
FAILED = "generation_failed"


@dataclass(frozen=True)
class OnDemandSettings:
    timeout_s: float = 2.0
    backend: str = "torch"
    engine_dir: Path | None = None
    max_inflight: int = 64  # items queued for the worker at once; more wait for a later request
    retry_after_s: float = 60.0
    images_dir: Path | None = None  # the image store: the worker reads served pages' pictures from it


# -- the worker process ------------------------------------------------------------------------------
_generators: dict[tuple, object] = {}
_contexts: dict[tuple, object] = {}  # (generator key, policy hash) -> its CheckContext, built once
_catalog: list[CatalogItem] = []  # the server's catalog, sent once when the worker starts


def _init_worker(catalog: list[CatalogItem]) -> None:
    _catalog[:] = catalog


def generate_page(model: str, backend: str, engine_dir: Path | None, prompt: str, content: ContentSpec, index: int,
                  item: CatalogItem | None = None, policy: ContentChecks | None = None, variant: str = "",
                  served: tuple[tuple[str, tuple[str, ...]], ...] = (), images_dir: Path | None = None):
    """One page in the worker process, and its checks: ``(InterleavedContent, PageChecks)``; the checks
    are None when no ``policy`` is given. The generator of each model, and its check context (per
    policy), are built once and kept. ``served``: (item id, picture hashes) of the experiment's served
    pages, whose pictures (read from ``images_dir`` once each) a new picture must not duplicate."""
    from armor_ab.content.generate import load_generator

    key = (model, backend, engine_dir)
    if key not in _generators:
        _generators[key] = load_generator(model, backend, engine_dir)
    generator = _generators[key]
    page = generator.generate([prompt], settings=page_sampling(content, index)).contents[0]
    if policy is None or item is None:
        return page, None
    from armor_ab.content.guard import check_context
    from armor_ab.guardrails.page import Page
    from armor_ab.guardrails.pipeline import check_pages, policy_hash, resolve_expects

    ctx_key = (key, policy_hash(policy))
    if ctx_key not in _contexts:
        _contexts[ctx_key] = check_context(generator, model, _catalog or [item], policy)
    ctx = _contexts[ctx_key]
    if images_dir is not None and policy.image_sanity.action != "off":
        from armor_ab.guardrails.image_sanity import register_pictures
        from armor_ab.guardrails.page import PageImage

        for other, shas in served:
            new = [sha for sha in shas if sha not in ctx.picture_hashes]
            files = [(sha, Path(images_dir) / f"{sha}.png") for sha in new]
            register_pictures(ctx, other, [PageImage(sha, f.read_bytes()) for sha, f in files if f.is_file()])
    checked = Page.from_content(page, item, prompt, resolve_expects(content), variant)
    return page, check_pages([checked], policy, ctx)[0]


# -- the API side ------------------------------------------------------------------------------------
class OnDemand:
    """Generation of missing pages for the API: ``wanted`` then ``ensure`` on the content path."""

    def __init__(self, settings: OnDemandSettings, items: dict[str, CatalogItem]) -> None:
        """``items``: the catalog by id, in catalog order (the database's ``catalog_items``)."""
        self.settings = settings
        self.items = items
        self.index = {item: i for i, item in enumerate(items)}  # seeds follow the catalog order
        self._pool: ProcessPoolExecutor | None = None
        self._inflight: dict[PageKey, asyncio.Future] = {}
        self._failed: dict[PageKey, float] = {}
        self.generated = 0
        self.blocked = 0  # pages stored with a blocking failure (never served)

    def wanted(self, pages: PageStore, spec: ExperimentSpec, variant: str | None, item_id: str) -> ContentSpec | None:
        """The variant's content spec when this item's page should be generated now, else None."""
        if variant is None or item_id not in self.items:
            return None
        spec_variant = spec.variant(variant)
        if spec_variant is None or spec_variant.content.source != "armor" or not spec_variant.content.on_demand:
            return None
        if pages.has_page((spec.key, variant, item_id)):  # stored in some state: never here
            return None
        return spec_variant.content

    async def ensure(self, pages: PageStore, key: PageKey, content: ContentSpec,
                     policy: ContentChecks | None = None) -> str | None:
        """Wait up to the timeout for the missing page ``key`` (experiment, variant, item) that
        ``wanted`` returned ``content`` for, checked under ``policy`` (the experiment's
        ``content_checks``); None when it arrived (stored: served, or not when it failed a blocking
        check), else the fallback reason (``generating`` or ``generation_failed``)."""
        failed_at = self._failed.get(key)
        if failed_at is not None and time.monotonic() - failed_at < self.settings.retry_after_s:
            return FAILED
        task = self._inflight.get(key)
        if task is None:
            if len(self._inflight) >= self.settings.max_inflight:
                return GENERATING
            task = asyncio.ensure_future(self._make(pages, key, content, policy or ContentChecks()))
            self._inflight[key] = task
            task.add_done_callback(lambda t, key=key: self._done(key, t))
        try:
            await asyncio.wait_for(asyncio.shield(task), self.settings.timeout_s)
        except TimeoutError:
            return GENERATING
        except Exception:
            return FAILED
        return None

    async def _make(self, pages: PageStore, key: PageKey, content: ContentSpec, policy: ContentChecks) -> None:
        from armor_ab.guardrails.pipeline import review_status

        experiment, variant, item_id = key
        item = self.items[item_id]
        prompt = render_prompt(content.prompt or "", item, f"experiment {experiment}: variant {variant}: prompt")
        model = resolve_model(content.model)
        started = time.perf_counter()
        served = pages.served_pictures(experiment)
        page, checks = await asyncio.get_running_loop().run_in_executor(
            self._executor(), generate_page, model, self.settings.backend, self.settings.engine_dir, prompt, content,
            self.index[item_id], item, policy, variant, served, self.settings.images_dir)
        status, reviewed_by = review_status(checks, policy, on_demand=True)
        await pages.store_generated(key, page, prompt, checks=checks, status=status, reviewed_by=reviewed_by)
        self.generated += 1
        if checks.verdict == "fail":
            self.blocked += 1
        log.info("on-demand page stored", extra={"experiment": experiment, "variant": variant, "item_id": item_id,
                                                 "status": status, "verdict": checks.verdict,
                                                 "failing": ",".join(checks.failing()) or None,
                                                 "seconds": round(time.perf_counter() - started, 3)})

    def _done(self, key: PageKey, task: asyncio.Future) -> None:
        self._inflight.pop(key, None)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._failed[key] = time.monotonic()
            log.error("on-demand generation failed", exc_info=exc,
                      extra={"experiment": key[0], "variant": key[1], "item_id": key[2]})
        else:
            self._failed.pop(key, None)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:  # started on first use: most servers never generate on demand
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(list(self.items.values()),))
        return self._pool

    def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        if self._pool is not None:
            workers = list((self._pool._processes or {}).values())  # shutdown() forgets them
            self._pool.shutdown(wait=False, cancel_futures=True)
            for proc in workers:  # a page mid-generation is not worth waiting for
                proc.terminate()
            for proc in workers:
                proc.join(10)
