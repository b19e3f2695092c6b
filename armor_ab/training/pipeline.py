"""A whole recipe: catalog -> data -> judge -> VQ tokenizer -> stage 0 (base MLLM) -> WoHG 1, 2, 3 -> eval -> export.

    OUT/data/{base,train,val,heldout}.jsonl, data.json (hash, sizes)
    OUT/classifier/    the judge (classifier.safetensors, classifier.json)
    OUT/vq/            the image tokenizer (vqgan.safetensors, vq.json, log.jsonl)
    OUT/stage{0..3}/   per stage: log.jsonl, checkpoint.pt while running, model/, stage.json
    OUT/stage0/eval.json   the base model's understanding figures (t2t, ti2t), measured before WoHG
    OUT/eval.json      the final figures; OUT/eval/ example outputs
    OUT/one-stage/     the one-stage alternative (``--stage one-stage``), with its eval.json
    EXPORT/            the shipped model: save_pretrained + tokenizer + judge + training.json + samples.png

Each phase is skipped under ``resume`` when its result exists, and a stage cut off mid-way restarts from its
last checkpoint. ``stage`` runs one phase alone (its inputs must exist).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL
import safetensors
import torch
import transformers

from armor_ab.catalog.build import build_catalog
from armor_ab.catalog.products import CATALOG_FILE, Product, load_catalog
from armor_ab.model.loading import load_model
from armor_ab.model.modeling import ArmorForInterleavedGeneration
from armor_ab.model.presets import get_config
from armor_ab.model.tokenizer import ByteTokenizer

from .batches import PictureStore, TaskSampler, answer_picture_keys, collate
from .classifier import CLASSIFIER_FILE, CLASSIFIER_META, load_classifier, train_classifier
from .data import build_datasets, data_hash, select, write_datasets
from .distributed import init_from_env, main_first
from .evaluate import UNDERSTANDING_TASKS, evaluate_model, pick_heldout, picture_sheet, run_generation
from .trainer import StageTrainer
from .training_recipe import StageConfig, TrainingRecipe
from .vq import VQ_FILE, load_vq, train_vq

PHASES = ("classifier", "vq", "0", "1", "2", "3", "eval", "export", "one-stage")
Log = Callable[[str], None]


def versions() -> dict[str, str]:
    """What the artifact was built with (no git: the working tree may be anything)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        armor = version("armor-ab")
    except PackageNotFoundError:
        armor = "unknown"
    return {
        "armor_ab": armor,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
    }


def recipe_record(recipe: TrainingRecipe) -> dict:
    """What a run report says of its recipe and the machine: the recipe as read and its hash, versions."""
    return {
        "recipe_file": str(recipe.path) if recipe.path else None,
        "recipe_sha256": recipe.sha256(),
        "recipe": recipe.to_json(),
        "versions": versions(),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
    }


