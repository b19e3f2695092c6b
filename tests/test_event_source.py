"""The operator's own exposure and conversion tables, mapped in a warehouse file, give the same report as the
event log they were made from: on DuckDB, chDB and Spark local.

The tables are cut out of the warehouse tests' event log (tests/helpers/warehouse.py: every data-quality
case) the way a site's own tracking would hold them: an exposure log with other column names and a naive
UTC timestamp, and one table per conversion type with no experiment column (page views, dwell in seconds,
inquiries). Written to Parquet, each engine reads them through the mapping's ``sql:`` form in its own SQL.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
import yaml

from armor_ab.reporting.report import experiment_report
from armor_ab.stats.sql import Relation, load_sums
from armor_ab.store.db import connect
from armor_ab.store.event_source import (
    EventMapping,
    WarehouseFileError,
    load_warehouse_file,
    render,
)
from armor_ab.store.warehouse import open_warehouse_setting, redact
from tests.helpers.events import END
from tests.helpers.warehouse import ALL_RULES, EXPERIMENT, Lake, build_lake, figures, max_rel_diff, record

TOLERANCE = 1e-9
NOW = END + timedelta(days=1)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return build_lake(tmp_path_factory.mktemp("mapped"), visitors=4_000)


@pytest.fixture(scope="module")
def own_tables(lake: Lake) -> Path:
    """The operator's tables as Parquet files, made from the store's events."""
    root = lake.store.parent / "own"
    root.mkdir()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"ATTACH '{lake.store}' AS store (READ_ONLY)")
    mine = f"experiment = '{EXPERIMENT}'"
    tables = {
        # every experiment's exposures: the mapping's experiment column picks ours
        "exposure_log": """SELECT user_id AS anon, experiment AS exp_key, variant AS arm, CAST(ts AS TIMESTAMP) AS seen_at,
                                  item_id AS sku, CAST(event_id AS VARCHAR) AS msg, source AS origin,
                                  CAST(properties AS VARCHAR) AS context
                           FROM store.events WHERE type = 'exposure'""",
        "pages": f"""SELECT user_id AS anon, ts AS at_ts, item_id AS sku, CAST(event_id AS VARCHAR) AS msg
                    FROM store.events WHERE type = 'page_view' AND {mine}""",
        "timing": f"""SELECT user_id AS anon, ts AS at_ts, value / 1000 AS seconds, CAST(event_id AS VARCHAR) AS msg
                     FROM store.events WHERE type = 'dwell' AND {mine}""",
        "leads": f"""SELECT user_id AS anon, ts AS at_ts, value AS amount, CAST(event_id AS VARCHAR) AS msg
                    FROM store.events WHERE type = 'inquiry' AND {mine}""",
    }
    for name, select in tables.items():
        con.execute(f"COPY ({select}) TO '{root / name}.parquet' (FORMAT parquet)")
    con.close()
    return root


READ = {  # each engine's way of reading a Parquet file in a SELECT
    "duckdb": "SELECT * FROM read_parquet('{path}')",
    "clickhouse": "SELECT * FROM file('{path}', Parquet)",
    "spark": "SELECT * FROM parquet.`{path}`",
}
URLS = {"duckdb": "duckdb://", "clickhouse": "chdb:", "spark": "spark://local[2]?spark.sql.shuffle.partitions=3"}


def warehouse_file(root: Path, dialect: str, tmp: Path) -> Path:
    def src(name: str) -> str:
        return READ[dialect].format(path=root / f"{name}.parquet")

    doc = {
        "url": URLS[dialect],
        "exposures": {
            "sql": src("exposure_log"),
            "columns": {"user_id": "anon", "experiment": "exp_key", "variant": "arm", "ts": "seen_at",
                        "item_id": "sku", "event_id": "msg", "source": "origin"},
            "properties": "context",
        },
        "conversions": [
            {"type": "page_view", "sql": src("pages"),
             "columns": {"user_id": "anon", "ts": "at_ts", "item_id": "sku", "event_id": "msg"}},
            {"type": "dwell", "sql": src("timing"),
             "columns": {"user_id": "anon", "ts": "at_ts", "value": "seconds * 1000", "event_id": "msg"}},
            {"type": "inquiry", "sql": src("leads"),
             "columns": {"user_id": "anon", "ts": "at_ts", "value": "amount", "event_id": "msg"}},
        ],
    }
    path = tmp / f"warehouse-{dialect}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def want(lake: Lake) -> dict:
    con = connect(lake.store, read_only=True)
    try:
        rec = record(con)
        return {"sums": figures(load_sums(con, EXPERIMENT, **ALL_RULES)),
                "report": figures(experiment_report(con, rec, now=NOW)), "record": rec}
    finally:
        con.close()


def check_engine(dialect: str, lake: Lake, own_tables: Path, want: dict, tmp: Path) -> None:
    with open_warehouse_setting(str(warehouse_file(own_tables, dialect, tmp))) as wh:
        assert wh.dialect == dialect and isinstance(wh.table, Relation)
        assert not wh.table.unique  # every part names an event id: the query deduplicates
        if dialect == "spark":  # Spark settings ride on the URL
            assert wh.spark.conf.get("spark.sql.shuffle.partitions") == "3"
        got = figures(load_sums(wh, EXPERIMENT, **ALL_RULES))
        diff, where = max_rel_diff(want["sums"], got)
        assert diff <= TOLERANCE, (dialect, where)
        report = figures(experiment_report(wh, want["record"], now=NOW))
        report.pop("/data/deduplicated_in_sql")
        reference = {k: v for k, v in want["report"].items() if k != "/data/deduplicated_in_sql"}
        diff, where = max_rel_diff(reference, report)
        assert diff <= TOLERANCE, (dialect, where)


def test_mapped_tables_equal_the_event_log_on_duckdb(lake, own_tables, want, tmp_path) -> None:
    check_engine("duckdb", lake, own_tables, want, tmp_path)


def test_mapped_tables_equal_the_event_log_on_chdb(lake, own_tables, want, tmp_path) -> None:
    check_engine("clickhouse", lake, own_tables, want, tmp_path)


@pytest.mark.slow
def test_mapped_tables_equal_the_event_log_on_spark(lake, own_tables, want, tmp_path) -> None:
    check_engine("spark", lake, own_tables, want, tmp_path)


def test_renamed_events_table_and_segment_columns(tmp_path: Path) -> None:
    """The documented schema under other names, and segments built from columns into each engine's JSON."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("""CREATE TABLE ab_events AS SELECT * FROM (VALUES
        ('e1', 'x', 'a', 'u1', 'exposure', NULL, TIMESTAMPTZ '2025-01-02 10:00:00+00', 'mobile', 'pumps'),
        ('e2', 'x', 'a', 'u1', 'page_view', NULL, TIMESTAMPTZ '2025-01-02 10:01:00+00', NULL, NULL),
        ('e3', 'x', 'b', 'u2', 'exposure', NULL, TIMESTAMPTZ '2025-01-02 11:00:00+00', 'desktop', NULL),
        ('e4', 'x', 'b', 'u2', 'inquiry', 12.5, TIMESTAMPTZ '2025-01-03 09:00:00+00', NULL, NULL),
        ('e4', 'x', 'b', 'u2', 'inquiry', 12.5, TIMESTAMPTZ '2025-01-03 09:00:00+00', NULL, NULL))
        t(id, exp, arm, visitor, kind, amount, happened, device, category)""")
    con.close()
    mapping = {"events": {"table": "ab_events", "columns": {
        "event_id": "id", "experiment": "exp", "variant": "arm", "user_id": "visitor", "type": "kind",
        "value": "amount", "ts": "happened", "item_id": None, "source": None},
        "properties": {"device": "device", "category": "category"}}}
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump({"url": f"duckdb:///{tmp_path / 'w.duckdb'}", **mapping}))
    with open_warehouse_setting(str(path)) as wh:
        sums = load_sums(wh, "x", start=None, end=END, segments=["device"], caps={})
    assert {v: s.n for v, s in sums.totals.items()} == {"a": 1, "b": 1}
    assert {v: {k: s.n for k, s in by.items()} for v, by in sums.segments["device"].items()} == \
        {"mobile": {"a": 1}, "desktop": {"b": 1}}
    assert (sums.totals["b"]["s_inq"], sums.totals["b"]["s_inqv"]) == (1, 12.5)  # the repeated event id counted once

    # Segment columns: each dialect's JSON object, read back by its own JSON functions.
    m = EventMapping.model_validate({"exposures": {"table": "t", "columns": {
        "user_id": "u", "experiment": "e", "variant": "v", "ts": "ts"},
        "properties": {"device": "dev", "category": "cat"}}})
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT * FROM (VALUES ('u1', 'x', 'a', TIMESTAMPTZ '2025-01-02 10:00:00+00', "
                "'mobile', 'pumps'), ('u2', 'x', 'a', TIMESTAMPTZ '2025-01-02 10:00:00+00', NULL, 'it''s')) "
                "s(u, e, v, ts, dev, cat)")
    rel = render(m, "duckdb")
    rows = con.execute(f"SELECT user_id, json_extract_string(properties, '$.device'), "
                       f"json_extract_string(properties, '$.category') FROM {rel} ORDER BY 1").fetchall()
    assert rows == [("u1", "mobile", "pumps"), ("u2", None, "it's")]


def test_chdb_and_spark_json_objects(tmp_path: Path) -> None:
    """chDB's and Spark's renderings of segment columns, read back with their json_string."""
    from armor_ab.stats.dialects import dialect
    from armor_ab.store.warehouse import ChdbWarehouse

    m = EventMapping.model_validate({"exposures": {
        "sql": "SELECT 'u1' AS u, 'x' AS e, 'a' AS v, now() AS ts, 'mobile' AS dev, CAST(NULL AS Nullable(String)) AS cat",
        "columns": {"user_id": "u", "experiment": "e", "variant": "v", "ts": "ts"},
        "properties": {"device": "dev", "category": "cat"}}})
    d = dialect("clickhouse")
    wh = ChdbWarehouse()
    try:
        rel = render(m, d)
        _, rows = wh.execute(f"SELECT user_id, {d.json_string('properties', 'device')} AS dev, "
                             f"{d.json_string('properties', 'category')} AS cat FROM {rel}", None)
    finally:
        wh.close()
    assert rows == [("u1", "mobile", None)]


@pytest.mark.parametrize("doc, field, message", [
    ({"url": "chdb:", "exposures": {"table": "t", "columns": {"user_id": "u"}}}, "exposures.columns",
     "columns.experiment is required"),
    ({"url": "chdb:", "conversions": [{"type": "inquiry", "table": "t", "columns": {"user_id": "u", "ts": "t"}}]},
     None, "conversions need exposures"),
    ({"url": "chdb:", "events": {"table": "t; DROP TABLE x"}}, "events.table", "not a plain"),
    ({"url": "chdb:", "events": {"sql": "SELECT 1; DROP TABLE x"}}, "events.sql", "several statements"),
    ({"url": "chdb:", "events": {"table": "t", "columns": {"colour": "c"}}}, "events.columns", "unknown column 'colour'"),
    ({"url": "chdb:", "events": {"table": "t", "columns": {"ts": None}}}, "events.columns", "cannot be null"),
    ({"url": "chdb:", "exposures": {"table": "t", "columns": {
        "user_id": "u", "experiment": "e", "variant": "v", "ts": "$start"}}}, "exposures.columns", "no $parameters"),
    ({"url": "chdb:", "exposures": {"table": "t", "columns": {
        "user_id": "u", "experiment": "e", "variant": "v", "ts": "t"}},
      "conversions": [{"type": "dwell", "table": "d", "columns": {"user_id": "u", "ts": "t"}}]},
     "conversions.0", "needs columns.value"),
    ({"url": "chdb:", "colour": 1}, "colour", "Extra inputs"),
])
def test_bad_warehouse_files_name_the_field(tmp_path: Path, doc: dict, field: str | None, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(WarehouseFileError) as err:
        load_warehouse_file(path)
    assert err.value.path == str(path) and message in err.value.message, str(err.value)
    assert err.value.field == field or (field is not None and (err.value.field or "").startswith(field)), str(err.value)
    assert str(path) in str(err.value)


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(WarehouseFileError, match="cannot read it"):
        load_warehouse_file(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("url: [\n")
    with pytest.raises(WarehouseFileError, match="not valid YAML at line"):
        load_warehouse_file(tmp_path / "broken.yaml")


def test_urls_are_redacted() -> None:
    assert redact("clickhouse://analyst:s3cret@ch.internal:8443/db?secure=1") == \
        "clickhouse://analyst:***@ch.internal:8443/db?secure=1"
    assert redact("spark://local[2]") == "spark://local[2]"
    assert redact("chdb:") == "chdb:"


def test_a_relation_belongs_to_its_dialect() -> None:
    m = EventMapping.model_validate({"events": {"table": "t"}})
    with pytest.raises(ValueError, match="rendered for spark, not duckdb"):
        load_sums(duckdb.connect(), "x", start=None, end=END, source=render(m, "spark"))
    with pytest.raises(ValueError, match="only the parameter"):
        Relation("SELECT $start")


MAPPING = {
    "exposures": {"table": "site.experiment_viewed", "where": "path LIKE '/products/%'",
                  "columns": {"user_id": "anonymous_id", "experiment": "experiment_id", "variant": "variation_id",
                              "ts": "viewed_at", "event_id": "message_id"},
                  "properties": {"device": "device_type", "category": "product_category"}},
    "conversions": [
        {"type": "dwell", "table": "site.timing", "columns": {"user_id": "anonymous_id", "ts": "at_ts",
                                                               "value": "seconds * 1000", "event_id": "message_id"}},
        {"type": "inquiry", "sql": "SELECT anonymous_id, at_ts, revenue FROM site.forms WHERE revenue >= 0",
         "columns": {"user_id": "anonymous_id", "ts": "at_ts", "value": "revenue"}},
    ],
}


@pytest.mark.parametrize("name", ["duckdb", "clickhouse", "spark", "trino", "bigquery", "snowflake"])
def test_a_mapping_renders_in_every_dialect(name: str) -> None:
    """The mapped SELECT, bound in each dialect's parameter syntax, parses in that dialect (sqlglot); the
    untested dialects (Trino, BigQuery, Snowflake) are checked this far and no further."""
    import sqlglot

    from armor_ab.stats.dialects import dialect

    d = dialect(name)
    rel = render(EventMapping.model_validate(MAPPING), d)
    assert rel.dialect == name and rel.unique  # the inquiry table names no event id: nothing to deduplicate by
    text, _ = d.bind(f"SELECT user_id, ts, properties FROM {rel} WHERE experiment = $exp", {"exp": "x"})
    tree = sqlglot.parse_one(text, read=d.sqlglot)
    assert len(list(tree.find_all(sqlglot.exp.Union))) >= 1
    assert text.count("UNION ALL") == 2 and "site.experiment_viewed" in text and "seconds * 1000" in text
