"""`armor-ab eval`: the demo model's acceptance figures on held-out prompts, as a table or JSON.

    armor-ab eval --model armor_ab/assets/models/armor-demo
    armor-ab eval --model armor_ab/assets/models/armor-demo --json
    armor-ab eval --model armor_ab/assets/models/armor-demo --base build/train/armor-demo/stage0/model

The held-out prompts are rebuilt from the catalog with the data settings recorded in the model's
training.json (the catalog directory recorded there if it still exists, else the demo catalog; either way its
catalog.json must hash to the recorded ``data.catalog_sha256``); the judge is the classifier shipped beside the model (or ``--classifier DIR``). The base model's
and the one-stage alternative's figures come from training.json unless ``--base`` asks to measure the base.

Any model directory works, whatever its tokenizer: a model made by ``armor-ab model init`` (the base's Hugging
Face tokenizer, no training.json, no classifier of its own) is asked the demo catalog's held-out prompts in its
own chat template and judged by the shipped demo model's classifier unless ``--classifier`` names another.

A model trained on your own catalog (``armor-ab train --recipe own-catalog``) is evaluated on that catalog's
held-out split (the exported ``heldout.jsonl``: phrasings and photo augmentations no training sample used),
with the catalog read from where training.json says it came from (or ``--catalog-db`` / ``--catalog-file``;
it must be the same items): modality, the category of its pictures by its own understanding path, specs, and
ti2t on the photos (``training.evaluate.evaluate_catalog``)::

    armor-ab eval --model runs/mine/armor-mine-own-catalog
    armor-ab eval --model runs/mine/armor-mine-own-catalog --base armor-mine --json     # the untrained base beside it
    armor-ab eval --model armor-mine --catalog-db .armor_ab/armor_ab.duckdb   # any ARMOR dir on your catalog
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from ._common import fail

# (figure, target, direction): the acceptance bar of issue 6.
TARGETS: dict[str, tuple[float, str]] = {
    "modality_accuracy": (0.90, ">="),
    "image_category_accuracy": (0.80, ">="),
    "spec_accuracy": (0.80, ">="),
    "ti2t_category_accuracy": (0.80, ">="),
    "ti2t_drop_points": (5.0, "<="),
}
LABELS = {
    "modality_accuracy": "right output modality (held-out prompts)",
    "image_category_accuracy": "pictures show the requested category (judge)",
    "image_category_accuracy_strict": "  same, a missing picture counted as wrong",
    "spec_accuracy": "text names the key specs (t2t, t2ti)",
    "ti2t_category_accuracy": "ti2t: names the category of an input picture",
    "ti2t_base": "ti2t of the base model before WoHG (stage 0)",
    "ti2t_drop_points": "ti2t drop, base -> WoHG (points)",
}


def acceptance(figures: dict, base: dict | None) -> dict:
    """Figures with their targets and pass/fail (None where not measured)."""
    values = dict(figures)
    if (
        base
        and base.get("ti2t_category_accuracy") is not None
        and figures.get("ti2t_category_accuracy") is not None
    ):
        values["ti2t_base"] = base["ti2t_category_accuracy"]
        values["ti2t_drop_points"] = round(
            100 * (base["ti2t_category_accuracy"] - figures["ti2t_category_accuracy"]), 1
        )
    rows = {}
    for key in LABELS:
        value = values.get(key)
        target = TARGETS.get(key)
        ok = None
        if target is not None and value is not None:
            ok = value >= target[0] if target[1] == ">=" else value <= target[0]
        rows[key] = {"value": value, "target": f"{target[1]} {target[0]:g}" if target else None, "pass": ok}
    return rows


def eval_command(
    model: Annotated[Path, typer.Option("--model", help="Model directory (e.g. armor_ab/assets/models/armor-demo)")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
    base: Annotated[
        Path | None,
        typer.Option("--base", help="Measure this base model (stage 0) instead of the recorded figures"),
    ] = None,
    classifier: Annotated[
        Path | None,
        typer.Option(
            "--classifier",
            help="Judge directory (default: the model directory, else the shipped demo model's judge)",
        ),
    ] = None,
    per_task: Annotated[int | None, typer.Option("--per-task", help="Held-out prompts per task type")] = None,
    split: Annotated[
        str, typer.Option("--split", help="heldout (the acceptance set) or fresh (phrasings no decision saw)")
    ] = "heldout",
    threads: Annotated[int | None, typer.Option("--threads", help="torch CPU threads")] = None,
    catalog_db: Annotated[
        Path | None,
        typer.Option("--catalog-db", help="Own catalog: the database it was imported into (default: as trained)"),
    ] = None,
    catalog_file: Annotated[
        Path | None, typer.Option("--catalog-file", help="Own catalog: its file (default: as trained)")
    ] = None,
    images: Annotated[
        Path | None, typer.Option("--images", help="Own catalog: where the catalog file's image paths start")
    ] = None,
) -> None:
    """Acceptance figures of a demo model: modality choice, pictures, specs, understanding (or a model
    trained on your own catalog, on its held-out split)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see `armor-ab train`
    from dataclasses import replace

    import torch
    import transformers

    from armor_ab.catalog.products import load_catalog
    from armor_ab.model import load_model
    from armor_ab.training.classifier import load_classifier
    from armor_ab.training.data import DataConfig, build_datasets
    from armor_ab.training.evaluate import UNDERSTANDING_TASKS, evaluate_model
    from armor_ab.training.training_recipe import EvalConfig

    if threads:
        torch.set_num_threads(threads)
    transformers.utils.logging.disable_progress_bar()
    if not model.is_dir():
        fail(f"--model {model}: not a directory")
    record_path = model / "training.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    if catalog_db or catalog_file or isinstance(record.get("catalog"), dict):
        own = OwnEval(model, record, catalog_db, catalog_file, images, base, per_task, split, as_json)
        own.run()
        return
    recipe = record.get("recipe", {})
    catalog = _catalog(recipe.get("catalog"), record.get("data", {}).get("catalog_sha256"))
    try:
        products = load_catalog(catalog)
        loaded = load_model(model)
        judge = load_classifier(classifier or _judge_dir(model))
    except (OSError, ValueError) as exc:
        fail(str(exc))
    if split not in ("heldout", "fresh"):
        fail(f"--split {split}: heldout or fresh")
    heldout = build_datasets(products, DataConfig.from_dict(recipe.get("data")))[split]
    cfg = EvalConfig.from_dict(recipe.get("eval"))
    if per_task:
        cfg = replace(cfg, per_task=per_task)
    figures = evaluate_model(loaded.model, loaded.tokenizer, products, heldout, judge, cfg)
    if base is not None:
        base_loaded = load_model(base)
        base_figures = evaluate_model(
            base_loaded.model, base_loaded.tokenizer, products, heldout, judge, cfg, UNDERSTANDING_TASKS
        )
        base_source = str(base)
    else:
        base_figures = record.get("base_eval_fresh" if split == "fresh" else "base_eval")
        base_source = "training.json (measured after stage 0)" if base_figures else None
    one_stage = (record.get("one_stage") or {}).get("eval_fresh" if split == "fresh" else "eval")
    result = {
        "model": str(model),
        "split": split,
        "figures": figures,
        "acceptance": acceptance(figures, base_figures),
        "base": {"source": base_source, "figures": base_figures},
        "one_stage": {"source": "training.json" if one_stage else None, "figures": one_stage},
    }
    if one_stage:
        result["one_stage"]["acceptance"] = acceptance(one_stage, base_figures)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    _print_table(result)


