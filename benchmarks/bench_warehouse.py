"""Benchmark: the full experiment report from the Parquet event lake on DuckDB, chDB and Spark local[2].

    .venv/bin/python benchmarks/bench_warehouse.py [--db FILE] [--visitors 1000000] [--events 10000000]
        [--runs 5] [--spark-runs N] [--chdb-runs N] [--engines duckdb,duckdb-store,chdb,chdb-file,spark]

1. The store: ``--db FILE`` (a database ``benchmarks/bench_analysis.py`` generated; one of an older
   schema is copied to a temporary directory and migrated there, the file itself is left alone) or,
   without it, a new one generated with ``bench_analysis.generate`` (1M visitors, 10M events).
2. The lake: ``armor_ab.store.lake.export_events`` writes the events as hive-partitioned Parquet
   (``LAKE/events/date=YYYY-MM-DD/*.parquet``), once, in its own subprocess (timed and reported on its
   own). ``--lake DIR`` keeps it (a later run finds it exported and adds nothing).
3. Each engine runs in its own subprocess, so its peak RSS is its own. Each opens its warehouse over
   the lake (``armor_ab.store.warehouse``), loads what it loads (timed on its own), runs
   ``experiment_report`` once as a warm-up (its time is reported as "first"), then ``--runs`` timed runs:

   * ``duckdb`` (the baseline): ``duckdb://`` in memory, the lake as a view over ``read_parquet``
     with hive partitioning; every report scans the Parquet files.
   * ``duckdb-store`` (context only): DuckDB on the store's own file, as the API reports.
   * ``chdb``: chDB (ClickHouse embedded), the lake copied once into a MergeTree table (the "load");
     the median is of the reports on that table.
   * ``chdb-file``: chDB with a view over ``file()``: every report reads the Parquet files.
   * ``spark``: ``spark_session("local[2]")`` (the warehouse module's defaults: 4 shuffle partitions,
     UTC, UI off) plus ``--spark-conf`` (default ``spark.driver.memory=4g``); the lake as a temporary
     view (``attach_parquet``); the query's shared steps as local checkpoints.

   Every engine is told the lake's event ids are unique (``unique=True``): the lake is exported from
   the store's ``events`` table, whose writer (or, in older files, primary key) keeps one row per
   ``event_id``, so no engine deduplicates.
4. Prints the load average, per engine the median wall time, median CPU time, the ratio to DuckDB on
   the lake (measured in the same invocation), peak RSS, the one-off costs, the SQL statements of the
   last report (each stored step's time: ``src`` is the one that reads the events), and a cross-check
   against DuckDB on the lake (``tests.helpers.warehouse.figures`` / ``max_rel_diff``: the largest
   relative difference) twice: the sufficient statistics each engine computed (``load_sums``' answer,
   kept by wrapping the report module's ``load_sums``: no extra query) and every number of the report.

Peak RSS: ``getrusage(RUSAGE_SELF).ru_maxrss`` of the engine's process (DuckDB and chDB run inside it).
Spark's work is in its JVM, a child process: its peak is ``RUSAGE_CHILDREN``'s ``ru_maxrss`` read after
the JVM exited (and, as a check, the JVM's own ``VmHWM`` read just before); the table gives the Python
driver's and the JVM's peaks and their sum (an upper bound: the two peaks need not coincide). CPU time:
``time.process_time()`` (all threads of the process); for Spark plus the JVM's user + system time from
``/proc/<pid>/stat`` over the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_analysis import KEY, generate  # noqa: E402

ENGINES = ("duckdb", "duckdb-store", "chdb", "chdb-file", "spark")
BASELINE = "duckdb"
LABELS = {
    "duckdb": "DuckDB, lake (read_parquet view)",
    "duckdb-store": "DuckDB, store file (context)",
    "chdb": "chDB, MergeTree copy of the lake",
    "chdb-file": "chDB, view over file() of the lake",
    "spark": "Spark local[2], lake as temp view",
}
DEDUP_FIGURE = "/data/deduplicated_in_sql"
EVENTS_WORD = re.compile(r"\bevents\b")
STEP = re.compile(r"armor_ab_[0-9a-f]{12}_(\w+)")


# ---- measurements ---------------------------------------------------------------------------------


def _rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


def _proc_cpu_s(pid: int) -> float:
    """user + system CPU seconds of a live process (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def _proc_hwm_mb(pid: int) -> float | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def _step(kind: str, args: tuple) -> str:
    """The query step a statement runs: the stored step's name (``armor_ab.stats.dialects.run_query``
    names them ``armor_ab_<hex>_<step>``), ``drop`` or ``answer``."""
    if kind == "stage":
        return STEP.match(args[0]).group(1) if STEP.match(args[0]) else args[0]
    sql = args[0].lstrip()
    head = sql[:6].upper()
    if head == "CREATE":
        m = STEP.search(sql)
        return m.group(1) if m else "create"
    return "drop" if head == "DROP T" else "answer"


class Timed:
    """Wraps a warehouse: times each SQL statement (``execute`` and Spark's ``stage``)."""

    def __init__(self, wh) -> None:
        self.wh = wh
        self.statements: list[tuple[str, float, bool]] = []  # (step, seconds, reads the events table)

    def __getattr__(self, name: str):
        attr = getattr(self.wh, name)
        if name not in ("execute", "stage"):
            return attr

        def timed(*args):
            sql = args[1] if name == "stage" else args[0]
            t = time.perf_counter()
            try:
                return attr(*args)
            finally:
                self.statements.append((_step(name, args), time.perf_counter() - t, bool(EVENTS_WORD.search(sql))))
        return timed


# ---- workers (each in its own process) ------------------------------------------------------------------


def export_worker(db: Path, lake: Path, out: Path) -> None:
    from armor_ab.store.db import connect
    from armor_ab.store.lake import export_events, read_manifest

    con = connect(db, read_only=True)
    t, c = time.perf_counter(), time.process_time()
    result = export_events(con, lake, database=str(db))
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    con.close()
    manifest = read_manifest(lake) or {}
    files = [f for e in manifest.get("exports", []) for f in e["files"]]
    out.write_text(json.dumps({
        "rows": result.rows, "lake_rows": result.lake_rows, "seconds": wall, "cpu_s": cpu,
        "files": len(files), "mb": sum(f["bytes"] for f in files) / 1e6,
        "partitions": len({f["date"] for f in files}), "rss_mb": _rss_mb(resource.RUSAGE_SELF),
    }))


def engine_worker(engine: str, db: Path, lake: Path, record_file: Path, runs: int, spark_conf: dict[str, str],
                  out: Path) -> None:
    import armor_ab.reporting.report as report_module
    from armor_ab.reporting.report import experiment_report, load_sums

    record = pickle.loads(record_file.read_bytes())
    now = record.stopped_at + timedelta(days=1)  # a stopped experiment: the window is fixed anyway
    result: dict = {"engine": engine}
    jvm = None
    t = time.perf_counter()
    if engine == "duckdb":
        from armor_ab.store.warehouse import open_warehouse

        wh = open_warehouse("duckdb://", parquet=f"{lake}/events/**/*.parquet", unique=True)
    elif engine == "duckdb-store":
        from armor_ab.store.warehouse import open_warehouse

        wh = open_warehouse(f"duckdb://{db}")  # the store's events table says its ids are unique
    elif engine in ("chdb", "chdb-file"):
        from armor_ab.store.warehouse import ChdbWarehouse

        wh = ChdbWarehouse(unique=True)
        result["open_s"] = time.perf_counter() - t
        t = time.perf_counter()
        wh.attach_parquet(f"{lake}/events/*/*.parquet", copy=engine == "chdb")
        if engine == "chdb":
            result["load_s"] = time.perf_counter() - t
            result["loaded_rows"] = wh.execute("SELECT count() AS n FROM events", None)[1][0][0]
    elif engine == "spark":
        from pyspark import SparkContext

        from armor_ab.store.warehouse import SparkWarehouse, spark_session

        spark = spark_session("local[2]", **spark_conf)
        spark.sparkContext.setLogLevel("ERROR")
        jvm = SparkContext._gateway.proc
        result["jvm_exe"] = os.path.basename(os.readlink(f"/proc/{jvm.pid}/exe"))
        wh = SparkWarehouse(spark, unique=True, owned=True)
        result["open_s"] = time.perf_counter() - t  # JVM start and the session
        t = time.perf_counter()
        wh.attach_parquet(f"{lake}/events")  # partition discovery, the files' schema
        result["attach_s"] = time.perf_counter() - t
    else:
        raise SystemExit(f"unknown engine {engine}")
    if "open_s" not in result:
        result["open_s"] = time.perf_counter() - t
    assert wh.event_ids_unique("events")

    timed = Timed(wh)
    # The report's sufficient statistics, as the engine computed them (before the Python statistics),
    # kept for the cross-check: the report module's own load_sums, wrapped (no extra query).
    sums: list = []

    def capture(*a, **k):
        out = load_sums(*a, **k)
        sums[:] = [out]
        return out

    report_module.load_sums = capture

    def once() -> tuple[float, float, dict]:
        timed.statements.clear()
        jvm_cpu = _proc_cpu_s(jvm.pid) if jvm else 0.0
        t, c = time.perf_counter(), time.process_time()
        report = experiment_report(timed, record, now=now)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        if jvm:
            cpu += _proc_cpu_s(jvm.pid) - jvm_cpu
        return wall, cpu, report

    result["first_s"], result["first_cpu_s"], _ = once()  # warm-up: OS cache, imports, JIT, plan caches
    times, cpus = [], []
    report: dict = {}
    for _ in range(runs):
        wall, cpu, report = once()
        times.append(wall)
        cpus.append(cpu)
    result.update(times=times, median=statistics.median(times), cpus=cpus, cpu_median=statistics.median(cpus),
                  statements=timed.statements, statements_s=sum(s for _, s, _ in timed.statements),
                  scan_statements=sum(1 for _, _, e in timed.statements if e),
                  scan_s=sum(s for _, s, e in timed.statements if e),
                  visitors=report["visitors"], report=report)
    if jvm is not None:
        result["jvm_hwm_mb"] = _proc_hwm_mb(jvm.pid)
        result["python_rss_mb"] = _rss_mb(resource.RUSAGE_SELF)
        wh.close()  # spark.stop()
        SparkContext._gateway.shutdown()
        jvm.stdin.close()  # the gateway exits when its stdin closes
        jvm.wait(timeout=120)
        result["jvm_rss_mb"] = _rss_mb(resource.RUSAGE_CHILDREN)  # the JVM, now exited and reaped
        result["rss_mb"] = result["python_rss_mb"] + result["jvm_rss_mb"]
    else:
        wh.close()
        result["rss_mb"] = _rss_mb(resource.RUSAGE_SELF)
    out.with_suffix(".sums.pkl").write_bytes(pickle.dumps(sums[0]))
    out.write_text(json.dumps(result, default=str))


def run_worker(args: list[str], out: Path, what: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args, "--out", str(out)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"{what} worker failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}")
    return json.loads(out.read_text())


# ---- the driver ---------------------------------------------------------------------------------------


def prepare_store(args: argparse.Namespace, work: Path) -> Path:
    """The store to export: the given file (migrated on a copy when older), or a new one."""
    import duckdb

    from armor_ab.store.db import connect
    from armor_ab.store.migrations import SCHEMA_VERSION, current_version

    db = args.db
    if db is None or not db.exists():
        db = db or work / "bench.duckdb"
        gen = generate(db, args.visitors, args.events)
        print(f"generated {gen['rows']:,} events for {args.visitors:,} visitors in {gen['insert_s']:.1f} s "
              f"+ checkpoint {gen['checkpoint_s']:.1f} s; file {gen['file_mb']:.0f} MB ({db})")
        return db
    con = duckdb.connect(str(db), read_only=True)
    version = current_version(con)
    con.close()
    if version is not None and version >= SCHEMA_VERSION:
        print(f"reusing {db} (schema version {version})")
        return db
    copy = work / db.name
    t = time.perf_counter()
    shutil.copyfile(db, copy)
    copied = time.perf_counter() - t
    t = time.perf_counter()
    connect(copy).close()  # migrates
    print(f"reusing {db} (schema version {version}): copied to {copy} in {copied:.1f} s and migrated to "
          f"version {SCHEMA_VERSION} there in {time.perf_counter() - t:.1f} s")
    return copy


def cross_check(figs: dict[str, dict]) -> tuple[int, dict[str, tuple[float, str]]]:
    """The number of figures, and per engine the largest relative difference from the baseline's and where."""
    from tests.helpers.warehouse import max_rel_diff

    ref = figs[BASELINE]
    out = {}
    for e, f in figs.items():
        if e == BASELINE:
            continue
        try:
            out[e] = max_rel_diff(ref, f)
        except AssertionError as exc:
            out[e] = (float("inf"), f"figures differ: {str(exc)[:300]}")
    return len(ref), out


def fmt_s(x: float | None) -> str:
    return "" if x is None else f"{x:.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--visitors", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--db", type=Path, default=None,
                    help="a generated store to reuse (an older schema is migrated on a copy); generated there if "
                         "missing")
    ap.add_argument("--lake", type=Path, default=None, help="keep (or reuse) the exported lake in this directory")
    ap.add_argument("--runs", type=int, default=5)
    for e in ENGINES:
        ap.add_argument(f"--{e}-runs", type=int, default=None, help="default: --runs")
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, from {','.join(ENGINES)}")
    ap.add_argument("--spark-conf", action="append", default=None, metavar="KEY=VALUE",
                    help="extra Spark configuration (default: spark.driver.memory=4g)")
    ap.add_argument("--worker", choices=["export", *ENGINES], help=argparse.SUPPRESS)
    ap.add_argument("--record", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    spark_conf = dict(kv.split("=", 1) for kv in (args.spark_conf or ["spark.driver.memory=4g"]))
    if args.worker == "export":
        export_worker(args.db, args.lake, args.out)
        return
    if args.worker:
        engine_worker(args.worker, args.db, args.lake, args.record, args.runs, spark_conf, args.out)
        return

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise SystemExit(f"unknown engines {sorted(unknown)}; choose from {ENGINES}")
    if BASELINE not in engines:
        engines.insert(0, BASELINE)
    runs = {e: getattr(args, f"{e.replace('-', '_')}_runs") or args.runs for e in engines}
    for e, n in runs.items():
        if n < 5:
            print(f"note: {e}: {n} timed runs (fewer than 5): its median is less reliable")

    tmp = tempfile.TemporaryDirectory(prefix="armor_bench_wh_")
    work = Path(tmp.name)
    try:
        print(f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
              f"at start ({time.strftime('%Y-%m-%d %H:%M')})")
        db = prepare_store(args, work)
        lake = args.lake or work / "lake"
        exp = run_worker(["--worker", "export", "--db", str(db), "--lake", str(lake)], work / "export.json", "export")
        print(f"lake {lake}: exported {exp['rows']:,} rows in {exp['seconds']:.1f} s (CPU {exp['cpu_s']:.1f} s, "
              f"peak RSS {exp['rss_mb']:.0f} MB); the lake holds {exp['lake_rows']:,} rows in {exp['files']} files, "
              f"{exp['partitions']} date partitions, {exp['mb']:.0f} MB")

        from armor_ab.store.db import connect
        from armor_ab.store.experiments import get_experiment

        con = connect(db, read_only=True)
        record = get_experiment(con, KEY)
        con.close()
        if record is None:
            raise SystemExit(f"{db} has no experiment {KEY!r}: not a bench_analysis database")
        record_file = work / "record.pkl"
        record_file.write_bytes(pickle.dumps(record))

        results: dict[str, dict] = {}
        for e in engines:
            print(f"running {e} ({runs[e]} runs after a warm-up), load average {os.getloadavg()[0]:.2f} ...",
                  flush=True)
            extra = [x for kv in spark_conf.items() for x in ("--spark-conf", "=".join(kv))] if e == "spark" else []
            r = run_worker(["--worker", e, "--db", str(db), "--lake", str(lake), "--record", str(record_file),
                            "--runs", str(runs[e]), *extra], work / f"{e}.json", e)
            results[e] = r
            one_off = [f"open {r['open_s']:.2f} s"]
            if "load_s" in r:
                one_off.append(f"load into MergeTree {r['load_s']:.1f} s ({r['loaded_rows']:,} rows)")
            if "attach_s" in r:
                one_off.append(f"attach the lake {r['attach_s']:.2f} s")
            print(f"  {e}: median {r['median']:.3f} s over {len(r['times'])} runs "
                  f"{[round(t, 2) for t in r['times']]}, first (warm-up) {r['first_s']:.2f} s; "
                  f"median CPU {r['cpu_median']:.2f} s; peak RSS {r['rss_mb']:.0f} MB; {', '.join(one_off)}")
            steps = ", ".join(f"{step} {sec:.2f}" for step, sec, _ in r["statements"] if step != "drop")
            print(f"  {e}: the last report = {len(r['statements'])} SQL statements, {r['statements_s']:.2f} s in them; "
                  f"{r['scan_statements']} read the events table ({r['scan_s']:.2f} s); by step (s): {steps}")
            if e == "spark":
                print(f"  spark: peak RSS = Python driver {r['python_rss_mb']:.0f} MB + JVM {r['jvm_rss_mb']:.0f} MB "
                      f"(RUSAGE_CHILDREN after it exited; its VmHWM before: {r['jvm_hwm_mb']:.0f} MB; "
                      f"process {r['jvm_exe']}); conf {spark_conf}")
        print(f"load average after the runs: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

        base = results[BASELINE]["median"]
        from tests.helpers.warehouse import figures

        report_figs = {e: figures(r["report"]) for e, r in results.items()}
        dedup = {e: f.pop(DEDUP_FIGURE, None) for e, f in report_figs.items()}
        sums_figs = {e: figures(pickle.loads((work / f"{e}.sums.pkl").read_bytes())) for e in results}
        print(f"\ncross-check against {BASELINE} (visitors {results[BASELINE]['visitors']}; the report's "
              f"deduplicated_in_sql: {dedup}):")
        worst = 0.0
        for what, figs in (("sufficient statistics (load_sums: every total, daily, segment, per-age sum, cap, "
                            "exclusion)", sums_figs), ("the whole report (every number in it)", report_figs)):
            n, diffs = cross_check(figs)
            print(f"  {what}, {n} figures:")
            for e, (d, where) in diffs.items():
                print(f"    {e}: max relative difference {d:.1e}{f' ({where})' if where else ''}")
                worst = max(worst, d)
        print(f"  all engines agree within 1e-9: {worst <= 1e-9} (max {worst:.1e})")

        print("\n| engine | median report | runs | first run | median CPU | median / DuckDB lake median | peak RSS "
              "| one-off |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for e, r in results.items():
            one_off = []
            if "load_s" in r:
                one_off.append(f"load into MergeTree {r['load_s']:.1f} s")
            if "attach_s" in r:
                one_off.append(f"JVM + session {r['open_s']:.1f} s, attach {r['attach_s']:.1f} s")
            rss = f"{r['rss_mb']:,.0f} MB"
            if e == "spark":
                rss += f" ({r['python_rss_mb']:,.0f} Python + {r['jvm_rss_mb']:,.0f} JVM)"
            print(f"| {LABELS[e]} | {r['median']:.2f} s | {len(r['times'])} | {r['first_s']:.2f} s "
                  f"| {r['cpu_median']:.2f} s | {r['median'] / base:.2f}x | {rss} | {'; '.join(one_off)} |")
        print(f"\nexport of the lake (one-off): {exp['rows']:,} rows in {exp['seconds']:.1f} s, {exp['files']} files, "
              f"{exp['mb']:.0f} MB")
    finally:
        tmp.cleanup()


if __name__ == "__main__":
    main()
