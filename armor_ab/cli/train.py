"""`armor-ab train`: run a training recipe (judge, VQ tokenizer, stage 0, WoHG stages 1-3, eval, export).

armor-ab train --recipe armor_ab/assets/recipes/training/armor-demo.yaml                    # all, ~28 min
armor-ab train --recipe armor-demo --resume                                                 # continue a run
armor-ab train --recipe armor_ab/assets/recipes/training/armor-demo.yaml --stage 2          # one phase
armor-ab train --recipe armor_ab/assets/recipes/training/armor-demo.yaml --stage one-stage  # the comparison

The shipped recipe exports to the shipped model's directory (armor_ab/assets/models/armor-demo: its ``export``
field, relative to the recipe file), so a full run replaces the demo model there; ``--no-export`` writes
nothing outside ``--out``.

Your own catalog on a pretrained base (``own-catalog``: a recipe with ``base``; no judge, no VQ, no stage 0):

armor-ab train --recipe own-catalog --base armor-mine --catalog-db .armor_ab/armor_ab.duckdb --out runs/mine
armor-ab train --recipe own-catalog --base armor-mine --catalog-file shop.csv --images photos --out runs/mine

``--base`` is a model directory made by ``armor-ab model init``; the model lands in ``--export`` (default
``OUT/BASE-RECIPE``, e.g. ``runs/mine/armor-mine-own-catalog``: content metadata and engines name a model by its
directory's name). ``--base``, ``--catalog-db``, ``--catalog-file``, ``--images`` and ``--export`` override the
recipe's fields of the same name and are relative to the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ._common import fail

DEFAULT_OUT = Path("build/train/armor-demo")
OWN_OPTIONS = ("base", "catalog_db", "catalog_file", "catalog_images")


def resolve_training_recipe(value: str) -> Path:
    """``--recipe``: a recipe file, or a shipped training recipe's name (``armor-demo``, ``own-catalog``)."""
    from armor_ab.assets import TRAINING_RECIPES, recipe_file

    try:
        return recipe_file(value, TRAINING_RECIPES)
    except FileNotFoundError as exc:
        fail(f"--recipe {exc}")


def train(
    recipe: Annotated[
        str,
        typer.Option(
            "--recipe",
            help="Recipe YAML, or a shipped recipe's name: armor-demo, own-catalog (your catalog on your base)",
        ),
    ],
    stage: Annotated[
        str | None,
        typer.Option(
            "--stage",
            help="Run one phase only: classifier, vq, 0, 1, 2, 3, eval, export or one-stage "
            "(own-catalog: 1, 2, 3, eval, export)",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Run directory (checkpoints, logs, stage models); default build/train/NAME"),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Skip finished phases; restart a cut-off stage from its checkpoint"),
    ] = False,
    scale: Annotated[
        float, typer.Option("--scale", help="Multiply every step count (e.g. 0.01 for a smoke run)")
    ] = 1.0,
    no_export: Annotated[
        bool, typer.Option("--no-export", help="Do not write the recipe's export directory")
    ] = False,
    base: Annotated[
        Path | None,
        typer.Option("--base", help="own-catalog: the model directory `armor-ab model init` made"),
    ] = None,
    catalog_db: Annotated[
        Path | None,
        typer.Option("--catalog-db", help="own-catalog: the DuckDB file holding your imported catalog"),
    ] = None,
    catalog_file: Annotated[
        Path | None,
        typer.Option("--catalog-file", help="own-catalog: a catalog file (CSV, JSON lines, Parquet) instead"),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option("--images", help="own-catalog: where the catalog file's image paths start"),
    ] = None,
    export: Annotated[
        Path | None, typer.Option("--export", help="Where the trained model goes (the recipe's export)")
    ] = None,
) -> None:
    """Train an ARMOR model with the three-stage "What or How to Generate" recipe."""
    # Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads of several
    # processes fight over the cores (measured: 2-3x slower steps). Must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from dataclasses import replace

    from armor_ab.training.training_recipe import RecipeError, TrainingRecipe

    path = resolve_training_recipe(recipe)
    overrides: dict = {}
    if base is not None:
        overrides["base"] = str(base.resolve())
    if catalog_db is not None:
        overrides |= {"catalog_db": str(catalog_db.resolve()), "catalog_file": None, "catalog_images": None}
    if catalog_file is not None:
        overrides |= {"catalog_file": str(catalog_file.resolve()), "catalog_db": None}
    if images is not None:
        overrides["catalog_images"] = str(images.resolve())
    if export is not None:
        overrides["export"] = str(export.resolve())
    try:
        loaded = TrainingRecipe.load(path, overrides)
    except RecipeError as exc:
        fail(f"--recipe: {exc}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        fail(f"--recipe {path}: {exc}")
    if not loaded.own_catalog and set(overrides) & set(OWN_OPTIONS):
        fail(f"--recipe {path}: --base, --catalog-db, --catalog-file and --images are for an own-catalog recipe "
             "(one with a base field, like --recipe own-catalog)")
    if scale != 1.0:
        loaded = loaded.scaled(scale)
    if out is None:
        out = DEFAULT_OUT if not loaded.own_catalog else Path("build/train") / loaded.name
    # Under torchrun every process runs this command; rank 0 alone speaks.
    quiet = os.environ.get("RANK", "0") != "0"
    log = (lambda m: None) if quiet else (lambda m: typer.echo(f"[train] {m}", err=True))  # noqa: E731
    if loaded.own_catalog:
        report = _own(loaded, out, stage, resume, not no_export, log)
    else:
        from armor_ab.training.pipeline import run_recipe

        if no_export:
            loaded = replace(loaded, export=None)
        if loaded.export is None and stage in (None, "export"):
            stage_note = "" if stage else " (running every phase but export)"
            typer.echo(f"no export directory{stage_note}", err=True)
        try:
            report = run_recipe(loaded, out, stage=stage, resume=resume, log=log)
        except ValueError as exc:
            fail(str(exc))
    if quiet:
        return
    if "wall_time_s" in report:
        typer.echo(f"done in {report['wall_time_s'] / 60:.1f} min; report: {out / 'report.json'}")
    else:
        typer.echo(f"done; report: {out / 'report.json'}")
    if report.get("export") and stage in (None, "export"):
        typer.echo(f"model: {report['export']}")


def _own(recipe, out: Path, stage: str | None, resume: bool, export: bool, log) -> dict:
    """An own-catalog recipe: read the catalog (database or file), then stages 1-3, eval, export."""
    from armor_ab.training.own_pipeline import run_own_recipe

    from ._own_catalog import read_own_catalog

    try:
        catalog = read_own_catalog(recipe.catalog_db, recipe.catalog_file, recipe.catalog_images)
    except ValueError as exc:
        fail(str(exc))
    log(f"catalog: {len(catalog.items)} items, {len(catalog.photos)} with a photo ({catalog.source['path']})")
    try:
        return run_own_recipe(recipe, catalog, out, stage=stage, resume=resume, log=log, export=export)
    except ValueError as exc:
        fail(str(exc))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.command("train")(train)