def _judge_dir(model: Path) -> Path:
    """The model's own classifier, else the shipped demo model's (it judges the demo catalog's categories,
    which are what the held-out prompts ask for)."""
    from armor_ab.assets import DEMO_MODEL
    from armor_ab.training.classifier import CLASSIFIER_FILE

    if (model / CLASSIFIER_FILE).is_file() or not (DEMO_MODEL / CLASSIFIER_FILE).is_file():
        return model
    typer.echo(f"note: {model} has no {CLASSIFIER_FILE}: judging pictures with {DEMO_MODEL}'s", err=True)
    return DEMO_MODEL


def _catalog(recorded: str | None, sha256: str | None) -> Path:
    """The catalog a model was trained on: the directory training.json records if it is still there (a
    relative one is relative to the working directory), else the demo catalog; its catalog.json must hash to
    the recorded ``data.catalog_sha256`` when one is recorded (the held-out prompts are rebuilt from it)."""
    import hashlib

    from armor_ab.assets import DEMO_CATALOG
    from armor_ab.catalog.products import CATALOG_FILE

    catalog = Path(recorded) if recorded else DEMO_CATALOG
    if not (catalog / CATALOG_FILE).is_file():
        catalog = DEMO_CATALOG
    if sha256 and (catalog / CATALOG_FILE).is_file():
        actual = hashlib.sha256((catalog / CATALOG_FILE).read_bytes()).hexdigest()
        if actual != sha256:
            fail(f"{catalog / CATALOG_FILE}: not the catalog the model was trained on (SHA-256 {actual[:12]}, "
                 f"training.json records {sha256[:12]}; recorded directory: {recorded})")
    return catalog


