"""Where things live: the database path and other process-wide settings.

The embedded DuckDB file defaults to ``.armor_ab/armor_ab.duckdb`` in the working directory;
``--db`` on the command line or the ``ARMOR_AB_DB`` environment variable move it.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DB = Path(".armor_ab") / "armor_ab.duckdb"
DB_ENV = "ARMOR_AB_DB"


def resolve_db_path(db: str | os.PathLike[str] | None = None) -> Path:
    """The database path: an explicit argument wins, then ``ARMOR_AB_DB``, then the default."""
    if db:
        return Path(db)
    env = os.environ.get(DB_ENV)
    return Path(env) if env else DEFAULT_DB