class Run:
    """State shared by the phases of one recipe run."""

    def __init__(self, recipe: TrainingRecipe, out: Path, resume: bool, progress: bool, log: Log) -> None:
        self.recipe, self.out, self.resume, self.progress, self.log = recipe, out, resume, progress, log
        self.tokenizer = ByteTokenizer()
        self.config = get_config(recipe.config)
        self.products = self._catalog()
        self.sets = build_datasets(self.products, recipe.data)
        self.data_hash = data_hash(self.sets)  # what write_datasets returns, on every process
        self.pictures = PictureStore(self.products, self.config)
        self.timings: dict[str, float] = {}
        with main_first(init_from_env()) as main:
            if main:
                write_datasets(self.sets, out / "data")
                _write_json(out / "data" / "data.json", self.data_summary())

    def _catalog(self) -> list[Product]:
        if not (self.recipe.catalog / CATALOG_FILE).exists():
            self.log(f"no catalog at {self.recipe.catalog}: building it")
            build_catalog(self.recipe.catalog)
        return load_catalog(self.recipe.catalog)

    def data_summary(self) -> dict:
        catalog_bytes = (self.recipe.catalog / CATALOG_FILE).read_bytes()
        sizes = {split: len(samples) for split, samples in self.sets.items()}
        return {
            "data_sha256": self.data_hash,  # base, train, val, heldout
            "fresh_sha256": data_hash(self.sets, ("fresh",)),
            "catalog_sha256": hashlib.sha256(catalog_bytes).hexdigest(),
            "products": len(self.products),
            "sizes": sizes,
        }

    # --- phases ---
    def classifier(self) -> dict:
        path = self.out / "classifier"
        if self.resume and (path / CLASSIFIER_FILE).exists():
            return json.loads((path / CLASSIFIER_META).read_text())
        self.log("training the judge (category classifier)")
        return train_classifier(self.recipe.classifier, path)

    def vq(self) -> dict:
        path = self.out / "vq"
        if not (self.resume and (path / VQ_FILE).exists()):
            self.log("training the VQ image tokenizer")
            train_vq(self.config.vq_config, self.products, self.recipe.vq, path)
        return json.loads((path / "vq.json").read_text())

    def _encode_pictures(self) -> None:
        if not self.pictures.codes:
            vq = load_vq(self.config.vq_config, self.out / "vq")
            keys = answer_picture_keys([s for samples in self.sets.values() for s in samples])
            self.pictures.encode_codes(vq.encode, keys)

    def initial_model(self) -> ArmorForInterleavedGeneration:
        """Stage 0's starting point: random init (seeded) with the trained VQGAN inside."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.recipe.seed)
            model = ArmorForInterleavedGeneration(self.config)
        model.vqgan.load_state_dict(load_vq(self.config.vq_config, self.out / "vq").state_dict())
        return model

    def stage_model(self, index: int) -> ArmorForInterleavedGeneration:
        if index == 0:
            return self.initial_model()
        return load_model(self.out / f"stage{index - 1}" / "model").model

    def train_stage(self, stage: StageConfig, model: ArmorForInterleavedGeneration) -> dict:
        directory = self.out / stage.dirname
        if self.resume and (directory / "stage.json").exists():
            self.log(f"stage {stage.stage}: done already, skipped")
            return json.loads((directory / "stage.json").read_text())
        self._encode_pictures()
        samples = select(self.sets[stage.split], stage.tasks, stage.hq_only)
        val = select(self.sets["val"], stage.tasks)
        val = [val[i] for i in np.random.default_rng(self.recipe.seed).permutation(len(val))]
        seed = self.recipe.seed * 100 + (stage.stage if isinstance(stage.stage, int) else 99)
        sampler = TaskSampler(samples, stage.task_weights, seed)
        trainer = StageTrainer(
            model,
            self.tokenizer,
            stage,
            sampler,
            lambda batch: collate(batch, self.tokenizer, self.config, self.pictures),
            directory,
            val[: stage.val_batches * stage.batch_size],
            progress=self.progress,
        )
        self.log(f"stage {stage.stage} ({stage.name}): {stage.steps} steps on {len(samples)} samples")
        return trainer.run(resume=self.resume)

    def evaluate(
        self, model_dir: Path, out: Path, tasks=None, examples: bool = True, split: str = "heldout"
    ) -> dict:
        if self.resume and out.exists():
            return json.loads(out.read_text())
        loaded = load_model(model_dir)
        judge = load_classifier(self.out / "classifier")
        kwargs = {"tasks": tasks} if tasks else {}
        figures = evaluate_model(
            loaded.model,
            loaded.tokenizer,
            self.products,
            self.sets[split],
            judge,
            self.recipe.eval,
            examples_dir=out.parent / (out.stem + "-examples") if examples else None,
            **kwargs,
        )
        _write_json(out, figures)
        return figures

    def export(self, report: dict) -> Path:
        target = self.recipe.export
        if target is None:
            raise ValueError("the recipe has no export directory")
        loaded = load_model(self.out / "stage3" / "model")
        if target.exists():
            shutil.rmtree(target)
        loaded.model.save_pretrained(target)
        loaded.tokenizer.save_pretrained(target)
        for name in (CLASSIFIER_FILE, CLASSIFIER_META):
            shutil.copy(self.out / "classifier" / name, target / name)
        # A sheet of the model's own pictures for the held-out t2i prompts: what the demo draws.
        samples = pick_heldout(self.sets["heldout"], 42, ("t2i",))
        results = run_generation(
            loaded.model, loaded.tokenizer, {p.id: p for p in self.products}, samples, self.recipe.eval
        )
        sheet = picture_sheet(results)
        if sheet is not None:
            sheet.save(target / "samples.png")
        _write_json(target / "training.json", report)
        return target


def run_recipe(
    recipe: TrainingRecipe,
    out: Path,
    stage: str | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Log = print,
) -> dict:
    """Run the recipe (or one phase of it); returns the run report (also OUT/report.json)."""
    if stage is not None and stage not in PHASES:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(PHASES)}")
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    transformers.utils.logging.disable_progress_bar()  # per-shard bars of save/load: noise in a long log
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    ctx = init_from_env()
    if ctx.world_size > 1 and stage not in ("0", "1", "2", "3"):
        raise ValueError(
            "under torchrun the demo recipe runs one training stage at a time (--stage 0, 1, 2 or 3); its "
            "judge, VQ, evaluation and export phases run in one process"
        )
    if not ctx.is_main:  # one voice: rank 0 logs, shows progress and writes the report
        log, progress = (lambda _message: None), False
    run = Run(recipe, out, resume, progress, log)
    report_path = out / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    report.update(
        {
            "what": f"{recipe.name}: ARMOR demo model trained with the WoHG recipe",
            **recipe_record(recipe),
            "seeds": {
                "model_init": recipe.seed,
                "batches": f"{recipe.seed} * 100 + stage",
                "data": recipe.data.seed,
                "vq": recipe.vq.seed,
                "classifier": recipe.classifier.seed,
                "eval": recipe.eval.seed,
            },
            "data": run.data_summary(),
        }
    )
    report.setdefault("timings_s", {})
    report.setdefault("stages", {})

    def timed(name: str, fn: Callable[[], dict]) -> dict:
        t0 = time.time()
        result = fn()
        report["timings_s"][name] = round(time.time() - t0, 1)
        if ctx.is_main:
            _write_json(report_path, report)
        return result

    def wanted(name: str) -> bool:
        return stage == name if stage is not None else name != "one-stage"

    if wanted("classifier"):
        report["classifier"] = timed("classifier", run.classifier)
    if wanted("vq"):
        report["vq"] = timed("vq", run.vq)
    for cfg in recipe.stages:
        key = str(cfg.stage)
        if not wanted(key):
            continue
        summary = timed(f"stage{key}", lambda cfg=cfg: run.train_stage(cfg, run.stage_model(cfg.stage)))
        report["stages"][key] = summary
        if cfg.stage == 0:  # the base model's understanding, before any WoHG stage touches it
            report["base_eval"] = timed(
                "base_eval",
                lambda: run.evaluate(
                    out / "stage0" / "model", out / "stage0" / "eval.json", UNDERSTANDING_TASKS, False
                ),
            )
    if wanted("eval"):
        report["eval"] = timed("eval", lambda: run.evaluate(out / "stage3" / "model", out / "eval.json"))
        # The second set of unseen phrasings (see data.py), for the final and the base model.
        report["eval_fresh"] = timed(
            "eval_fresh",
            lambda: run.evaluate(
                out / "stage3" / "model", out / "eval-fresh.json", examples=False, split="fresh"
            ),
        )
        report["base_eval_fresh"] = run.evaluate(
            out / "stage0" / "model", out / "stage0" / "eval-fresh.json", UNDERSTANDING_TASKS, False, "fresh"
        )
    if wanted("one-stage"):
        cfg = recipe.one_stage
        summary = timed("one_stage", lambda: run.train_stage(cfg, run.stage_model(1)))
        directory = out / cfg.dirname
        figures = timed("one_stage_eval", lambda: run.evaluate(directory / "model", directory / "eval.json"))
        fresh = run.evaluate(
            directory / "model", directory / "eval-fresh.json", examples=False, split="fresh"
        )
        report["one_stage"] = {"stage": summary, "eval": figures, "eval_fresh": fresh}
    if stage is None:
        report["wall_time_s"] = round(time.time() - started, 1)
    if not ctx.is_main:
        return report
    _write_json(report_path, report)
    if wanted("export") and recipe.export is not None:
        timed("export", lambda: {"path": str(run.export(report))})
        _write_json(recipe.export / "training.json", report)
    elif stage == "one-stage" and recipe.export and (recipe.export / "training.json").exists():
        shipped = json.loads((recipe.export / "training.json").read_text())
        shipped["one_stage"] = report["one_stage"]  # the comparison belongs with the shipped model's figures
        _write_json(recipe.export / "training.json", shipped)
    return report


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
