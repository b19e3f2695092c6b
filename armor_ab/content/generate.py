"""Generate every catalog item's page for each ARMOR variant of an experiment, and store it pending.

Re-running skips what exists. Seeds are per item (the variant's seed + the item's catalog index),
so a page does not depend on batching or on which other items were generated in the same run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from armor_ab.assets import SHIPPED_MODELS
from armor_ab.catalog.products import Product
from armor_ab.content.control import prompt_fields
from armor_ab.experiments.models import ContentSpec
from armor_ab.store.content import exists, model_name, save_generated
from armor_ab.store.experiments import ExperimentRecord

log = logging.getLogger("armor_ab.content")



class ContentError(ValueError):
    """A prompt template that cannot be rendered, or a model that cannot be found."""


@dataclass
class GenerateReport:
    generated: int = 0
    skipped: int = 0
    by_variant: dict[str, int] = field(default_factory=dict)


def resolve_model(name: str, override: str | Path | None = None) -> str:
    """A model directory or named config: --model wins, then a shipped ``engine/models/NAME``."""
    if override:
        return str(override)
    shipped = SHIPPED_MODELS / name
    return str(shipped) if (shipped / "config.json").exists() else name


def render_prompt(template: str, product: Product, where: str) -> str:
    try:
        return template.format_map(prompt_fields(product))
    except KeyError as exc:
        names = ", ".join(sorted(prompt_fields(product)))
        raise ContentError(f"{where}: the prompt names {{{exc.args[0]}}}, which a catalog item lacks "
                           f"(available: {names})") from None
    except (IndexError, ValueError) as exc:
        raise ContentError(f"{where}: the prompt is not a valid template: {exc}") from None


def _runs(indices: list[int]) -> list[list[int]]:
    """Split sorted indices into runs of consecutive numbers (rows of a batch get seed + row)."""
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
    products: list[Product],
    images_dir: Path,
    *,
    model: str | Path | None = None,
    backend: str = "torch",
    engine_dir: Path | None = None,
    batch_size: int = 4,
    progress: bool = True,
) -> GenerateReport:
    """Generate and store (pending) the missing pages of every ARMOR variant of ``record``."""
    from tqdm import tqdm

    spec = record.spec
    report = GenerateReport()
    plans = []
    for v_index, variant in enumerate(spec.variants):
        if variant.content.source != "armor":
            continue
        where = f"experiment {spec.key}: variants[{v_index}].content.prompt"
        todo = [i for i, p in enumerate(products) if not exists(con, spec.key, variant.key, p.id)]
        report.skipped += len(products) - len(todo)
        prompts = {i: render_prompt(variant.content.prompt or "", products[i], where) for i in todo}
        plans.append((variant, todo, prompts))
    total = sum(len(todo) for _, todo, _ in plans)
    if total == 0:
        return report

    from armor_ab.model import InterleavedGenerator

    generators: dict[str, InterleavedGenerator] = {}
    with tqdm(total=total, desc=f"content {spec.key}", unit="page", disable=not progress) as bar:
        for variant, todo, prompts in plans:
            name = resolve_model(variant.content.model, model)
            if name not in generators:
                generators[name] = load_generator(name, backend, engine_dir)
            gen = generators[name]
            for run in _runs(todo):
                for start in range(0, len(run), batch_size):
                    rows = run[start : start + batch_size]
                    settings = page_sampling(variant.content, rows[0])
                    result = gen.generate([prompts[i] for i in rows], settings=settings)
                    for i, content in zip(rows, result.contents, strict=True):
                        save_generated(con, images_dir, spec.key, variant.key, products[i].id, content, prompts[i])
                        report.generated += 1
                        report.by_variant[variant.key] = report.by_variant.get(variant.key, 0) + 1
                        bar.update(1)
    return report


def page_sampling(content: ContentSpec, index: int):
    """How one catalog page is sampled: greedy text, sampled pictures, the seed of the item's index."""
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
    return InterleavedGenerator(engine, loaded.tokenizer, label)
