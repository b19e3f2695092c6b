"""The ``events`` table, declared once.

``EVENT_SCHEMA`` is the single declaration of an event's columns. Everything else is derived from
it: the DuckDB DDL (``armor_ab.store.schema``), the Arrow schema the writer appends
(``ARROW_SCHEMA``), the position of each value in an event row (the plain tuples the API ships to
the database process) and the set of fields a client sends (``EventIn`` in ``armor_ab.events`` is
checked against ``CLIENT_COLUMNS`` when that module is imported) and the plain Arrow schema of the
event lake (``EXPORT_SCHEMA``, ``armor_ab.store.lake``). ``docs/events.md`` documents the table;
``tests/test_docs.py`` and ``tests/test_event_schema.py`` fail when any of them drifts.

A column with a ``default`` is filled by the database as the row is inserted (``commit_seq``): it is
in the table, the DDL and the lake, but not in an event row tuple nor in the writer's Arrow batches
(the writer names the columns it inserts). New columns are appended to ``EVENT_SCHEMA``, where a
migration's ``ADD COLUMN`` puts them, so its order is the table's in every database.

This module imports nothing of armor_ab, so the store and the events module can both import it.
Changing a column's SQL type changes the DDL of new databases only: existing files keep theirs.
"""

from __future__ import annotations

from typing import NamedTuple

import pyarrow as pa

EVENT_TYPES = ("exposure", "page_view", "dwell", "inquiry")


class Column(NamedTuple):
    """One column of ``events``."""

    name: str
    sql: str  # the DuckDB type in the DDL
    arrow: pa.DataType  # the type in the Arrow batches the writer inserts (cast to ``sql`` there)
    client: bool  # sent by clients (a field of ``EventIn``); else the server fills it in
    doc: str
    # The DDL's DEFAULT (SQL). A column with one is the database's: no event row carries it.
    default: str | None = None


_TS = pa.timestamp("us", tz="UTC")  # rows carry integer microseconds: see ``armor_ab.events.micros``

# Column order is the DDL's, the Arrow schema's and every event row tuple's.
EVENT_SCHEMA: tuple[Column, ...] = (
    Column("event_id", "UUID", pa.string(), True,
           "client-generated, the idempotency key: unique in the table (the writer leaves out an id "
           "stored before), so a retried batch never counts twice"),
    Column("experiment", "VARCHAR", pa.string(), True, "experiment key"),
    Column("variant", "VARCHAR", pa.string(), True,
           "variant key the visitor saw; NULL for a visitor outside coverage"),
    Column("user_id", "VARCHAR", pa.string(), True, "the visitor's stable id"),
    Column("item_id", "VARCHAR", pa.string(), True, "catalog item on the page, when there is one"),
    Column("type", "VARCHAR", pa.string(), True, "one of EVENT_TYPES"),
    Column("value", "DOUBLE", pa.float64(), True,
           "dwell: milliseconds of one page view; inquiry: optional money amount; otherwise NULL"),
    Column("ts", "TIMESTAMPTZ", _TS, True, "when it happened, by the client's clock (default: receive time)"),
    Column("received_at", "TIMESTAMPTZ", _TS, False, "when the server accepted it"),
    Column("properties", "JSON", pa.string(), True, "free-form segment attributes: device, category, ..."),
    # Added in schema version 2 (a migration adds it at the end: the writer appends by position).
    Column("source", "VARCHAR", pa.string(), False,
           "who wrote it: server (its own exposures), client (a client key), import (an admin's file); "
           "NULL for rows written before schema version 2"),
    # Added in schema version 6: the event lake's export key (armor_ab.store.lake).
    Column("commit_seq", "BIGINT", pa.int64(), False,
           "the writer's commit sequence number: one per transaction that inserted the row, strictly "
           "increasing in commit order (gaps allowed), taken from the sequence events_commit_seq inside "
           "that transaction; 0 for rows stored before schema version 6",
           default="nextval('events_commit_seq')"),
)
EVENT_SOURCES = ("server", "client", "import")
IDEMPOTENCY_KEY = "event_id"
# No PRIMARY KEY: DuckDB holds that index wholly in memory (an ART, ~50 bytes per event, never
# evicted), so the database process grew with the log and ran out of memory at tens of millions of
# events. The writer keeps event ids unique instead (armor_ab.store.dedup), and says so in the
# table's comment, which the analysis reads (armor_ab.stats.sql.event_id_enforced_unique).
UNIQUE_BY_WRITER = "armor-ab event log: one row per event_id (the writer refuses repeats)"

