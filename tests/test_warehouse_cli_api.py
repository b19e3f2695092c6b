"""`armor-ab analyze --warehouse` and `armor-ab serve --warehouse`: the report computed where the events are.

The warehouse tests' event log (tests/helpers/warehouse.py) is exported to a Parquet lake with `armor-ab events
export`; the same report then comes from the store, from `analyze --warehouse chdb:?parquet=…` (a real
subprocess), and from a real server whose store holds the experiment but no events at all: every figure of
the results must agree within 1e-9. A warehouse that cannot answer is a clean CLI error or a 503 in the
JSON error shape, and the server answers the next request.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from armor_ab.store.db import connect
from armor_ab.store.keys import create_key
from tests.helpers.platform import Server
from tests.helpers.warehouse import EXPERIMENT, Lake, build_lake, figures, max_rel_diff

TOLERANCE = 1e-9
# Figures a report computes from the clock or that say how it was computed, not what it found.
CLOCK_KEYS = ("/generated_at", "/data/deduplicated_in_sql", "/power/days_remaining", "/power/", "/roi/")


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "armor_ab", *args], capture_output=True, text=True, timeout=600)
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def comparable(report: dict) -> dict[str, object]:
    return {k: v for k, v in figures(report).items() if not k.startswith(CLOCK_KEYS)}


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return build_lake(tmp_path_factory.mktemp("cli"), visitors=3_000)


@pytest.fixture(scope="module")
def exported(lake: Lake) -> Path:
    dest = lake.store.parent / "lake"
    out = cli("events", "export", "--db", str(lake.store), "--to", str(dest))
    assert "exported" in (out.stdout + out.stderr).lower()
    return dest


@pytest.fixture(scope="module")
def reference(lake: Lake) -> dict:
    return json.loads(cli("report", EXPERIMENT, "--db", str(lake.store), "--json").stdout)


def chdb_url(lake_dir: Path) -> str:
    return f"chdb:?parquet={lake_dir}/events/*/*.parquet&unique=1"


def test_analyze_on_chdb_equals_the_store(lake: Lake, exported: Path, reference: dict) -> None:
    out = cli("analyze", EXPERIMENT, "--db", str(lake.store), "--warehouse", chdb_url(exported), "--json")
    got = json.loads(out.stdout)
    assert got["visitors"] == reference["visitors"] and got["visitors"]["control"] > 0
    diff, where = max_rel_diff(comparable(reference), comparable(got))
    assert diff <= TOLERANCE, where
    assert got["verdict"]["decision"] == reference["verdict"]["decision"]
    table = cli("analyze", EXPERIMENT, "--db", str(lake.store), "--warehouse", chdb_url(exported))
    assert "sample ratio" in table.stdout and "Results" in table.stdout


def test_analyze_warehouse_errors(lake: Lake, tmp_path: Path) -> None:
    bad = cli("analyze", EXPERIMENT, "--db", str(lake.store), "--warehouse", "postgres://db/x", check=False)
    assert bad.returncode == 2 and "unknown warehouse URL" in bad.stderr and "Traceback" not in bad.stderr
    missing = cli("analyze", EXPERIMENT, "--db", str(lake.store), "--warehouse", str(tmp_path / "w.yaml"),
                  check=False)
    assert missing.returncode == 2 and f"{tmp_path / 'w.yaml'}: cannot read it" in missing.stderr
    notable = cli("analyze", EXPERIMENT, "--db", str(lake.store), "--warehouse",
                  "clickhouse://analyst:s3cret@127.0.0.1:1/db", check=False)
    assert notable.returncode == 2 and "cannot open it" in notable.stderr
    assert "s3cret" not in notable.stderr and "analyst:***@" in notable.stderr
    empty = cli("analyze", EXPERIMENT, "--db", str(lake.store), "--warehouse", "duckdb://?table=nowhere",
                check=False)
    assert empty.returncode == 2 and "the analysis failed there" in empty.stderr and "nowhere" in empty.stderr


def test_serve_with_a_warehouse(lake: Lake, exported: Path, reference: dict, tmp_path: Path) -> None:
    """The server's store has the experiment but no events: its report can only come from the warehouse."""
    db = tmp_path / "server.duckdb"
    shutil.copy(lake.store, db)
    con = connect(db)
    con.execute("DELETE FROM events")
    read_key, _ = create_key(con, "read", "analyst")
    con.close()
    headers = {"Authorization": f"Bearer {read_key}"}
    server = Server(db, extra_args=["--warehouse", chdb_url(exported)]).start()
    try:
        r = httpx.get(f"{server.url}/v1/experiments/{EXPERIMENT}/results", headers=headers, timeout=120)
        assert r.status_code == 200, r.text
        got = r.json()
        diff, where = max_rel_diff(comparable(reference), comparable(got))
        assert diff <= TOLERANCE, where
        again = httpx.get(f"{server.url}/v1/experiments/{EXPERIMENT}/results", headers=headers, timeout=120)
        assert again.status_code == 200 and again.json()["visitors"] == got["visitors"]  # from the cache
    finally:
        server.stop()

    broken = Server(db, extra_args=["--warehouse", f"duckdb:///{tmp_path / 'none.duckdb'}"]).start()
    try:
        for _ in range(2):  # the failure closes the warehouse; the next request tries again, same answer
            r = httpx.get(f"{broken.url}/v1/experiments/{EXPERIMENT}/results", headers=headers, timeout=60)
            assert r.status_code == 503 and r.headers["Retry-After"] == "30", r.text
            body = r.json()
            assert body["error"]["code"] == "warehouse_unavailable" and "none.duckdb" in body["error"]["message"]
        assert httpx.get(f"{broken.url}/healthz", timeout=10).status_code == 200
    finally:
        broken.stop()


def test_serve_refuses_a_bad_warehouse_at_start(lake: Lake, tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("url: \"chdb:\"\nexposures: {table: t, columns: {user_id: u}}\n")
    out = cli("serve", "--db", str(lake.store), "--port", "1", "--warehouse", str(path), check=False)
    assert out.returncode == 2 and f"{path}: field 'exposures.columns'" in out.stderr
