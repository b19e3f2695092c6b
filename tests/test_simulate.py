"""The traffic simulator drives the real API; the data it leaves carries the effect it was given."""

from __future__ import annotations

import json

import duckdb
import pytest
from typer.testing import CliRunner

from armor_ab.cli import app
from armor_ab.devtools.simulate import Effects
from tests.helpers.platform import Server, seed_database

runner = CliRunner()


def test_effect_parsing() -> None:
    assert Effects.parse("dwell=+8%,inquiry=+15%") == Effects(dwell=0.08, inquiry=0.15)
    assert Effects.parse("dwell=-0.1") == Effects(dwell=-0.1)
    assert Effects.parse("") == Effects()
    with pytest.raises(ValueError, match="cannot read effect"):
        Effects.parse("clicks=+3%")


# Visitors browse the server's catalog (the database's), whatever it holds: here four demo items.
ITEMS = {"pumps-01": "pumps", "valves-02": "valves", "motors-03": "motors", "sensors-05": "sensors"}


def test_simulated_visitors_land_once_with_the_true_effect(tmp_path) -> None:
    db = tmp_path / "sim.duckdb"
    keys = seed_database(db, started_days_ago=8, items=list(ITEMS))
    server = Server(db).start()
    try:
        r = runner.invoke(app, ["simulate", "--experiment", "catalog-interleaved", "--visitors", "1500",
                                "--effect", "dwell=+30%", "--seed", "3", "--days", "7", "--api", server.url,
                                "--key", keys["client"], "--read-key", keys["read"]])
        assert r.exit_code == 0, r.output
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        bad = runner.invoke(app, ["simulate", "--experiment", "catalog-interleaved", "--visitors", "1",
                                  "--api", server.url, "--key", "aab_000000000000_nope", "--read-key", keys["read"]])
        assert bad.exit_code == 2 and "401" in bad.output
        # The catalog is listed with a read key: without one, or with a client key, a clear error.
        no_read = runner.invoke(app, ["simulate", "--experiment", "catalog-interleaved", "--visitors", "1",
                                      "--api", server.url, "--key", keys["client"]], env={"ARMOR_AB_KEY": None})
        assert no_read.exit_code == 2 and "--read-key" in no_read.output
        client_only = runner.invoke(app, ["simulate", "--experiment", "catalog-interleaved", "--visitors", "1",
                                          "--api", server.url, "--key", keys["client"], "--read-key", keys["client"]])
        assert client_only.exit_code == 2 and "read-scope key" in client_only.output
    finally:
        server.stop()
    assert summary["visitors"] == summary["in_experiment"] == 1500
    assert summary["duplicates"] > 0  # the simulated client retries were all recognised
    assert summary["accepted"] == summary["events_sent"]
    con = duckdb.connect(str(db), read_only=True)
    stored = con.execute("SELECT count(*) FROM events WHERE type <> 'exposure' OR ts < received_at - INTERVAL 1 MINUTE"
                         ).fetchone()[0]
    per_variant = dict(con.execute("""
        SELECT variant, avg(value) FILTER (WHERE type = 'dwell') FROM events GROUP BY variant""").fetchall())
    server_exposures = con.execute(
        "SELECT count(DISTINCT user_id) FROM events WHERE type = 'exposure'").fetchone()[0]
    span_days = con.execute("SELECT date_diff('day', min(ts), max(ts)) FROM events").fetchone()[0]
    from_the_future = con.execute(  # a simulated past lies in the past: no client ts after its receipt
        "SELECT count(*) FROM events WHERE ts > received_at").fetchone()[0]
    visited = dict(con.execute("""
        SELECT DISTINCT item_id, json_extract_string(properties, '$.category') FROM events
        WHERE type = 'page_view'""").fetchall())
    con.close()
    assert visited == ITEMS  # every item of the catalog, each with its own category, and nothing else
    assert from_the_future == 0
    assert stored == summary["events_sent"]
    assert server_exposures == 1500
    assert span_days >= 5
    ratio = per_variant["armor"] / per_variant["control"]
    assert 1.15 < ratio < 1.45  # +30% dwell, within sampling noise


def test_a_simulated_past_ends_by_the_time_the_simulation_started(tmp_path) -> None:
    """Sessions drawn at the very end of the window are moved back: no event lies in the future."""
    import asyncio

    from armor_ab.devtools.simulate import Simulator, fetch_catalog

    db = tmp_path / "now.duckdb"
    keys = seed_database(db, started_days_ago=1, items=list(ITEMS))
    server = Server(db).start()
    try:
        items = fetch_catalog(server.url, keys["read"])
        assert items == tuple(ITEMS.items())  # in catalog order
        # A window of ~9 seconds: every session (minutes of page views) would end after "now".
        sim = Simulator(server.url, keys["client"], "catalog-interleaved", seed=5, days=0.0001, items=items)
        report = asyncio.run(sim.run(40))
    finally:
        server.stop()
    con = duckdb.connect(str(db), read_only=True)
    latest = con.execute("SELECT max(ts) FROM events WHERE type <> 'exposure' OR ts < received_at - INTERVAL 1 MINUTE"
                         ).fetchone()[0]
    con.close()
    assert report.in_experiment == 40
    assert latest <= sim.now
