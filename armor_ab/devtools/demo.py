"""`make demo`: the platform's main job on the embedded DuckDB default, end to end.

1. imports the demo catalog through the same door as a manufacturer's (``armor-ab catalog import``),
   then applies the demo experiment (started as many days ago as the simulated history covers);
2. builds the ONNX engine of the shipped `armor-demo` model (skipped when up to date);
3. generates every catalog item's ARMOR page with ONNX Runtime and runs the guardrails on it; the
   pages that pass every check go live, the rest wait in the Content page (skips what exists);
4. starts the API (the one owner of the database) and the dashboards;
5. drives simulated visitors with a known effect through the API (it lists the catalog's items there);
6. prints the URLs of the catalog site, the dashboards and the API docs, and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import httpx

from armor_ab.assets import DEMO_CATALOG, DEMO_EXPERIMENT, DEMO_MODEL, build_recipe
from armor_ab.catalog.importer import CatalogFileError
from armor_ab.config import DEFAULT_ENGINE_ROOT, DEMO_CLIENT_KEY_ENV, KEY_ENV, env_settings, resolve_db_path
from armor_ab.experiments.loader import load_experiment_file
from armor_ab.services.catalog_import import import_catalog
from armor_ab.store.catalog import CatalogImport
from armor_ab.store.content import images_dir_for
from armor_ab.store.db import DatabaseLockedError, connect
from armor_ab.store.experiments import set_status, upsert_experiment
from armor_ab.store.keys import create_key

EXPERIMENT = DEMO_EXPERIMENT
# The demo catalog as a manufacturer would hand it over: a CSV whose image paths start at its directory.
CATALOG_FILE = DEMO_CATALOG / "catalog.csv"
RECIPE = build_recipe("armor-demo")
ENGINE = DEFAULT_ENGINE_ROOT / "armor-demo" / "onnx"
KEY = "catalog-interleaved"


def log(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def _keys(db: Path) -> dict[str, str]:
    """Demo keys, kept beside the database (gitignored, owner-only) so reruns reuse them."""
    path = db.parent / "demo-keys.json"
    if path.exists():
        return json.loads(path.read_text())
    con = connect(db)
    try:
        keys = {scope: create_key(con, scope, f"demo-{scope}")[0] for scope in ("admin", "read", "client")}
    finally:
        con.close()
    path.write_text(json.dumps(keys))
    path.chmod(0o600)
    return keys


def import_demo_catalog(con: duckdb.DuckDBPyConnection, db: Path) -> CatalogImport:
    """The demo catalog into the database, through the import service ``armor-ab catalog import`` uses
    (a rerun changes nothing: unchanged items keep their pages)."""
    return import_catalog(con, CATALOG_FILE, DEMO_CATALOG, images_dir_for(db))


def prepare(db: Path, days: int) -> dict[str, str]:
    spec = load_experiment_file(EXPERIMENT)
    con = connect(db)
    try:
        catalog = import_demo_catalog(con, db)
        log(f"catalog: {catalog.items} items ({len(catalog.added)} added, {len(catalog.changed)} changed)")
        rec, action = upsert_experiment(con, spec)
        log(f"experiment {rec.key}: {action}")
        if rec.status != "running":
            # The simulated visits spread over the past `days`: the experiment started then.
            at = datetime.now(UTC) - timedelta(days=days, hours=1) if rec.started_at is None else None
            set_status(con, rec.key, "running", at=at)
            log(f"experiment {rec.key}: started")
    finally:
        con.close()
    return _keys(db)


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run an `armor-ab` command in a child process (its progress bars show through)."""
    done = subprocess.run([sys.executable, "-m", "armor_ab", *args], check=False)
    if check and done.returncode != 0:
        raise SystemExit(f"[demo] `armor-ab {' '.join(args)}` failed with exit code {done.returncode}")
    return done


