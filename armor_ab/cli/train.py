"""`armor-ab train`: run a training recipe (judge, VQ tokenizer, stage 0, WoHG stages 1-3, eval, export).

armor-ab train --recipe armor_ab/assets/recipes/training/armor-demo.yaml                    # all, ~28 min
armor-ab train --recipe armor_ab/assets/recipes/training/armor-demo.yaml --resume           # continue a run
armor-ab train --recipe armor_ab/assets/recipes/training/armor-demo.yaml --stage 2          # one phase
armor-ab train --recipe armor_ab/assets/recipes/training/armor-demo.yaml --stage one-stage  # the comparison

The shipped recipe exports to the shipped model's directory (armor_ab/assets/models/armor-demo: its ``export``
field, relative to the recipe file), so a full run replaces the demo model there; ``--no-export`` writes
nothing outside ``--out``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ._common import fail

DEFAULT_OUT = Path("build/train/armor-demo")


def train(
    recipe: Annotated[Path, typer.Option("--recipe", help="Recipe YAML, e.g. armor_ab/assets/recipes/training/armor-demo.yaml")],
    stage: Annotated[
        str | None,
        typer.Option(
            "--stage",
            help="Run one phase only: classifier, vq, 0, 1, 2, 3, eval, export or one-stage",
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Run directory (checkpoints, logs, stage models)")
    ] = DEFAULT_OUT,
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
) -> None:
    """Train an ARMOR model with the three-stage "What or How to Generate" recipe."""
    # Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads of several
    # processes fight over the cores (measured: 2-3x slower steps). Must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from dataclasses import replace

    from armor_ab.training.pipeline import run_recipe
    from armor_ab.training.training_recipe import TrainingRecipe

    try:
        loaded = TrainingRecipe.load(recipe)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        fail(f"--recipe {recipe}: {exc}")
    if scale != 1.0:
        loaded = loaded.scaled(scale)
    if no_export:
        loaded = replace(loaded, export=None)
    if loaded.export is None and stage in (None, "export"):
        stage_note = "" if stage else " (running every phase but export)"
        typer.echo(f"no export directory{stage_note}", err=True)
    try:
        report = run_recipe(
            loaded, out, stage=stage, resume=resume, log=lambda m: typer.echo(f"[train] {m}", err=True)
        )
    except ValueError as exc:
        fail(str(exc))
    if "wall_time_s" in report:
        typer.echo(f"done in {report['wall_time_s'] / 60:.1f} min; report: {out / 'report.json'}")
    else:
        typer.echo(f"done; report: {out / 'report.json'}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.command("train")(train)