def _fmt(value, key: str = "") -> str:
    if value is None:
        return "-"
    if key.endswith("_points"):
        return f"{value:.1f}"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    one = result["one_stage"].get("acceptance") or {}
    table = Table(
        title=f"armor-ab eval: {result['model']} ({result['figures']['n']} {result['split']} prompts)"
    )
    table.add_column("figure")
    table.add_column("WoHG", justify="right")
    table.add_column("target", justify="right")
    table.add_column("pass", justify="center")
    table.add_column("one-stage", justify="right")
    for key, row in result["acceptance"].items():
        mark = {True: "[green]yes[/green]", False: "[red]no[/red]", None: ""}[row["pass"]]
        other = one.get(key, {}).get("value") if one else None
        table.add_row(LABELS[key], _fmt(row["value"], key), row["target"] or "", mark, _fmt(other, key))
    console = Console()
    console.print(table)
    per_task = result["figures"]["per_task"]
    console.print(
        "modality by task: " + ", ".join(f"{t} {v['modality_ok']}/{v['n']}" for t, v in per_task.items())
    )
    console.print(
        f"pictures: {result['figures']['images_generated']} generated for {result['figures']['images_requested']}"
        f" requested; base figures: {result['base']['source'] or 'not recorded'}"
    )


OWN_LABELS = {
    "modality_accuracy": "right output modality (held-out prompts)",
    "image_category_accuracy": "pictures the model itself recognises as the requested category",
    "image_category_accuracy_strict": "  same, a missing picture counted as wrong",
    "spec_accuracy": "text holds every spec value (t2t, t2ti)",
    "ti2t_category_accuracy": "ti2t: names the category of a held-out photo",
    "ti2t_name_accuracy": "ti2t: names the item of a held-out photo",
}