def engine_is_current() -> bool:
    """The built engine matches the shipped model (the manifest records the weights' hash)."""
    manifest = ENGINE / "manifest.json"
    if not manifest.exists():
        return False
    from armor_ab.engine.build import weights_sha256

    shipped = DEMO_MODEL
    built_from = json.loads(manifest.read_text()).get("model", {})
    if built_from.get("weights_sha256") != weights_sha256(str(shipped)):
        return False  # the shipped model changed (or appeared) since the engine was built
    done = subprocess.run([sys.executable, "-m", "armor_ab", "engine", "verify", str(ENGINE)],
                          capture_output=True, text=True, check=False)
    return done.returncode == 0


def build_content(db: Path, use_engine: bool) -> None:
    if use_engine:
        if engine_is_current():
            log(f"engine {ENGINE}: up to date")
        else:
            log("building the ONNX engine of armor-demo (once)")
            cli("engine", "build", "--recipe", str(RECIPE), "--backend", "onnx")
        backend = ["--backend", "onnxruntime", "--engine", str(ENGINE)]
    else:
        backend = ["--backend", "torch"]
    # Every page goes through the experiment's guardrails (content_checks:); its policy approves the pages
    # that pass every check, and the rest wait in the Content page for a human.
    log("generating the ARMOR variant's catalog pages and checking them (reruns skip what exists)")
    cli("content", "generate", "--experiment", KEY, "--db", str(db), *backend)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) != 0


