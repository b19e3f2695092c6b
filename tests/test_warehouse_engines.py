"""The report's statistics on chDB (ClickHouse embedded) and on Spark local equal DuckDB's, figure by figure.

~100k generated events with every data-quality case (tests/helpers/warehouse.py) go into a store (DuckDB, one
row per event_id) and into Parquet with 3% of the rows repeated, which chDB and Spark read (so they also
deduplicate by event_id). Every figure of the answers (each total, daily, segment and per-age sum; the caps;
the bot, paused, client-only, multi-variant and unknown-variant exclusions; the CUPED pre-period and ROI-window
sums; the served pages) and of the full report must agree within 1e-9 relative.

Both engines run the shared steps of the query staged (armor_ab.stats.dialects.run_query): chDB as temporary
tables, Spark as local checkpoints. A real ClickHouse server is not tested: Debian's clickhouse-server (18.16)
predates window functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import duckdb
import pytest

from armor_ab.reporting.report import experiment_report
from armor_ab.stats.pages import load_served_pages
from armor_ab.stats.sql import load_sums
from armor_ab.store.db import connect
from armor_ab.store.warehouse import ChdbWarehouse, SparkWarehouse, open_warehouse, spark_session
from tests.helpers.events import END
from tests.helpers.warehouse import (
    ALL_RULES,
    ARMOR,
    DEFAULTS,
    EXPERIMENT,
    PAGES,
    Lake,
    build_lake,
    figures,
    max_rel_diff,
    record,
)

TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return build_lake(tmp_path_factory.mktemp("lake"))


@pytest.fixture(scope="module")
def store(lake: Lake) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(lake.store, read_only=True)
    yield con
    con.close()


@pytest.fixture(scope="module")
def want(store: duckdb.DuckDBPyConnection) -> dict:
    """DuckDB's answers: the reference."""
    rec = record(store)
    return {
        "all-rules": figures(load_sums(store, EXPERIMENT, **ALL_RULES)),
        "defaults": figures(load_sums(store, EXPERIMENT, **DEFAULTS)),
        "pages": figures(load_served_pages(store, EXPERIMENT, ARMOR, **PAGES)),
        "report": report_figures(store, rec),
    }


def report_figures(source, rec) -> dict[str, object]:
    out = figures(experiment_report(source, rec, now=END + timedelta(days=1)))
    # the one figure that tells the engines apart: whether the query deduplicated event ids
    assert isinstance(out.pop("/data/deduplicated_in_sql"), bool)
    return out


def compare(wh, store: duckdb.DuckDBPyConnection, want: dict, capsys) -> dict[str, float]:
    rec = record(store)
    got = {
        "all-rules": figures(load_sums(wh, EXPERIMENT, **ALL_RULES)),
        "defaults": figures(load_sums(wh, EXPERIMENT, **DEFAULTS)),
        "pages": figures(load_served_pages(wh, EXPERIMENT, ARMOR, **PAGES)),
        "report": report_figures(wh, rec),
    }
    worst = {}
    for part in want:
        diff, where = max_rel_diff(want[part], got[part])
        assert diff <= TOLERANCE, (part, where, diff)
        worst[part] = diff
    with capsys.disabled():
        print(f"\n{wh.dialect} vs DuckDB, max relative difference: "
              + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    return worst


def test_the_lake_has_every_case(lake: Lake, want: dict) -> None:
    assert 95_000 <= lake.events <= 110_000
    rules = want["all-rules"]
    for name in ("multi", "client_only", "bots/user_agent", "bots/rate", "paused/control", "paused/treatment",
                 "unknown/ghost"):
        assert rules[name] > 0, name
    assert all(rules[f"caps/{v}"] for v in ("views", "dwell", "inq")) and rules["cap_event"] > 0
    assert rules["totals/treatment/s_q_dwell"] > 0 and rules["totals/treatment/s_wq"] > 0  # CUPED, ROI window
    pages = want["pages"]
    assert pages["pages/changed_items"] >= 4 and pages["pages/fallback_reasons/guardrail"] > 0


@pytest.fixture(scope="module")
def chdb_wh(lake: Lake) -> Iterator[ChdbWarehouse]:
    wh = ChdbWarehouse()
    wh.attach_parquet(lake.parquet_dups)  # events: duplicates included, so the query deduplicates
    wh.attach_parquet(lake.parquet, "events_unique")
    yield wh
    wh.close()


def test_chdb_equals_duckdb(chdb_wh: ChdbWarehouse, store, want: dict, capsys) -> None:
    assert not chdb_wh.event_ids_unique("events")
    compare(chdb_wh, store, want, capsys)


def test_chdb_without_deduplication(chdb_wh: ChdbWarehouse, store, want: dict, lake: Lake) -> None:
    got = figures(load_sums(chdb_wh, EXPERIMENT, source="events_unique", dedup=False, **ALL_RULES))
    assert max_rel_diff(want["all-rules"], got)[0] <= TOLERANCE
    rows = chdb_wh.execute("SELECT count() AS n FROM events_unique", None)[1]
    assert rows == [(lake.events,)]


def test_urls_open_the_store_and_parquet(lake: Lake, want: dict) -> None:
    with open_warehouse(f"duckdb://{lake.store}") as wh:
        assert wh.event_ids_unique("events")  # the store's events table says so
        assert max_rel_diff(want["defaults"], figures(load_sums(wh, EXPERIMENT, **DEFAULTS)))[0] <= 1e-12
    with open_warehouse(f"duckdb://?parquet={lake.parquet_dups}") as wh:
        assert not wh.event_ids_unique("events")
        assert max_rel_diff(want["defaults"], figures(load_sums(wh, EXPERIMENT, **DEFAULTS)))[0] <= TOLERANCE
    with open_warehouse(f"chdb:?parquet={lake.parquet}&unique=1&table=lake") as wh:
        assert wh.dialect == "clickhouse" and wh.table == "lake" and wh.event_ids_unique("lake")
        assert max_rel_diff(want["defaults"], figures(load_sums(wh, EXPERIMENT, **DEFAULTS)))[0] <= TOLERANCE


@pytest.fixture(scope="module")
def spark_wh(lake: Lake) -> Iterator[SparkWarehouse]:
    spark = spark_session("local[2]", shuffle_partitions=4)
    spark.sparkContext.setLogLevel("ERROR")
    wh = SparkWarehouse(spark, owned=True)
    wh.attach_parquet(lake.parquet_dups)
    yield wh
    wh.close()


@pytest.mark.slow
def test_spark_local_equals_duckdb(spark_wh: SparkWarehouse, store, want: dict, capsys) -> None:
    compare(spark_wh, store, want, capsys)
    # every stored step was dropped again
    assert not [t.name for t in spark_wh.spark.catalog.listTables() if t.name.startswith("armor_ab_")]