COMMIT_SEQ = "commit_seq"
COMMIT_SEQUENCE = "events_commit_seq"  # the DuckDB sequence that numbers the writer's transactions

EVENT_ROW_SCHEMA: tuple[Column, ...] = tuple(c for c in EVENT_SCHEMA if c.default is None)
"""The columns an event row carries (every column but the database's own, ``commit_seq``)."""

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in EVENT_ROW_SCHEMA)
"""The columns of an event row tuple and of the writer's Arrow batches, in table order."""
TABLE_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in EVENT_SCHEMA)
"""Every column of the table, in its order."""
CLIENT_COLUMNS: tuple[str, ...] = tuple(c.name for c in EVENT_SCHEMA if c.client)
COLUMN_INDEX: dict[str, int] = {name: i for i, name in enumerate(COLUMN_NAMES)}
"""Position of each column in an event row tuple, e.g. ``row[COLUMN_INDEX["type"]]``."""

EVENT_COLUMNS: tuple[tuple[str, str], ...] = tuple((c.name, c.sql) for c in EVENT_SCHEMA)
"""(name, DuckDB type) of every column, in table order."""

ARROW_SCHEMA = pa.schema([(c.name, c.arrow) for c in EVENT_ROW_SCHEMA])
"""The writer's Arrow batches: one field per row column."""

EXPORT_SCHEMA = pa.schema([(c.name, c.arrow) for c in EVENT_SCHEMA])
"""Every column in plain Arrow types (UUID and JSON as strings, timestamps as microseconds UTC):
the Parquet schema of the event lake (``armor_ab.store.lake``)."""

EVENTS_DDL = "CREATE SEQUENCE IF NOT EXISTS {} START 1;\nCREATE TABLE IF NOT EXISTS events (\n{}\n);\n" \
    "COMMENT ON TABLE events IS '{}';".format(
        COMMIT_SEQUENCE,
        ",\n".join(f"    {c.name} {c.sql}" + (f" DEFAULT {c.default}" if c.default else "") for c in EVENT_SCHEMA),
        UNIQUE_BY_WRITER,
    )



def exposure_row(
    *, event_id: str, experiment: str, variant: str, user_id: str, item_id: str | None,
    ts: int, received_at: int, properties: str | None,
) -> tuple:
    """A first-exposure event row: a plain tuple in ``EVENT_SCHEMA`` order (what ``log_row`` takes).

    Timestamps are integer microseconds since the epoch, ``properties`` is JSON text or None; the
    ``source`` is ``server``: the server logged it (or vouched for a client's copy of it).
    Keyword-only, so no caller spells a position; checked against ``EVENT_SCHEMA`` below, at
    import. A plain tuple (not a NamedTuple) because rows are pickled to the database process,
    where a tuple costs the least.
    """
    return (event_id, experiment, variant, user_id, item_id, "exposure", None, ts, received_at, properties, "server")


def _check_row_builder() -> None:
    """Fail at import if ``exposure_row`` puts a value at another position than ``EVENT_SCHEMA``'s."""
    fixed = {"type": "exposure", "value": None, "source": "server"}
    row = exposure_row(**{name: name for name in COLUMN_NAMES if name not in fixed})
    expected = tuple(fixed.get(name, name) for name in COLUMN_NAMES)
    if row != expected:
        raise RuntimeError(f"exposure_row builds {row}, EVENT_SCHEMA wants {expected}")


_check_row_builder()
