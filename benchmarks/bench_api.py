"""HTTP API benchmarks with wrk on loopback, each against a baseline measured in the same run.

1. ``GET /v1/experiments/{key}/assignment`` at 32 connections, every request a new visitor (so
   every request also commits an exposure), against a hello-world FastAPI endpoint served the
   same way (uvicorn, uvloop, httptools, one process). Goals: >= 70% of hello-world throughput,
   p99 < 25 ms.
2. ``GET /v1/experiments/{key}/content`` on the cached path (approved pages in memory), new
   visitor each request, same goals.
3. ``POST /v1/events`` with 100-event batches: events/s sustained (goal >= 50,000), zero loss
   (every acknowledged event is in DuckDB afterwards), peak API process RSS (goal <= 300 MB). The
   database process (DuckDB, a child of the API) is reported beside it, and the sum of both.

Run: ``.venv/bin/python benchmarks/bench_api.py [--runs 5] [--seconds 8] [--json]``
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._wrk import ROOT, free_port, median, need_wrk, rss_mb, start, stop, wrk  # noqa: E402
from tests.conftest import seed_database  # noqa: E402

ASSIGN_LUA = """
counter = 0
local threads = 0
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
request = function()
  counter = counter + 1
  -- every request a new visitor (views = 1), or each visitor viewing `views` pages
  return wrk.format("GET", "/v1/experiments/catalog-interleaved/assignment?user_id=bench-%(run)s-"
    .. tid .. "-" .. math.floor(counter / %(views)d) .. "&item_id=pumps-01")
