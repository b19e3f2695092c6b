"""`armor-ab experiment ...`: apply YAML files, move experiments through their lifecycle."""

from __future__ import annotations

import getpass
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import duckdb
import typer

from armor_ab.cli._common import DbOption, fail, open_db
from armor_ab.content.prompts import FieldCoverage, check_templates
from armor_ab.experiments.loader import ExperimentFileError, load_experiment_file
from armor_ab.store.experiments import (
    ExperimentError,
    get_experiment,
    list_experiments,
    set_paused,
    set_status,
    upsert_experiment,
)
from armor_ab.store.health import experiment_history

group = typer.Typer(help="Define experiments as code and move them through draft → running → stopped.",
                    no_args_is_help=True)


@group.command("validate")
def validate(
    files: Annotated[list[Path], typer.Argument(help="experiment YAML files")],
    db: DbOption = None,
) -> None:
    """Check experiment files, and their ARMOR prompts against the imported catalog's fields.

    The database is only read. Without --db and without a database at the default path (CI on an
    experiment repo), the files are checked and it says that the prompts were not."""
    specs = []
    for f in files:
        try:
            specs.append((f, load_experiment_file(f)))
        except ExperimentFileError as exc:
            fail(str(exc))
    coverage = None
    if any(v.content.source == "armor" for _, spec in specs for v in spec.variants):
        coverage = _catalog_coverage(db)
    problems = []
    for f, spec in specs:
        found = check_templates(spec, coverage) if coverage is not None else []
        problems += [f"{f}: {spec.key}: {p}" for p in found]
        if not found:
            checked = f"; prompts fit the {coverage.items} catalog items" if coverage is not None else ""
            typer.echo(f"{f}: ok ({spec.key}, {len(spec.variants)} variants{checked})")
    if problems:
        for p in problems:
            typer.echo(f"error: {p}", err=True)
        raise typer.Exit(2)


def _catalog_coverage(db: Path | None) -> FieldCoverage | None:
    """The imported catalog's template fields (``FieldCoverage``), or None with a note on stderr when the
    default database is absent or holds no catalog; with an explicit --db, either is an error."""
    from armor_ab.config import resolve_db_path
    from armor_ab.store.catalog import list_items
    from armor_ab.store.db import DatabaseLockedError, SchemaVersionError, connect

    path = resolve_db_path(db)
    how = f"import one: armor-ab catalog import FILE --db {path}"
    if not path.exists():
        if db is not None:
            fail(f"--db {path}: no such database, so the prompts cannot be checked against a catalog ({how})")
        typer.echo(f"note: prompt fields not checked: no database at {path} (give --db, or {how})", err=True)
        return None
    try:
        con = connect(path, read_only=True)
    except DatabaseLockedError as exc:
        if db is not None:
            fail(str(exc))
        # A running server holds its database: validating files must still work beside it.
        typer.echo(f"note: prompt fields not checked: {exc}", err=True)
        return None
    except (SchemaVersionError, duckdb.Error) as exc:
        fail(f"cannot read {path}: {exc}")
    try:
        # A database from before catalogs were imported has no table yet: it holds no catalog either.
        has_table = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'catalog_items'").fetchone()[0]
        items = list_items(con) if has_table else []
    finally:
        con.close()
    if not items:
        if db is not None:
            fail(f"--db {path}: no catalog imported, so the prompts cannot be checked against it ({how})")
        typer.echo(f"note: prompt fields not checked: no catalog imported in {path} ({how})", err=True)
        return None
    return FieldCoverage.of(items)


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


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment (a container without one)
        return "cli"


def _pause(key: str, paused: bool, text: str, db: Path | None) -> None:
    with open_db(db) as con:
        try:
            rec = get_experiment(con, key)
            if rec is None:
                fail(f"no experiment {key!r}")
            if rec.status != "running":
                fail(f"experiment {key!r} is {rec.status}; only a running experiment pauses or resumes")
            rec, changed = set_paused(con, key, paused, cause=text, by=_os_user())
        except ExperimentError as exc:
            fail(exc.message)
    if not changed:
        typer.echo(f"{rec.key}: already {'paused' if paused else 'not paused'}"
                   + (f" ({rec.pause_cause})" if rec.pause_cause else ""))
    elif paused:
        typer.echo(f"{rec.key}: paused (its ARMOR arms serve control's copy until resumed): {rec.pause_cause}")
    else:
        typer.echo(f"{rec.key}: resumed")


@group.command("pause")
def pause(
    key: str,
    cause: Annotated[str, typer.Option("--cause", help="why: kept in the experiment's history")],
    db: DbOption = None,
) -> None:
    """Pause a running experiment: its ARMOR arms serve control's copy until it is resumed (assignment is
    unchanged). With the server running, use POST /v1/experiments/KEY/pause instead (it holds the database)."""
    if not cause.strip():
        fail("--cause cannot be blank")
    _pause(key, True, cause.strip(), db)


@group.command("resume")
def resume(
    key: str,
    note: Annotated[str | None, typer.Option("--note", help="kept in the experiment's history")] = None,
    db: DbOption = None,
) -> None:
    """Resume a paused experiment's ARMOR arms (POST /v1/experiments/KEY/resume with the server running)."""
    _pause(key, False, (note or "").strip() or "resumed", db)


@group.command("history")
def history(key: str, db: DbOption = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every change of an experiment, oldest first, with the cause and who of pauses and resumes."""
    with open_db(db) as con:
        rows = experiment_history(con, key)
    if not rows:
        fail(f"no experiment {key!r}")
    if as_json:
        typer.echo(json.dumps([r.public() for r in rows], indent=2))
        return
    for r in rows:
        note = f"\t{r.note}" if r.note else ""
        typer.echo(f"{r.revision}\t{r.changed_at.isoformat(timespec='seconds')}\t{r.action}\t{r.status}"
                   f"\tbucket v{r.bucket_version}{note}")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="experiment")
