"""One event schema: the DDL, the Arrow schema, the row tuples and the wire model all follow
``armor_ab.event_schema.EVENT_SCHEMA``; these tests fail as soon as one of them drifts."""

from __future__ import annotations

import typing
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from armor_ab import event_schema, events
from armor_ab.event_schema import (
    ARROW_SCHEMA,
    CLIENT_COLUMNS,
    COLUMN_INDEX,
    COLUMN_NAMES,
    COMMIT_SEQ,
    COMMIT_SEQUENCE,
    EVENT_COLUMNS,
    EVENT_ROW_SCHEMA,
    EVENT_SCHEMA,
    EVENT_TYPES,
    EXPORT_SCHEMA,
    TABLE_COLUMN_NAMES,
    UNIQUE_BY_WRITER,
    exposure_row,
)
from armor_ab.events import EventIn, event_rows, micros, rows_to_arrow, to_arrow
from armor_ab.store import schema as store_schema
from armor_ab.store.db import connect
from armor_ab.store.schema import ensure_schema
from armor_ab.store.writer import ROW_SCHEMA, EventWriter

# What every existing database file has: the declaration must not change these (a CREATE TABLE IF
# NOT EXISTS never migrates an existing table). Changing one needs a migration, not just an edit.
STORED_TYPES = (
    ("event_id", "UUID"), ("experiment", "VARCHAR"), ("variant", "VARCHAR"), ("user_id", "VARCHAR"),
    ("item_id", "VARCHAR"), ("type", "VARCHAR"), ("value", "DOUBLE"), ("ts", "TIMESTAMP WITH TIME ZONE"),
    ("received_at", "TIMESTAMP WITH TIME ZONE"), ("properties", "JSON"), ("source", "VARCHAR"),
    ("commit_seq", "BIGINT"),
)

READ_BACK = ", ".join(
    {"event_id": "event_id::VARCHAR", "ts": "epoch_us(ts)", "received_at": "epoch_us(received_at)",
     "properties": "properties::VARCHAR"}.get(name, name)
    for name in COLUMN_NAMES
)


def duckdb_type(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """DuckDB's own spelling of a declared type (TIMESTAMPTZ is TIMESTAMP WITH TIME ZONE)."""
    return con.execute(f"DESCRIBE SELECT CAST(NULL AS {sql}) AS x").fetchone()[1]


def describe_events(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str | None]]:
    return [(name, typ, key) for name, typ, _null, key, *_ in con.execute("DESCRIBE events").fetchall()]


def test_live_events_table_is_the_declaration() -> None:
    con = duckdb.connect(":memory:")
    ensure_schema(con)
    live = describe_events(con)
    assert [name for name, _, _ in live] == list(TABLE_COLUMN_NAMES)
    assert [typ for _, typ, _ in live] == [duckdb_type(con, c.sql) for c in EVENT_SCHEMA]
    # No key index (its memory grows with the log, armor_ab.store.dedup): the writer keeps event_id
    # unique and the table says so in its comment, which the analysis reads.
    assert [name for name, _, key in live if key == "PRI"] == []
    assert con.execute("SELECT comment FROM duckdb_tables() WHERE table_name = 'events'").fetchone()[0] == UNIQUE_BY_WRITER
    assert tuple((name, typ) for name, typ, _ in live) == STORED_TYPES
    ensure_schema(con)  # idempotent
    con.close()


def test_existing_database_file_matches_the_declaration(db_path: Path) -> None:
    """``connect`` on an existing file leaves its table as it was, and that is the declared one."""
    connect(db_path).close()
    con = connect(db_path)  # the second open runs ensure_schema against the existing table
    try:
        assert tuple((name, typ) for name, typ, _ in describe_events(con)) == STORED_TYPES
    finally:
        con.close()


def test_derived_names_follow_the_declaration() -> None:
    assert EVENT_COLUMNS == tuple((c.name, c.sql) for c in EVENT_SCHEMA)
    assert store_schema.EVENT_COLUMNS is EVENT_COLUMNS and store_schema.EVENT_TYPES is EVENT_TYPES
    assert events.EVENT_TYPES is EVENT_TYPES
    assert COLUMN_INDEX == {c.name: i for i, c in enumerate(EVENT_ROW_SCHEMA)}  # positions in a row tuple
    assert len(set(TABLE_COLUMN_NAMES)) == len(TABLE_COLUMN_NAMES)
    assert all(c.doc for c in EVENT_SCHEMA)
    # The database's own column (commit_seq, filled at insert) comes last and is in no event row.
    assert TABLE_COLUMN_NAMES == (*COLUMN_NAMES, COMMIT_SEQ)
    assert [c.name for c in EVENT_SCHEMA if c.default] == [COMMIT_SEQ] and EVENT_ROW_SCHEMA == EVENT_SCHEMA[:-1]


