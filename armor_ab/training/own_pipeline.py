"""A pretrained base + the user's own catalog -> WoHG stages 1, 2, 3 -> held-out eval -> export.

The base is a model directory made by ``armor-ab model init`` (an InternVL checkpoint with its own Hugging
Face tokenizer, ARMOR's new parts and a Chameleon VQGAN). It *is* stage 0's result, and its VQGAN is used as
it is, frozen, so the demo's judge, VQ and stage 0 phases do not run. Per the paper's table:

* stage 1 (what to generate): new embedding rows + text head, text loss only (alpha 1, beta 0)
* stage 2 (how to generate):  new rows + adapter + visual head, image loss only, on t2i / t2ti
* stage 3 (interleaved):      new rows + adapter + both heads, joint loss, on the high-quality subset

The base's own embedding rows, decoder layers, ViT and projector stay frozen throughout (each stage's
``stage.json`` records ``frozen_unchanged``). Layout of a run::

    OUT/data/{train,val,heldout}.jsonl, data.json (hashes, sizes), codes.json (the photos' VQ codes)
    OUT/stage{1,2,3}/   per stage: log.jsonl, checkpoint.pt while running, model/, stage.json
    OUT/eval.json       the held-out figures (``evaluate.evaluate_catalog``); OUT/eval-examples/
    OUT/report.json
    EXPORT/             the model, its tokenizer, heldout.jsonl and training.json; by default
                        OUT/BASE-RECIPE (``default_export``): content metadata and engines name a model
                        by its directory's name

The training layer cannot read the database: the caller (``armor-ab train``) hands the items and their photo
files in as an ``OwnCatalog``.

Under ``torchrun`` every process builds the same data (a pure function of the items and the recipe) and
trains each stage together (``StageTrainer``); rank 0 alone writes files (data, codes, reports), evaluates and
exports, and the others wait at a barrier after each of those steps. The run directory must be one that every
process sees.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers

from armor_ab.catalog.items import CatalogItem
from armor_ab.model.configuration import ArmorConfig
from armor_ab.model.loading import load_model, save_model
from armor_ab.model.modeling import ArmorForInterleavedGeneration
from armor_ab.model.tokenizer import load_tokenizer

from .batches import TaskSampler, answer_picture_keys, collate
from .catalog_data import SPLITS, FieldError, PhotoStore, build_catalog_datasets, items_sha256
from .data import data_hash, select, write_datasets, write_jsonl
from .distributed import DistContext, barrier, init_from_env, main_first
from .evaluate import evaluate_catalog
from .pipeline import _write_json, recipe_record
from .trainer import StageTrainer
from .training_recipe import RecipeError, StageConfig, TrainingRecipe

OWN_PHASES = ("1", "2", "3", "eval", "export")
HELDOUT_FILE = "heldout.jsonl"  # the held-out samples, beside the exported model (``armor-ab eval`` reads them)
Log = Callable[[str], None]


@dataclass(frozen=True)
class OwnCatalog:
    """The user's catalog as the caller read it: the items, their photo files, and where they came from."""

    items: list[CatalogItem]
    photos: dict[str, Path]  # item id -> photo file (items without a photo are absent)
    source: dict = field(default_factory=dict)  # for the record: {"kind": "db" | "file", "path": ..., ...}

    def summary(self) -> dict:
        return {
            **self.source,
            "items": len(self.items),
            "with_photo": sum(item.id in self.photos for item in self.items),
            "categories": sorted({item.category for item in self.items}),
            "items_sha256": items_sha256(self.items),
        }


