"""Soak: assignment, content and event traffic together at half their measured maximum, for minutes.

1. Seeds a database as ``bench_api.py`` does (the demo experiment, an approved page per item), adds
   ``--history-events`` of past traffic (a server that has been running a while: its table is larger
   than its buffer pool), and starts one ``armor-ab serve --db-memory-limit``.
2. Measures the maximum of the mix: the three wrk loads at once, unthrottled (``--probe-seconds``).
   The warm-up starts with one report (``GET …/results``, an executive's look): it reads the
   history, so DuckDB's cache of table blocks is full from then on, as in a server in steady state.
3. Runs the same three loads at half those rates (wrk's ``delay()`` hook spaces each connection's
   requests; the delay is steered after each chunk so the achieved rate meets the target) in chunks of ``--chunk-seconds`` for ``--minutes``, and after every chunk records each
   load's rate, p99 and non-2xx answers, and the RSS of the API process and of its database process:
   sampled every second, the chunk's median (growth is judged on it: a checkpoint's transient
   buffers are not growth) and its maximum.
4. Checks, after the ``--warmup-minutes``: the API's RSS grows at most 5% over its value at the end
   of the warm-up; no non-2xx answer at all; every acknowledged event is stored. For the database
   process it reads DuckDB's own memory accounting (``armor_ab_db_memory_bytes`` on ``/metrics``):
   ``base_table`` is the table blocks DuckDB keeps cached after writing them (evictable, bounded by
   ``--db-memory-limit``; a pool fills up to it, as any database's does). Its RSS less that cache
   must grow at most 5%, and the cache must stay within the limit; the total is recorded too.

Run: ``.venv/bin/python benchmarks/soak.py [--minutes 10] [--warmup-minutes 2] [--history-events 15000000]
[--db-memory-limit 160MB] [--json]``
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._wrk import free_port, need_wrk, rss_mb, start, stop, wrk  # noqa: E402
from benchmarks.bench_api import ASSIGN_LUA, CONTENT_LUA, EVENTS_LUA, seed_content  # noqa: E402
from tests.helpers.platform import seed_database  # noqa: E402

CONNECTIONS = {"assignment": 16, "content": 16, "events": 8}
EXPERIMENT = "catalog-interleaved"


def add_history(db: Path, events: int) -> float:
    """``events`` page views and dwell times of past visitors (the last 14 days), in one INSERT; seconds."""
    started = time.perf_counter()
    step = 14 * 86_400_000_000 // events  # microseconds between two of them
    con = duckdb.connect(str(db))
    con.execute(
        """INSERT INTO events (event_id, experiment, variant, user_id, item_id, type, value, ts, received_at,
               properties, source)
           SELECT gen_random_uuid(), ?, CASE WHEN i % 2 = 0 THEN 'control' ELSE 'armor' END,
               'hist-' || (i // 10)::VARCHAR, 'pumps-01', CASE WHEN i % 3 = 0 THEN 'dwell' ELSE 'page_view' END,
               CASE WHEN i % 3 = 0 THEN 1000 + i % 50000 END,
               now() - INTERVAL 14 DAY + to_microseconds(i * ?), now() - INTERVAL 14 DAY + to_microseconds(i * ?),
               NULL, 'client'
           FROM range(?) t(i)""", [EXPERIMENT, step, step, events])
    con.execute("CHECKPOINT")
    con.close()
    return time.perf_counter() - started


class RssSampler:
    """The RSS of some processes once a second, on a thread; ``take()`` returns and clears the samples."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.samples: dict[str, list[float]] = {name: [] for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for name, pid in self.pids.items():
                self.samples[name].append(rss_mb(pid)[0])

    def take(self) -> dict[str, tuple[float, float]]:
        """(median, max) per process since the last take."""
        out = {}
        for name, values in self.samples.items():
            out[name] = (statistics.median(values), max(values)) if values else (float("nan"), float("nan"))
            values.clear()
        return out

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _throttled(script: str, per_connection_rps: float | None) -> str:
    """The wrk script with a ``delay()`` that spaces each connection's requests (None: unthrottled)."""
    if per_connection_rps is None:
        return script
    return script + f"\nfunction delay() return {1000.0 / per_connection_rps:.3f} end\n"


def _scripts(run: str, items: list[str], rates: dict[str, float] | None) -> dict[str, str]:
    per_conn = {k: (None if rates is None else rates[k] / CONNECTIONS[k]) for k in CONNECTIONS}
    return {
        "assignment": _throttled(ASSIGN_LUA % {"run": run, "views": 3}, per_conn["assignment"]),
        "content": _throttled(CONTENT_LUA % {"run": run, "items": ",".join(f'"{i}"' for i in items)},
                              per_conn["content"]),
        "events": _throttled(EVENTS_LUA % {"run": random.randrange(1, 2**31)}, per_conn["events"]),
    }


def _mix(url: str, auth: dict[str, str], seconds: int, scripts: dict[str, str]) -> dict[str, dict]:
    """The three loads at once for ``seconds``."""
    with ThreadPoolExecutor(len(scripts)) as pool:
        futures = {k: pool.submit(wrk, url, connections=CONNECTIONS[k], seconds=seconds, script=s, headers=auth)
                   for k, s in scripts.items()}
        return {k: f.result() for k, f in futures.items()}


def _duckdb_memory_mb(url: str) -> dict[str, float]:
    """DuckDB's memory by tag in the database process, from the API's /metrics (sampled every 5 s)."""
    out: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith('armor_ab_db_memory_bytes{tag="'):
            tag = line.split('"')[1]
            out[tag] = float(line.rsplit(" ", 1)[1]) / 1e6
    return out


def _megabytes(size: str) -> float:
    """A DuckDB size (``160MB``, ``1GiB``) in MB."""
    number, unit = re.fullmatch(r"\s*([\d.]+)\s*([A-Za-z]+)\s*", size).groups()
    factor = {"b": 1e-6, "kb": 1e-3, "mb": 1.0, "gb": 1e3, "tb": 1e6, "kib": 1.024e-3, "mib": 1.048576,
              "gib": 1073.741824, "tib": 1099511.627776}[unit.lower()]
    return float(number) * factor


def _db_pid(api_pid: int) -> int:
    pids = subprocess.run(["pgrep", "-P", str(api_pid)], capture_output=True, text=True).stdout.split()
    if len(pids) != 1:
        raise SystemExit(f"expected one database process under the API, found {pids}")
    return int(pids[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--warmup-minutes", type=float, default=2.0)
    ap.add_argument("--chunk-seconds", type=int, default=60)
    ap.add_argument("--probe-seconds", type=int, default=10)
    ap.add_argument("--history-events", type=int, default=15_000_000,
                    help="past events in the table before the server starts (0: an empty log)")
    ap.add_argument("--db-memory-limit", default="160MB", help="armor-ab serve --db-memory-limit")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    need_wrk()
    tmp = Path(tempfile.mkdtemp(prefix="armor-soak-"))
    db = tmp / "soak.duckdb"
    keys = seed_database(db)
    items = seed_content(db)
    history_s = add_history(db, args.history_events) if args.history_events else 0.0
    print(f"history: {args.history_events:,} events in {history_s:.0f} s", file=sys.stderr, flush=True)
    auth = {"Authorization": f"Bearer {keys['client']}"}
    port = free_port()
    api = start([sys.executable, "-m", "armor_ab", "serve", "--db", str(db), "--port", str(port),
                 "--log-level", "warning", "--db-memory-limit", args.db_memory_limit],
                f"http://127.0.0.1:{port}/healthz")
    url = f"http://127.0.0.1:{port}"
    chunks: list[dict] = []
    acked = 0
    try:
        db_pid = _db_pid(api.pid)
        sampler = RssSampler({"api": api.pid, "db": db_pid})
        t0 = time.perf_counter()
        report = httpx.get(f"{url}/v1/experiments/{EXPERIMENT}/results", timeout=120,
                           headers={"Authorization": f"Bearer {keys['read']}"})
        report_s = time.perf_counter() - t0
        print(f"warm-up report: {report.status_code} in {report_s:.1f} s; DuckDB memory {_duckdb_memory_mb(url)}",
              file=sys.stderr, flush=True)
        probe = _mix(url, auth, args.probe_seconds, _scripts("probe", items, None))
        maximum = {k: r["rps"] for k, r in probe.items()}
        acked += (probe["events"]["requests"] - probe["events"]["non2xx"]) * 100
        target = {k: v / 2 for k, v in maximum.items()}
        print(f"maximum of the mix (req/s): {json.dumps({k: round(v) for k, v in maximum.items()})}; "
              f"soaking at half for {args.minutes:g} min", file=sys.stderr, flush=True)
        asked = dict(target)
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < args.minutes * 60 - 1:
            n += 1
            seconds = int(min(args.chunk_seconds, args.minutes * 60 - (time.monotonic() - started)))
            if seconds < 5:
                break
            out = _mix(url, auth, seconds, _scripts(f"s{n}", items, asked))
            # wrk's delay() adds to the response time, so the rates come out under what was asked: steer.
            asked = {k: asked[k] * min(2.0, max(0.5, target[k] / max(out[k]["rps"], 1e-9))) for k in asked}
            acked += (out["events"]["requests"] - out["events"]["non2xx"]) * 100
            rss = sampler.take()
            (api_rss, api_max), (db_rss, db_max) = rss["api"], rss["db"]
            duck = _duckdb_memory_mb(url)
            cache = duck.get("base_table", 0.0)
            chunk = {"minute": round((time.monotonic() - started) / 60, 2), "api_rss_mb": api_rss, "db_rss_mb": db_rss,
                     "api_rss_max_mb": api_max, "db_rss_max_mb": db_max,
                     "duckdb_mb": duck, "db_table_cache_mb": cache, "db_rest_mb": db_rss - cache,
                     **{f"{k}_rps": r["rps"] for k, r in out.items()},
                     **{f"{k}_p99_ms": r["p99_ms"] for k, r in out.items()},
                     "non2xx": sum(r["non2xx"] for r in out.values()),
                     "socket_errors": [r["socket_errors"] for r in out.values() if r["socket_errors"]]}
            chunks.append(chunk)
            print(json.dumps(chunk), file=sys.stderr, flush=True)
    finally:
        stop(api)
        if "sampler" in locals():
            sampler.stop()
    con = duckdb.connect(str(db), read_only=True)
    stored = con.execute("SELECT count(*) FROM events WHERE type = 'dwell' AND user_id LIKE 'bench-ev-%'").fetchone()[0]
    con.close()

    after = [c for c in chunks if c["minute"] > args.warmup_minutes + 1e-9]
    warm = [c for c in chunks if c["minute"] <= args.warmup_minutes + 1e-9]
    base = warm[-1] if warm else chunks[0]
    growth = {p: (max(c[f"{p}_mb" if p == "db_rest" else f"{p}_rss_mb"] for c in after)
                  / base[f"{p}_mb" if p == "db_rest" else f"{p}_rss_mb"] - 1) if after else float("nan")
              for p in ("api", "db", "db_rest")}
    result = {"history_events": args.history_events, "db_memory_limit": args.db_memory_limit,
              "warmup_report": {"status": report.status_code, "seconds": report_s},
              "maximum_rps": maximum, "target_rps": target, "chunks": chunks, "rss_growth_after_warmup": growth,
              "non2xx": sum(c["non2xx"] for c in chunks), "events_acknowledged": acked, "events_stored": stored}
    result["goals"] = {
        "API RSS grows <= 5% after warm-up": growth["api"] <= 0.05,
        # DuckDB keeps the table blocks it writes cached until its buffer pool is full: configured,
        # bounded, evictable memory, not growth. Everything else in the process must stay flat.
        "database process RSS less DuckDB's table-block cache grows <= 5% after warm-up": growth["db_rest"] <= 0.05,
        "DuckDB's table-block cache stays within --db-memory-limit":
            max(c["db_table_cache_mb"] for c in chunks) <= _megabytes(args.db_memory_limit),
        "no non-2xx answer": result["non2xx"] == 0 and not any(c["socket_errors"] for c in chunks),
        "every acknowledged event stored": acked <= stored,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"history {args.history_events:,} events; --db-memory-limit {args.db_memory_limit}; warm-up report "
          f"{report.status_code} in {report_s:.1f} s")
    print(f"maximum of the mix: {', '.join(f'{k} {v:,.0f} req/s' for k, v in maximum.items())}; "
          f"soak at half")
    print("| minute | assignment req/s (p99) | content req/s (p99) | event batches/s (p99) | non-2xx "
          "| API RSS median (max) | DB RSS median (max) | of it, DuckDB table cache | DB RSS less that cache |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in chunks:
        print(f"| {c['minute']:.1f} | {c['assignment_rps']:,.0f} ({c['assignment_p99_ms']:.1f} ms) "
              f"| {c['content_rps']:,.0f} ({c['content_p99_ms']:.1f} ms) | {c['events_rps']:,.0f} "
              f"({c['events_p99_ms']:.1f} ms) | {c['non2xx']} | {c['api_rss_mb']:.0f} ({c['api_rss_max_mb']:.0f}) MB "
              f"| {c['db_rss_mb']:.0f} ({c['db_rss_max_mb']:.0f}) MB "
              f"| {c['db_table_cache_mb']:.0f} MB | {c['db_rest_mb']:.0f} MB |")
    print(f"RSS growth after the {args.warmup_minutes:g}-minute warm-up (per-minute medians; the database "
          f"process's total includes DuckDB's table-block cache filling toward its limit): API {growth['api']:+.1%}, "
          f"database process {growth['db']:+.1%}, database process less DuckDB's table cache {growth['db_rest']:+.1%}")
    print(f"events acknowledged {acked:,}, stored {stored:,}")
    for goal, ok in result["goals"].items():
        print(f"{'PASS' if ok else 'FAIL'}  {goal}")


if __name__ == "__main__":
    main()
