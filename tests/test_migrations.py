"""Schema versions: a fresh database records the current version, an older one migrates in place on
open (once), a newer one is refused, and a new migration (a column added) runs once and only once."""

from __future__ import annotations

import json
import pickle
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from armor_ab.event_schema import TABLE_COLUMN_NAMES
from armor_ab.events import EventIn, to_arrow
from armor_ab.experiments.loader import load_experiment_file
from armor_ab.stats.sql import load_sums
from armor_ab.store import migrations
from armor_ab.store.content import list_content
from armor_ab.store.db import SchemaVersionError, connect
from armor_ab.store.experiments import get_experiment, list_experiments
from armor_ab.store.keys import list_keys
from armor_ab.store.migrations import (
    MIGRATIONS,
    SCHEMA_VERSION,
    add_column,
    column_exists,
    current_version,
    table_exists,
)
from armor_ab.store.schema import ensure_schema
from armor_ab.store.writer import append_events
from tests.helpers.platform import DEMO_EXPERIMENT

# The DDL of version 0, as the code released before schema versions wrote it (a frozen copy: the
# current DDL may change, the databases already out there do not). No schema_version table.
V0_DDL = """
CREATE TABLE IF NOT EXISTS events (
    event_id UUID PRIMARY KEY,
    experiment VARCHAR,
    variant VARCHAR,
    user_id VARCHAR,
    item_id VARCHAR,
    type VARCHAR,
    value DOUBLE,
    ts TIMESTAMPTZ,
    received_at TIMESTAMPTZ,
    properties JSON
);
CREATE TABLE IF NOT EXISTS experiments (
    key VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    status VARCHAR NOT NULL DEFAULT 'draft',
    spec JSON NOT NULL,
    bucket_version INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ,
    stopped_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS experiment_history (
    key VARCHAR NOT NULL,
    revision INTEGER NOT NULL,
    action VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    bucket_version INTEGER NOT NULL,
    spec JSON NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (key, revision)
);
CREATE TABLE IF NOT EXISTS content (
    experiment VARCHAR NOT NULL,
    variant VARCHAR NOT NULL,
    item_id VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    content JSON NOT NULL,
    digest VARCHAR NOT NULL,
    prompt VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    generated_at TIMESTAMPTZ NOT NULL,
    reviewed_at TIMESTAMPTZ,
    PRIMARY KEY (experiment, variant, item_id)
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id VARCHAR PRIMARY KEY,
    key_hash VARCHAR NOT NULL,
    scope VARCHAR NOT NULL,
    name VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
"""

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
# The events columns of schema version 2 (later versions add theirs after them).
V2_COLUMNS = "event_id, experiment, variant, user_id, item_id, type, value, ts, received_at, properties, source"
EVENT_IDS = [str(uuid.UUID(int=i + 1)) for i in range(3)]


def make_version_0(path: Path) -> dict:
    """A database as the code before schema versions left it, rows written with plain SQL."""
    spec = load_experiment_file(DEMO_EXPERIMENT)
    spec_json = spec.model_dump_json()
    con = duckdb.connect(str(path))
    try:
        con.execute(V0_DDL)
        con.execute("INSERT INTO experiments VALUES (?, ?, 'running', ?, 0, ?, ?, ?, NULL)",
                    [spec.key, spec.name, spec_json, T0, T0, T0])
        con.execute("INSERT INTO experiment_history VALUES (?, 1, 'create', 'draft', 0, ?, ?)",
                    [spec.key, spec_json, T0])
        con.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [[EVENT_IDS[0], spec.key, "control", "u1", "pumps-01", "exposure", None, T0, T0, '{"device": "web"}'],
             [EVENT_IDS[1], spec.key, "control", "u1", "pumps-01", "page_view", None, T0, T0, None],
             [EVENT_IDS[2], spec.key, "control", "u1", "pumps-01", "dwell", 1234.5, T0, T0, None]],
        )
        con.execute("INSERT INTO api_keys VALUES ('0123456789ab', 'deadbeef', 'admin', 'old-admin', ?, NULL)", [T0])
        con.execute("INSERT INTO api_keys VALUES ('ba9876543210', 'feedface', 'client', NULL, ?, ?)", [T0, T0])
        content = {"segments": [{"type": "text", "text": "A pump."}]}
        con.execute("INSERT INTO content VALUES (?, 'armor', 'pumps-01', 'approved', ?, 'abc', 'p', 'armor-demo', ?, ?)",
                    [spec.key, json.dumps(content), T0, T0])
    finally:
        con.close()
    return {"spec": spec, "content": content}


