"""`make demo` runs the main job end to end on an embedded database (here: a temporary one)."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb

from tests.conftest import free_port


def test_demo_runs_end_to_end(tmp_path) -> None:
    db = tmp_path / "demo" / "armor_ab.duckdb"
    port = free_port()
    out = subprocess.run(
        [sys.executable, "-m", "armor_ab.demo", "--no-wait", "--no-content", "--no-dashboard", "--visitors", "300", "--db", str(db),
         "--port", str(port)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"http://127.0.0.1:{port}/docs" in out.stdout
    keys = json.loads((db.parent / "demo-keys.json").read_text())
    assert set(keys) == {"admin", "read", "client"}
    assert oct((db.parent / "demo-keys.json").stat().st_mode)[-3:] == "600"
    assert keys["client"] not in out.stdout  # secrets stay in the owner-only file
    con = duckdb.connect(str(db), read_only=True)
    visitors = con.execute("SELECT count(DISTINCT user_id) FROM events WHERE type = 'exposure'").fetchone()[0]
    status = con.execute("SELECT status FROM experiments WHERE key = 'catalog-interleaved'").fetchone()[0]
    con.close()
    assert visitors == 300 and status == "running"
    # A second run reuses the database and keys; the same seeded visitors are recognised as retries.
    again = subprocess.run(
        [sys.executable, "-m", "armor_ab.demo", "--no-wait", "--no-content", "--no-dashboard", "--visitors", "300", "--db", str(db),
         "--port", str(port)],
        capture_output=True, text=True, timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert '"accepted": 0' in again.stdout
