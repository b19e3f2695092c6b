"""`armor-ab events import`: the API's validation, all or nothing, idempotent."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from armor_ab.cli import app
from tests.helpers.platform import seed_database

runner = CliRunner()


def rows(n: int) -> list[dict]:
    return [{"event_id": str(uuid.uuid4()), "experiment": "catalog-interleaved", "variant": "armor",
             "user_id": f"u{i}", "type": "dwell", "value": 1000.0 + i, "ts": "2026-11-01T10:00:00+00:00",
             "properties": {"device": "mobile"}} for i in range(n)]


def count(db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        con.close()


def test_jsonl_import_is_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "i.duckdb"
    seed_database(db)
    f = tmp_path / "events.jsonl"
    data = rows(250)
    f.write_text("\n".join(json.dumps(r) for r in data) + "\n\n")
    r = runner.invoke(app, ["events", "import", str(f), "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert "250 rows, 250 new, 0 already stored" in r.output
    again = runner.invoke(app, ["events", "import", str(f), "--db", str(db)])
    assert "0 new, 250 already stored" in again.output
    assert count(db) == 250
    con = duckdb.connect(str(db), read_only=True)
    props = con.execute("SELECT properties->>'device' FROM events LIMIT 1").fetchone()[0]
    con.close()
    assert props == "mobile"


def test_parquet_import(tmp_path: Path) -> None:
    db = tmp_path / "p.duckdb"
    seed_database(db)
    data = rows(40)
    for r in data:
        r.pop("properties")
        r.pop("ts")
    f = tmp_path / "events.parquet"
    pq.write_table(pa.Table.from_pylist(data), f)
    r = runner.invoke(app, ["events", "import", str(f), "--db", str(db)])
    assert r.exit_code == 0 and "40 new" in r.output
    assert count(db) == 40


def test_one_bad_row_means_nothing_lands(tmp_path: Path) -> None:
    db = tmp_path / "b.duckdb"
    seed_database(db)
    data = rows(100)
    data[57]["value"] = -3  # a negative dwell
    f = tmp_path / "bad.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in data))
    r = runner.invoke(app, ["events", "import", str(f), "--db", str(db)])
    assert r.exit_code == 2
    assert f"{f}: row 58" in r.output and "dwell" in r.output
    assert count(db) == 0
    data[57]["value"] = 5.0
    data[80]["variant"] = "purple"
    f.write_text("\n".join(json.dumps(r) for r in data))
    r = runner.invoke(app, ["events", "import", str(f), "--db", str(db)])
    assert r.exit_code == 2 and "row 81" in r.output and "field 'variant'" in r.output
    f.write_text('{"event_id": \n')
    r = runner.invoke(app, ["events", "import", str(f), "--db", str(db)])
    assert r.exit_code == 2 and "row 1" in r.output and "invalid JSON" in r.output
    assert count(db) == 0
