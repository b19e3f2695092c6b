"""Shared CLI helpers: a clean exit with a message that names the file and field at fault."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import duckdb
import typer

from armor_ab.config import DB_ENV, DEFAULT_DB

DbOption = Annotated[
    Path | None,
    typer.Option("--db", help=f"DuckDB file (default: ${DB_ENV} or {DEFAULT_DB})"),
]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error to stderr and exit non-zero, without a traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def open_db(db: Path | None, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """The database for one command; a lock held by a running server is a clean error."""
    from armor_ab.store.db import DatabaseLockedError, SchemaVersionError, connect

    try:
        con = connect(db, read_only=read_only)
    except (DatabaseLockedError, SchemaVersionError) as exc:
        fail(str(exc))
    except duckdb.Error as exc:
        fail(f"cannot open database: {exc}")
    try:
        yield con
    finally:
        con.close()
