"""Live health, its monitor and pause/resume, end to end: a real server on loopback over a real DuckDB file.

One server (``--health-interval 0.2``) serves several experiments, each set up for one scenario:

* ``h-ok``: balanced traffic, nothing wrong: ``ok``;
* ``h-srm``: starts ok; the test sends visitors of the ARMOR arm only (a sample ratio mismatch), it turns
  critical, the monitor pauses it (its ARMOR arm serves control with fallback ``paused``, new exposures
  carry ``paused: true``), a human resumes it through the API and the monitor leaves it alone;
* ``h-content``: most of its checked pages fail their guardrails (seeded before the server starts);
* ``h-guard``: seeded events in which the treatment is clearly worse on a guardrail metric;
* ``h-noauto``: critical too, but ``health.auto_pause: false``; it also collects the warnings
  (late client events, bots, fallbacks);
* ``h-draft``: never started (409 on pause).

A server of its own is restarted under a human's resume (the acknowledgement survives it), and the
fallback rate's window is driven by a clock of its own.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import duckdb
import httpx
import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from armor_ab.cli import app as cli_app
from armor_ab.event_schema import COLUMN_NAMES
from armor_ab.experiments.assignment import Assigner
from armor_ab.experiments.models import ExperimentSpec
from armor_ab.model.interleaved import ContentMetadata, InterleavedContent, TextSegment
from armor_ab.services.health import ExperimentHealth, GuardrailHealth, HealthService, assess
from armor_ab.services.metrics import Metrics
from armor_ab.store.content import images_dir_for, save_generated, set_review
from armor_ab.store.db import connect
from armor_ab.store.experiments import (
    ExperimentRecord,
    acknowledgement,
    end_acknowledgement,
    get_experiment,
    set_paused,
    set_status,
    upsert_experiment,
)
from armor_ab.store.health import HealthReads, experiment_history
from tests.helpers.platform import Server, seed_database

pytestmark = pytest.mark.timeout(180)
ITEM = "pumps-01"
PAGE_TEXT = "Pump P-01: a quiet circulation pump, 40 W."
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def spec(key: str, *, auto_pause: bool = True, guardrails: tuple = ()) -> ExperimentSpec:
    return ExperimentSpec.model_validate({
        "key": key, "name": f"health test {key}",
        "variants": [{"key": "control", "weight": 0.5},
                     {"key": "armor", "weight": 0.5, "content": {"source": "armor", "prompt": "Describe {name}."}}],
        "metrics": {"primary": "dwell_time_per_view", "guardrails": list(guardrails)},
        "analysis": {"cuped": False},
        "health": {"auto_pause": auto_pause},
    })


def users(key: str, variant: str | None, n: int, prefix: str) -> list[str]:
    """``n`` visitor ids the experiment assigns to ``variant`` (any variant when None)."""
    assigner = Assigner.from_experiment(spec(key))
    out, i = [], 0
    while len(out) < n:
        user = f"{prefix}-{i}"
        if variant is None or assigner.assign(user).variant == variant:
            out.append(user)
        i += 1
    return out


def _page(text: str) -> InterleavedContent:
    return InterleavedContent([TextSegment(text)], ContentMetadata(model="hand-made", config_hash="-", seed=0,
                                                                    prompt="Describe it."))


def _failing_pages(con: duckdb.DuckDBPyConnection, db: Path, key: str, fail: int, ok: int) -> None:
    """Pages with a guardrail verdict, as the guardrails store them: ``fail`` failing, ``ok`` passing."""
    for i in range(fail + ok):
        item = f"{key}-item-{i}"
        save_generated(con, images_dir_for(db), key, "armor", item, _page(f"Page {i}."), "Describe it.")
        verdict = "fail" if i < fail else "pass"
        con.execute("UPDATE content SET verdict = ?, checks = '[]' WHERE experiment = ? AND item_id = ?",
                    [verdict, key, item])


def _guardrail_events(con: duckdb.DuckDBPyConnection, key: str, started: datetime, per_arm: int = 300) -> None:
    """Imported exposures and dwell events: the treatment's visitors dwell half as long (a clear breach of a
    5% guardrail on dwell time per visitor, with a visitor count the always-valid bound can judge)."""
    rng = np.random.default_rng(7)
    columns = list(COLUMN_NAMES)  # the row columns: commit_seq takes the table's DEFAULT
    rows: dict[str, list] = {c: [] for c in columns}

    def add(user: str, variant: str, type_: str, ts: datetime, value: float | None) -> None:
        for col, v in zip(columns, (str(uuid.uuid4()), key, variant, user, ITEM, type_, value, ts, ts,
                                          None, "import"), strict=True):
            rows[col].append(v)

    for arm, mean in (("control", 60_000.0), ("armor", 30_000.0)):
        for i in range(per_arm):
            t0 = started + timedelta(minutes=10 + i * 2)
            user = f"g-{arm}-{i}"
            add(user, arm, "exposure", t0, None)
            add(user, arm, "page_view", t0 + timedelta(seconds=1), None)
            add(user, arm, "dwell", t0 + timedelta(seconds=30), float(max(1_000.0, rng.normal(mean, 12_000.0))))
    guard_rows = pa.table(rows)  # noqa: F841 - read by DuckDB's replacement scan below
    con.execute(f"INSERT INTO events ({', '.join(columns)}) SELECT {', '.join(columns)} FROM guard_rows")


@dataclass
class Lab:
    db: Path
    server: Server
    keys: dict[str, str]

    def client(self, scope: str, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=30.0,
                            headers={"Authorization": f"Bearer {self.keys[scope]}", **headers})

    def health(self, key: str) -> dict:
        with self.client("read") as c:
            r = c.get(f"/v1/experiments/{key}/health")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_health(self, key: str, ok, what: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            body = self.health(key)
            if ok(body):
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"{key}: {what} did not happen within {timeout} s; last health: {body}")
            time.sleep(0.1)

    def content(self, key: str, user: str) -> dict:
        with self.client("client") as c:
            r = c.get(f"/v1/experiments/{key}/content", params={"user_id": user, "item_id": ITEM})
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    db = tmp_path_factory.mktemp("health") / "armor_ab.duckdb"
    keys = seed_database(db)
    started = datetime.now(UTC) - timedelta(days=1)
    con = connect(db)
    try:
        for key, auto in (("h-ok", True), ("h-srm", True), ("h-content", True), ("h-noauto", False)):
            upsert_experiment(con, spec(key, auto_pause=auto))
            set_status(con, key, "running", at=started)
        upsert_experiment(con, spec("h-guard", guardrails=({"metric": "dwell_time_per_visitor", "margin": 0.05},)))
        set_status(con, "h-guard", "running", at=started)
        upsert_experiment(con, spec("h-draft"))
        # h-srm's ARMOR arm has an approved page for ITEM: served until the pause, and again after the resume.
        save_generated(con, images_dir_for(db), "h-srm", "armor", ITEM, _page(PAGE_TEXT), "Describe it.")
        set_review(con, "h-srm", "approved", item_id=ITEM)
        _failing_pages(con, db, "h-content", fail=6, ok=2)
        _failing_pages(con, db, "h-noauto", fail=5, ok=0)
        _guardrail_events(con, "h-guard", started)
    finally:
        con.close()
    server = Server(db, extra_args=["--health-interval", "0.2"]).start()
    try:
        yield Lab(db, server, keys)
    finally:
        server.stop()


def _codes(health: dict) -> set[str]:
    return {p["code"] for p in health["problems"]}


def _metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the series ``name`` with (at least) ``labels`` in Prometheus text; None when absent."""
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_balanced_experiment_is_ok(lab: Lab) -> None:
    visitors = users("h-ok", None, 40, "ok")
    with lab.client("client") as c:
        for user in visitors:
            assert c.get("/v1/experiments/h-ok/assignment", params={"user_id": user}).status_code == 200
    health = lab.wait_health("h-ok", lambda h: h["srm"]["visitors"] == 40, "40 visitors")
    assert health["status"] == "ok" and health["problems"] == [], health
    assert health["experiment_status"] == "running" and not health["paused"]
    assert health["srm"]["flag"] is False and sum(health["srm"]["observed"].values()) == 40
    assert health["traffic"]["exposures_per_hour"] == 40 and health["bots"]["share"] == 0.0
    assert health["guardrails"]["state"] == "not_configured"
    metrics = httpx.get(f"{lab.server.url}/metrics").text
    assert _metric(metrics, "armor_ab_experiment_health_status", experiment="h-ok") == 0.0
    assert _metric(metrics, "armor_ab_experiment_exposures_per_hour", experiment="h-ok") == 40.0
    assert _metric(metrics, "armor_ab_experiment_paused", experiment="h-ok") == 0.0
    assert _metric(metrics, "armor_ab_experiment_srm_p_value", experiment="h-ok") > 0.01
    assert _metric(metrics, "armor_ab_experiment_health_threshold", experiment="h-ok", check="srm_alpha") == 0.001
    assert "h-draft" not in metrics  # only running experiments have health series


