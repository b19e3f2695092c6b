"""Schema versions: the database records the version of its schema, and an older one migrates on open.

``schema_version`` holds one row per version reached (``version``, ``applied_at``); the database's
version is the largest. ``MIGRATIONS[n]`` takes a database from version ``n`` to ``n + 1``, so the
version this code writes, ``SCHEMA_VERSION``, is ``len(MIGRATIONS)``.

* No ``schema_version`` table and none of our tables: a fresh database. ``ensure_schema`` creates the
  current DDL and records ``SCHEMA_VERSION``; no migration runs.
* No ``schema_version`` table but our tables (``events``...): made before versions existed (version 0).
* A version below ``SCHEMA_VERSION``: the missing migrations run in order, in the same transaction
  as the version rows they record, so a failure leaves the file as it was.
* A version above ``SCHEMA_VERSION``: made by newer code. It is refused (``SchemaVersionError``),
  never downgraded.

To change the schema (docs/migrations.md): change the DDL (``armor_ab.store.schema`` or
``armor_ab.event_schema``) for new databases, and append one function here that brings an existing
database to the same shape, e.g. ``add_column(con, "events", "referrer", "VARCHAR")``. A migration
must be safe to run on a database that already has its change (``IF NOT EXISTS``), because the
tables it touches may have been made by the current DDL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import duckdb

log = logging.getLogger("armor_ab.store")

Migration = Callable[[duckdb.DuckDBPyConnection], None]

VERSION_TABLE = "schema_version"
VERSION_DDL = f"""CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (
    version INTEGER PRIMARY KEY,              -- a schema version this database reached
    applied_at TIMESTAMPTZ NOT NULL
);"""
# The tables of version 0: any of them without a version table is a database made before versions.
VERSION_0_TABLES = ("events", "experiments", "experiment_history", "content", "api_keys")


class SchemaVersionError(RuntimeError):
    """The database was made by newer code (its schema version is above this code's)."""

    def __init__(self, found: int, supported: int, where: str = "the database") -> None:
        self.found = found
        self.supported = supported
        self.where = where
        super().__init__(
            f"{where} has schema version {found}, newer than version {supported} that this armor-ab "
            "supports; upgrade armor-ab to open it (it is never downgraded)"
        )

    def __reduce__(self) -> tuple:  # rebuilt with every argument (it crosses to the API process)
        return (type(self), (self.found, self.supported, self.where))


# --- helpers for migrations ---------------------------------------------------------------------


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = current_schema() AND table_name = ?",
        [table],
    ).fetchall()  # every row fetched: no result left pending on the connection
    return bool(row and row[0][0])


def column_exists(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = current_schema() AND table_name = ? AND column_name = ?",
        [table, column],
    ).fetchall()
    return bool(row and row[0][0])


def add_column(con: duckdb.DuckDBPyConnection, table: str, column: str, sql_type: str,
               default: str | None = None) -> None:
    """``ALTER TABLE table ADD COLUMN IF NOT EXISTS column sql_type [DEFAULT default]``.

    Idempotent, and a no-op when the table does not exist yet (the current DDL then creates it
    with the column). ``default`` is SQL text (``'0'``, ``"'web'"``); existing rows get it.
    """
    if not table_exists(con, table):
        return
    clause = f" DEFAULT {default}" if default is not None else ""
    con.execute(f'ALTER TABLE "{table}" ADD COLUMN IF NOT EXISTS "{column}" {sql_type}{clause}')


# --- the migrations -----------------------------------------------------------------------------


def _v0_to_v1(con: duckdb.DuckDBPyConnection) -> None:
    """Version 1 is version 0's DDL plus the version table: nothing to change but the record."""


def _v1_to_v2(con: duckdb.DuckDBPyConnection) -> None:
    """events.source: who wrote the row (server, client, import). Rows written before are NULL:
    their origin was not recorded, and the analysis keeps counting them as it did (docs/events.md)."""
    add_column(con, "events", "source", "VARCHAR")


def _v2_to_v3(con: duckdb.DuckDBPyConnection) -> None:
    """events.event_id loses its PRIMARY KEY: DuckDB holds that index wholly in memory and never
    evicts it (the database process grew with every event and ran out of memory at tens of millions
    of them). The writer keeps ids unique instead (armor_ab.store.dedup). DuckDB cannot drop a
    primary key, so the table is copied (same columns, same order) and the copy takes its name."""
    if not table_exists(con, "events"):
        return
    keyed = con.execute(
        "SELECT count(*) FROM duckdb_constraints() WHERE database_name = current_database() "
        "AND schema_name = current_schema() AND table_name = 'events' AND constraint_type = 'PRIMARY KEY'"
    ).fetchone()[0]
    if not keyed:
        return
    con.execute("CREATE TABLE events__v3 AS SELECT * FROM events ORDER BY received_at")
    con.execute("DROP TABLE events")
    con.execute("ALTER TABLE events__v3 RENAME TO events")