def counting(fn: Callable[[duckdb.DuckDBPyConnection], None], calls: list[str], name: str) -> Callable:
    def run(con: duckdb.DuckDBPyConnection) -> None:
        calls.append(name)
        fn(con)

    return run


def versions(path: Path) -> list[int]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [v for (v,) in con.execute("SELECT version FROM schema_version ORDER BY version").fetchall()]
    finally:
        con.close()


def test_schema_version_is_the_number_of_migrations() -> None:
    assert SCHEMA_VERSION == len(MIGRATIONS) == 6


def test_fresh_database_records_the_current_version(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(migrations, "MIGRATIONS", [counting(m, calls, m.__name__) for m in MIGRATIONS])
    connect(db_path).close()
    connect(db_path).close()
    assert calls == []  # a fresh database gets the current DDL, no migration
    assert versions(db_path) == [SCHEMA_VERSION]


def test_in_memory_ensure_schema_is_idempotent() -> None:
    con = duckdb.connect(":memory:")
    try:
        assert current_version(con) is None
        assert ensure_schema(con) == []
        assert ensure_schema(con) == []
        assert current_version(con) == SCHEMA_VERSION
        assert table_exists(con, "events") and table_exists(con, "schema_version")
    finally:
        con.close()


def test_version_0_database_migrates_in_place_on_open(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database made by the code before versions opens through the normal path, keeps every row,
    records the current version, and a second open runs no migration."""
    made = make_version_0(db_path)
    con = duckdb.connect(str(db_path), read_only=True)
    assert current_version(con) == 0
    con.close()

    calls: list[str] = []
    monkeypatch.setattr(migrations, "MIGRATIONS", [counting(m, calls, m.__name__) for m in MIGRATIONS])
    con = connect(db_path)
    try:
        assert calls == ["_v0_to_v1", "_v1_to_v2", "_v2_to_v3", "_v3_to_v4", "_v4_to_v5", "_v5_to_v6"]
        assert current_version(con) == SCHEMA_VERSION
        rec = get_experiment(con, made["spec"].key)
        assert rec is not None and rec.spec == made["spec"] and rec.status == "running"
        assert rec.started_at == T0
        assert [r.key for r in list_experiments(con)] == [made["spec"].key]
        keys = {k.key_id: k for k in list_keys(con)}
        assert set(keys) == {"0123456789ab", "ba9876543210"}
        assert keys["0123456789ab"].scope == "admin" and keys["0123456789ab"].revoked_at is None
        assert keys["ba9876543210"].revoked_at == T0
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 3
        assert sorted(str(r[0]) for r in con.execute("SELECT event_id FROM events").fetchall()) == EVENT_IDS
        assert con.execute("SELECT value FROM events WHERE type = 'dwell'").fetchone()[0] == 1234.5
        [row] = list_content(con, made["spec"].key)
        assert row.content == made["content"] and row.status == "approved"
        assert con.execute("SELECT count(*) FROM experiment_history").fetchone()[0] == 1
    finally:
        con.close()

    connect(db_path).close()  # the second open: already current
    assert calls == ["_v0_to_v1", "_v1_to_v2", "_v2_to_v3", "_v3_to_v4", "_v4_to_v5", "_v5_to_v6"]
    assert versions(db_path) == list(range(1, SCHEMA_VERSION + 1))  # one row per version reached
    connect(db_path, read_only=True).close()


def make_version_1(path: Path) -> dict:
    """A database as schema version 1 left it: version 0's tables (unchanged in 1) and its version row."""
    made = make_version_0(path)
    con = duckdb.connect(str(path))
    try:
        con.execute(migrations.VERSION_DDL)
        con.execute("INSERT INTO schema_version VALUES (1, ?)", [T0])
    finally:
        con.close()
    return made


def test_version_1_database_gains_the_events_source_on_open(db_path: Path) -> None:
    """Version 2 adds ``events.source``: old rows keep every value with source NULL, new rows append
    after them with theirs, and the analysis (``exposures: server``) still counts the old exposures."""
    made = make_version_1(db_path)
    con = duckdb.connect(str(db_path), read_only=True)
    assert current_version(con) == 1 and not column_exists(con, "events", "source")
    con.close()

    con = connect(db_path)
    try:
        assert current_version(con) == SCHEMA_VERSION == 6
        assert [r[0] for r in con.execute("DESCRIBE events").fetchall()] == list(TABLE_COLUMN_NAMES)
        assert con.execute("SELECT count(*), count(source) FROM events").fetchone() == (3, 0)
        assert con.execute("SELECT value FROM events WHERE type = 'dwell'").fetchone()[0] == 1234.5
        new = EventIn(event_id=str(uuid.uuid4()), experiment=made["spec"].key, variant="armor", user_id="u2",
                      type="exposure", ts=T0)
        con.execute("BEGIN")
        assert len(append_events(con, to_arrow([new], T0, source="import"))) == 1
        con.execute("COMMIT")
        assert con.execute("SELECT user_id, source FROM events WHERE source IS NOT NULL").fetchall() == [("u2", "import")]
        sums = load_sums(con, made["spec"].key, start=T0, end=T0 + timedelta(days=1), exposures="server",
                         variants=["control", "armor"])
        assert (sums.totals["control"].n, sums.totals["armor"].n, sums.client_only_visitors) == (1, 1, 0)
    finally:
        con.close()
    connect(db_path).close()
    assert versions(db_path) == [1, 2, 3, 4, 5, 6]


def test_version_2_database_loses_the_event_id_index_and_keeps_every_row(db_path: Path) -> None:
    """Version 3 drops the PRIMARY KEY on events.event_id (an in-memory index that grew with the log):
    the table is copied with every row and column, and the writer keeps ids unique from then on."""
    from armor_ab.event_schema import UNIQUE_BY_WRITER
    from armor_ab.store.writer import EventWriter

    make_version_1(db_path)
    connect_v2 = duckdb.connect(str(db_path))
    migrations._v1_to_v2(connect_v2)
    connect_v2.execute("INSERT INTO schema_version VALUES (2, ?)", [T0])
    before = connect_v2.execute(f"SELECT {V2_COLUMNS} FROM events ORDER BY event_id").fetchall()
    assert connect_v2.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'events' "
                              "AND constraint_type = 'PRIMARY KEY'").fetchone()[0] == 1
    connect_v2.close()

    con = connect(db_path)
    try:
        assert current_version(con) == SCHEMA_VERSION == 6
        assert con.execute(f"SELECT {V2_COLUMNS} FROM events ORDER BY event_id").fetchall() == before
        assert con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'events' "
                           "AND constraint_type = 'PRIMARY KEY'").fetchone()[0] == 0
        assert con.execute("SELECT comment FROM duckdb_tables() WHERE table_name = 'events'").fetchone()[0] \
            == UNIQUE_BY_WRITER
        # A retry of a stored event is still left out: the writer's window was filled from the table.
        old = EventIn(event_id=EVENT_IDS[0], experiment="x", variant="armor", user_id="u1", type="exposure", ts=T0)
        writer = EventWriter(con, dedup_window=10_000).start()
        result = writer.submit(to_arrow([old], T0, source="import")).result(10)
        writer.close()
        assert (result.accepted, result.duplicates) == (0, 1)
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == len(before)
    finally:
        con.close()


