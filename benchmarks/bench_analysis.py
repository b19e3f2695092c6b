"""Benchmark: the full experiment report on 1M visitors / 10M events, against the same work in pandas.

    .venv/bin/python benchmarks/bench_analysis.py [--visitors 1000000] [--events 10000000] [--runs 5]

1. Generates the experiment into a temporary DuckDB file with the real schema
   (``armor_ab.store.schema``): one ``INSERT ... SELECT`` over ``range()`` with hash-based
   pseudo-random values and ``gen_random_uuid()`` ids, so the PRIMARY KEY index on event_id is
   built by that one statement (timed on its own: it is the expensive part of generation).
2. Runs each side in its own subprocess, so each peak RSS (``ru_maxrss``) is its own:
   * duckdb: ``experiment_report`` (one warm-up, then ``--runs`` timed runs);
   * pandas: read the experiment's events into a DataFrame, compute the same per-visitor,
     per-day and per-segment sufficient statistics, then the same Python statistics
     (``report_from_sums``), ``--runs`` timed runs.
3. Prints medians, the ratio, peak RSS, a cross-check that both sides give the same results, and
   PASS/FAIL per goal: full report <= 3 s, >= 3x faster than pandas, peak RSS <= 2 GB.

Timings are medians of the runs; the ratio is between medians measured in the same invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEY = "bench"
START = datetime(2025, 1, 1, tzinfo=UTC)
STOP = START + timedelta(days=36)
GOAL_SECONDS = 3.0
GOAL_RATIO = 3.0
GOAL_RSS_GB = 2.0


def generate(path: Path, visitors: int, events: int) -> dict:
    """The benchmark experiment: ``events`` rows over ``visitors`` visitors; returns timings."""
    import duckdb

    from armor_ab.experiments.models import ExperimentSpec
    from armor_ab.store.experiments import upsert_experiment
    from armor_ab.store.schema import ensure_schema

    con = duckdb.connect(str(path))
    ensure_schema(con)
    day = 86_400_000_000
    # Row i is event number k = i // visitors of visitor u = i % visitors; k = 0 is its first exposure.
    # About 10% of visitors logged a few events 1-5 days before exposure (the CUPED pre-period),
    # 15% of events are return visits within a week, the rest follow the exposure by minutes.
    sql = f"""
    INSERT INTO events
    WITH base AS (
        SELECT i, i % {visitors} AS u, i // {visitors} AS k,
            CAST(hash(i % {visitors}) >> 1 AS BIGINT) AS h, CAST(hash(i + 7919) >> 1 AS BIGINT) AS hi
        FROM range({events}) t(i)
    ), ev AS (
        SELECT *,
            CASE WHEN k = 0 THEN 'exposure' WHEN hi % 100 < 50 THEN 'page_view'
                 WHEN hi % 100 < 97 THEN 'dwell' ELSE 'inquiry' END AS type,
            CASE WHEN (h >> 30) % 2 = 0 THEN 'control' ELSE 'treatment' END AS variant,
            epoch_us(TIMESTAMPTZ '{START.isoformat()}') + (h % (28 * 86400)) * 1000000 AS t0
        FROM base
    )
    SELECT gen_random_uuid(), '{KEY}', variant, 'u' || u, 'item' || (hi % 500), type,
        CASE type
            WHEN 'dwell' THEN -ln(((hi >> 10) % 1000000 + 0.5) / 1e6) * 30000
                              * CASE variant WHEN 'treatment' THEN 1.03 ELSE 1 END
            WHEN 'inquiry' THEN CASE WHEN (hi >> 12) % 2 = 0 THEN 100 + (hi >> 14) % 900 END
        END,
        timezone('UTC', make_timestamp(CASE
            WHEN k = 0 THEN t0
            WHEN (h >> 20) % 10 = 0 AND k <= 2 THEN t0 - (1 + (hi >> 16) % 5) * {day} + ((hi >> 40) % 3600) * 1000000
            WHEN (hi >> 24) % 100 < 15 THEN t0 + ((hi >> 28) % (7 * 86400)) * 1000000
            ELSE t0 + k * 60000000
        END)),
        timezone('UTC', make_timestamp(t0)),
        CASE WHEN k = 0 THEN json_object(
            'device', ['mobile', 'desktop', 'tablet'][1 + (h >> 40) % 3], 'category', 'cat' || (h >> 44) % 8) END
    FROM ev
    """
    t = time.perf_counter()
    con.execute(sql)
    insert_s = time.perf_counter() - t
    spec = ExperimentSpec.model_validate(
        {
            "key": KEY,
            "name": "benchmark",
            "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
            "metrics": {
                "primary": "dwell_time_per_view",
                "secondary": ["dwell_time_per_visitor", "inquiries_per_visitor", "inquiry_value_per_visitor"],
                "guardrails": ["inquiry_rate"],
            },
            "roi": {},
        }
    )
    upsert_experiment(con, spec)
    con.execute("UPDATE experiments SET status = 'stopped', started_at = ?, stopped_at = ? WHERE key = ?",
                [START, STOP, KEY])
    t = time.perf_counter()
    con.execute("CHECKPOINT")
    checkpoint_s = time.perf_counter() - t
    n = con.execute("SELECT count(*) FROM events").fetchone()[0]
    con.close()
    return {"insert_s": insert_s, "checkpoint_s": checkpoint_s, "rows": n, "file_mb": path.stat().st_size / 1e6}


# ---- pandas baseline: the same sufficient statistics, the idiomatic pandas way -----------------------


def pandas_sums(con, record):  # noqa: ANN001, ANN201 - duckdb connection, ExperimentRecord -> ExperimentSums
    import numpy as np
    import pandas as pd

    from armor_ab.stats.report import report_segments
    from armor_ab.stats.sql import DAY_US, ExperimentSums, _epoch_us
    from armor_ab.stats.suffstats import SUM_COLUMNS, VisitorSums

    spec, a = record.spec, record.spec.analysis
    start_us, end_us = _epoch_us(record.started_at), _epoch_us(record.stopped_at)
    pre_us = a.cuped_pre_days * DAY_US
    segments = report_segments(record)
    df = con.execute(
        "SELECT user_id, variant, type, value, epoch_us(ts) AS tu, properties FROM events WHERE experiment = ?",
        [spec.key],
    ).df()
    df = df[(df.tu >= start_us - pre_us) & (df.tu <= end_us)]
    dwell_rows = (df.type == "dwell") & (df.tu >= start_us) & df.value.notna()
    cap = float(df.value[dwell_rows].quantile(a.dwell_cap_percentile))

    exp = df[(df.type == "exposure") & df.variant.notna() & (df.tu >= start_us)].sort_values("tu", kind="stable")
    first = exp.drop_duplicates("user_id").set_index("user_id")
    users = pd.DataFrame({"variant": first.variant, "t0": first.tu})
    users["multi"] = (exp.groupby("user_id").variant.nunique().reindex(users.index) > 1).astype(float)
    users["day0"] = users.t0 // DAY_US
    parsed = [json.loads(p) if isinstance(p, str) else {} for p in first.properties]
    for i, key in enumerate(segments):
        users[f"g{i}"] = [p.get(key) for p in parsed]

    ev = df[df.type != "exposure"].merge(users[["t0"]], left_on="user_id", right_index=True)
    ev = ev.assign(
        views=(ev.type == "page_view").astype(float),
        dwell=np.where(ev.type == "dwell", np.minimum(ev.value, cap), 0.0),
        inq=(ev.type == "inquiry").astype(float),
        inqv=np.where(ev.type == "inquiry", ev.value.fillna(0.0), 0.0),
    )
    ev["dwell"] = ev["dwell"].fillna(0.0)
    cols = ["views", "dwell", "inq", "inqv"]
    post = ev[ev.tu >= ev.t0].assign(day=lambda f: f.tu // DAY_US)
    pre = ev[(ev.tu < ev.t0) & (ev.tu >= ev.t0 - pre_us)].groupby("user_id")[cols].sum()
    entry = pd.DataFrame(0.0, index=pd.MultiIndex.from_arrays([users.index, users.day0], names=["user_id", "day"]),
                         columns=cols)
    daily = pd.concat([post.groupby(["user_id", "day"])[cols].sum(), entry]).groupby(level=[0, 1]).sum()
    daily = daily.sort_index()
    cum = daily.groupby(level=0).cumsum()

    uid = daily.index.get_level_values(0)
    d = pd.DataFrame({f"d_{c}": daily[c].to_numpy() for c in cols})
    for c in cols:
        d[f"c_{c}"] = cum[c].to_numpy()
    d["c_any"] = (d.c_inq > 0).astype(float)
    d["d_any"] = d.c_any - ((d.c_inq - d.d_inq) > 0).astype(float)
    q = pre.reindex(uid).fillna(0.0)
    for c in cols:
        d[f"q_{c}"] = q[c].to_numpy()
    d["q_any"] = (d.q_inq > 0).astype(float)
    info = users.reindex(uid)
    d["day"] = daily.index.get_level_values(1).to_numpy()
    d["entry"] = (d.day.to_numpy() == info.day0.to_numpy()).astype(float)
    d["variant"] = info.variant.to_numpy()
    d["multi"] = info.multi.to_numpy() * d.entry
    for i in range(len(segments)):
        d[f"g{i}"] = info[f"g{i}"].to_numpy()

    def col(name: str) -> np.ndarray:  # the same per-row contributions as the SQL
        if name == "n":
            return d.entry
        kind, _, rest = name.partition("_")
        if kind == "s":
            return d.entry * d[rest] if rest.startswith("q_") else d[f"d_{rest}"]
        if kind == "ss":
            return d.entry * d[rest] ** 2 if rest.startswith("q_") else d[f"d_{rest}"] * (2 * d[f"c_{rest}"] - d[f"d_{rest}"])
        x, y = rest.split("__")
        if x.startswith("q_"):
            return d.entry * d[x] * d[y]
        if y.startswith("q_"):
            return d[f"d_{x}"] * d[y]
        return d[f"d_{x}"] * d[f"c_{y}"] + d[f"d_{y}"] * d[f"c_{x}"] - d[f"d_{x}"] * d[f"d_{y}"]

    contrib = pd.DataFrame({c: col(c) for c in SUM_COLUMNS})
    contrib["variant"], contrib["day"], contrib["multi"] = d.variant, d.day, d.multi
    for i in range(len(segments)):
        contrib[f"g{i}"] = d[f"g{i}"]
    by_day = contrib.groupby(["variant", "day"])[list(SUM_COLUMNS)].sum()
    epoch = datetime(1970, 1, 1).date()
    out_daily: dict = {}
    for (variant, day), row in by_day.iterrows():
        out_daily.setdefault(variant, {})[epoch + timedelta(days=int(day))] = VisitorSums(tuple(row.to_numpy()))
    out_seg: dict = {k: {} for k in segments}
    for i, key in enumerate(segments):
        by_seg = contrib.groupby(["variant", f"g{i}"])[list(SUM_COLUMNS)].sum()
        for (variant, value), row in by_seg.iterrows():
            out_seg[key].setdefault(str(value), {})[variant] = VisitorSums(tuple(row.to_numpy()))
    return ExperimentSums(cap=cap, daily=out_daily, segments=out_seg,
                          multi_variant_visitors=int(contrib.multi.sum()), deduplicated_in_sql=False)


# ---- workers -----------------------------------------------------------------------------------------


def worker(side: str, db: Path, runs: int) -> None:
    from armor_ab.stats.report import experiment_report, report_from_sums
    from armor_ab.store.db import connect
    from armor_ab.store.experiments import get_experiment

    con = connect(db, read_only=True)
    record = get_experiment(con, KEY)
    if side == "duckdb":
        def once() -> dict:
            return experiment_report(con, record)
        once()  # warm-up: file pages into the OS cache, imports, plan caches
    else:
        def once() -> dict:
            return report_from_sums(record, pandas_sums(con, record))
    times, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        report = once()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)  # all threads of this process: DuckDB's included
    summary = {
        "times": times,
        "median": statistics.median(times),
        "cpu_median": statistics.median(cpu),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "visitors": report["visitors"],
        "results": [[r["metric"], r["lift_rel"], r["p_value"], r["cuped"]] for r in report["results"]],
        "segments": len(report["segments"]),
        "days": report["data"]["days"],
    }
    print(json.dumps(summary))


def run_worker(side: str, db: Path, runs: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", side, "--db", str(db), "--runs", str(runs)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{side} worker failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--visitors", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pandas-runs", type=int, default=None, help="default: --runs")
    ap.add_argument("--db", type=Path, default=None, help="reuse (or keep) this database file")
    ap.add_argument("--worker", choices=["duckdb", "pandas"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.db, args.runs)
        return
    if args.runs < 5:
        print("note: fewer than 5 runs; medians are less reliable")

    tmp = None
    db = args.db
    if db is None:
        tmp = tempfile.TemporaryDirectory(prefix="armor_bench_")
        db = Path(tmp.name) / "bench.duckdb"
    try:
        if not db.exists():
            gen = generate(db, args.visitors, args.events)
            print(f"generated {gen['rows']:,} events for {args.visitors:,} visitors in {gen['insert_s']:.1f} s "
                  f"(one INSERT ... SELECT with gen_random_uuid(), incl. the PRIMARY KEY index) + checkpoint "
                  f"{gen['checkpoint_s']:.1f} s; file {gen['file_mb']:.0f} MB")
        else:
            print(f"reusing {db}")
        # The machine may be shared: wall times rise with its load, CPU seconds much less.
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
        duck = run_worker("duckdb", db, args.runs)
        print(f"duckdb  report: median {duck['median']:.3f} s over {len(duck['times'])} runs "
              f"{[round(t, 3) for t in duck['times']]} (median CPU {duck['cpu_median']:.2f} s); "
              f"peak RSS {duck['rss_mb']:.0f} MB")
        pandas = run_worker("pandas", db, args.pandas_runs or args.runs)
        print(f"pandas  report: median {pandas['median']:.3f} s over {len(pandas['times'])} runs "
              f"{[round(t, 3) for t in pandas['times']]} (median CPU {pandas['cpu_median']:.2f} s); "
              f"peak RSS {pandas['rss_mb']:.0f} MB")
        print(f"load average after the runs: {os.getloadavg()[0]:.2f}")
        ratio = pandas["median"] / duck["median"]
        print(f"speed-up: {ratio:.1f}x (pandas median / duckdb median, same invocation)")

        same = duck["visitors"] == pandas["visitors"] and duck["days"] == pandas["days"]
        worst = 0.0
        for (m1, l1, p1, c1), (m2, l2, p2, c2) in zip(duck["results"], pandas["results"], strict=True):
            same &= m1 == m2 and c1 == c2
            for x, y in ((l1, l2), (p1, p2)):
                if x is None or y is None:
                    same &= x is None and y is None
                else:
                    worst = max(worst, abs(x - y) / max(abs(y), 1e-300))
        same &= worst < 1e-6
        print(f"cross-check: visitors {duck['visitors']}, {duck['days']} days, {duck['segments']} segment rows; "
              f"pandas and duckdb results agree: {same} (max relative difference {worst:.1e})")

        goals = [
            (f"full report <= {GOAL_SECONDS:g} s", duck["median"] <= GOAL_SECONDS, f"{duck['median']:.3f} s"),
            (f">= {GOAL_RATIO:g}x faster than pandas", ratio >= GOAL_RATIO, f"{ratio:.1f}x"),
            (f"peak RSS <= {GOAL_RSS_GB:g} GB", duck["rss_mb"] <= GOAL_RSS_GB * 1024, f"{duck['rss_mb']:.0f} MB"),
            ("same results as the pandas baseline", same, f"max rel diff {worst:.1e}"),
        ]
        for name, ok, value in goals:
            print(f"{'PASS' if ok else 'FAIL'}  {name}: {value}")
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
