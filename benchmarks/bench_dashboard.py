"""Benchmark: the Results page of a 1,000,000-visitor experiment shows its figures within 2 s of navigation.

    .venv/bin/python benchmarks/bench_dashboard.py [--visitors 1000000] [--events 10000000] [--runs 5] [--db PATH]

1. Generates the experiment straight into a DuckDB file with SQL (the generator of
   ``benchmarks/bench_analysis.py``: 1M visitors, 10M events, two variants, a roi block) and adds
   a read key, before any server runs.
2. Starts ``armor-ab serve`` on it and warms it: one ``GET …/results`` (timed: the API's own report).
3. Starts ``armor-ab dashboard --no-auth --headless`` and Debian's headless Chromium (playwright).
4. Times navigations (``page.goto``, a new Streamlit session each) to ``/results?experiment=bench``
   until the figures are on screen (every metric card shows the API's lift) and until the charts
   are drawn (the time-series line in the SVG):
   * warm: right after a navigation that computed the report, i.e. with the dashboard's 5 s cache
     and the API warm: what a product manager sees moving between pages;
   * cold: after the dashboard's cache expired (TTL + 1 s): the navigation waits for the API to
     compute the report again (the API does not cache reports).
5. Prints a table (median, min, max of ``--runs`` navigations per mode) and PASS/FAIL:
   warm median <= 2 s is the goal; the cold median is shown against the same 2 s for information.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from bench_analysis import KEY, generate  # noqa: E402

from armor_ab.dashboards.lib import fmt  # noqa: E402
from armor_ab.dashboards.lib.api import CACHE_TTL_S as TTL_S  # noqa: E402

GOAL_S = 2.0
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run"]
CHARTS = "[data-testid=stVegaLiteChart]"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], health: str, log: Path, env: dict[str, str] | None = None,
          timeout: float = 180.0) -> subprocess.Popen:
    fh = open(log, "ab")  # noqa: SIM115 - the child keeps writing to it
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{cmd[2:4]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(health, timeout=1.0).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop(proc)
    raise SystemExit(f"{cmd[2:4]} did not start:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def prepare(db: Path, visitors: int, events: int) -> str:
    """The benchmark database (generated unless it exists) and a read key for it."""
    from armor_ab.store.db import connect
    from armor_ab.store.keys import create_key

    if not db.exists():
        gen = generate(db, visitors, events)
        print(f"generated {gen['rows']:,} events for {visitors:,} visitors in {gen['insert_s']:.1f} s; "
              f"file {gen['file_mb']:.0f} MB")
    else:
        print(f"reusing {db}")
    con = connect(db)
    try:
        return create_key(con, "read", "bench-dashboard")[0]
    finally:
        con.close()


def navigate(page, url: str, lifts: list[str]) -> tuple[float, float]:  # noqa: ANN001 - a playwright Page
    """Seconds from navigation to every metric card showing its lift, and to the drawn time-series line."""
    t0 = time.perf_counter()
    page.goto(url, wait_until="commit")
    for text in lifts:
        page.locator("[data-testid=stMetricValue]", has_text=text).first.wait_for(timeout=180_000)
    figures_s = time.perf_counter() - t0
    page.locator(f"{CHARTS} svg g.mark-line path").first.wait_for(timeout=180_000)
    charts_s = time.perf_counter() - t0
    errors = page.locator("[data-testid=stException], [data-testid=stAlertContentError]").count()
    if errors:
        raise SystemExit(f"the page shows {errors} error element(s)")
    return figures_s, charts_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--visitors", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--db", type=Path, default=None, help="reuse (or keep) this database file")
    args = ap.parse_args()
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing: install Debian's chromium (`make system-deps`)")
    if args.runs < 5:
        print("note: fewer than 5 runs; medians are less reliable")
    from playwright.sync_api import sync_playwright

    tmp = tempfile.TemporaryDirectory(prefix="armor_bench_dash_")
    work = Path(tmp.name)
    db = args.db or work / "bench.duckdb"
    procs: list[subprocess.Popen] = []
    try:
        key = prepare(db, args.visitors, args.events)
        api_port, dash_port = free_port(), free_port()
        api = f"http://127.0.0.1:{api_port}"
        procs.append(start([sys.executable, "-m", "armor_ab", "serve", "--db", str(db), "--port", str(api_port),
                            "--log-level", "warning"], f"{api}/healthz", work / "api.log"))
        headers = {"Authorization": f"Bearer {key}"}
        api_times = []
        for _ in range(2):  # the first warms the OS cache; the second is the warm API's own time
            t = time.perf_counter()
            report = httpx.get(f"{api}/v1/experiments/{KEY}/results", headers=headers, timeout=600).json()
            api_times.append(time.perf_counter() - t)
        lifts = [fmt.pct(e["lift_rel"]) for e in report["results"]]
        visitors = sum(report["visitors"].values())
        env = {**os.environ, "ARMOR_AB_KEY": key}
        dash = f"http://127.0.0.1:{dash_port}"
        procs.append(start([sys.executable, "-m", "armor_ab", "dashboard", "--api", api, "--port", str(dash_port),
                            "--no-auth", "--headless"], f"{dash}/_stcore/health", work / "dashboard.log", env=env))
        url = f"{dash}/results?experiment={KEY}"
        warm: list[tuple[float, float]] = []
        cold: list[tuple[float, float]] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1600})
                navigate(page, url, lifts)  # first visit: static assets into the browser cache
                for _ in range(args.runs):
                    time.sleep(TTL_S + 1.0)  # the dashboard's cache has expired: the API computes again
                    cold.append(navigate(page, url, lifts))
                    warm.append(navigate(page, url, lifts))  # right after: the report is warm
            finally:
                browser.close()
    finally:
        for proc in reversed(procs):
            stop(proc)
        tmp.cleanup()

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; experiment {visitors:,} visitors, "
          f"{len(report['results'])} metrics")
    print(f"API GET …/results (warm API, no cache): {api_times[-1]:.2f} s (first call {api_times[0]:.2f} s)")
    print()
    print("| navigation to Results | figures shown: median | min | max | charts drawn: median |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in (("warm (dashboard cache, API warm)", warm), (f"cold (dashboard cache expired, TTL {TTL_S:g} s)", cold)):
        figs = [f for f, _ in runs]
        print(f"| {name} | {statistics.median(figs):.2f} s | {min(figs):.2f} s | {max(figs):.2f} s | "
              f"{statistics.median(c for _, c in runs):.2f} s |")
    print()
    warm_median = statistics.median(f for f, _ in warm)
    cold_median = statistics.median(f for f, _ in cold)
    print(f"{'PASS' if warm_median <= GOAL_S else 'FAIL'}  Results shows its figures within {GOAL_S:g} s of "
          f"navigation (warm API), median of {len(warm)}: {warm_median:.2f} s")
    print(f"info  the same after the dashboard cache expired (the API computes the report): {cold_median:.2f} s "
          f"({'within' if cold_median <= GOAL_S else 'over'} {GOAL_S:g} s)")
    if warm_median > GOAL_S:
        sys.exit(1)


if __name__ == "__main__":
    main()