def _v3_to_v4(con: duckdb.DuckDBPyConnection) -> None:
    """The imported catalog: tables ``catalog_items`` and ``catalog_imports`` (``armor_ab.store.catalog``)
    and a fourth content status, ``stale``. The DDL that runs after the migrations creates the new
    tables; ``content.status`` is free text, so existing rows need no change: nothing to do but the record."""


def _v4_to_v5(con: duckdb.DuckDBPyConnection) -> None:
    """Guardrails and live health: each page's check results, verdict and reviewer
    (``content.checks``, ``verdict``, ``reviewed_by``, ``reviewed_key``); an experiment's pause
    (``experiments.paused_at``, ``pause_cause``) and the cause in its history (``experiment_history.note``).
    Pages stored before have no checks (NULL): ``armor-ab content check KEY`` runs them."""
    for column, sql_type in (("checks", "JSON"), ("verdict", "VARCHAR"), ("reviewed_by", "VARCHAR"),
                             ("reviewed_key", "VARCHAR")):
        add_column(con, "content", column, sql_type)
    add_column(con, "experiments", "paused_at", "TIMESTAMPTZ")
    add_column(con, "experiments", "pause_cause", "VARCHAR")
    add_column(con, "experiment_history", "note", "VARCHAR")


def _v5_to_v6(con: duckdb.DuckDBPyConnection) -> None:
    """events.commit_seq: the writer's commit sequence number, the event lake's export key
    (``armor_ab.store.lake``). Every row stored before is numbered 0: they were all committed before
    this migration, so the first export takes them together. Rows inserted after take their number
    from the sequence ``events_commit_seq`` (one per writer transaction, ``armor_ab.store.writer``;
    the column's DEFAULT for a plain SQL insert), which starts above every number stored."""
    if not table_exists(con, "events"):
        return
    if not column_exists(con, "events", "commit_seq"):
        add_column(con, "events", "commit_seq", "BIGINT", default="0")  # fills the stored rows with 0
    start = con.execute("SELECT coalesce(max(commit_seq), 0) + 1 FROM events").fetchall()[0][0]
    con.execute(f"CREATE SEQUENCE IF NOT EXISTS events_commit_seq START {int(start)}")
    con.execute("ALTER TABLE events ALTER COLUMN commit_seq SET DEFAULT nextval('events_commit_seq')")


# MIGRATIONS[n] takes version n to n + 1. Append only; never edit or reorder a released one.
MIGRATIONS: list[Migration] = [_v0_to_v1, _v1_to_v2, _v2_to_v3, _v3_to_v4, _v4_to_v5, _v5_to_v6]

SCHEMA_VERSION = len(MIGRATIONS)


# --- reading and applying -----------------------------------------------------------------------


def current_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The database's schema version; 0 when made before versions; None when it is empty (fresh)."""
    if table_exists(con, VERSION_TABLE):
        row = con.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchall()[0]
        return int(row[0]) if row[0] is not None else 0
    if any(table_exists(con, t) for t in VERSION_0_TABLES):
        return 0
    return None


def _record(con: duckdb.DuckDBPyConnection, version: int) -> None:
    con.execute(f"INSERT OR IGNORE INTO {VERSION_TABLE} VALUES (?, ?)", [version, datetime.now(UTC)])


def check_version(con: duckdb.DuckDBPyConnection, migrations: Sequence[Migration] | None = None,
                  where: str = "the database") -> int | None:
    """The database's version; ``SchemaVersionError`` if it is newer than this code."""
    target = len(MIGRATIONS if migrations is None else migrations)
    version = current_version(con)
    if version is not None and version > target:
        raise SchemaVersionError(version, target, where)
    return version


def upgrade(con: duckdb.DuckDBPyConnection, ddl: str, migrations: Sequence[Migration] | None = None,
            where: str = "the database") -> list[int]:
    """Bring the database to the current version in one transaction; returns the versions reached.

    A fresh database gets ``ddl`` and the current version; an older one runs the missing
    migrations, then ``ddl`` (``CREATE ... IF NOT EXISTS``: tables added since are created).
    ``migrations`` defaults to ``MIGRATIONS`` as it is at call time (tests append to it).
    """
    steps = list(MIGRATIONS if migrations is None else migrations)
    target = len(steps)
    con.execute("BEGIN TRANSACTION")
    try:
        version = check_version(con, steps, where)
        reached: list[int] = []
        con.execute(VERSION_DDL)
        if version is None:
            con.execute(ddl)
            _record(con, target)
        else:
            for n in range(version, target):
                log.info("%s: migrating the schema from version %d to %d", where, n, n + 1)
                steps[n](con)
                _record(con, n + 1)
                reached.append(n + 1)
            con.execute(ddl)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return reached
