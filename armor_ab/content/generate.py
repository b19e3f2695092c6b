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
from armor_ab.experiments.content_checks import ContentChecks
from armor_ab.experiments.models import ContentSpec, Variant
from armor_ab.store.catalog import item_positions
from armor_ab.store.content import exists, model_name, save_generated
from armor_ab.store.experiments import ExperimentRecord

# ContentError and render_prompt live in content.prompts; they stay importable from here (the
# on-demand path and the CLI import them from this module).
__all__ = ["ContentError", "ContentPlan", "GenerateReport", "content_batches", "generate_batch", "generate_content",
           "load_generator", "page_sampling", "plan_content", "render_prompt", "resolve_model", "store_page"]

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


@dataclass
class ContentPlan:
    """What a run will generate: per ARMOR variant (in the experiment's order) the catalog positions whose
    pages are missing and their prompts. ``generate_content`` and the Ray path (``content.ray_generate``)
    walk it in the same order, in the same batches (``content_batches``)."""

    report: GenerateReport
    by_position: dict[int, CatalogItem]  # catalog position -> item, of the selection
    variants: list[tuple[Variant, list[int], dict[int, str]]]  # (variant, missing positions, their prompts)

    @property
    def total(self) -> int:
        return sum(len(todo) for _, todo, _ in self.variants)


def plan_content(con: duckdb.DuckDBPyConnection, record: ExperimentRecord, items: list[CatalogItem]) -> ContentPlan:
    """The missing pages of ``items`` for every ARMOR variant, every prompt rendered (a field an item lacks
    stops the run before it starts); the report counts the pages already stored as skipped."""
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
    return ContentPlan(report, by_position, plans)


def content_batches(todo: list[int], batch_size: int) -> list[list[int]]:
    """The batches of one variant's missing positions: runs of consecutive positions, cut every
    ``batch_size`` rows. A batch is generated with the seed of its first position, its row r with that
    seed + r: the seed of the row's own position."""
    return [run[start : start + batch_size] for run in _runs(todo) for start in range(0, len(run), batch_size)]


def generate_batch(gen, ctx, policy: ContentChecks, variant: str, content: ContentSpec, rows: list[int],
                   items: list[CatalogItem], prompts: list[str]) -> tuple[list, list]:
    """One batch (``content_batches``) of one variant's pages, and their checks: (``InterleavedContent``s,
    ``PageChecks``es), in row order. ``items``/``prompts``: those of ``rows``."""
    from armor_ab.guardrails.page import Page
    from armor_ab.guardrails.pipeline import check_pages, resolve_expects

    result = gen.generate(list(prompts), settings=page_sampling(content, rows[0]))
    expects = resolve_expects(content)
    pages = [Page.from_content(page, item, prompt, expects, variant)
             for page, item, prompt in zip(result.contents, items, prompts, strict=True)]
    return result.contents, check_pages(pages, policy, ctx)


def store_page(con: duckdb.DuckDBPyConnection, images_dir: Path, experiment: str, variant: str, item: CatalogItem,
               page, prompt: str, checks, policy: ContentChecks, report: GenerateReport, counts) -> None:
    """Store one checked page (pending, or approved by the guardrails) and count it in ``report``."""
    from armor_ab.guardrails.pipeline import review_status

    status, reviewed_by = review_status(checks, policy, on_demand=False)
    save_generated(con, images_dir, experiment, variant, item.id, page, prompt, status=status,
                   checks=checks.to_json(), verdict=checks.verdict, reviewed_by=reviewed_by)
    counts.add(checks)
    report.approved += status == "approved"
    report.generated += 1
    report.by_variant[variant] = report.by_variant.get(variant, 0) + 1


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
    plan = plan_content(con, record, items)
    report, by_position = plan.report, plan.by_position
    if plan.total == 0:
        return report

    from armor_ab.content.guard import VerdictCounts, check_context, register_experiment
    from armor_ab.store.catalog import list_items

    policy = spec.content_checks
    catalog = list_items(con)  # the checks know every category of the catalog, not only this selection's
    counts = VerdictCounts(report.by_verdict, report.failing)
    generators: dict[str, tuple] = {}  # model -> (generator, its check context), each built once
    with tqdm(total=plan.total, desc=f"content {spec.key}", unit="page", disable=not progress) as bar:
        for variant, todo, prompts in plan.variants:
            name = resolve_model(variant.content.model, model)
            if name not in generators:
                gen = load_generator(name, backend, engine_dir)
                ctx = check_context(gen, name, catalog, policy)
                register_experiment(ctx, con, spec.key, images_dir, policy)  # duplicates of stored pictures
                generators[name] = (gen, ctx)
            gen, ctx = generators[name]
            for rows in content_batches(todo, batch_size):
                batch_items = [by_position[i] for i in rows]
                batch_prompts = [prompts[i] for i in rows]
                contents, checked = generate_batch(gen, ctx, policy, variant.key, variant.content, rows, batch_items,
                                                   batch_prompts)
                for item, prompt, content, checks in zip(batch_items, batch_prompts, contents, checked, strict=True):
                    store_page(con, images_dir, spec.key, variant.key, item, content, prompt, checks, policy, report,
                               counts)
                    bar.update(1)
    return report


def page_sampling(content: ContentSpec, index: int):
    """How one catalog page is sampled: greedy text, sampled pictures, the seed of the item's catalog position."""
    from armor_ab.model import SamplingConfig

    return SamplingConfig(max_images=content.max_images, seed=content.seed + index, max_new_tokens=160,
                          temperature=0.0, image_temperature=1.0)


def load_generator(name: str, backend: str = "torch", engine_dir: Path | None = None):
    """An ``InterleavedGenerator`` for a model name or directory on the chosen backend.

    ``torch-cuda`` runs the model itself (no engine) under ``TorchCudaBackend``: on the GPU in bfloat16 with
    CUDA graphs when CUDA is there, else compiled on the CPU in float32 (docs/engine.md).
    The pages it writes name the model by its name (``armor-demo``) and config hash, never by the
    directory it was loaded from: visitors receive that metadata."""
    from armor_ab.model import load_model

    if backend == "torch-cuda":
        from armor_ab.engine.loader import open_torch_cuda_generator, torch_cuda_placement

        if engine_dir is not None:
            raise ContentError("--backend torch-cuda runs the model itself: it takes no --engine")
        device, dtype = torch_cuda_placement()
        loaded = load_model(name, dtype=dtype)  # loaded in the backend's dtype: no converted copy
        if loaded.random_weights:
            log.warning("model has random weights", extra={"model": name})
        return open_torch_cuda_generator(loaded.model, loaded.tokenizer, model_name(loaded.name), device=device,
                                         dtype=dtype)
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