def test_version_3_database_gains_the_catalog_tables_and_keeps_its_pages(db_path: Path) -> None:
    """Version 4 adds the imported catalog (``catalog_items``, ``catalog_imports``) and the ``stale``
    content status: the tables appear empty, stored pages keep their status and are still served."""
    from armor_ab.catalog.items import CatalogItem
    from armor_ab.store.catalog import import_items, list_items
    from armor_ab.store.content import approved

    made = make_version_1(db_path)
    con = duckdb.connect(str(db_path))
    migrations._v1_to_v2(con)
    migrations._v2_to_v3(con)
    con.execute("INSERT INTO schema_version VALUES (2, ?), (3, ?)", [T0, T0])
    assert not table_exists(con, "catalog_items")
    con.close()

    con = connect(db_path)
    try:
        assert current_version(con) == SCHEMA_VERSION == 6
        assert table_exists(con, "catalog_items") and table_exists(con, "catalog_imports")
        assert list_items(con) == []
        key = (made["spec"].key, "armor", "pumps-01")
        assert list(approved(con)) == [key]
        # The old page's item arrives, then changes: the page goes stale and is no longer served.
        item = CatalogItem(id="pumps-01", name="Pump P-01", category="pumps", description="A pump.")
        import_items(con, [item], file="c.csv", file_sha256="0" * 64)
        changed = import_items(con, [CatalogItem(**{**item.to_json(), "description": "A new pump."})],
                               file="c.csv", file_sha256="1" * 64)
        assert (changed.changed, changed.stale_pages) == (["pumps-01"], 1)
        assert approved(con) == {}
    finally:
        con.close()
    assert versions(db_path) == [1, 2, 3, 4, 5, 6]