def test_health_needs_a_read_key_and_a_known_experiment(lab: Lab) -> None:
    assert httpx.get(f"{lab.server.url}/v1/experiments/h-ok/health").status_code == 401
    with lab.client("client") as c:
        r = c.get("/v1/experiments/h-ok/health")
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    with lab.client("read") as c:
        r = c.get("/v1/experiments/no-such/health")
        assert r.status_code == 404, r.text
        assert r.json() == {"error": {"code": "experiment_not_found", "message": "no experiment 'no-such'",
                                      "field": "key"}}
        draft = c.get("/v1/experiments/h-draft/health").json()  # answered for any experiment
        assert draft["experiment_status"] == "draft" and draft["status"] == "ok"


def test_srm_pauses_the_experiment_until_a_human_resumes_it(lab: Lab) -> None:
    armor = users("h-srm", "armor", 75, "srm")
    before = lab.health("h-srm")
    assert before["status"] == "ok", before
    first = lab.content("h-srm", armor[0])
    assert first["variant"] == "armor" and first["source"] == "armor" and first["fallback"] is None, first
    for user in armor[1:]:  # only visitors of the ARMOR arm: a sample ratio mismatch
        lab.content("h-srm", user)
    paused = lab.wait_health("h-srm", lambda h: h["paused"], "the monitor's pause")
    assert paused["status"] == "critical" and {"srm_mismatch", "paused"} <= _codes(paused), paused
    assert paused["srm"]["flag"] and paused["srm"]["p_value"] < 0.001
    assert "sample ratio mismatch" in paused["pause_cause"], paused
    with lab.client("read") as c:
        assert c.get("/v1/experiments/h-srm").json()["pause_cause"] == paused["pause_cause"]
    # Paused: the ARMOR arm serves control's copy; a new visitor still gets assigned (and its exposure is marked).
    served = lab.content("h-srm", armor[0])
    assert served["source"] == "catalog" and served["fallback"] == "paused", served
    newcomer = users("h-srm", "armor", 1, "srm-during-pause")[0]
    assert lab.content("h-srm", newcomer)["fallback"] == "paused"
    metrics = httpx.get(f"{lab.server.url}/metrics").text
    assert _metric(metrics, "armor_ab_experiment_paused", experiment="h-srm") == 1.0
    assert _metric(metrics, "armor_ab_experiment_health_status", experiment="h-srm") == 2.0
    assert _metric(metrics, "armor_ab_experiment_health_problem", experiment="h-srm", code="srm_mismatch") == 1.0
    assert _metric(metrics, "armor_ab_content_fallback_total", experiment="h-srm", reason="paused") >= 2.0

    with lab.client("admin") as c:
        r = c.post("/v1/experiments/h-srm/resume", json={"note": "SRM explained: a load test; resuming"})
    assert r.status_code == 200, r.text
    assert r.json() == {"key": "h-srm", "status": "running", "paused": False, "paused_at": None,
                        "pause_cause": None, "changed": True}
    served = lab.content("h-srm", armor[0])
    assert served["source"] == "armor" and served["content"]["segments"][0]["text"] == PAGE_TEXT, served
    time.sleep(1.5)  # several monitor rounds: the SRM is still there, but a human has seen it
    after = lab.health("h-srm")
    assert not after["paused"] and "srm_mismatch" in _codes(after), after
    assert lab.content("h-srm", armor[0])["source"] == "armor"


