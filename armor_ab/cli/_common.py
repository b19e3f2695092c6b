"""Shared CLI helpers: a clean exit with a message that names the file and field at fault."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

DbOption = Annotated[
    Path | None,
    typer.Option("--db", help="DuckDB file (default: $ARMOR_AB_DB or .armor_ab/armor_ab.duckdb)"),
]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error to stderr and exit non-zero, without a traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
