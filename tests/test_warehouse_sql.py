"""The statistics SQL rendered per dialect (armor_ab.stats.dialects): golden files, sqlglot parses, parameters.

The golden files (``tests/golden/sql/<dialect>.sql``) hold both queries (the statistics and the served
pages) rendered for one representative set of flags: every optional part switched on. Regenerate them
after an intended change with::

    python -m tests.test_warehouse_sql --write

DuckDB, ClickHouse (chDB) and Spark run in the tests (tests/test_stats_sql.py, tests/test_warehouse_engines.py);
Trino, BigQuery and Snowflake are checked here only: rendered, compared with the golden file, parsed by sqlglot
in their own dialect. None of the three has run against a live engine.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import duckdb
import pytest
import sqlglot

from armor_ab.experiments.models import Capping
from armor_ab.stats.dialects import DIALECTS, Cte, DuckDB, Query, dialect, run_query, used_parameters
from armor_ab.stats.pages import build_pages_query, load_served_pages
from armor_ab.stats.sql import DuckDBRunner, build_query, load_sums
from armor_ab.store.schema import ensure_schema
from armor_ab.store.warehouse import parse_warehouse_url
from tests.helpers.events import END, PRE_DAYS, START, generate_events, insert
from tests.helpers.warehouse import figures, max_rel_diff

GOLDEN = Path(__file__).parent / "golden" / "sql"
SEPARATOR = "-- ==== served pages query (armor_ab.stats.pages.build_pages_query) ===="
# Every optional part on: dedup, the event-level dwell cap, each kind of per-visitor cap, the configured
# variants, both bot rules, the conversion window, server-vouched exposures, two segments.
FLAGS = dict(
    dedup=True, event_cap=True, caps={"views": "absolute", "dwell": "percentile", "inq": "percentile", "inqv": None},
    variants=True, bot_user_agents=True, rate_limit=True, conversion_window=True, exposures="server",
)
SEGMENTS = ["device", "plan"]
LIVE = {"duckdb", "clickhouse", "spark"}


def header(name: str) -> str:
    d = dialect(name)
    lines = [f"-- Golden SQL: dialect {name!r} (armor_ab.stats.dialects.{type(d).__name__}); sqlglot reads it as "
             f"{d.sqlglot!r}.",
             f"-- Flags: segments {SEGMENTS}, {', '.join(f'{k}={v}' for k, v in FLAGS.items())}.",
             "-- Regenerate: python -m tests.test_warehouse_sql --write"]
    if name in LIVE:
        lines.append("-- Runs in the tests (DuckDB: tests/test_stats_sql.py; chDB and Spark local: "
                     "tests/test_warehouse_engines.py).")
    else:
        lines.append(f"-- UNTESTED against a live {name} engine: rendered and parsed by sqlglot only (docs/scale.md).")
    if d.staged:
        lines.append("-- This is the one-statement form; armor_ab.stats.dialects.run_query stores each shared or "
                     "materialized step first (temporary tables / local checkpoints) and reads it back by name.")
    return "\n".join(lines) + "\n"


def render(name: str) -> str:
    stats = build_query(SEGMENTS, dialect=name, **FLAGS).strip()
    pages = build_pages_query(dialect=name, exposures="server").strip()
    return f"{header(name)}\n{stats}\n;\n\n{SEPARATOR}\n{pages}\n;\n"


def statements(text: str) -> list[str]:
    return [part.strip().removesuffix(";").strip() for part in text.split(SEPARATOR)]


def write() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in DIALECTS:
        (GOLDEN / f"{name}.sql").write_text(render(name))


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_golden_sql_is_current(name: str) -> None:
    path = GOLDEN / f"{name}.sql"
    assert path.exists(), f"{path} missing: python -m tests.test_warehouse_sql --write"
    assert path.read_text() == render(name), f"{path} is stale: python -m tests.test_warehouse_sql --write"


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_golden_sql_parses_in_its_own_dialect(name: str) -> None:
    text = (GOLDEN / f"{name}.sql").read_text()
    if name not in LIVE:
        assert f"UNTESTED against a live {name} engine" in text
    parts = statements(text)
    assert len(parts) == 2
    for sql in parts:
        tree = sqlglot.parse_one(sql, read=dialect(name).sqlglot)
        assert tree.find(sqlglot.exp.Select) is not None


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_no_global_row_number_and_the_key_is_a_hash(name: str) -> None:
    sql = build_query(SEGMENTS, dialect=name, **FLAGS)
    assert not re.search(r"row_number\(\)\s*OVER\s*\(\s*\)", sql, re.I)
    # the only row_number without PARTITION BY numbers the handful of (variant, segments) cells, in order
    assert len(re.findall(r"row_number\(\)\s*OVER\s*\(\s*ORDER BY", sql, re.I)) == 1
    assert dialect(name).hash64("fe0.user_id") in sql


PLACEHOLDERS = {  # how each dialect writes the experiment key, an epoch-µs bound and the variant list
    "duckdb": ("$exp::VARCHAR", "$lo::BIGINT", "$variants::VARCHAR[]"),
    "clickhouse": ("{exp:String}", "{lo:Int64}", "{variants:Array(String)}"),
    "spark": ("CAST(:exp AS STRING)", "CAST(:lo AS BIGINT)", "CAST(:variants AS ARRAY<STRING>)"),
    "trino": ("CAST(? AS VARCHAR)", "CAST(? AS BIGINT)", "CAST(? AS ARRAY(VARCHAR))"),
    "bigquery": ("@exp", "@lo", "@variants"),
    "snowflake": ("CAST(? AS VARCHAR)", "CAST(? AS BIGINT)", "PARSE_JSON(?)"),
}


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_parameters_are_typed_in_each_dialects_syntax(name: str) -> None:
    sql = build_query(SEGMENTS, dialect=name, **FLAGS)
    for placeholder in PLACEHOLDERS[name]:
        assert placeholder in sql, placeholder
    code = re.sub(r"'(?:[^'\\]|''|\\.)*'", "", sql)  # JSON paths, in literals, start with $ too
    if name == "duckdb":  # DuckDB's own $name syntax, each one typed
        assert re.findall(r"\$\w+", code) and all(re.match(r"\$\w+::", code[m.start():])
                                                   for m in re.finditer(r"\$\w+", code))
    else:
        assert "$" not in code  # every marker rendered


def test_bind_gives_each_driver_its_arguments() -> None:
    text = "SELECT $exp AS e, '$.x' AS path, $lo + $lo AS lo2, $variants AS v, $cap_views AS c -- $not_a_param"
    assert used_parameters(text) == ["exp", "lo", "lo", "variants", "cap_views"]
    values = {"exp": "x", "lo": 10, "variants": ("a", "b"), "cap_views": 1}
    sql, args = dialect("duckdb").bind(text, values)
    assert args == {"exp": "x", "lo": 10, "variants": ["a", "b"], "cap_views": 1.0}
    assert isinstance(args["cap_views"], float) and "'$.x'" in sql
    sql, args = dialect("trino").bind(text, values)
    assert sql.count("?") == 5 and args == ["x", 10, 10, ["a", "b"], 1.0]
    sql, args = dialect("snowflake").bind(text, values)
    assert args[3] == '["a", "b"]'
    sql, args = dialect("bigquery").bind(text, values)
    assert ("variants", "ARRAY<STRING>", ["a", "b"]) in args and ("lo", "INT64", 10) in args
    sql, args = dialect("clickhouse").bind(text, values)
    assert "{lo:Int64} + {lo:Int64}" in sql and sql.rstrip().endswith("join_use_nulls = 1")
    with pytest.raises(ValueError):
        dialect("duckdb").bind("SELECT $exp", {})
    with pytest.raises(ValueError):
        dialect("duckdb").bind("SELECT $undeclared", {"undeclared": 1})


def test_names_and_keys_are_checked() -> None:
    for bad in ("events; DROP TABLE events", "a.b.c.d", "1events", ""):
        with pytest.raises(ValueError):
            build_query([], dedup=False, source=bad)
    assert "FROM lake.main.events " in build_query([], dedup=False, source="lake.main.events")
    with pytest.raises(ValueError):  # Spark's JSON paths cannot hold a quote
        build_query(["it's"], dedup=False, dialect="spark")
    assert "'it\\'s'" in build_query(["it's"], dedup=False, dialect="clickhouse")
    with pytest.raises(ValueError):
        dialect("oracle")


class StagedDuckDB(DuckDB):
    """DuckDB driven the way Spark and ClickHouse are: every shared step stored first."""

    name = "duckdb-staged"
    staged = True

    def create_temp(self, name: str, select: str) -> str:
        return f"CREATE TEMP TABLE {name} AS\n{select}"

    def drop_temp(self, name: str) -> list[str]:
        return [f"DROP TABLE IF EXISTS {name}"]


def test_staged_execution_equals_one_statement(monkeypatch) -> None:
    con = duckdb.connect()
    ensure_schema(con)
    insert(con, generate_events(seed=5, visitors=300, dirty=True))
    kw = dict(start=START, end=END, pre_days=PRE_DAYS, segments=("device", "plan"), variants=("control", "treatment"),
              caps={"views": Capping(type="absolute", value=6.0), "dwell": Capping(value=0.9)},
              max_views_per_day=30, conversion_window_days=3, cap_percentile=0.99)
    plain = load_sums(con, "exp", **kw)
    pages = load_served_pages(con, "exp", ["treatment"], start=START, end=END)
    import armor_ab.stats.pages as pages_mod
    import armor_ab.stats.sql as sql_mod

    staged = StagedDuckDB()
    monkeypatch.setattr(sql_mod, "get_dialect", lambda name: staged)
    monkeypatch.setattr(pages_mod, "get_dialect", lambda name: staged)
    executed: list[str] = []
    runner = DuckDBRunner(con)
    original = runner.execute
    runner.execute = lambda sql, params: executed.append(sql) or original(sql, params)  # type: ignore[method-assign]
    worst, where = max_rel_diff(figures(plain), figures(load_sums(runner, "exp", **kw)))
    assert worst <= 1e-12, where  # the same sums, added in another order
    assert load_served_pages(runner, "exp", ["treatment"], start=START, end=END) == pages
    created = [s for s in executed if s.startswith("CREATE TEMP TABLE")]
    assert {re.match(r"CREATE TEMP TABLE armor_ab_\w{12}_(\w+)", s).group(1) for s in created} >= {
        "src", "fe0", "cells", "fe", "j", "vd", "cum", "caps", "fine"}
    assert sum(s.startswith("DROP TABLE") for s in executed) == len(created)  # and dropped again
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone()[0] == 0


def test_a_failing_step_still_drops_what_was_stored() -> None:
    con = duckdb.connect()
    runner = DuckDBRunner(con)
    q = Query([Cte("a", "    SELECT 1 AS x", shared=True), Cte("b", "    SELECT x FROM a", shared=True)],
              "SELECT no_such_column FROM b")
    with pytest.raises(duckdb.Error):
        run_query(runner, StagedDuckDB(), q, {})
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone()[0] == 0


class CollidingDuckDB(DuckDB):
    """Every visitor gets one key under the first ``bad`` salts: a 64-bit collision, forced."""

    def __init__(self, bad: int) -> None:
        self.bad = bad

    def hash64(self, expr: str, salt: int = 0) -> str:
        return "42::UBIGINT" if salt < self.bad else super().hash64(expr, salt)


def test_colliding_visitor_keys_are_caught_and_the_query_runs_again(monkeypatch) -> None:
    import armor_ab.stats.sql as sql_mod

    con = duckdb.connect()
    ensure_schema(con)
    insert(con, generate_events(seed=6, visitors=200))
    kw = dict(start=START, end=END, pre_days=PRE_DAYS, segments=("device",))
    want = figures(load_sums(con, "exp", **kw))
    monkeypatch.setattr(sql_mod, "get_dialect", lambda name: CollidingDuckDB(bad=1))
    assert max_rel_diff(want, figures(load_sums(con, "exp", **kw)))[0] <= 1e-12  # salt 1 has no collision
    monkeypatch.setattr(sql_mod, "get_dialect", lambda name: CollidingDuckDB(bad=sql_mod.MAX_KEY_SALTS))
    with pytest.raises(RuntimeError, match="collided"):
        load_sums(con, "exp", **kw)


@pytest.mark.parametrize(("url", "want"), [
    ("duckdb:///data/armor.duckdb", ("duckdb", "/data/armor.duckdb", {})),
    ("duckdb://", ("duckdb", "", {})),
    ("chdb:", ("chdb", "", {})),
    ("chdb:///var/lib/chdb?table=ev&unique=1", ("chdb", "/var/lib/chdb", {"table": "ev", "unique": "1"})),
    ("clickhouse://u:p%40ss@ch.example:9000/analytics", ("clickhouse", "clickhouse://u:p%40ss@ch.example:9000/analytics", {})),
    ("spark://local[2]", ("spark", "local[2]", {})),
    ("spark://local[*]?parquet=/lake/events", ("spark", "local[*]", {"parquet": "/lake/events"})),
    ("spark://master.example:7077", ("spark", "spark://master.example:7077", {})),
    ("sc://connect.example:15002", ("sc", "sc://connect.example:15002", {})),
])
def test_warehouse_urls(url: str, want: tuple) -> None:
    assert parse_warehouse_url(url) == want


def test_unknown_warehouse_url() -> None:
    with pytest.raises(ValueError):
        parse_warehouse_url("postgres://x")


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write()
        print(f"wrote {len(DIALECTS)} golden files to {GOLDEN}")
    else:
        print(__doc__)
