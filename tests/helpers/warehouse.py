"""Shared by the warehouse tests: a realistic event log in a store and as Parquet, and figure-by-figure comparison.

``build_lake`` writes ~100k generated events (``tests.helpers.events.generate_events`` with every data-quality
case) into a store's DuckDB file, then adds what the generator leaves out so that every part of the report's
queries has something to count: client-only visitors (``source = 'client'``), paused first exposures, items and
their served pages (changed pages, fallbacks). It exports the events to Parquet twice: as they are, and with
3% of the rows repeated (the engines then deduplicate by ``event_id``).

``figures`` flattens an ``ExperimentSums`` (every total, daily, segment and per-age sum; the caps; every
exclusion count), ``ServedPages`` or a report into {name: value}; ``max_rel_diff`` compares two of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import duckdb

from armor_ab.experiments.models import Capping, ExperimentSpec
from armor_ab.stats.pages import ServedPages
from armor_ab.stats.sql import ExperimentSums
from armor_ab.stats.suffstats import SUM_COLUMNS
from armor_ab.store.db import connect
from armor_ab.store.experiments import ExperimentRecord, get_experiment, upsert_experiment
from tests.helpers.events import END, PRE_DAYS, START, generate_events, insert

EXPERIMENT = "exp"
# Every rule on: configured variants (the generator's "ghost" is unknown), an absolute and two percentile
# caps, the event-level dwell cap, the bot rate, a conversion window, server-vouched exposures, segments.
ALL_RULES = dict(
    start=START, end=END, pre_days=PRE_DAYS, segments=("device", "category", "plan"), variants=("control", "treatment"),
    caps={"views": Capping(type="absolute", value=6.0), "dwell": Capping(value=0.9), "inq": Capping(value=0.95),
          "inqv": None},
    cap_percentile=0.99, max_views_per_day=30, conversion_window_days=4, roi_window_days=3, exposures="server",
)
DEFAULTS = dict(start=START, end=END, pre_days=PRE_DAYS)  # percentile caps on every variable, any exposure
PAGES = dict(start=START, end=END, exposures="server")
ARMOR = ["treatment"]


@dataclass
class Lake:
    store: Path  # the store's DuckDB file (events and the experiment's record)
    parquet: Path  # the events, one row per event_id
    parquet_dups: Path  # the same with 3% of the rows twice
    events: int


def build_lake(root: Path, visitors: int = 9_000, seed: int = 11) -> Lake:
    store = root / "armor_ab.duckdb"
    con = connect(store)
    try:
        insert(con, generate_events(seed=seed, visitors=visitors, dirty=True))
        n = "CAST(substr(user_id, 2) AS INTEGER)"  # the generator's visitors are u0, u1, ...
        mine = f"experiment = '{EXPERIMENT}' AND type = 'exposure'"
        con.execute(f"UPDATE events SET source = 'client' WHERE {mine} AND {n} % 17 = 0")  # only clients vouch
        con.execute(f"UPDATE events SET source = NULL WHERE {mine} AND {n} % 17 = 1")  # written before sources
        con.execute(f"""UPDATE events SET properties = json_merge_patch(coalesce(properties, '{{}}'), '{{"paused": true}}')
                        WHERE {mine} AND {n} % 31 = 0""")
        con.execute(f"""UPDATE events SET properties = json_merge_patch(coalesce(properties, '{{}}'), '{{"paused": "true"}}')
                        WHERE {mine} AND {n} % 37 = 0""")  # the string, not the flag: not paused
        # Items and the page each visitor was first served: items 0-3 changed their page (3 versions),
        # some visitors got control's copy (a fallback, with or without the control page's digest).
        con.execute(f"""UPDATE events SET item_id = 'item' || ({n} % 40),
                properties = json_merge_patch(coalesce(properties, '{{}}'), json_object(
                    'page', CASE WHEN {n} % 13 = 0 THEN NULL WHEN {n} % 11 = 0 THEN 'control-digest'
                                 WHEN {n} % 40 < 4 THEN 'p' || ({n} % 40) || '-' || ({n} % 3)
                                 ELSE 'p' || ({n} % 40) END,
                    'fallback', CASE WHEN {n} % 13 = 0 THEN 'guardrail' WHEN {n} % 11 = 0 THEN 'generating' END))
                WHERE {mine}""")
        events = con.execute("SELECT count(*) FROM events").fetchone()[0]
        parquet, dups = root / "events.parquet", root / "events_dups.parquet"
        cols = "* REPLACE (CAST(event_id AS VARCHAR) AS event_id, CAST(properties AS VARCHAR) AS properties)"
        con.execute(f"COPY (SELECT {cols} FROM events ORDER BY ts) TO '{parquet}' (FORMAT parquet)")
        con.execute(f"""COPY (SELECT {cols} FROM events UNION ALL
                              SELECT {cols} FROM events WHERE hash(event_id) % 33 = 0) TO '{dups}' (FORMAT parquet)""")
        add_record(con)
    finally:
        con.close()
    return Lake(store, parquet, dups, events)


def spec() -> ExperimentSpec:
    return ExperimentSpec.model_validate({
        "key": EXPERIMENT,
        "name": "warehouse parity",
        "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
        "metrics": {"primary": "dwell_time_per_view",
                    "secondary": ["inquiries_per_visitor", "dwell_time_per_visitor"],
                    "guardrails": [{"metric": "inquiry_rate", "margin": 0.05}, "inquiry_value_per_visitor"]},
        "segments": ["plan", "device"],
        "analysis": {"cuped_pre_days": PRE_DAYS, "conversion_window_days": 5, "bots": {"max_views_per_day": 30}},
        "roi": {},
    })


def add_record(con: duckdb.DuckDBPyConnection) -> None:
    upsert_experiment(con, spec())
    con.execute("UPDATE experiments SET status = 'stopped', started_at = ?, stopped_at = ? WHERE key = ?",
                [START, END, EXPERIMENT])


def record(con: duckdb.DuckDBPyConnection) -> ExperimentRecord:
    return get_experiment(con, EXPERIMENT)


def figures(x: ExperimentSums | ServedPages | dict | list, prefix: str = "") -> dict[str, object]:
    """Every figure of the answer, by name."""
    out: dict[str, object] = {}
    if isinstance(x, ExperimentSums):
        for variant, days in x.daily.items():
            for day, s in days.items():
                out.update(zip((f"daily/{variant}/{day}/{c}" for c in SUM_COLUMNS), s.values, strict=True))
        for variant, s in x.totals.items():
            out.update(zip((f"totals/{variant}/{c}" for c in SUM_COLUMNS), s.values, strict=True))
        for key, values in x.segments.items():
            for value, variants in values.items():
                for variant, s in variants.items():
                    out.update(zip((f"segment/{key}={value}/{variant}/{c}" for c in SUM_COLUMNS), s.values, strict=True))
        for variant, ages in x.ages.items():
            for age, s in ages.items():
                out.update(zip((f"age/{variant}/{age}/{c}" for c in SUM_COLUMNS), s.values, strict=True))
        out.update({f"caps/{k}": v for k, v in x.caps.items()}, cap_event=x.cap, multi=x.multi_variant_visitors,
                   client_only=x.client_only_visitors)
        out.update({f"bots/{k}": v for k, v in x.bot_visitors.items()})
        out.update({f"unknown/{k}": v for k, v in x.unknown_variant_visitors.items()})
        out.update({f"paused/{k}": v for k, v in x.paused_visitors.items()})
        return out
    if isinstance(x, ServedPages):
        return figures(x.to_dict(), "pages")
    if isinstance(x, dict):
        for k, v in x.items():
            out.update(figures(v, f"{prefix}/{k}"))
        return out
    if isinstance(x, list | tuple):
        for i, v in enumerate(x):
            out.update(figures(v, f"{prefix}[{i}]"))
        return out
    return {prefix: x}


def max_rel_diff(want: dict[str, object], got: dict[str, object]) -> tuple[float, str]:
    """The largest relative difference between two sets of figures, and its name; other values (text,
    None, booleans, counts) must be equal."""
    assert want.keys() == got.keys(), sorted(set(want) ^ set(got))[:20]
    worst, where = 0.0, ""
    for name, a in want.items():
        b = got[name]
        if isinstance(a, float) or isinstance(b, float):
            assert isinstance(a, int | float) and isinstance(b, int | float), (name, a, b)
            if math.isnan(a) and math.isnan(b):
                continue
            scale = max(abs(a), abs(b))
            rel = 0.0 if scale == 0 else abs(a - b) / scale
            if rel > worst:
                worst, where = rel, name
        else:
            assert a == b, (name, a, b)
    return worst, where
