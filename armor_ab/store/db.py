"""Opening the embedded DuckDB file with its schema in place."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from armor_ab.config import resolve_db_path
from armor_ab.store.migrations import SchemaVersionError, check_version
from armor_ab.store.schema import ensure_schema

__all__ = ["DatabaseLockedError", "SchemaVersionError", "connect", "db_path"]


class DatabaseLockedError(RuntimeError):
    """Another process (usually ``armor-ab serve``) holds the database file."""


def connect(db: str | os.PathLike[str] | None = None, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (and create, unless read-only) the database with every table in place.

    A writable open migrates an older schema in place (``armor_ab.store.migrations``); a read-only
    one leaves it as it is. Either refuses a database made by newer code (``SchemaVersionError``).
    """
    path = resolve_db_path(db)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:  # the file lock of a running server
        if "lock" in str(exc).lower():
            raise DatabaseLockedError(
                f"{path} is in use by another process (is `armor-ab serve` running?); "
                "stop it or go through its HTTP API"
            ) from exc
        raise
    try:
        if read_only:
            check_version(con, where=str(path))
        else:
            ensure_schema(con, where=str(path))
    except BaseException:
        con.close()  # release the file lock
        raise
    return con


def db_path(db: str | os.PathLike[str] | None = None) -> Path:
    return resolve_db_path(db)