class OwnRun:
    """State shared by the phases of one own-catalog run."""

    def __init__(
        self, recipe: TrainingRecipe, catalog: OwnCatalog, out: Path, resume: bool, progress: bool, log: Log,
        ctx: DistContext | None = None,
    ) -> None:
        if not recipe.own_catalog or recipe.catalog_data is None:
            raise ValueError("not an own-catalog recipe (it has no base)")
        self.recipe, self.catalog, self.out = recipe, catalog, out
        self.resume, self.progress, self.log = resume, progress, log
        self.ctx = ctx or init_from_env()
        self.config = ArmorConfig.from_pretrained(recipe.base)
        self.tokenizer = load_tokenizer(recipe.base, self.config.tokenizer_kind)
        try:
            self.sets = build_catalog_datasets(catalog.items, catalog.photos, recipe.catalog_data)
        except FieldError as exc:  # an answer template naming a field some item lacks
            raise RecipeError(recipe.path, exc.field, exc.message) from None
        self.data_hash = data_hash(self.sets)  # what write_datasets returns, on every process
        with main_first(self.ctx) as main:
            if main:
                self.data_hash = write_datasets(self.sets, out / "data")
                _write_json(out / "data" / "data.json", self.data_summary())
        self.pictures = PhotoStore(catalog.photos, self.config, recipe.catalog_data.picture_cache)

    def data_summary(self) -> dict:
        return {
            "data_sha256": data_hash(self.sets, SPLITS),  # train, val, heldout
            "sizes": {split: len(samples) for split, samples in self.sets.items()},
            "tasks": {
                split: {task: sum(s["task"] == task for s in samples) for task in ("t2t", "ti2t", "t2i", "t2ti")}
                for split, samples in self.sets.items()
            },
        }

    def base_record(self) -> dict:
        init = self.recipe.base / "armor_init.json"
        return {
            "path": str(self.recipe.base),
            "model_name": self.config.model_name,
            "config_hash": self.config.config_hash(),
            "language_model": self.config.text_config.model_type,
            "tokenizer": self.config.tokenizer_kind,
            "armor_init": json.loads(init.read_text()) if init.exists() else None,
        }

    # --- the photos' VQ codes: the model's own frozen VQGAN encoder ---
    def encode_pictures(self, model: ArmorForInterleavedGeneration) -> None:
        """Rank 0 encodes (or reuses) and writes codes.json; the other processes then read it."""
        if self.pictures.codes:
            return
        with main_first(self.ctx):
            self._encode_pictures(model)

    def _encode_pictures(self, model: ArmorForInterleavedGeneration) -> None:
        keys = sorted(set(answer_picture_keys([s for samples in self.sets.values() for s in samples])))
        path = self.out / "data" / "codes.json"
        # The codes hold as long as the encoder and the photos (the items name them by hash) do.
        made_from = {"vqgan_sha256": vqgan_fingerprint(model), "items_sha256": items_sha256(self.catalog.items)}
        if path.exists():
            saved = json.loads(path.read_text())
            stored = {}
            for name, row in saved["codes"].items():
                item, variant = name.rsplit("/", 1)
                stored[item, int(variant)] = row
            if all(saved.get(k) == v for k, v in made_from.items()) and set(keys) <= set(stored):
                self.pictures.codes.update(stored)
                return
        self.log(f"tokenising {len(keys)} photos with the base's frozen VQGAN encoder")
        param = next(model.vqgan.parameters())
        model.vqgan.eval()
        self.pictures.encode_codes(lambda pixels: model.vqgan.encode(pixels.to(param.device, param.dtype)), keys)
        codes = {f"{item}/{variant}": self.pictures.codes[item, variant] for item, variant in keys}
        if self.ctx.is_main:
            _write_json(path, {**made_from, "image_size": self.config.image_size, "codes": codes})

    def stage_model(self, index: int) -> ArmorForInterleavedGeneration:
        source = self.recipe.base if index == 1 else self.out / f"stage{index - 1}" / "model"
        return load_model(source).model

    def train_stage(self, stage: StageConfig) -> dict:
        directory = self.out / stage.dirname
        if self.resume and (directory / "stage.json").exists():
            self.log(f"stage {stage.stage}: done already, skipped")
            return json.loads((directory / "stage.json").read_text())
        samples = select(self.sets["train"], stage.tasks, stage.hq_only)
        if not samples:
            raise ValueError(
                f"stage {stage.stage} ({stage.name}): no training samples for tasks {', '.join(stage.tasks)}"
                + (" (no catalog item has a photo)" if not self.catalog.photos else "")
            )
        model = self.stage_model(int(stage.stage))
        self.encode_pictures(model)
        val = select(self.sets["val"], stage.tasks)
        val = [val[i] for i in np.random.default_rng(self.recipe.seed).permutation(len(val))]
        sampler = TaskSampler(samples, stage.task_weights, self.recipe.seed * 100 + int(stage.stage))
        trainer = StageTrainer(
            model,
            self.tokenizer,
            stage,
            sampler,
            lambda batch: collate(batch, self.tokenizer, self.config, self.pictures),
            directory,
            val[: stage.val_batches * stage.batch_size],
            progress=self.progress,
            device=self.device,
        )
        self.log(f"stage {stage.stage} ({stage.name}): {stage.steps} steps on {len(samples)} samples")
        return trainer.run(resume=self.resume)

    @property
    def device(self) -> torch.device:
        """Where stages train and the evaluation runs: the process's GPU under torchrun, else the first GPU
        when there is one, else the CPU."""
        if self.ctx.enabled:
            return self.ctx.device
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")

    def evaluate(self, model_dir: Path, out: Path) -> dict:
        if self.resume and out.exists():
            return json.loads(out.read_text())
        loaded = load_model(model_dir)
        loaded.model.to(self.device)
        figures = evaluate_catalog(
            loaded.model,
            loaded.tokenizer,
            self.catalog.items,
            self.pictures,
            self.sets["heldout"],
            self.recipe.catalog_data.phrasings["ti2t"]["heldout"],
            self.recipe.eval,
            examples_dir=out.parent / (out.stem + "-examples"),
        )
        _write_json(out, figures)
        return figures

    def export(self, target: Path, report: dict) -> Path:
        """The stage-3 model, named after ``target``, with its held-out samples and training.json."""
        loaded = load_model(self.out / "stage3" / "model")
        loaded.model.config.model_name = target.name  # what content metadata and engines call it
        staging = target.parent / f".{target.name}.export-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        save_model(loaded.model, loaded.tokenizer, staging)
        write_jsonl(self.sets["heldout"], staging / HELDOUT_FILE)
        _write_json(staging / "training.json", report)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(target)
        return target