class OwnEval:
    """``armor-ab eval`` of a model trained on the user's own catalog (see the module docstring)."""

    def __init__(self, model: Path, record: dict, catalog_db: Path | None, catalog_file: Path | None,
                 images: Path | None, base: Path | None, per_task: int | None, split: str, as_json: bool) -> None:
        self.model, self.record, self.base = model, record, base
        self.catalog_db, self.catalog_file, self.images = catalog_db, catalog_file, images
        self.per_task, self.split, self.as_json = per_task, split, as_json

    def catalog(self):
        from ._own_catalog import read_own_catalog

        db, file, images = self.catalog_db, self.catalog_file, self.images
        recorded = self.record.get("catalog") or {}
        if db is None and file is None:
            if recorded.get("kind") == "db":
                db = Path(recorded["path"])
            elif recorded.get("kind") == "file":
                file, images = Path(recorded["path"]), images or Path(recorded["images"])
        try:
            catalog = read_own_catalog(db, file, images)
        except ValueError as exc:
            fail(str(exc))
        wanted = recorded.get("items_sha256")
        actual = catalog.summary()["items_sha256"]
        if wanted and actual != wanted:
            fail(f"{catalog.source['path']}: not the catalog {self.model} was trained on (items SHA-256 "
                 f"{actual[:12]}, training.json records {wanted[:12]}): its held-out split would not match")
        return catalog

    def run(self) -> None:
        from dataclasses import replace

        import transformers

        from armor_ab.model import load_model
        from armor_ab.training.catalog_data import (
            CatalogDataConfig,
            FieldError,
            PhotoStore,
            build_catalog_datasets,
        )
        from armor_ab.training.data import read_jsonl
        from armor_ab.training.evaluate import evaluate_catalog
        from armor_ab.training.own_pipeline import HELDOUT_FILE
        from armor_ab.training.training_recipe import EvalConfig

        transformers.utils.logging.disable_progress_bar()
        if self.split != "heldout":
            fail(f"--split {self.split}: a model trained on its own catalog has one held-out split: heldout")
        recipe = self.record.get("recipe") or {}
        raw = dict(recipe.get("catalog_data") or {})
        phrasings = raw.pop("phrasings", None)
        try:
            data_config = CatalogDataConfig.from_dict(raw, phrasings)
        except FieldError as exc:
            fail(f"{self.model / 'training.json'}: recipe.catalog_data: {exc}")
        catalog = self.catalog()
        if (self.model / HELDOUT_FILE).is_file():
            heldout, source = read_jsonl(self.model / HELDOUT_FILE), str(self.model / HELDOUT_FILE)
        else:  # a model not trained here (e.g. the base itself): the default held-out split of the catalog
            heldout = build_catalog_datasets(catalog.items, catalog.photos, data_config)["heldout"]
            source = "built from the catalog (catalog_data defaults)" if not raw else "built from training.json"
        known = {item.id for item in catalog.items}
        missing = sorted({s["product"] for s in heldout} - known)
        if missing:
            fail(f"{source}: items {', '.join(missing[:5])} are not in the catalog")
        cfg = EvalConfig.from_dict(recipe.get("eval"))
        if self.per_task:
            cfg = replace(cfg, per_task=self.per_task)
        questions = data_config.phrasings["ti2t"]["heldout"]
        figures = {}
        for name, directory in (("model", self.model), ("base", self.base)):
            if directory is None:
                continue
            try:
                loaded = load_model(directory)
            except (OSError, ValueError) as exc:
                fail(f"{directory}: {exc}")
            pictures = PhotoStore(catalog.photos, loaded.model.config, data_config.picture_cache)
            figures[name] = evaluate_catalog(loaded.model, loaded.tokenizer, catalog.items, pictures, heldout,
                                             questions, cfg)
        result = {
            "model": str(self.model),
            "split": "heldout",
            "heldout": source,
            "catalog": catalog.summary(),
            "figures": figures["model"],
            "base": {"source": str(self.base) if self.base else None, "figures": figures.get("base")},
        }
        if self.as_json:
            typer.echo(json.dumps(result, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"armor-ab eval: {self.model} ({result['figures']['n']} held-out prompts, "
                            f"{result['catalog']['items']} catalog items)")
        table.add_column("figure")
        table.add_column("model", justify="right")
        if self.base:
            table.add_column("base", justify="right")
        for key, label in OWN_LABELS.items():
            row = [label, _fmt(figures["model"].get(key), key)]
            if self.base:
                row.append(_fmt(figures["base"].get(key), key))
            table.add_row(*row)
        console = Console()
        console.print(table)
        per_task = figures["model"]["per_task"]
        console.print("modality by task: " + ", ".join(f"{t} {v['modality_ok']}/{v['n']}" for t, v in per_task.items()))
        console.print(f"pictures: {figures['model']['images_generated']} generated for "
                      f"{figures['model']['images_requested']} requested, each judged by the model's own answer")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.command("eval")(eval_command)
