"""`armor-ab serve --export-dir`: the server keeps the event lake itself, exactly once, across rounds and restarts.

A real server over a seeded database takes event batches while it exports every half second; after a clean
stop (its last round), a restart with more batches, and a SIGKILL, the lake holds exactly the events the
server acknowledged by its last round: every acknowledged event id once, none twice, and the server's own
exposures. /metrics counts what was exported. A destination that cannot be a lake is refused at start.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx

from armor_ab.store.db import connect
from armor_ab.store.lake import read_manifest
from tests.helpers.platform import DEMO_EXPERIMENT, Server, seed_database

EXPERIMENT = "catalog-interleaved"


def post_batch(server: Server, key: str, n: int) -> set[str]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    now = datetime.now(UTC).isoformat()
    events = [{"event_id": i, "experiment": EXPERIMENT, "user_id": f"v{k}",
               "type": "page_view", "ts": now} for k, i in enumerate(ids)]
    r = httpx.post(f"{server.url}/v1/events", json={"events": events},
                   headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 200 and r.json()["accepted"] == n, r.text
    return set(ids)


def lake_ids(lake: Path) -> list[str]:
    files = sorted((lake / "events").rglob("*.parquet"))
    if not files:
        return []
    con = duckdb.connect()
    try:
        return [r[0] for r in con.execute(
            "SELECT event_id FROM read_parquet(?, hive_partitioning = true)", [[str(f) for f in files]]).fetchall()]
    finally:
        con.close()


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_the_server_keeps_the_lake_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "armor_ab.duckdb"
    keys = seed_database(db, DEMO_EXPERIMENT)
    lake = tmp_path / "lake"
    args = ["--export-dir", str(lake), "--export-interval", "0.5", "--health-interval", "0"]
    server = Server(db, extra_args=args).start()
    sent: set[str] = set()
    try:
        for _ in range(3):
            sent |= post_batch(server, keys["client"], 200)
        assert wait_for(lambda: sent <= set(lake_ids(lake))), "the lake never caught up with the server"
        # a visitor's first exposure, logged by the server itself, goes to the lake too
        r = httpx.get(f"{server.url}/v1/experiments/{EXPERIMENT}/assignment", params={"user_id": "lake-visitor"},
                      headers={"Authorization": f"Bearer {keys['client']}"}, timeout=30)
        assert r.status_code == 200, r.text
        sent |= post_batch(server, keys["client"], 50)
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert "armor_ab_lake_exported_rows_total" in metrics and "armor_ab_lake_export_failures_total 0.0" in metrics
    finally:
        server.stop()  # SIGTERM: the last round runs before the server exits

    ids = lake_ids(lake)
    assert len(ids) == len(set(ids)), "an event is in the lake twice"
    assert sent <= set(ids)
    con = connect(db, read_only=True)
    try:
        table = {str(r[0]) for r in con.execute("SELECT event_id FROM events").fetchall()}
        exposure = con.execute("SELECT count(*) FROM events WHERE user_id = 'lake-visitor' AND type = 'exposure'"
                               ).fetchone()[0]
    finally:
        con.close()
    assert exposure == 1 and set(ids) == table, "after a clean stop the lake is the event log"

    # Restart: the next server goes on from the lake's high-water mark; then it is killed mid-run.
    server = Server(db, extra_args=args).start()
    try:
        more = post_batch(server, keys["client"], 300)
        assert wait_for(lambda: more <= set(lake_ids(lake)))
    finally:
        server.kill()
    ids = lake_ids(lake)
    assert len(ids) == len(set(ids)) and (sent | more) <= set(ids)
    manifest = read_manifest(lake)
    assert manifest is not None and manifest["rows"] == len(ids)


def test_a_destination_that_is_not_a_lake_is_refused_at_start(tmp_path: Path) -> None:
    db = tmp_path / "armor_ab.duckdb"
    seed_database(db, DEMO_EXPERIMENT)
    stray = tmp_path / "notalake" / "events" / "date=2026-01-01"
    stray.mkdir(parents=True)
    (stray / "x.parquet").write_bytes(b"PAR1")
    for dest, message in ((tmp_path / "notalake", "has no manifest.json"), (db, "is not a directory")):
        out = subprocess.run([sys.executable, "-m", "armor_ab", "serve", "--db", str(db), "--export-dir", str(dest)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    out = subprocess.run([sys.executable, "-m", "armor_ab", "serve", "--db", str(db), "--export-dir", str(tmp_path),
                          "--export-interval", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--export-interval must be a positive" in out.stderr
