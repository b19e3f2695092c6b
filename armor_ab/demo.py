"""`make demo`: the platform's main job on the embedded DuckDB default, end to end.

Applies the demo experiment, starts the API (the one owner of the database), drives simulated
visitors with a known effect through it, prints where to look, and serves until Ctrl-C.
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

import httpx

from armor_ab.config import resolve_db_path
from armor_ab.experiments.loader import load_experiment_file
from armor_ab.store.db import DatabaseLockedError, connect
from armor_ab.store.experiments import set_status, upsert_experiment
from armor_ab.store.keys import create_key

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "catalog-interleaved.yaml"


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


def prepare(db: Path, days: int) -> dict[str, str]:
    spec = load_experiment_file(EXPERIMENT)
    con = connect(db)
    try:
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


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) != 0


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"[demo] the API exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("[demo] the API did not come up in time")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="armor-ab demo")
    ap.add_argument("--db", default=None)
    ap.add_argument("--port", type=int, default=int(os.environ.get("ARMOR_AB_PORT", 8000)))
    ap.add_argument("--visitors", type=int, default=4000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--effect", default="dwell=+8%,inquiry=+15%")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-wait", action="store_true", help="stop after the simulation instead of serving")
    args = ap.parse_args(argv)

    db = resolve_db_path(args.db)
    host = "127.0.0.1"
    if not port_free(host, args.port):
        raise SystemExit(f"[demo] port {args.port} is in use; set ARMOR_AB_PORT or --port")
    try:
        keys = prepare(db, args.days)
    except DatabaseLockedError as exc:
        raise SystemExit(f"[demo] {exc}") from None
    url = f"http://{host}:{args.port}"
    log(f"starting the API on {url} over {db}")
    # The example site publishes the client key to its pages, as a customer's site would.
    env = {**os.environ, "ARMOR_AB_DEMO_CLIENT_KEY": keys["client"]}
    server = subprocess.Popen(
        [sys.executable, "-m", "armor_ab", "serve", "--db", str(db), "--port", str(args.port), "--log-level", "warning"],
        start_new_session=True, env=env,
    )
    try:
        wait_healthy(url, server)
        log(f"simulating {args.visitors} visitors over {args.days} days, true effect {args.effect}")
        sim = subprocess.run(
            [sys.executable, "-m", "armor_ab", "simulate", "--experiment", "catalog-interleaved",
             "--visitors", str(args.visitors), "--effect", args.effect, "--seed", str(args.seed),
             "--days", str(args.days), "--api", url, "--key", keys["client"]],
            check=False, capture_output=True, text=True,
        )
        if sim.returncode != 0:
            raise SystemExit(f"[demo] simulation failed: {sim.stderr.strip()}")
        log(f"simulation: {sim.stdout.strip()}")
        log("where to look:")
        log(f"  catalog site:    {url}/demo/")
        log(f"  API docs:        {url}/docs")
        log(f"  experiment:      curl -H 'Authorization: Bearer <read key>' {url}/v1/experiments/catalog-interleaved")
        log(f"  metrics:         {url}/metrics")
        log(f"  keys:            {db.parent / 'demo-keys.json'} (admin, read, client)")
        log(f"  database:        {db} (table events; see docs/events.md)")
        if args.no_wait:
            return 0
        log("serving; press Ctrl-C to stop")
        server.wait()
        return server.returncode or 0
    except KeyboardInterrupt:
        log("stopping")
        return 0
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    sys.exit(main())