def test_version_4_database_gains_the_guardrail_columns_and_keeps_its_pages(db_path: Path) -> None:
    """Version 5 adds each page's checks, verdict and reviewer (``content.checks``, ``verdict``,
    ``reviewed_by``, ``reviewed_key``): stored pages keep every value with those NULL (never checked),
    and are served as before; ``armor-ab content check`` fills them in."""
    from armor_ab.store.catalog import CATALOG_DDL
    from armor_ab.store.content import approved, set_checks, statuses

    made = make_version_1(db_path)
    con = duckdb.connect(str(db_path))
    migrations._v1_to_v2(con)
    migrations._v2_to_v3(con)
    con.execute(CATALOG_DDL)
    con.execute("INSERT INTO schema_version VALUES (2, ?), (3, ?), (4, ?)", [T0, T0, T0])
    assert current_version(con) == 4 and not column_exists(con, "content", "checks")
    con.close()

    con = connect(db_path)
    try:
        assert current_version(con) == SCHEMA_VERSION == 6
        for column in ("checks", "verdict", "reviewed_by", "reviewed_key"):
            assert column_exists(con, "content", column)
        key = (made["spec"].key, "armor", "pumps-01")
        [row] = list_content(con, made["spec"].key)
        assert (row.item_id, row.status, row.digest, row.content, row.reviewed_at) == (
            "pumps-01", "approved", "abc", made["content"], T0)
        assert (row.checks, row.verdict, row.reviewed_by, row.reviewed_key) == (None, None, None, None)
        assert list(approved(con)) == [key] and statuses(con)[key] == "approved"
        # Checked now, failing a blocking check: still approved, no longer served.
        checks = {"verdict": "fail", "checked_at": "2026-11-02T09:30:00+00:00", "policy_hash": "0" * 64,
                  "results": [{"check": "terms", "status": "fail", "action": "block", "reason": "r", "evidence": []}]}
        assert set_checks(con, made["spec"].key, "armor", "pumps-01", checks, "fail")
        assert approved(con) == {} and statuses(con)[key] == "blocked"
    finally:
        con.close()
    assert versions(db_path) == [1, 2, 3, 4, 5, 6]


