"""`armor-ab experiment ...`: apply YAML files, move experiments through their lifecycle."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from armor_ab.cli._common import DbOption, fail, open_db
from armor_ab.experiments.loader import ExperimentFileError, load_experiment_file
from armor_ab.store.experiments import (
    ExperimentError,
    get_experiment,
    list_experiments,
    set_status,
    upsert_experiment,
)

group = typer.Typer(help="Define experiments as code and move them through draft → running → stopped.",
                    no_args_is_help=True)


@group.command("validate")
def validate(files: Annotated[list[Path], typer.Argument(help="experiment YAML files")]) -> None:
    """Check experiment files without touching the database (for CI on experiment repos)."""
    for f in files:
        try:
            spec = load_experiment_file(f)
        except ExperimentFileError as exc:
            fail(str(exc))
        typer.echo(f"{f}: ok ({spec.key}, {len(spec.variants)} variants)")


@group.command("apply")
def apply(
    file: Annotated[Path, typer.Argument(help="experiment YAML file")],
    db: DbOption = None,
    new_bucket_version: Annotated[
        bool, typer.Option("--new-bucket-version", help="re-seed a running experiment whose variants/weights change")
    ] = False,
) -> None:
    """Create or update the experiment a YAML file defines."""
    try:
        spec = load_experiment_file(file)
    except ExperimentFileError as exc:
        fail(str(exc))
    with open_db(db) as con:
        try:
            rec, action = upsert_experiment(con, spec, new_bucket_version=new_bucket_version)
        except ExperimentError as exc:
            fail(f"{file}: {exc.message}")
    typer.echo(f"{rec.key}: {action} (status {rec.status}, bucket version {rec.bucket_version})")


def _transition(key: str, status: str, db: Path | None, at: datetime | None = None) -> None:
    with open_db(db) as con:
        try:
            rec = set_status(con, key, status, at=at)
        except ExperimentError as exc:
            fail(exc.message)
    typer.echo(f"{rec.key}: {rec.status}")


@group.command("start")
def start(
    key: str,
    db: DbOption = None,
    at: Annotated[str | None, typer.Option(
        "--at", help="back-date the first start (ISO 8601 with zone, or '-14d'), for imported or simulated history")] = None,
) -> None:
    """Start assigning visitors."""
    _transition(key, "running", db, _parse_at(at) if at else None)


def _parse_at(text: str) -> datetime:
    m = re.fullmatch(r"-(\d+(?:\.\d+)?)d", text.strip())
    if m:
        return datetime.now(UTC) - timedelta(days=float(m.group(1)))
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--at: cannot read {text!r}; use ISO 8601 with a zone (2026-11-01T00:00:00+00:00) or -14d")
    if at.tzinfo is None:
        fail("--at: give a timezone (e.g. +00:00)")
    return at


@group.command("stop")
def stop(key: str, db: DbOption = None) -> None:
    """Stop assigning visitors; everyone sees control."""
    _transition(key, "stopped", db)


@group.command("list")
def list_(db: DbOption = None) -> None:
    """Every experiment with its status."""
    with open_db(db) as con:
        for rec in list_experiments(con):
            typer.echo(f"{rec.key}\t{rec.status}\tbucket v{rec.bucket_version}\t{rec.spec.name}")


@group.command("show")
def show(key: str, db: DbOption = None) -> None:
    """One experiment as JSON."""
    with open_db(db) as con:
        rec = get_experiment(con, key)
    if rec is None:
        fail(f"no experiment {key!r}")
    typer.echo(json.dumps(rec.public(), indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="experiment")