def test_a_failing_content_share_pauses_the_experiment(lab: Lab) -> None:
    health = lab.wait_health("h-content", lambda h: h["paused"], "the monitor's pause")
    assert health["status"] == "critical" and "content_fail_rate" in _codes(health), health
    assert health["content"]["by_verdict"] == {"pass": 2, "warn": 0, "fail": 6, "unchecked": 0}
    assert health["content"]["checked"] == 8 and health["content"]["fail_rate"] == pytest.approx(0.75)
    assert "6 of 8 checked pages fail" in health["pause_cause"], health
    metrics = httpx.get(f"{lab.server.url}/metrics").text
    assert _metric(metrics, "armor_ab_content_guardrail_fail_rate", experiment="h-content") == 0.75
    assert _metric(metrics, "armor_ab_content_pages", experiment="h-content", verdict="fail") == 6.0


def test_a_breached_guardrail_metric_pauses_the_experiment(lab: Lab) -> None:
    health = lab.wait_health("h-guard", lambda h: h["paused"], "the monitor's pause", timeout=60.0)
    assert health["status"] == "critical" and "guardrail_breached" in _codes(health), health
    assert health["guardrails"]["state"] == "checked", health
    (breach,) = health["guardrails"]["breached"]
    assert breach["metric"] == "dwell_time_per_visitor" and breach["variant"] == "armor"
    assert breach["upper"] < -0.05, breach
    assert "srm_mismatch" not in _codes(health) and health["srm"]["observed"] == {"control": 300, "armor": 300}
    assert "guardrail metric dwell_time_per_visitor breached" in health["pause_cause"]
    metrics = httpx.get(f"{lab.server.url}/metrics").text
    assert _metric(metrics, "armor_ab_experiment_guardrail_breached", experiment="h-guard") == 1.0


