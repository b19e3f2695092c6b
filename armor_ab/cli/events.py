"""`armor-ab events import` and `events export`: bulk-load events; export the log to a Parquet lake."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from armor_ab.cli._common import DbOption, fail, open_db
from armor_ab.services.event_import import EventFileError, import_events
from armor_ab.store.lake import DEFAULT_ROWS_PER_FILE

group = typer.Typer(help="Load events into the event log, or export it.", no_args_is_help=True)


@group.command("import")
def import_(file: Annotated[Path, typer.Argument(help="JSON lines (.jsonl) or Parquet file")], db: DbOption = None) -> None:
    """Validate every row, then append the new ones in one transaction (all or nothing)."""
    with open_db(db) as con:
        try:
            result = import_events(con, file)
        except EventFileError as exc:
            fail(str(exc))
    typer.echo(f"{file}: {result.rows} rows, {result.accepted} new, {result.duplicates} already stored")


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        since = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--since {value!r} is not a date or time (e.g. 2026-11-01 or 2026-11-01T12:00:00Z)")
    return since if since.tzinfo is not None else since.replace(tzinfo=UTC)


def _report(result, to: Path) -> None:  # noqa: ANN001 - an ExportResult
    if result.resumed is not None:
        lo, hi = result.resumed
        typer.echo(f"finished the export a crash interrupted (commit_seq {lo + 1}..{hi})")
    if result.rows:
        typer.echo(f"exported {result.rows:,} rows (commit_seq {result.after + 1}..{result.through}) in "
                   f"{len(result.files)} files to {to / 'events'} in {result.seconds:.1f} s")
    else:
        typer.echo("nothing new to export")
    if result.exported_through >= 0:
        typer.echo(f"the lake holds {result.lake_rows:,} rows through commit_seq {result.exported_through}")
    else:
        typer.echo("the lake is empty: the event log has no rows yet")
    if result.unsequenced:
        typer.echo(f"warning: {result.unsequenced:,} rows have no commit_seq (inserted with an explicit NULL "
                   "around the writer) and are not exported", err=True)


@group.command("export")
def export(
    to: Annotated[Path, typer.Option("--to", help="the lake's directory (made if missing)")],
    since: Annotated[str | None, typer.Option(
        "--since",
        help="keep only events at or after this date/time (UTC unless it says); fixed when the lake is made")] = None,
    db: DbOption = None,
    continuous: Annotated[bool, typer.Option(
        "--continuous", help="keep exporting new commits every --interval seconds until stopped")] = False,
    interval: Annotated[float, typer.Option("--interval", help="seconds between rounds of --continuous")] = 60.0,
    rows_per_file: Annotated[int, typer.Option(
        "--rows-per-file", help="at most this many rows per Parquet file")] = DEFAULT_ROWS_PER_FILE,
) -> None:
    """Write the event log to DIR/events as Parquet, hive-partitioned by date: only the rows committed
    since the last export (by commit sequence), exactly once, crash-safe (docs/scale.md)."""
    from armor_ab.store.lake import LakeError, export_events, follow

    when = _since(since)
    per_file = rows_per_file
    if per_file < 1:
        fail("--rows-per-file must be at least 1")
    if continuous and not interval > 0:
        fail("--interval must be positive")
    from armor_ab.store.db import db_path

    database = str(db_path(db))
    if not continuous:
        with open_db(db) as con:  # a writable open: an older database migrates (it gains commit_seq)
            try:
                result = export_events(con, to, since=when, rows_per_file=per_file, database=database)
            except LakeError as exc:
                fail(str(exc))
        _report(result, to)
        return

    import duckdb

    from armor_ab.store.db import DatabaseLockedError, SchemaVersionError, connect

    with open_db(db):  # migrate once, now; the rounds open read-only and let go of the file in between
        pass

    def waiting(exc: BaseException) -> None:
        typer.echo(f"waiting: {exc}", err=True)

    typer.echo(f"following {database} into {to / 'events'} every {interval:g} s (Ctrl-C stops)")
    try:
        follow(lambda: connect(db, read_only=True), to, interval_s=interval, since=when, rows_per_file=per_file,
               database=database, on_export=lambda r: _report(r, to) if r.rows or r.resumed else None,
               on_wait=waiting, busy=(DatabaseLockedError,))
    except LakeError as exc:
        fail(str(exc))
    except SchemaVersionError as exc:
        fail(str(exc))
    except duckdb.Error as exc:
        fail(f"cannot open database: {exc}")
    except KeyboardInterrupt:
        typer.echo("stopped")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="events")
