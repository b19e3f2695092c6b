"""The ``events`` table, declared once.

``EVENT_SCHEMA`` is the single declaration of an event's columns. Everything else is derived from
it: the DuckDB DDL (``armor_ab.store.schema``), the Arrow schema the writer appends
(``ARROW_SCHEMA``), the position of each value in an event row (the plain tuples the API ships to
the database process) and the set of fields a client sends (``EventIn`` in ``armor_ab.events`` is
checked against ``CLIENT_COLUMNS`` when that module is imported). ``docs/events.md`` documents the
table; ``tests/test_docs.py`` and ``tests/test_event_schema.py`` fail when any of them drifts.

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
)
EVENT_SOURCES = ("server", "client", "import")
IDEMPOTENCY_KEY = "event_id"
# No PRIMARY KEY: DuckDB holds that index wholly in memory (an ART, ~50 bytes per event, never
# evicted), so the database process grew with the log and ran out of memory at tens of millions of
# events. The writer keeps event ids unique instead (armor_ab.store.dedup), and says so in the
# table's comment, which the analysis reads (armor_ab.stats.sql.event_id_enforced_unique).
UNIQUE_BY_WRITER = "armor-ab event log: one row per event_id (the writer refuses repeats)"

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in EVENT_SCHEMA)
CLIENT_COLUMNS: tuple[str, ...] = tuple(c.name for c in EVENT_SCHEMA if c.client)
COLUMN_INDEX: dict[str, int] = {name: i for i, name in enumerate(COLUMN_NAMES)}
"""Position of each column in an event row tuple, e.g. ``row[COLUMN_INDEX["type"]]``."""

EVENT_COLUMNS: tuple[tuple[str, str], ...] = tuple((c.name, c.sql) for c in EVENT_SCHEMA)
"""(name, DuckDB type) in table order."""

ARROW_SCHEMA = pa.schema([(c.name, c.arrow) for c in EVENT_SCHEMA])

EVENTS_DDL = "CREATE TABLE IF NOT EXISTS events (\n{}\n);\nCOMMENT ON TABLE events IS '{}';".format(
    ",\n".join(f"    {c.name} {c.sql}" for c in EVENT_SCHEMA), UNIQUE_BY_WRITER
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
