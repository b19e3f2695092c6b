"""`armor-ab events import`: bulk-load events through the same validation as the API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from armor_ab.cli._common import DbOption, fail, open_db
from armor_ab.services.event_import import EventFileError, import_events

group = typer.Typer(help="Load events into the event log.", no_args_is_help=True)


@group.command("import")
def import_(file: Annotated[Path, typer.Argument(help="JSON lines (.jsonl) or Parquet file")], db: DbOption = None) -> None:
    """Validate every row, then append the new ones in one transaction (all or nothing)."""
    with open_db(db) as con:
        try:
            result = import_events(con, file)
        except EventFileError as exc:
            fail(str(exc))
    typer.echo(f"{file}: {result.rows} rows, {result.accepted} new, {result.duplicates} already stored")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="events")