def test_warnings_and_a_critical_experiment_that_does_not_pause_itself(lab: Lab) -> None:
    key = "h-noauto"
    visitors = users(key, None, 60, "na")
    with lab.client("client") as c:
        for user in visitors:  # the ARMOR arm has no page: every one of its requests falls back (missing)
            assert c.get(f"/v1/experiments/{key}/content", params={"user_id": user, "item_id": ITEM}).status_code == 200
        for user in users(key, None, 40, "bot"):  # known bots
            r = c.get(f"/v1/experiments/{key}/assignment", params={"user_id": user}, headers={"User-Agent": BOT_UA})
            assert r.status_code == 200
        late = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
        batch = [{"event_id": str(uuid.uuid4()), "experiment": key, "user_id": u, "item_id": ITEM,
                  "type": "page_view", "ts": late} for u in visitors[:10]]
        r = c.post("/v1/events", json={"events": batch})
        assert r.status_code == 200 and r.json()["accepted"] == 10, r.text
    want = {"content_fail_rate", "fallback_rate", "bot_share", "ingestion_lag"}
    health = lab.wait_health(key, lambda h: want <= _codes(h) and h["bots"]["bots"] == 40
                             and h["ingestion_lag"]["events"] == 10, f"the problems {want}, all committed")
    severities = {p["code"]: p["severity"] for p in health["problems"]}
    assert severities == {"content_fail_rate": "critical", "fallback_rate": "warn", "bot_share": "warn",
                          "ingestion_lag": "warn"}, health
    assert health["status"] == "critical" and health["auto_pause"] is False
    assert health["ingestion_lag"]["events"] == 10 and 590 < health["ingestion_lag"]["p95_s"] < 700
    assert health["bots"]["bots"] == 40 and health["srm"]["excluded"] == {"user_agent": 40}
    assert health["fallback"]["fallbacks"]["missing"] == health["fallback"]["armor_requests"] >= 20
    assert health["fallback"]["rate"] == 1.0
    assert health["fallback"]["window_s"] == 15 * 60.0  # the default health.fallback_window_minutes
    # The server started less than a window ago: the counts start with it.
    assert datetime.fromisoformat(health["fallback"]["since"]) > datetime.now(UTC) - timedelta(minutes=15)
    time.sleep(1.0)  # monitor rounds: critical, but auto_pause is off
    assert not lab.health(key)["paused"]
    metrics = httpx.get(f"{lab.server.url}/metrics").text
    assert 590 < _metric(metrics, "armor_ab_experiment_ingestion_lag_seconds", experiment=key, quantile="0.95") < 700
    assert _metric(metrics, "armor_ab_experiment_bot_share", experiment=key) == pytest.approx(40 / 100)

    # A human pauses it; pausing again keeps the first cause.
    with lab.client("admin") as c:
        r = c.post(f"/v1/experiments/{key}/pause", json={"cause": "pages fail their checks: regenerating"})
        assert r.status_code == 200, r.text
        assert r.json()["paused"] and r.json()["changed"] and r.json()["pause_cause"].startswith("pages fail")
        again = c.post(f"/v1/experiments/{key}/pause", json={"cause": "another cause"}).json()
        assert again["changed"] is False and again["pause_cause"].startswith("pages fail")