def wait_up(url: str, proc: subprocess.Popen, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"[demo] the {what} exited with code {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"[demo] the {what} did not come up in time")


def stop(proc: subprocess.Popen | None) -> None:
    """Stop a child started in its own session, with its whole group (streamlit, the API's database process).

    The leader gets SIGTERM first and alone: the API then stops its database process in order (a signal to
    the whole group would stop that process under the API, which logs it as died); what is left of the group
    afterwards gets SIGTERM, and SIGKILL after 20 s."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.terminate()
        try:
            proc.wait(20)
            os.killpg(proc.pid, signal.SIGTERM)  # stragglers, if any
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    except ProcessLookupError:
        pass  # the group is gone


# Ctrl-C (SIGINT), `kill <pid>` (SIGTERM) and a closed terminal (SIGHUP) all stop the demo the same way.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def handle_stop_signals() -> dict[int, object]:
    """Turn SIGTERM and SIGHUP into the KeyboardInterrupt that SIGINT raises, so `finally` stops the children.

    A signal inherited as ignored stays ignored (`nohup` ignores SIGHUP, a shell's background job SIGINT),
    as Python itself does for SIGINT; SIGTERM is always handled. Returns the handlers it replaced."""
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        if sig != signal.SIGTERM and before[sig] == signal.SIG_IGN:
            continue
        signal.signal(sig, _interrupt)
    return before


def ignore_stop_signals() -> None:
    """While the children are being stopped: a second Ctrl-C or `kill` must not cut that short."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def main(argv: list[str] | None = None) -> int:
    env_ports = env_settings()
    ap = argparse.ArgumentParser(prog="armor-ab demo")
    ap.add_argument("--db", default=None)
    ap.add_argument("--port", type=int, default=env_ports.port)
    ap.add_argument("--dashboard-port", type=int, default=env_ports.dashboard_port)
    # 50,000: enough for the ROI's inquiry effect (about 5% of visitors inquire) to be priced with an
    # expected loss under the demo's $2,000 tolerance, so the demo reaches "ship" on its true effects.
    ap.add_argument("--visitors", type=int, default=50_000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--effect", default="dwell=+8%,inquiry=+15%")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-engine", action="store_true", help="generate content with PyTorch instead of ONNX Runtime")
    ap.add_argument("--no-content", action="store_true", help="skip content generation")
    ap.add_argument("--no-dashboard", action="store_true", help="do not start the dashboards")
    ap.add_argument("--no-wait", action="store_true", help="stop after the simulation instead of serving")
    args = ap.parse_args(argv)

    started = time.monotonic()
    db = resolve_db_path(args.db)
    host = "127.0.0.1"
    for port in (args.port, *(() if args.no_dashboard else (args.dashboard_port,))):
        if not port_free(host, port):
            raise SystemExit(f"[demo] port {port} is in use; set --port/--dashboard-port "
                             "(or ARMOR_AB_PORT/ARMOR_AB_DASHBOARD_PORT)")
    url = f"http://{host}:{args.port}"
    dash_url = f"http://{host}:{args.dashboard_port}"
    server = dashboard = sim = None
    handlers = handle_stop_signals()
    try:
        try:
            keys = prepare(db, args.days)
        except (DatabaseLockedError, CatalogFileError) as exc:
            raise SystemExit(f"[demo] {exc}") from None
        if not args.no_content:
            build_content(db, use_engine=not args.no_engine)

        log(f"starting the API on {url} over {db}")
        # The example site publishes the client key to its pages, as a customer's site would.
        env = {**os.environ, DEMO_CLIENT_KEY_ENV: keys["client"]}
        server = subprocess.Popen(
            [sys.executable, "-m", "armor_ab", "serve", "--db", str(db), "--port", str(args.port),
             "--log-level", "warning"], start_new_session=True, env=env)
        wait_up(f"{url}/healthz", server, "API")
        if not args.no_dashboard:
            log(f"starting the dashboards on {dash_url}")
            dashboard = subprocess.Popen(
                [sys.executable, "-m", "armor_ab", "dashboard", "--api", url, "--port", str(args.dashboard_port),
                 "--no-auth", "--headless"],
                start_new_session=True, env={**os.environ, KEY_ENV: keys["admin"]},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log(f"simulating {args.visitors} visitors over {args.days} days, true effect {args.effect}")
        sim = subprocess.Popen(
            [sys.executable, "-m", "armor_ab", "simulate", "--experiment", KEY, "--visitors", str(args.visitors),
             "--effect", args.effect, "--seed", str(args.seed), "--days", str(args.days), "--api", url,
             "--key", keys["client"]],
            # The read key lists the catalog's items through the API (from the environment, not argv: ps shows argv).
            stdout=subprocess.PIPE, text=True, start_new_session=True, env={**os.environ, KEY_ENV: keys["read"]})
        sim_out = sim.communicate()[0]
        if sim.returncode != 0:
            raise SystemExit("[demo] the simulation failed (see above)")
        log(f"simulation: {sim_out.strip()}")
        verdict = httpx.get(f"{url}/v1/experiments/{KEY}/results", timeout=300,
                            headers={"Authorization": f"Bearer {keys['read']}"}).json().get("verdict") or {}
        if dashboard is not None:
            wait_up(f"{dash_url}/_stcore/health", dashboard, "dashboards")
        log(f"ready in {time.monotonic() - started:.0f} s")
        log(f"verdict: {verdict.get('headline', '(none yet)')}")
        log("where to look:")
        log(f"  catalog site:    {url}/demo/")
        if dashboard is not None:
            log(f"  dashboards:      {dash_url}/  (Results: {dash_url}/results?experiment={KEY}, "
                f"ROI: {dash_url}/roi?experiment={KEY})")
        log(f"  API docs:        {url}/docs")
        log(f"  metrics:         {url}/metrics")
        log(f"  keys:            {db.parent / 'demo-keys.json'} (admin, read, client)")
        log(f"  database:        {db} (table events; see docs/events.md)")
        if args.no_wait:
            return 0
        log("serving; press Ctrl-C to stop")
        while server.poll() is None:
            time.sleep(0.5)
        return server.returncode or 0
    except KeyboardInterrupt as exc:
        log(f"stopping ({exc.args[0] if exc.args else 'SIGINT'})")
        return 0
    finally:
        ignore_stop_signals()
        stop(sim)
        stop(dashboard)
        stop(server)
        log("stopped")
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
