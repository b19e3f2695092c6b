"""Generate the pages of catalog items (read from the database) for each ARMOR variant, check them
(``armor_ab.guardrails``, under the experiment's ``content_checks:``) and store them with their checks.

A page is stored pending review, or approved by ``guardrails`` when it passes every check and the
policy says ``auto_approve: when_all_pass``; a page that fails a blocking check stays pending and is
never served (nor approvable). Re-running skips what exists. Seeds are per item (the variant's seed + the item's position in the
imported catalog, ``item_positions``), so a page does not depend on batching or on which other
items were selected for the same run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from armor_ab.assets import SHIPPED_MODELS
from armor_ab.catalog.items import CatalogItem
from armor_ab.content.prompts import ContentError, render_prompt
from armor_ab.experiments.models import ContentSpec
from armor_ab.store.catalog import item_positions
from armor_ab.store.content import exists, model_name, save_generated
from armor_ab.store.experiments import ExperimentRecord

# ContentError and render_prompt live in content.prompts; they stay importable from here (the
# on-demand path and the CLI import them from this module).
__all__ = ["ContentError", "GenerateReport", "generate_content", "load_generator", "page_sampling",
           "render_prompt", "resolve_model"]

log = logging.getLogger("armor_ab.content")


@dataclass
class GenerateReport:
    generated: int = 0
    skipped: int = 0
    by_variant: dict[str, int] = field(default_factory=dict)
    by_verdict: dict[str, int] = field(default_factory=dict)  # pass | warn | fail -> pages
    failing: dict[str, int] = field(default_factory=dict)  # check -> pages it did not pass
    approved: int = 0  # pages approved by the guardrails (auto_approve: when_all_pass, and a pass)

    def checks_summary(self) -> str:
        """``2 pass, 1 fail (terms 1)``: what the checks said of the pages generated."""
        from armor_ab.content.guard import VerdictCounts

        return VerdictCounts(self.by_verdict, self.failing).summary()


def resolve_model(name: str, override: str | Path | None = None) -> str:
    """A model directory or named config: --model wins, then a shipped ``engine/models/NAME``."""
    if override:
        return str(override)
    shipped = SHIPPED_MODELS / name
    return str(shipped) if (shipped / "config.json").exists() else name


def _runs(indices: list[int]) -> list[list[int]]:
    """Split sorted catalog positions into runs of consecutive numbers (rows of a batch get seed + row)."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def generate_content(
    con: duckdb.DuckDBPyConnection,
    record: ExperimentRecord,
    items: list[CatalogItem],
    images_dir: Path,
    *,
    model: str | Path | None = None,
    backend: str = "torch",
    engine_dir: Path | None = None,
    batch_size: int = 4,
    progress: bool = True,
) -> GenerateReport:
    """Generate, check and store the missing pages of ``items`` for every ARMOR variant of ``record``
(pending, or approved by the guardrails under ``auto_approve: when_all_pass``).

    ``items`` come from the imported catalog (``store.catalog.list_items``); every prompt is rendered
    before the first page is generated, so a field an item lacks stops the run before it starts."""
    from tqdm import tqdm

    spec = record.spec
    report = GenerateReport()
    # Seeds follow the item's place in the whole catalog, not in this selection.
    positions = item_positions(con)
    unknown = [item.id for item in items if item.id not in positions]
    if unknown:
        raise ContentError(f"not in the imported catalog: {', '.join(unknown[:5])}"
                           f"{' …' if len(unknown) > 5 else ''} (import it first: armor-ab catalog import FILE)")
    by_position = {positions[item.id]: item for item in items}
    plans = []
    for v_index, variant in enumerate(spec.variants):
        if variant.content.source != "armor":
            continue
        where = f"experiment {spec.key}: variants[{v_index}].content.prompt"
        todo = sorted(p for p, item in by_position.items() if not exists(con, spec.key, variant.key, item.id))
        report.skipped += len(by_position) - len(todo)
        prompts = {p: render_prompt(variant.content.prompt or "", by_position[p], where) for p in todo}
        plans.append((variant, todo, prompts))
    total = sum(len(todo) for _, todo, _ in plans)
    if total == 0:
        return report

    from armor_ab.content.guard import VerdictCounts, check_context, register_experiment
    from armor_ab.guardrails.page import Page
    from armor_ab.guardrails.pipeline import check_pages, resolve_expects, review_status
    from armor_ab.store.catalog import list_items

    policy = spec.content_checks
    catalog = list_items(con)  # the checks know every category of the catalog, not only this selection's
    counts = VerdictCounts(report.by_verdict, report.failing)
    generators: dict[str, tuple] = {}  # model -> (generator, its check context), each built once
    with tqdm(total=total, desc=f"content {spec.key}", unit="page", disable=not progress) as bar:
        for variant, todo, prompts in plans:
            name = resolve_model(variant.content.model, model)
            if name not in generators:
                gen = load_generator(name, backend, engine_dir)
                ctx = check_context(gen, name, catalog, policy)
                register_experiment(ctx, con, spec.key, images_dir, policy)  # duplicates of stored pictures
                generators[name] = (gen, ctx)
            gen, ctx = generators[name]
            expects = resolve_expects(variant.content)
            for run in _runs(todo):
                for start in range(0, len(run), batch_size):
                    rows = run[start : start + batch_size]
                    settings = page_sampling(variant.content, rows[0])
                    result = gen.generate([prompts[i] for i in rows], settings=settings)
                    pages = [Page.from_content(content, by_position[i], prompts[i], expects, variant.key)
                             for i, content in zip(rows, result.contents, strict=True)]
                    checked = check_pages(pages, policy, ctx)
                    for i, content, checks in zip(rows, result.contents, checked, strict=True):
                        status, reviewed_by = review_status(checks, policy, on_demand=False)
                        save_generated(con, images_dir, spec.key, variant.key, by_position[i].id, content,
                                       prompts[i], status=status, checks=checks.to_json(), verdict=checks.verdict,
                                       reviewed_by=reviewed_by)
                        counts.add(checks)
                        report.approved += status == "approved"
                        report.generated += 1
                        report.by_variant[variant.key] = report.by_variant.get(variant.key, 0) + 1
                        bar.update(1)
    return report