def test_arrow_schema_is_the_declaration() -> None:
    assert events.ARROW_SCHEMA is ARROW_SCHEMA and ROW_SCHEMA is ARROW_SCHEMA  # one object everywhere
    assert ARROW_SCHEMA.names == list(COLUMN_NAMES)
    assert [f.type for f in ARROW_SCHEMA] == [c.arrow for c in EVENT_ROW_SCHEMA]
    ts = pa.timestamp("us", tz="UTC")
    assert [f.type for f in ARROW_SCHEMA] == [pa.string()] * 6 + [pa.float64(), ts, ts, pa.string(), pa.string()]


def test_export_schema_is_every_column_in_plain_types() -> None:
    """The event lake's Parquet schema: every column, no DuckDB-only type (UUID and JSON are strings)."""
    assert EXPORT_SCHEMA.names == list(TABLE_COLUMN_NAMES)
    assert EXPORT_SCHEMA.remove(EXPORT_SCHEMA.get_field_index(COMMIT_SEQ)).equals(ARROW_SCHEMA)
    assert EXPORT_SCHEMA.field(COMMIT_SEQ).type == pa.int64()


def test_wire_model_sends_exactly_the_client_columns() -> None:
    assert tuple(EventIn.model_fields) == CLIENT_COLUMNS
    assert set(TABLE_COLUMN_NAMES) - set(CLIENT_COLUMNS) == {"received_at", "source", "commit_seq"}  # the server's
    assert typing.get_args(EventIn.model_fields["type"].annotation) == EVENT_TYPES


def test_import_checks_catch_drift(monkeypatch: pytest.MonkeyPatch) -> None:
    """The module-level checks that run at import refuse a declaration the code does not follow."""
    swapped = list(COLUMN_NAMES)
    i, j = COLUMN_INDEX["variant"], COLUMN_INDEX["user_id"]
    swapped[i], swapped[j] = swapped[j], swapped[i]
    monkeypatch.setattr(event_schema, "COLUMN_NAMES", tuple(swapped))
    with pytest.raises(RuntimeError, match="exposure_row builds"):
        event_schema._check_row_builder()
    monkeypatch.setattr(events, "COLUMN_NAMES", tuple(swapped))
    with pytest.raises(RuntimeError, match="event_rows builds"):
        events._check_event_rows()
    monkeypatch.setattr(events, "CLIENT_COLUMNS", (*CLIENT_COLUMNS, "received_at"))
    with pytest.raises(RuntimeError, match="EventIn has fields"):
        events._check_wire_model()


def test_exposure_row_is_a_plain_tuple_in_column_order() -> None:
    row = exposure_row(event_id="e", experiment="x", variant="v", user_id="u", item_id="i", ts=1, received_at=2,
                       properties='{"device":"mobile"}')
    assert type(row) is tuple and len(row) == len(EVENT_ROW_SCHEMA)  # plain tuples pickle cheapest
    assert dict(zip(COLUMN_NAMES, row, strict=True)) == {
        "event_id": "e", "experiment": "x", "variant": "v", "user_id": "u", "item_id": "i", "type": "exposure",
        "value": None, "ts": 1, "received_at": 2, "properties": '{"device":"mobile"}', "source": "server"}


def test_event_rows_are_plain_tuples_in_column_order() -> None:
    ts = datetime(2026, 11, 1, 10, tzinfo=UTC)
    received = ts + timedelta(seconds=3)
    e = EventIn(event_id=str(uuid.uuid4()), experiment="x", variant="v", user_id="u", item_id="i", type="dwell",
                value=1500.0, ts=ts, properties={"device": "mobile", "category": "pumps"})
    (row,) = event_rows([e], received)
    assert type(row) is tuple and len(row) == len(EVENT_ROW_SCHEMA)
    assert dict(zip(COLUMN_NAMES, row, strict=True)) == {
        "event_id": e.event_id, "experiment": "x", "variant": "v", "user_id": "u", "item_id": "i", "type": "dwell",
        "value": 1500.0, "ts": micros(ts), "received_at": micros(received),
        "properties": '{"category":"pumps","device":"mobile"}', "source": "client"}