def vqgan_fingerprint(model: ArmorForInterleavedGeneration) -> str:
    """SHA-256 of the VQGAN's tensors: the photos' codes stay valid exactly as long as this does."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.vqgan.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def default_export(recipe: TrainingRecipe, out: Path) -> Path:
    """Where the model goes without an ``export``: ``OUT/<base directory's name>-<recipe name>``."""
    return out / f"{recipe.base.name}-{recipe.name}"


def run_own_recipe(
    recipe: TrainingRecipe,
    catalog: OwnCatalog,
    out: Path,
    stage: str | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Log = print,
    export: bool = True,
) -> dict:
    """Run an own-catalog recipe (or one phase of it); returns the run report (also OUT/report.json).

    ``export``: write the model to the recipe's ``export`` directory (``default_export``) at the end."""
    if stage is not None and stage not in OWN_PHASES:
        raise ValueError(f"unknown stage {stage!r} for an own-catalog recipe; one of {', '.join(OWN_PHASES)} "
                         "(the pretrained base is stage 0; its VQGAN is not trained)")
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    transformers.utils.logging.disable_progress_bar()
    started = time.time()
    ctx = init_from_env()
    if not ctx.is_main:  # one voice: rank 0 logs and shows progress
        log, progress = (lambda _message: None), False
    out.mkdir(parents=True, exist_ok=True)
    run = OwnRun(recipe, catalog, out, resume, progress, log, ctx)
    report_path = out / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    report.update(
        {
            "what": f"{recipe.name}: a pretrained ARMOR base fine-tuned on its own catalog with WoHG stages 1-3",
            "made_by": "armor-ab train",
            **recipe_record(recipe),
            "base": run.base_record(),
            "catalog": catalog.summary(),
            "skipped": {"vq": "the base's VQGAN is used frozen", "0": "the pretrained base is stage 0's result"},
            "seeds": {
                "batches": f"{recipe.seed} * 100 + stage",
                "data": recipe.catalog_data.seed,
                "eval": recipe.eval.seed,
            },
            "data": run.data_summary(),
        }
    )
    report.setdefault("timings_s", {})
    report.setdefault("stages", {})

    def write_report() -> None:
        if ctx.is_main:
            _write_json(report_path, report)

    def timed(name: str, fn: Callable[[], dict]) -> dict:
        t0 = time.time()
        result = fn()
        report["timings_s"][name] = round(time.time() - t0, 1)
        write_report()
        return result

    def on_main(name: str, fn: Callable[[], dict]) -> dict | None:
        """A phase only rank 0 runs (evaluation, export); the others wait for it."""
        result = timed(name, fn) if ctx.is_main else None
        barrier(ctx)
        return result

    def wanted(name: str) -> bool:
        return stage is None or stage == name

    for cfg in recipe.stages:
        if wanted(str(cfg.stage)):
            report["stages"][str(cfg.stage)] = timed(f"stage{cfg.stage}", lambda cfg=cfg: run.train_stage(cfg))
    if wanted("eval"):
        report["eval"] = on_main("eval", lambda: run.evaluate(out / "stage3" / "model", out / "eval.json"))
    if stage is None:
        report["wall_time_s"] = round(time.time() - started, 1)
    target = recipe.export or default_export(recipe, out)
    if export and wanted("export"):
        report["export"] = str(target)
        write_report()
        on_main("export", lambda: {"path": str(run.export(target, report))})
        if ctx.is_main:
            _write_json(target / "training.json", report)
    write_report()
    return report
