"""Benchmark: the full experiment report on 1M visitors / 10M events, against the same work in pandas.

    .venv/bin/python benchmarks/bench_analysis.py [--visitors 1000000] [--events 10000000] [--runs 5]

1. Generates the experiment into a temporary DuckDB file with the real schema
   (``armor_ab.store.schema``): one ``INSERT ... SELECT`` over ``range()`` with hash-based
   pseudo-random values and ``gen_random_uuid()`` ids (timed on its own). The table carries the
   event log's promise of unique ids (its comment), so the report does not deduplicate, as on a
   server's database.
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
    INSERT INTO events (event_id, experiment, variant, user_id, item_id, type, value, ts, received_at, properties,
                        source)
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
            'device', ['mobile', 'desktop', 'tablet'][1 + (h >> 40) % 3], 'category', 'cat' || (h >> 44) % 8) END,
        'server'
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
    """The same contract as ``armor_ab.stats.sql`` (exclusions, per-visitor caps, windows, ages), in pandas."""
    import numpy as np
    import pandas as pd

    from armor_ab.reporting.report import MAX_AGE_DAYS, report_segments
    from armor_ab.stats.sql import DAY_US, ExperimentSums, _epoch_us
    from armor_ab.stats.suffstats import SUM_COLUMNS, VisitorSums

    spec, a = record.spec, record.spec.analysis
    start_us, end_us = _epoch_us(record.started_at), _epoch_us(record.stopped_at)
    end_day = end_us // DAY_US
    pre_us = a.cuped_pre_days * DAY_US
    segments = report_segments(record)
    known = {v.key for v in spec.variants}
    caps = a.variable_caps(spec.metrics.all())
    cw, roi, max_views = a.conversion_window_days, a.roi_window_days, a.bots.max_views_per_day
    max_age = MAX_AGE_DAYS
    if cw is not None:
        max_age = min(max_age, cw - 1)
    df = con.execute(
        "SELECT user_id, variant, type, value, epoch_us(ts) AS tu, properties FROM events WHERE experiment = ?",
        [spec.key],
    ).df()
    df = df[(df.tu >= start_us - pre_us) & (df.tu <= end_us)]
    cap = None
    if a.dwell_cap_percentile is not None:
        dwell_rows = (df.type == "dwell") & (df.tu >= start_us) & df.value.notna()
        cap = float(df.value[dwell_rows].quantile(a.dwell_cap_percentile))

    # First exposures and the exclusions decided from them (the first reason that applies wins).
    exp_all = df[(df.type == "exposure") & (df.tu >= start_us)]
    exp = exp_all[exp_all.variant.notna()].sort_values("tu", kind="stable")
    first = exp.drop_duplicates("user_id").set_index("user_id")
    users = pd.DataFrame({"variant": first.variant, "t0": first.tu})
    users["day0"] = users.t0 // DAY_US
    multi = exp.groupby("user_id").variant.nunique().reindex(users.index) > 1
    flagged = exp_all.properties.map(lambda p: isinstance(p, str) and json.loads(p).get("bot") is True)
    ua_bot = users.index.isin(exp_all.user_id[flagged]) if a.bots.user_agents else np.zeros(len(users), bool)
    reason = pd.Series(np.where(multi, "multi", np.where(~users.variant.isin(known), "unknown",
                                                          np.where(ua_bot, "user_agent", ""))), index=users.index)
    unknown = users.variant[reason == "unknown"].value_counts().to_dict()
    n_multi, n_ua = int((reason == "multi").sum()), int((reason == "user_agent").sum())
    users = users[reason == ""]
    parsed = [json.loads(p) if isinstance(p, str) else {} for p in first.properties.reindex(users.index)]
    for i, key in enumerate(segments):
        users[f"g{i}"] = [p.get(key) for p in parsed]

    ev = df[df.type != "exposure"].merge(users[["t0", "day0"]], left_on="user_id", right_index=True)
    ev = ev.assign(
        views=(ev.type == "page_view").astype(float),
        dwell=np.where(ev.type == "dwell", ev.value if cap is None else np.minimum(ev.value, cap), 0.0),
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

    # Bots by rate: a post-exposure day with more page views than allowed.
    n_rate = 0
    if max_views is not None:
        rate = daily.views.groupby(level=0).max() > max_views
        n_rate = int(rate.sum())
        users = users[~users.index.isin(rate.index[rate])]
        daily = daily[~daily.index.get_level_values(0).isin(rate.index[rate])]
    daily = daily.sort_index()
    uid = daily.index.get_level_values(0)
    day = daily.index.get_level_values(1).to_numpy()
    info = users.reindex(uid)
    day0 = info.day0.to_numpy()
    daily["wq"] = np.where(day < day0 + roi, daily.inq, 0.0)  # the ROI window's inquiries
    if cw is not None:  # the conversion window: later days count for nothing but the ROI window
        daily.loc[day >= day0 + cw, cols] = 0.0
        keep = day < day0 + max(cw, roi)
        daily, uid, day, info, day0 = daily[keep], uid[keep], day[keep], info[keep], day0[keep]
    cum = daily.groupby(level=0).cumsum()

    # Per-visitor caps: quantiles of the included visitors' totals (zeros included) or fixed values.
    totals = daily.groupby(level=0)[cols].sum()
    cap_values: dict[str, float | None] = {}
    for c in cols:
        rule = caps[c]
        if rule is None:
            cap_values[c] = None
        elif rule.type == "percentile":
            cap_values[c] = float(totals[c].quantile(rule.value)) if len(totals) else None
        else:
            cap_values[c] = float(rule.value)

    def capped(c: str, x: np.ndarray, cap_of: str | None = None) -> np.ndarray:
        limit = cap_values[cap_of or c]
        return x if limit is None else np.minimum(x, limit)

    d = pd.DataFrame(index=range(len(daily)))
    for c in [*cols, "wq"]:
        raw_c, raw_d = cum[c].to_numpy(), daily[c].to_numpy()
        of = "inq" if c == "wq" else c
        d[f"c_{c}"] = capped(c, raw_c, of)
        d[f"d_{c}"] = d[f"c_{c}"] - capped(c, raw_c - raw_d, of)
    d["c_any"] = (cum.inq.to_numpy() > 0).astype(float)
    d["d_any"] = d.c_any - ((cum.inq.to_numpy() - daily.inq.to_numpy()) > 0).astype(float)
    d["a_any"] = (daily.inq.to_numpy() > 0).astype(float)
    q = pre.reindex(uid).fillna(0.0)
    for c in cols:
        d[f"q_{c}"] = capped(c, q[c].to_numpy())
    d["q_any"] = (q.inq.to_numpy() > 0).astype(float)
    d["mature"] = (day0 + roi <= end_day).astype(float)
    d["c_wq"] *= d.mature
    d["d_wq"] *= d.mature
    d["day"], d["day0"] = day, day0
    d["entry"] = (day == day0).astype(float)
    d["variant"] = info.variant.to_numpy()
    for i in range(len(segments)):
        d[f"g{i}"] = info[f"g{i}"].to_numpy()

    fixed = {"q_views", "q_dwell", "q_inq", "q_any", "q_inqv", "mature"}

    def col(name: str) -> np.ndarray:  # the same per-row contributions as the SQL
        if name == "n":
            return d.entry
        kind, _, rest = name.partition("_")
        if kind == "s":
            return d.entry * d[rest] if rest in fixed else d[f"d_{rest}"]
        if kind == "ss":
            return d.entry * d[rest] ** 2 if rest in fixed else d[f"d_{rest}"] * (2 * d[f"c_{rest}"] - d[f"d_{rest}"])
        x, y = rest.split("__")
        if x in fixed and y in fixed:
            return d.entry * d[x] * d[y]
        if y in fixed:
            return d[f"d_{x}"] * d[y]
        return d[f"d_{x}"] * d[f"c_{y}"] + d[f"d_{y}"] * d[f"c_{x}"] - d[f"d_{x}"] * d[f"d_{y}"]

    def age_col(name: str) -> np.ndarray | float:  # one day's values: the day's capped change, any = inquired
        kind, _, rest = name.partition("_")
        names = rest.split("__") if kind == "x" else [rest]
        if name == "n" or not all(v in ("views", "dwell", "inq", "any", "inqv") for v in names):
            return 0.0
        vals = [d.a_any if v == "any" else d[f"d_{v}"] for v in names]
        return vals[0] if kind == "s" else vals[0] * vals[-1]

    contrib = pd.DataFrame({c: col(c) for c in SUM_COLUMNS})
    contrib["variant"], contrib["day"] = d.variant, d.day
    for i in range(len(segments)):
        contrib[f"g{i}"] = d[f"g{i}"]
    by_day = contrib.groupby(["variant", "day"])[list(SUM_COLUMNS)].sum()
    epoch = datetime(1970, 1, 1).date()
    out_daily: dict = {}
    for (variant, day_), row in by_day.iterrows():
        out_daily.setdefault(variant, {})[epoch + timedelta(days=int(day_))] = VisitorSums(tuple(row.to_numpy()))
    out_seg: dict = {k: {} for k in segments}
    for i, key in enumerate(segments):
        by_seg = contrib.groupby(["variant", f"g{i}"])[list(SUM_COLUMNS)].sum()
        for (variant, value), row in by_seg.iterrows():
            out_seg[key].setdefault(str(value), {})[variant] = VisitorSums(tuple(row.to_numpy()))

    ages_rows = pd.DataFrame({c: age_col(c) for c in SUM_COLUMNS}, index=d.index)
    ages_rows["variant"], ages_rows["age"] = d.variant, d.day - d.day0
    ages_rows = ages_rows[(ages_rows.age <= max_age) & (d.day < end_day)]
    by_age = ages_rows.groupby(["variant", "age"])[list(SUM_COLUMNS)].sum()
    out_ages: dict = {}
    for variant, group in users.groupby("variant"):
        for k in range(max_age + 1):
            n = int((group.day0 + k < end_day).sum())
            if n == 0:
                break
            row = by_age.loc[(variant, k)].to_numpy().copy() if (variant, k) in by_age.index else np.zeros(len(SUM_COLUMNS))
            row[0] = n
            out_ages.setdefault(variant, {})[k] = VisitorSums(tuple(float(x) for x in row))
    return ExperimentSums(cap=cap, daily=out_daily, segments=out_seg, multi_variant_visitors=n_multi,
                          deduplicated_in_sql=False, unknown_variant_visitors={str(k): int(v) for k, v in unknown.items()},
                          bot_visitors={"user_agent": n_ua, "rate": n_rate},
                          caps={c: cap_values.get(c) for c in ("views", "dwell", "inq", "inqv")}, ages=out_ages)


# ---- workers -----------------------------------------------------------------------------------------


def worker(side: str, db: Path, runs: int) -> None:
    from armor_ab.reporting.report import experiment_report, report_from_sums
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
                  f"(one INSERT ... SELECT with gen_random_uuid()) + checkpoint "
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