def test_rows_round_trip_through_the_writer_into_the_real_table(db_path: Path) -> None:
    """An exposure row (``log_row``, the assignment path) and a batch from ``event_rows`` (``submit``,
    the events path) land in the table made by ``ensure_schema`` and read back as they were sent."""
    now = micros(datetime.now(UTC))
    exposure = exposure_row(event_id=str(uuid.uuid4()), experiment="x", variant="armor", user_id="u1",
                            item_id="i1", ts=now, received_at=now, properties='{"bot":true,"device":"mobile"}')
    bare = exposure_row(event_id=str(uuid.uuid4()), experiment="x", variant="control", user_id="u2",
                        item_id=None, ts=now, received_at=now, properties=None)
    batch = event_rows([
        EventIn(event_id=str(uuid.uuid4()), experiment="x", variant="armor", user_id="u1", item_id="i1",
                type="dwell", value=2500.0, ts=datetime(2026, 11, 1, 10, tzinfo=UTC), properties={"device": "mobile"}),
        EventIn(event_id=str(uuid.uuid4()), experiment="x", user_id="u3", type="inquiry"),
    ])
    table = rows_to_arrow(batch)
    assert table.schema.equals(ARROW_SCHEMA) and table.num_rows == 2
    assert rows_to_arrow([]).schema.equals(ARROW_SCHEMA)

    committed: list[str] = []
    con = connect(db_path)
    writer = EventWriter(con, on_rows_committed=committed.extend).start()
    writer.log_row(exposure)
    writer.log_row(bare)
    result = writer.submit(table).result(10)
    writer.close()
    assert (result.accepted, result.duplicates) == (2, 0)
    assert sorted(committed) == sorted([exposure[0], bare[0]])

    try:  # the writer thread has stopped: its connection reads back what it committed
        stored = con.execute(f"SELECT {READ_BACK} FROM events ORDER BY user_id, type").fetchall()
    finally:
        con.close()
    assert stored == sorted([exposure, bare, *batch], key=lambda r: (r[COLUMN_INDEX["user_id"]],
                                                                    r[COLUMN_INDEX["type"]]))


def test_to_arrow_inserts_with_plain_duckdb() -> None:
    """The Arrow table inserts by position into the table ensure_schema made, with DuckDB's casts only."""
    con = duckdb.connect(":memory:")
    ensure_schema(con)
    received = datetime(2026, 11, 2, tzinfo=UTC)
    evs = [EventIn(event_id=str(uuid.uuid4()), experiment="x", variant="armor", user_id=f"u{i}", type="page_view")
           for i in range(3)]
    incoming = to_arrow(evs, received)  # noqa: F841 - read by DuckDB's replacement scan
    con.execute("INSERT INTO events BY NAME SELECT * FROM incoming")  # commit_seq: the column's DEFAULT
    stored = con.execute(f"SELECT {READ_BACK} FROM events ORDER BY user_id").fetchall()
    seqs = con.execute("SELECT DISTINCT commit_seq FROM events").fetchall()
    con.close()
    assert stored == event_rows(evs, received)
    assert sorted(seqs) == [(1,), (2,), (3,)]  # a plain SQL insert: a number per row


def test_the_writer_numbers_each_transaction(db_path: Path) -> None:
    """One commit_seq per writer transaction, strictly increasing; a transaction that rolls back
    leaves a gap, never a number used again (the event lake exports by it)."""
    con = connect(db_path)
    writer = EventWriter(con).start()

    def batch(n: int, tag: str) -> pa.Table:
        return to_arrow([EventIn(event_id=str(uuid.uuid4()), experiment="x", user_id=f"{tag}{i}", type="page_view")
                         for i in range(n)])

    writer.submit(batch(3, "a")).result(10)
    writer.submit(batch(2, "b")).result(10)
    # A job that draws a number and rolls back (what a failed transaction does).
    writer.call(lambda c: (c.execute("BEGIN"), c.execute(f"SELECT nextval('{COMMIT_SEQUENCE}')").fetchall(),
                           c.execute("ROLLBACK"))).result(10)
    writer.submit(batch(1, "c")).result(10)
    writer.close()
    try:
        rows = con.execute("SELECT left(user_id, 1), min(commit_seq), max(commit_seq), count(*) FROM events "
                           "GROUP BY 1 ORDER BY 1").fetchall()
    finally:
        con.close()
    assert [(tag, lo == hi, n) for tag, lo, hi, n in rows] == [("a", True, 3), ("b", True, 2), ("c", True, 1)]
    a, b, c = (lo for _, lo, _, _ in rows)
    assert a < b < c and c > b + 1  # the rolled-back number is skipped