def test_pause_and_resume_refusals(lab: Lab) -> None:
    with lab.client("admin") as c:
        r = c.post("/v1/experiments/h-draft/pause", json={"cause": "x"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_transition", r.text
        r = c.post("/v1/experiments/h-draft/resume", json={})
        assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_transition", r.text
        r = c.post("/v1/experiments/no-such/pause", json={"cause": "x"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "experiment_not_found", r.text
        for body in ({}, {"cause": ""}, {"cause": "   "}):
            r = c.post("/v1/experiments/h-ok/pause", json=body)
            assert r.status_code == 422 and r.json()["error"]["field"] == "cause", (body, r.text)
        r = c.post("/v1/experiments/h-ok/resume", json={})  # running and not paused: nothing to do
        assert r.status_code == 200 and r.json()["changed"] is False
    with lab.client("read") as c:
        r = c.post("/v1/experiments/h-ok/pause", json={"cause": "x"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


def test_history_and_paused_exposures_in_the_database(lab: Lab) -> None:
    """Last in this module: stops the server to read its database."""
    first_armor = users("h-srm", "armor", 1, "srm")[0]
    lab.wait_health("h-guard", lambda h: h["paused"], "h-guard's pause", timeout=60.0)
    lab.server.stop()
    con = duckdb.connect(str(lab.db), read_only=True)
    try:
        history = con.execute(
            "SELECT key, action, note FROM experiment_history WHERE action IN ('pause', 'resume') ORDER BY key, revision"
        ).fetchall()
        paused_exposures = con.execute(
            """SELECT user_id, json_extract(properties, '$.paused') FROM events
               WHERE experiment = 'h-srm' AND type = 'exposure' AND user_id LIKE 'srm-during-pause-%'""").fetchall()
        before = con.execute(
            """SELECT json_extract(properties, '$.paused') FROM events
               WHERE experiment = 'h-srm' AND type = 'exposure' AND user_id = ?""", [first_armor]).fetchall()
    finally:
        con.close()
    by_key: dict[str, list[tuple[str, str]]] = {}
    for key, action, note in history:
        by_key.setdefault(key, []).append((action, note))
    srm = by_key["h-srm"]
    assert [a for a, _ in srm] == ["pause", "resume"], srm
    assert "sample ratio mismatch" in srm[0][1] and srm[0][1].endswith("(by health)"), srm
    # The resume names the critical problem it acknowledged (read back by a restarted server).
    assert srm[1][1] == "SRM explained: a load test; resuming (by test-admin) [acknowledged: srm_mismatch]", srm
    assert by_key["h-content"][0][0] == "pause" and "checked pages fail" in by_key["h-content"][0][1]
    assert by_key["h-guard"][0][0] == "pause" and "(by health)" in by_key["h-guard"][0][1]
    assert by_key["h-noauto"] == [("pause", "pages fail their checks: regenerating (by test-admin)")]
    assert "h-ok" not in by_key
    assert [p for _, p in paused_exposures] == ["true"], paused_exposures
    assert before == [(None,)]  # an exposure before the pause carries no flag


# ---- the command line, on a database file (no server) ------------------------------------------------------


def test_cli_pause_resume_and_history(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    seed_database(db)
    con = connect(db)
    upsert_experiment(con, spec("h-draft"))
    con.close()
    run = CliRunner().invoke
    key = "catalog-interleaved"
    r = run(cli_app, ["experiment", "pause", key, "--cause", "bad pages", "--db", str(db)])
    assert r.exit_code == 0 and "paused" in r.output and "bad pages" in r.output, r.output
    r = run(cli_app, ["experiment", "pause", key, "--cause", "again", "--db", str(db)])
    assert r.exit_code == 0 and "already paused (bad pages)" in r.output, r.output
    con = connect(db, read_only=True)
    rec = get_experiment(con, key)
    con.close()
    assert rec.paused_at is not None and rec.pause_cause == "bad pages"
    r = run(cli_app, ["experiment", "resume", key, "--note", "pages fixed", "--db", str(db)])
    assert r.exit_code == 0 and "resumed" in r.output, r.output
    r = run(cli_app, ["experiment", "history", key, "--db", str(db)])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert re.search(r"\tpause\trunning\tbucket v0\tbad pages \(by .+\)$", lines[-2]), lines
    assert re.search(r"\tresume\trunning\tbucket v0\tpages fixed \(by .+\)$", lines[-1]), lines
    r = run(cli_app, ["experiment", "history", key, "--json", "--db", str(db)])
    assert r.exit_code == 0 and '"action": "resume"' in r.output
    for args in (["pause", "h-draft", "--cause", "x"], ["resume", "h-draft"], ["pause", "nope", "--cause", "x"],
                 ["pause", key, "--cause", "  "], ["history", "nope"]):
        r = run(cli_app, ["experiment", *args, "--db", str(db)])
        assert r.exit_code == 2, (args, r.output)
    con = connect(db, read_only=True)
    rec = get_experiment(con, key)
    con.close()
    assert rec.paused_at is None
    for bad in ("-1", "nan", "inf"):
        r = run(cli_app, ["serve", "--db", str(db), "--health-interval", bad])
        assert r.exit_code == 2 and "--health-interval" in r.output, (bad, r.output)


# ---- a restart under a human's resume: a server of its own ------------------------------------------------------


def test_a_human_resume_survives_a_server_restart(tmp_path: Path) -> None:
    """``r-content`` and ``r-heal`` have failing pages: the monitor pauses both, a human resumes both. Across a
    restart the monitor leaves ``r-content`` alone over the same problem and pauses it on a new one (an SRM);
    ``r-heal``'s pages are fixed meanwhile, which ends its acknowledgement, so failing again pauses it again,
    after another restart too."""
    db = tmp_path / "restart.duckdb"
    keys = seed_database(db)
    both = ("r-content", "r-heal")
    started = datetime.now(UTC) - timedelta(days=1)
    con = connect(db)
    try:
        for key in both:
            upsert_experiment(con, spec(key))
            set_status(con, key, "running", at=started)
            _failing_pages(con, db, key, fail=6, ok=2)
    finally:
        con.close()
    lab = Lab(db, Server(db, extra_args=["--health-interval", "0.2"]), keys)
    try:
        lab.server.start()
        for key in both:
            lab.wait_health(key, lambda h: h["paused"], "the monitor's pause")
        with lab.client("admin") as c:
            for key in both:
                r = c.post(f"/v1/experiments/{key}/resume", json={"note": "regenerating the failing pages"})
                assert r.status_code == 200 and r.json()["changed"], r.text
        time.sleep(1.0)  # monitor rounds: still critical, acknowledged
        for key in both:
            h = lab.health(key)
            assert h["status"] == "critical" and not h["paused"] and "content_fail_rate" in _codes(h), h
        lab.server.stop()

        con = connect(db)
        try:
            assert {k: acknowledgement(con, k) for k in both} == dict.fromkeys(both, frozenset({"content_fail_rate"}))
            con.execute("UPDATE content SET verdict = 'pass' WHERE experiment = 'r-heal'")  # fixed while down
        finally:
            con.close()
        lab.server.start()
        lab.wait_health("r-heal", lambda h: h["status"] == "ok", "r-heal healthy")
        time.sleep(1.5)  # monitor rounds of the restarted server: the same problem, acknowledged before
        h = lab.health("r-content")
        assert h["status"] == "critical" and not h["paused"] and _codes(h) == {"content_fail_rate"}, h
        with lab.client("client") as c:  # a new critical problem: visitors of the ARMOR arm only
            for user in users("r-content", "armor", 75, "restart"):
                assert c.get("/v1/experiments/r-content/assignment", params={"user_id": user}).status_code == 200
        h = lab.wait_health("r-content", lambda h: h["paused"], "the pause on a new critical problem")
        assert "sample ratio mismatch" in h["pause_cause"], h
        assert not lab.health("r-heal")["paused"]
        lab.server.stop()

        con = connect(db)
        try:
            history = {k: [(r.action, r.note) for r in experiment_history(con, k)
                           if r.action not in ("create", "start")] for k in both}
            assert {k: acknowledgement(con, k) for k in both} == dict.fromkeys(both, frozenset())
            con.execute("UPDATE content SET verdict = 'fail' WHERE experiment = 'r-heal' AND list_contains(?, item_id)",
                        [[f"r-heal-item-{i}" for i in range(6)]])  # failing again, as before
        finally:
            con.close()
        for key in both:
            actions = [a for a, _ in history[key]]
            assert actions[:2] == ["pause", "resume"], history[key]
            assert "checked pages fail" in history[key][0][1] and history[key][0][1].endswith("(by health)")
            assert history[key][1][1] == ("regenerating the failing pages (by test-admin) "
                                          "[acknowledged: content_fail_rate]"), history[key]
        assert [a for a, _ in history["r-content"]] == ["pause", "resume", "pause"], history
        assert "sample ratio mismatch" in history["r-content"][2][1]
        assert [a for a, _ in history["r-heal"]] == ["pause", "resume", "acknowledgement_end"], history
        assert history["r-heal"][2][1].startswith("no longer critical: the problems acknowledged at the resume "
                                                  "(content_fail_rate)"), history
        lab.server.start()  # the acknowledgement ended: the same problem, back, pauses r-heal again
        h = lab.wait_health("r-heal", lambda h: h["paused"], "r-heal's pause after its acknowledgement ended")
        assert "6 of 8 checked pages fail" in h["pause_cause"], h
    finally:
        lab.server.stop()


# ---- the rules and the monitor, without a server --------------------------------------------------------------


def _record(**health: object) -> ExperimentRecord:
    s = spec("unit")
    s = s.model_copy(update={"health": s.health.model_copy(update=health)})
    start = datetime.now(UTC) - timedelta(days=2)
    return ExperimentRecord(s, "running", 0, start, start, start, None)


def _assess(record: ExperimentRecord, reads: HealthReads, armor: int = 0, fallbacks: dict | None = None
            ) -> ExperimentHealth:
    now = datetime.now(UTC)
    return assess(record, reads, armor, fallbacks or {}, GuardrailHealth("not_configured"), now, now)


def test_each_threshold_warns_past_its_value_only() -> None:
    rec = _record(min_exposures_per_hour=10.0)
    quiet = HealthReads(exposures_last_hour=10, lag_events=3, lag_p50_s=1.0, lag_p95_s=300.0,
                        recent_visitors=100, recent_bots=30)
    assert _assess(rec, quiet, armor=100, fallbacks={"missing": 20}).status == "ok"
    loud = replace(quiet, exposures_last_hour=9, lag_p95_s=301.0, recent_bots=31)
    h = _assess(rec, loud, armor=100, fallbacks={"missing": 20})
    assert h.status == "warn" and {p.code for p in h.problems} == {"low_exposures", "ingestion_lag", "bot_share"}
    # The paused answers are left out of the fallback rate: 21 of 50 served otherwise.
    h = _assess(rec, quiet, armor=100, fallbacks={"missing": 21, "paused": 50})
    assert [p.code for p in h.problems] == ["fallback_rate"] and h.fallback["rate"] == pytest.approx(21 / 50)
    # Too few to judge: no warning however bad the share.
    few = replace(quiet, recent_visitors=10, recent_bots=10)
    assert _assess(rec, few, armor=10, fallbacks={"missing": 10}).status == "ok"
    # Content: critical past the rate with enough checked pages only.
    pages = replace(quiet, pages_by_verdict={"pass": 1, "warn": 0, "fail": 3, "unchecked": 9})
    assert _assess(rec, pages).status == "ok"  # 3 of 4 fail, but 4 checked pages are too few to judge
    pages = replace(quiet, pages_by_verdict={"pass": 3, "warn": 1, "fail": 1, "unchecked": 0})
    assert _assess(rec, pages).status == "ok"  # 20% <= 25%
    pages = replace(quiet, pages_by_verdict={"pass": 3, "warn": 0, "fail": 2, "unchecked": 0})
    h = _assess(rec, pages)
    assert h.status == "critical" and [p.code for p in h.critical] == ["content_fail_rate"]
    assert h.problems[0].message == "2 of 5 checked pages fail a blocking content check (40% > 25%)"


def test_the_monitor_survives_a_failing_check() -> None:
    """A check that raises is logged and counted; the other experiments are still checked, and a critical
    one is paused by ``health``."""
    metrics = Metrics(lambda: 0)
    rec = _record()
    experiments = {k: SimpleNamespace(record=replace(rec, spec=rec.spec.model_copy(update={"key": k})))
                   for k in ("broken", "failing-pages")}
    writes: list[tuple] = []

    async def write(fn, *args, **kwargs):
        writes.append((fn.__name__, args, kwargs))
        return experiments[args[0]].record, True

    async def read(fn, *args, **kwargs):  # the history: no resume acknowledged anything
        assert fn is acknowledgement
        return frozenset()

    state = SimpleNamespace(experiments=experiments, metrics=metrics, write=write, read=read,
                            settings=SimpleNamespace(report_timeout_s=5.0))
    service = HealthService(state)  # type: ignore[arg-type]
    checked: list[str] = []

    async def check(key: str, *, report: bool = True) -> ExperimentHealth:
        checked.append(key)
        if key == "broken":
            raise RuntimeError("the database process is gone")
        pages = HealthReads(pages_by_verdict={"pass": 0, "warn": 0, "fail": 5, "unchecked": 0})
        return _assess(experiments[key].record, pages)

    service.check = check  # type: ignore[method-assign]
    asyncio.run(service.check_running())
    assert checked == ["broken", "failing-pages"]
    assert metrics.registry.get_sample_value("armor_ab_health_checks_failed_total") == 1.0
    assert writes == [("set_paused", ("failing-pages", True), {
        "cause": "5 of 5 checked pages fail a blocking content check (100% > 25%)", "by": "health"})]


def test_a_report_refused_for_its_budget_is_not_asked_again_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import armor_ab.services.health as health_module
    from armor_ab.services.errors import ServiceError

    calls: list[str] = []
    errors = iter([ServiceError(503, "unavailable", "disk full"), ServiceError(503, "report_timeout", "too slow")])

    async def refused(state, key, cuped=None):
        calls.append(key)
        raise next(errors)

    monkeypatch.setattr(health_module, "report_json", refused)
    rec = _record()
    rec = replace(rec, spec=rec.spec.model_copy(update={"metrics": spec(
        "unit", guardrails=({"metric": "dwell_time_per_visitor"},)).metrics}))
    service = HealthService(SimpleNamespace())  # type: ignore[arg-type]
    first = asyncio.run(service._guardrails(rec))  # a passing fault: asked again next time
    assert first.state == "unavailable" and "(unavailable)" in first.message
    second = asyncio.run(service._guardrails(rec))  # over its budget: remembered
    third = asyncio.run(service._guardrails(rec))
    assert second.state == third.state == "unavailable" and "report_timeout" in third.message
    assert calls == ["unit", "unit"]


def test_the_fallback_rate_forgets_fallbacks_older_than_its_window() -> None:
    """The rate reads the last ``health.fallback_window_minutes`` of per-minute counts (the clock is the
    metrics' own); the Prometheus counters keep counting since the start."""
    t0 = 1_700_000_040.0  # the server's start: second 0 of a minute
    clock = [t0]
    metrics = Metrics(lambda: 0, clock=lambda: clock[0])
    rec = _record()  # the default window: 15 minutes
    assert rec.spec.health.fallback_window_minutes == 15

    def at(minutes: float, fallback: str | None, n: int) -> None:
        clock[0] = t0 + minutes * 60
        for _ in range(n):
            metrics.count_armor_content("unit", fallback)

    def health(minutes: float, window: int = 15) -> ExperimentHealth:
        clock[0] = t0 + minutes * 60
        r = rec if window == 15 else _record(fallback_window_minutes=window)
        counts = metrics.fallback_window.read("unit", window)
        return assess(r, HealthReads(), counts.requests, counts.fallbacks, GuardrailHealth("not_configured"),
                      datetime.fromtimestamp(clock[0], UTC), datetime.fromtimestamp(counts.since, UTC))

    at(0, "missing", 40)  # a burst of fallbacks at the start
    at(5, None, 30)
    h = health(5)
    assert [p.code for p in h.problems] == ["fallback_rate"], h.problems
    assert h.fallback["armor_requests"] == 70 and h.fallback["fallbacks"] == {"missing": 40}
    assert h.fallback["window_s"] == 900.0
    assert h.fallback["since"] == datetime.fromtimestamp(t0, UTC).isoformat()  # started less than a window ago
    assert "of the last 15 min" in h.problems[0].message
    h = health(14.9)  # the burst's minute is the window's first (whole minutes: the current one and 14 before)
    assert h.fallback["armor_requests"] == 70 and h.status == "warn"
    h = health(15)  # ... and now out of it: forgotten
    assert h.status == "ok" and h.fallback["armor_requests"] == 30 and h.fallback["fallbacks"] == {}
    assert h.fallback["rate"] == 0.0
    assert h.fallback["since"] == datetime.fromtimestamp(t0 + 60, UTC).isoformat()  # the window's first minute
    assert health(15, window=60).fallback["armor_requests"] == 70  # a longer window still holds it

    # An outage after a long good run warns at once; over the counts since the start it would not.
    at(60, None, 1_000)
    at(120, "generation_failed", 25)
    at(121, None, 5)
    h = health(121)
    assert [p.code for p in h.problems] == ["fallback_rate"] and h.fallback["rate"] == pytest.approx(25 / 30)
    assert h.fallback["fallbacks"] == {"generation_failed": 25}
    assert (65 / 1_100) < rec.spec.health.max_fallback_rate  # what the cumulative counts say
    # Paused answers stay out of the rate, within the window too.
    at(122, "paused", 100)
    h = health(122)
    assert h.fallback["armor_requests"] == 130 and h.fallback["rate"] == pytest.approx(25 / 30)

    # The ring holds a day of minutes: the same slot a day later is a new minute, not the old one plus.
    at(24 * 60, "missing", 1)
    h = health(24 * 60)
    assert h.fallback["armor_requests"] == 1 and h.fallback["fallbacks"] == {"missing": 1}
    assert health(24 * 60 + 30).fallback["armor_requests"] == 0  # nothing in the last 15 minutes
    # Prometheus keeps the counts since the start.
    get = metrics.registry.get_sample_value
    assert get("armor_ab_content_armor_requests_total", {"experiment": "unit"}) == 70 + 1_030 + 100 + 1
    assert get("armor_ab_content_fallback_total", {"experiment": "unit", "reason": "missing"}) == 41


def test_the_fallback_window_is_validated() -> None:
    from pydantic import ValidationError

    from armor_ab.experiments.content_checks import HealthSpec

    assert HealthSpec().fallback_window_minutes == 15
    assert HealthSpec(fallback_window_minutes=24 * 60).fallback_window_minutes == 1440
    for bad in (0, -5, 24 * 60 + 1, 1.5, "soon"):
        with pytest.raises(ValidationError, match="fallback_window_minutes"):
            HealthSpec(fallback_window_minutes=bad)


def test_the_acknowledgement_of_a_resume_lasts_until_the_history_ends_it(tmp_path: Path) -> None:
    """``acknowledgement`` reads the last resume's codes back from a real database; a pause, a stop or an
    ``acknowledgement_end`` after it ends it."""
    db = tmp_path / "ack.duckdb"
    con = connect(db)
    try:
        upsert_experiment(con, spec("a"))
        set_status(con, "a", "running")
        assert acknowledgement(con, "a") == frozenset()
        set_paused(con, "a", True, cause="critical", by="health")
        assert acknowledgement(con, "a") == frozenset()
        codes = frozenset({"srm_mismatch", "content_fail_rate"})
        set_paused(con, "a", False, cause="seen [acknowledged: bot_share]", by="ann", acknowledged=codes)
        assert acknowledgement(con, "a") == codes
        upsert_experiment(con, spec("a").model_copy(update={"name": "renamed"}))  # an update keeps it
        assert acknowledgement(con, "a") == codes
        assert not end_acknowledgement(con, "a", {"srm_mismatch"}, by="health")  # not what the history holds
        assert end_acknowledgement(con, "a", codes, by="health")
        assert acknowledgement(con, "a") == frozenset()
        assert not end_acknowledgement(con, "a", codes, by="health")  # once
        set_paused(con, "a", True, cause="critical", by="health")
        set_paused(con, "a", False, cause="again", by="ann", acknowledged={"srm_mismatch"})
        assert acknowledgement(con, "a") == {"srm_mismatch"}
        set_paused(con, "a", True, cause="a new problem", by="health")  # a pause after the resume ends it
        assert acknowledgement(con, "a") == frozenset()
        set_paused(con, "a", False, cause="again", by="ann", acknowledged={"srm_mismatch"})
        set_status(con, "a", "stopped")  # so does a stop
        assert acknowledgement(con, "a") == frozenset()
        set_status(con, "a", "running")
        set_paused(con, "a", True, cause="x", by="health")
        set_paused(con, "a", False, cause="without problems", by="ann")
        assert acknowledgement(con, "a") == frozenset()
        with pytest.raises(ValueError, match="only a resume"):
            set_paused(con, "a", True, cause="x", by="ann", acknowledged={"srm_mismatch"})
        notes = [r.note for r in experiment_history(con, "a") if r.action == "resume"]
    finally:
        con.close()
    assert notes[0] == "seen [acknowledged: bot_share] (by ann) [acknowledged: content_fail_rate, srm_mismatch]"
    assert notes[-1] == "without problems (by ann)"