def page_sampling(content: ContentSpec, index: int):
    """How one catalog page is sampled: greedy text, sampled pictures, the seed of the item's catalog position."""
    from armor_ab.model import SamplingConfig

    return SamplingConfig(max_images=content.max_images, seed=content.seed + index, max_new_tokens=160,
                          temperature=0.0, image_temperature=1.0)


def load_generator(name: str, backend: str = "torch", engine_dir: Path | None = None):
    """An ``InterleavedGenerator`` for a model name or directory on the chosen backend.

    The pages it writes name the model by its name (``armor-demo``) and config hash, never by the
    directory it was loaded from: visitors receive that metadata."""
    from armor_ab.model import load_model

    loaded = load_model(name)
    if loaded.random_weights:
        log.warning("model has random weights", extra={"model": name})
    return _generator(loaded, backend, engine_dir)


def _generator(loaded, backend: str, engine_dir: Path | None):
    from armor_ab.model import InterleavedGenerator

    label = model_name(loaded.name)
    if backend == "torch":
        return InterleavedGenerator.from_model(loaded.model, loaded.tokenizer, label)
    from armor_ab.engine.errors import BackendUnavailable, EngineError
    from armor_ab.engine.loader import open_engine_backend  # ONNX Runtime / TensorRT

    if engine_dir is None:
        raise ContentError(f"--backend {backend} needs --engine DIR (built by `armor-ab engine build`)")
    try:
        engine = open_engine_backend(engine_dir, backend, expected_config=loaded.model.config)
    except (EngineError, BackendUnavailable, ValueError) as exc:
        raise ContentError(f"--engine {engine_dir}: {exc}") from None
    # The engine's own tokenizer (byte or Hugging Face: the one its build's parity ran with); the config
    # check above makes it the model's.
    return InterleavedGenerator(engine, engine.tokenizer or loaded.tokenizer, label)