def make_version_5(path: Path) -> dict:
    """A database as schema version 5 left it: version 1's, migrated by the migrations of 2 to 5 as released."""
    from armor_ab.store.catalog import CATALOG_DDL

    made = make_version_1(path)
    con = duckdb.connect(str(path))
    try:
        migrations._v1_to_v2(con)
        migrations._v2_to_v3(con)
        con.execute(CATALOG_DDL)
        migrations._v4_to_v5(con)
        con.execute("INSERT INTO schema_version VALUES (2, ?), (3, ?), (4, ?), (5, ?)", [T0, T0, T0, T0])
    finally:
        con.close()
    return made


def test_version_5_database_numbers_its_events_for_the_lake(db_path: Path) -> None:
    """Version 6 adds ``events.commit_seq`` (the event lake's export key): every stored row is numbered 0,
    the sequence starts above it, and rows written after take numbers from it, one per transaction."""
    from armor_ab.event_schema import COMMIT_SEQUENCE

    made = make_version_5(db_path)
    con = duckdb.connect(str(db_path))
    assert current_version(con) == 5 and not column_exists(con, "events", "commit_seq")
    before = con.execute(f"SELECT {V2_COLUMNS} FROM events ORDER BY event_id").fetchall()
    con.close()

    con = connect(db_path)
    try:
        assert current_version(con) == SCHEMA_VERSION == 6
        assert [r[0] for r in con.execute("DESCRIBE events").fetchall()] == list(TABLE_COLUMN_NAMES)
        assert con.execute(f"SELECT {V2_COLUMNS} FROM events ORDER BY event_id").fetchall() == before
        assert con.execute("SELECT DISTINCT commit_seq FROM events").fetchall() == [(0,)]
        new = [EventIn(event_id=str(uuid.uuid4()), experiment=made["spec"].key, variant="armor", user_id=f"n{i}",
                       type="exposure", ts=T0) for i in range(3)]
        con.execute("BEGIN")
        append_events(con, to_arrow(new[:2], T0, source="import"))
        con.execute("COMMIT")
        con.execute("BEGIN")
        append_events(con, to_arrow(new[2:], T0, source="import"))
        con.execute("COMMIT")
        # A plain SQL insert (no commit_seq given) takes the column's DEFAULT: the next number.
        con.execute("INSERT INTO events (event_id, experiment, type, received_at) VALUES (?, 'e', 'exposure', ?)",
                    [str(uuid.uuid4()), T0])
        seqs = con.execute("SELECT user_id, commit_seq FROM events WHERE commit_seq > 0 ORDER BY commit_seq, user_id")
        assert seqs.fetchall() == [("n0", 1), ("n1", 1), ("n2", 2), (None, 3)]
        assert con.execute("SELECT column_default FROM duckdb_columns() WHERE table_name = 'events' "
                           "AND column_name = 'commit_seq'").fetchall() == [(f"nextval('{COMMIT_SEQUENCE}')",)]
    finally:
        con.close()
    connect(db_path).close()  # the second open: already current, nothing renumbered
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FILTER (WHERE commit_seq = 0), max(commit_seq) FROM events").fetchall() \
            == [(3, 3)]
    finally:
        con.close()
    assert versions(db_path) == [1, 2, 3, 4, 5, 6]


