"""A stored experiment whose spec no longer loads is quarantined, never fatal (issue 15, finding 1).

The row is broken the way the issue found it (``mde: null``, what a stored ``Infinity`` became)
or by hand, straight in the DuckDB file; a real server then starts on it, serves the others, lists
the quarantined one with its error, creates keys, and a PUT of a valid spec repairs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import httpx
import pytest

from armor_ab.experiments.loader import spec_from_mapping
from armor_ab.store.db import connect
from armor_ab.store.experiments import (
    ExperimentError,
    get_experiment,
    list_experiments,
    list_quarantined,
    set_status,
    upsert_experiment,
)
from tests.helpers.platform import Server, seed_database

SPEC = {
    "key": "broken",
    "name": "Broken one",
    "metrics": {"primary": "inquiry_rate"},
    "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
    "mde": 0.05,
}


def _add(db: Path, spec: dict, status: str | None = None) -> None:
    con = connect(db)
    try:
        upsert_experiment(con, spec_from_mapping(spec))
        if status:
            set_status(con, spec["key"], status)
    finally:
        con.close()


def _sql(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    """Straight into the file, past every rule of the store."""
    con = duckdb.connect(str(db))
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _break(db: Path, row: str, **changes: object) -> None:
    (text,) = _sql(db, "SELECT spec FROM experiments WHERE key = ?", [row])[0]
    _sql(db, "UPDATE experiments SET spec = ? WHERE key = ?", [json.dumps({**json.loads(text), **changes}), row])


def test_a_broken_row_is_quarantined_the_server_starts_and_a_put_repairs_it(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    keys = seed_database(db)  # the demo experiment, running
    _add(db, SPEC, "running")
    _break(db, "broken", mde=None)  # what "mde": Infinity was stored as
    server = Server(db).start()  # before the fix: the snapshot raised and the server exited
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    try:
        with httpx.Client(base_url=server.url, headers=admin, timeout=30) as c:
            assert [e["key"] for e in c.get("/v1/experiments").json()] == ["catalog-interleaved"]
            (q,) = c.get("/v1/quarantine/experiments").json()
            assert q["key"] == "broken" and q["status"] == "running" and q["field"] == "mde"
            assert q["error"] and json.loads(q["spec"])["mde"] is None
            read = {"Authorization": f"Bearer {keys['read']}"}
            assert c.get("/v1/quarantine/experiments", headers=read).status_code == 403
            assert c.get("/v1/experiments/broken").status_code == 404
            # Keys are created and shown while a row is quarantined (the issue: 500, a key without its secret).
            made = c.post("/v1/keys", json={"scope": "read", "name": "while-quarantined"})
            assert made.status_code == 201, made.text
            assert c.get("/v1/experiments", headers={"Authorization": f"Bearer {made.json()['key']}"}).status_code == 200

            fixed = c.put("/v1/experiments/broken", json=SPEC)
            assert fixed.status_code == 200, fixed.text
            assert fixed.headers["x-armor-action"] == "repair"
            body = fixed.json()
            assert body["status"] == "running" and body["bucket_version"] == 0
            assert body["created_at"] == q["created_at"] and body["spec"]["mde"] == 0.05
            assert c.get("/v1/quarantine/experiments").json() == []
            assert [e["key"] for e in c.get("/v1/experiments").json()] == ["catalog-interleaved", "broken"]
            assigned = c.get("/v1/experiments/broken/assignment", params={"user_id": "u1"},
                             headers={"Authorization": f"Bearer {keys['client']}"})
            assert assigned.status_code == 200 and assigned.json()["in_experiment"] is True
    finally:
        server.stop()
    actions = [a for (a,) in _sql(db, "SELECT action FROM experiment_history WHERE key = 'broken' ORDER BY revision")]
    assert actions == ["create", "start", "repair"]
    server.start()  # and it starts again
    server.stop()


def test_quarantine_rules_in_the_store(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    _add(db, SPEC, "running")
    _add(db, {**SPEC, "key": "renamed"})
    _add(db, {**SPEC, "key": "odd-status"})
    _add(db, {**SPEC, "key": "fine"})
    _break(db, "broken", segments=["a b"])
    _break(db, "renamed", key="other")  # the spec's key is not the row's
    _sql(db, "UPDATE experiments SET status = 'paused' WHERE key = 'odd-status'")
    con = connect(db)
    try:
        assert [r.key for r in list_experiments(con)] == ["fine"]
        quarantined = {q.key: q for q in list_quarantined(con)}
        assert set(quarantined) == {"broken", "renamed", "odd-status"}
        assert quarantined["broken"].field == "segments[0]"
        assert quarantined["renamed"].field == "key" and quarantined["odd-status"].field == "status"
        with pytest.raises(ExperimentError) as info:
            get_experiment(con, "broken")
        assert info.value.code == "experiment_quarantined" and "segments[0]" in info.value.message
        with pytest.raises(ExperimentError):
            set_status(con, "broken", "stopped")
        # A running one: the repair may not move visitors unless it re-seeds.
        reweighted = spec_from_mapping({**SPEC, "variants": [{"key": "control", "weight": 0.3},
                                                            {"key": "treatment", "weight": 0.7}]})
        with pytest.raises(ExperimentError) as info:
            upsert_experiment(con, reweighted)
        assert info.value.code == "running_experiment_reassignment"
        rec, action = upsert_experiment(con, reweighted, new_bucket_version=True)
        assert action == "repair" and rec.status == "running" and rec.bucket_version == 1
        rec, action = upsert_experiment(con, spec_from_mapping({**SPEC, "key": "odd-status"}))
        assert action == "repair" and rec.status == "draft"  # never started: back to draft
        rec, action = upsert_experiment(con, spec_from_mapping({**SPEC, "key": "renamed"}))
        assert action == "repair"
        assert list_quarantined(con) == [] and len(list_experiments(con)) == 4
    finally:
        con.close()