end
"""

CONTENT_LUA = """
counter = 0
local threads = 0
local items = {%(items)s}
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
request = function()
  counter = counter + 1
  return wrk.format("GET", "/v1/experiments/catalog-interleaved/content?user_id=bench-%(run)s-"
    .. tid .. "-" .. counter .. "&item_id=" .. items[(counter %% #items) + 1])
end
"""

# Dwell events without a variant: the server checks a named variant against the visitor's assignment
# (docs/events.md), and these made-up visitors have none to check; the analysis takes the variant from exposures.
EVENTS_LUA = """
counter = 0
local threads = 0
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
request = function()
  counter = counter + 1
  local parts = {}
  for i = 1, 100 do
    parts[i] = string.format('{"event_id":"%%08x-%%04x-4%%03x-8%%03x-%%012x","experiment":"catalog-interleaved",'
      .. '"user_id":"bench-ev-%%d-%%d","item_id":"pumps-01","type":"dwell","value":%%d}',
      %(run)d, tid, math.floor(counter / 4096) %% 4096, counter %% 4096, i, tid, counter, 1000 + i)
  end
  return wrk.format("POST", "/v1/events",
    {["Content-Type"] = "application/json", ["Authorization"] = wrk.headers["Authorization"]},
    '{"events":[' .. table.concat(parts, ",") .. ']}')
end
"""


def seed_content(db: Path) -> list[str]:
    """An approved page (text, picture, text) for every catalog item: the cached serving path."""
    from PIL import Image

    from armor_ab.model.interleaved import ContentMetadata, ImageSegment, InterleavedContent, TextSegment
    from armor_ab.store.catalog import list_items
    from armor_ab.store.content import images_dir_for, save_generated, set_review
    from armor_ab.store.db import connect

    con = connect(db)
    products = {item.id: item for item in list_items(con)}  # the catalog seed_database imported
    for i, p in enumerate(products.values()):
        page = InterleavedContent(
            [TextSegment(f"{p.spec_line()} "), ImageSegment.from_pil(Image.new("RGB", (64, 64), (i, 90, 120))),
             TextSegment(p.description)],
            ContentMetadata(model="bench", config_hash="-", seed=i, prompt=f"Describe {p.name}"))
        save_generated(con, images_dir_for(db), "catalog-interleaved", "armor", p.id, page, f"Describe {p.name}")
    set_review(con, "catalog-interleaved", "approved")
    con.close()
    return list(products)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--event-connections", type=int, default=16, help="clients posting event batches")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    need_wrk()
    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="armor-bench-"))
    db = tmp / "bench.duckdb"
    keys = seed_database(db)
    items = seed_content(db)
    auth = {"Authorization": f"Bearer {keys['client']}"}

    hello_port, api_port = free_port(), free_port()
    hello = start([py, str(ROOT / "benchmarks" / "hello_app.py"), str(hello_port)], f"http://127.0.0.1:{hello_port}/hello")
    api = start([py, "-m", "armor_ab", "serve", "--db", str(db), "--port", str(api_port), "--log-level", "warning"],
                f"http://127.0.0.1:{api_port}/healthz")
    hello_url, api_url = f"http://127.0.0.1:{hello_port}/hello", f"http://127.0.0.1:{api_port}"
    c = args.connections
    try:
        # Warm-up, not counted.
        wrk(hello_url, connections=c, seconds=2)
        wrk(api_url, connections=c, seconds=2, script=ASSIGN_LUA % {"run": "warm", "views": 1}, headers=auth)
        hello_runs, assign_runs, typical_runs, content_runs, event_runs = [], [], [], [], []
        item_list = ",".join(f'"{i}"' for i in items)
        for i in range(args.runs):  # interleaved, so drift on a shared machine hits all alike
            hello_runs.append(wrk(hello_url, connections=c, seconds=args.seconds))
            assign_runs.append(wrk(api_url, connections=c, seconds=args.seconds,
                                   script=ASSIGN_LUA % {"run": f"r{i}", "views": 1}, headers=auth))
            typical_runs.append(wrk(api_url, connections=c, seconds=args.seconds,
                                    script=ASSIGN_LUA % {"run": f"t{i}", "views": 3}, headers=auth))
            content_runs.append(wrk(api_url, connections=c, seconds=args.seconds,
                                    script=CONTENT_LUA % {"run": f"c{i}", "items": item_list}, headers=auth))
        run_ids = []
        for _ in range(args.runs):
            run_id = random.randrange(1, 2**31)
            run_ids.append(run_id)
            event_runs.append(wrk(api_url, connections=args.event_connections, seconds=args.seconds,
                                  script=EVENTS_LUA % {"run": run_id}, headers=auth))
        rss_now, rss_peak = rss_mb(api.pid)
        db_pids = subprocess.run(["pgrep", "-P", str(api.pid)], capture_output=True, text=True).stdout.split()
        db_now, db_peak = (sum(x) for x in zip(*(rss_mb(int(pid)) for pid in db_pids), strict=True)) if db_pids else (0, 0)
    finally:
        stop(hello)
        stop(api)

    con = duckdb.connect(str(db), read_only=True)
    stored, distinct = con.execute(
        "SELECT count(*), count(DISTINCT event_id) FROM events WHERE type = 'dwell' AND user_id LIKE 'bench-ev-%'"
    ).fetchone()
    exposures = con.execute("SELECT count(*) FROM events WHERE type = 'exposure'").fetchone()[0]
    con.close()
    acked_events = sum((r["requests"] - r["non2xx"]) * 100 for r in event_runs)

    hello_rps = median([r["rps"] for r in hello_runs])
    assign_rps = median([r["rps"] for r in assign_runs])
    assign_p99 = median([r["p99_ms"] for r in assign_runs])
    events_per_s = median([(r["rps"]) * 100 for r in event_runs])
    content_rps = median([r["rps"] for r in content_runs])
    typical_rps = median([r["rps"] for r in typical_runs])
    content_p99 = median([r["p99_ms"] for r in content_runs])
    result = {
        "hello_rps": hello_rps, "assign_rps": assign_rps, "assign_ratio": assign_rps / hello_rps,
        "assign_p50_ms": median([r["p50_ms"] for r in assign_runs]), "assign_p99_ms": assign_p99,
        "hello_p99_ms": median([r["p99_ms"] for r in hello_runs]),
        "assign_non2xx": sum(r["non2xx"] for r in assign_runs), "exposures_committed": exposures,
        "typical_rps": typical_rps, "typical_ratio": typical_rps / hello_rps,
        "typical_p99_ms": median([r["p99_ms"] for r in typical_runs]),
        "content_rps": content_rps, "content_ratio": content_rps / hello_rps, "content_p99_ms": content_p99,
        "content_non2xx": sum(r["non2xx"] for r in content_runs),
        "events_per_s": events_per_s, "events_p99_ms": median([r["p99_ms"] for r in event_runs]),
        "events_acked": acked_events, "events_stored": stored, "events_distinct": distinct,
        "events_non2xx": sum(r["non2xx"] for r in event_runs),
        "api_rss_mb": rss_now, "api_peak_rss_mb": rss_peak, "db_process_rss_mb": db_now, "db_process_peak_rss_mb": db_peak,
        "total_peak_rss_mb": rss_peak + db_peak, "runs": args.runs, "seconds": args.seconds,
    }
    goals = {
        "assignment >= 70% of hello world": result["assign_ratio"] >= 0.70,
        "assignment p99 < 25 ms": assign_p99 < 25,
        "content >= 70% of hello world": result["content_ratio"] >= 0.70,
        "content p99 < 25 ms": content_p99 < 25,
        "events >= 50,000/s": events_per_s >= 50_000,
        "zero loss (stored >= acknowledged, no duplicates)": stored >= acked_events and stored == distinct,
        "API peak RSS <= 300 MB": rss_peak <= 300,
    }
    if args.json:
        print(json.dumps({**result, "goals": goals}, indent=2))
        return
    print(f"HTTP API, wrk -t1, {args.runs} runs x {args.seconds}s, medians\n")
    print("| measure | value |\n|---|---:|")
    print(f"| hello world, 32 conns | {hello_rps:,.0f} req/s (p99 {result['hello_p99_ms']:.1f} ms) |")
    print(f"| GET assignment (new visitor each, exposure committed), 32 conns | {assign_rps:,.0f} req/s |")
    print(f"| ratio assignment / hello | {result['assign_ratio']:.2f} |")
    print(f"| assignment p50 / p99 | {result['assign_p50_ms']:.1f} / {assign_p99:.1f} ms |")
    print(f"| GET assignment, 3 page views per visitor, 32 conns | {typical_rps:,.0f} req/s "
          f"(ratio {result['typical_ratio']:.2f}, p99 {result['typical_p99_ms']:.1f} ms) |")
    print(f"| GET content (cached path, new visitor each), 32 conns | {content_rps:,.0f} req/s |")
    print(f"| ratio content / hello | {result['content_ratio']:.2f} |")
    print(f"| content p99 | {content_p99:.1f} ms |")
    print(f"| POST /v1/events, 100-event batches, {args.event_connections} conns | {events_per_s:,.0f} events/s (p99 {result['events_p99_ms']:.1f} ms) |")
    print(f"| events acknowledged / stored / distinct | {acked_events:,} / {stored:,} / {distinct:,} |")
    print(f"| API process RSS now / peak | {rss_now:.0f} / {rss_peak:.0f} MB |")
    print(f"| database process RSS now / peak (DuckDB, child of the API) | {db_now:.0f} / {db_peak:.0f} MB |")
    print(f"| both processes, peak | {rss_peak + db_peak:.0f} MB |")
    print()
    for name, ok in goals.items():
        print(f"- {'PASS' if ok else 'FAIL'}: {name}")


if __name__ == "__main__":
    main()