def test_a_new_migration_adds_a_column_once_and_only_once(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """How the next issues add a column: append a migration N -> N + 1 that calls ``add_column``."""
    con = connect(db_path)  # a database of today's version, with rows in a scratch table and events
    con.execute("CREATE TABLE scratch (id INTEGER PRIMARY KEY)")
    con.execute("INSERT INTO scratch VALUES (1), (2)")
    con.execute("INSERT INTO events (event_id, experiment, type, received_at) VALUES (?, 'e', 'exposure', ?)",
                [EVENT_IDS[0], T0])
    con.close()

    calls: list[str] = []

    def v1_to_v2(con: duckdb.DuckDBPyConnection) -> None:
        add_column(con, "scratch", "note", "VARCHAR", default="'none'")
        add_column(con, "events", "test_extra", "VARCHAR")  # a table with a primary key and rows
        add_column(con, "not_there_yet", "x", "INTEGER")  # a table the DDL creates later: skipped

    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, counting(v1_to_v2, calls, "v1_to_v2")])
    con = connect(db_path)
    try:
        assert calls == ["v1_to_v2"]
        assert current_version(con) == SCHEMA_VERSION + 1
        assert con.execute("SELECT id, note FROM scratch ORDER BY id").fetchall() == [(1, "none"), (2, "none")]
        assert column_exists(con, "events", "test_extra")
        assert con.execute("SELECT count(*), count(test_extra) FROM events").fetchone() == (1, 0)
        v1_to_v2(con)  # idempotent: running it again changes nothing and does not fail
    finally:
        con.close()
    connect(db_path).close()
    connect(db_path).close()
    assert calls == ["v1_to_v2"]
    assert versions(db_path) == [SCHEMA_VERSION, SCHEMA_VERSION + 1]

    # The code without that migration now refuses the database instead of downgrading it.
    monkeypatch.setattr(migrations, "MIGRATIONS", list(MIGRATIONS))
    with pytest.raises(SchemaVersionError):
        connect(db_path)


def test_a_failing_migration_leaves_the_database_as_it_was(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_version_0(db_path)

    def broken(con: duckdb.DuckDBPyConnection) -> None:
        add_column(con, "api_keys", "half_done", "INTEGER")
        raise RuntimeError("migration failed halfway")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, broken])
    with pytest.raises(RuntimeError, match="halfway"):
        connect(db_path)
    con = duckdb.connect(str(db_path), read_only=True)  # the lock was released, nothing was kept
    try:
        assert current_version(con) == 0
        assert not table_exists(con, "schema_version")
        assert not column_exists(con, "api_keys", "half_done")
    finally:
        con.close()
    monkeypatch.setattr(migrations, "MIGRATIONS", list(MIGRATIONS))
    connect(db_path).close()
    assert versions(db_path) == list(range(1, SCHEMA_VERSION + 1))


def test_a_newer_database_is_refused_naming_both_versions(db_path: Path) -> None:
    connect(db_path).close()
    con = duckdb.connect(str(db_path))
    con.execute("INSERT INTO schema_version VALUES (?, ?)", [SCHEMA_VERSION + 6, T0])
    con.close()
    for read_only in (False, True):
        with pytest.raises(SchemaVersionError) as info:
            connect(db_path, read_only=read_only)
        message = str(info.value)
        assert f"schema version {SCHEMA_VERSION + 6}" in message and f"version {SCHEMA_VERSION}" in message
        assert str(db_path) in message and "upgrade" in message
        assert (info.value.found, info.value.supported) == (SCHEMA_VERSION + 6, SCHEMA_VERSION)
    assert versions(db_path) == [SCHEMA_VERSION, SCHEMA_VERSION + 6]  # untouched, not downgraded
    copy = pickle.loads(pickle.dumps(info.value))  # it crosses from the database process to the API
    assert type(copy) is SchemaVersionError and str(copy) == message
    duckdb.connect(str(db_path)).close()  # the refused opens released the file


def test_the_database_process_refuses_a_newer_database(db_path: Path) -> None:
    """The API's database process opens through ``connect``; its error crosses to the API as is."""
    from armor_ab.store.process import StoreClient

    connect(db_path).close()
    con = duckdb.connect(str(db_path))
    con.execute("INSERT INTO schema_version VALUES (?, ?)", [SCHEMA_VERSION + 1, T0])
    con.close()
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}"):
        StoreClient(db_path)
