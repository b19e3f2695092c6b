"""Event integrity (issue 15): what a client key posts is checked before it counts.

Forged exposures (a variant the server does not assign, made-up segments, made-up visitors) are
refused per event or left out of the report; types are strict; ``ts`` is bounded; ids hold no control
characters; every row records who wrote it (``source``). See docs/events.md, "What a client may send".
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from armor_ab.api.app import create_app
from armor_ab.cli import app as cli_app
from armor_ab.event_schema import COLUMN_NAMES
from armor_ab.events import exposure_event_id
from armor_ab.experiments.assignment import Assigner
from armor_ab.experiments.loader import load_experiment_file
from armor_ab.reporting.report import experiment_report
from armor_ab.services.state import ServerSettings
from armor_ab.stats.sql import load_sums
from armor_ab.store.db import connect
from armor_ab.store.experiments import get_experiment, set_status, upsert_experiment
from armor_ab.store.process import query
from armor_ab.store.schema import ensure_schema
from tests.helpers.platform import DEMO_EXPERIMENT, Server, seed_database

ROW_COLUMNS = ", ".join(COLUMN_NAMES)  # commit_seq is the database's (its DEFAULT)

EXP = "catalog-interleaved"
SPEC = load_experiment_file(DEMO_EXPERIMENT)
ASSIGNER = Assigner.from_experiment(SPEC)
MOBILE_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1"


def assigned(user: str) -> str:
    return ASSIGNER.assign(user).variant


def other(variant: str) -> str:
    return "control" if variant == "armor" else "armor"


def ev(user: str, **kw) -> dict:
    """An event of ``user`` naming its assigned variant (override with ``variant=``)."""
    return {"event_id": str(uuid.uuid4()), "experiment": EXP, "variant": assigned(user), "user_id": user,
            "type": "page_view", **kw}


def error_of(response: httpx.Response, status: int, code: str, field: str | None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    assert body["error"]["code"] == code and body["error"]["field"] == field, body
    return body["error"]


def seed_more(db: Path) -> None:
    """Two more running experiments: half coverage, and one that declares a segment of its own."""
    con = connect(db)
    try:
        for spec in (SPEC.model_copy(update={"key": "half", "coverage": 0.5}),
                     SPEC.model_copy(update={"key": "planned", "segments": ["plan"]})):
            upsert_experiment(con, spec)
            set_status(con, spec.key, "running")
    finally:
        con.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    db = tmp_path / "integrity.duckdb"
    keys = seed_database(db)
    seed_more(db)
    with TestClient(create_app(ServerSettings(db_path=db))) as client:
        client.headers["Authorization"] = f"Bearer {keys['client']}"
        yield client, keys


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """One app for the tests that only validate (each uses its own visitors)."""
    db = tmp_path_factory.mktemp("integrity") / "shared.duckdb"
    keys = seed_database(db)
    with TestClient(create_app(ServerSettings(db_path=db))) as client:
        client.headers["Authorization"] = f"Bearer {keys['client']}"
        yield client, keys


def post(client: TestClient, events: list[dict], **headers: str) -> httpx.Response:
    return client.post("/v1/events", content=json.dumps({"events": events}),
                       headers={"Content-Type": "application/json", **headers})


def rows(client: TestClient, sql: str, params: list | None = None) -> list[tuple]:
    return client.app.state.armor.store.read(query, sql, params).result(10)


# -- the finding: forged visitors --------------------------------------------------------------------


def test_forged_visitors_are_refused_counted_and_left_out_of_the_report(tmp_path: Path) -> None:
    """A real server: 40 visitors assigned by the server, then 60 made-up visitors posted with the
    client key, first in the wrong variants (refused one by one, counted), then in their "right"
    variants (stored as client rows, left out of the report and counted there)."""
    db = tmp_path / "forged.duckdb"
    keys = seed_database(db)
    real = [f"real-{i}" for i in range(40)]
    forged = [f"forged-{i}" for i in range(60)]
    server = Server(db).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30.0,
                          headers={"Authorization": f"Bearer {keys['client']}", "User-Agent": MOBILE_UA}) as c:
            for user in real:
                r = c.get(f"/v1/experiments/{EXP}/assignment", params={"user_id": user, "item_id": "pumps-01"})
                assert r.status_code == 200 and r.json()["variant"] == assigned(user)
            views = c.post("/v1/events", json={"events": [ev(u, item_id="pumps-01") for u in real]})
            assert views.json() == {"accepted": 40, "duplicates": 0}

            wrong = [ev(u, type="exposure", variant=other(assigned(u)), properties={"device": "mobile"}) for u in forged]
            r = c.post("/v1/events", json={"events": wrong})
            assert r.status_code == 200, r.text
            body = r.json()
            assert (body["accepted"], body["duplicates"], len(body["refused"])) == (0, 0, 60)
            assert [x["index"] for x in body["refused"]] == list(range(60))
            assert {x["code"] for x in body["refused"]} == {"variant_mismatch"}
            assert body["refused"][7]["field"] == "events[7].variant"
            assert repr(assigned(forged[7])) in body["refused"][7]["message"]

            right = [ev(u, type="exposure", properties={"device": "mobile"}) for u in forged]
            assert c.post("/v1/events", json={"events": right}).json() == {"accepted": 60, "duplicates": 0}
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'armor_ab_events_refused_total{reason="variant_mismatch"} 60.0' in metrics
    finally:
        server.stop()

    con = connect(db, read_only=True)
    try:
        sources = dict(con.execute("SELECT source, count(*) FROM events WHERE type = 'exposure' GROUP BY ALL").fetchall())
        assert sources == {"server": 40, "client": 60}
        assert con.execute("SELECT count(*) FROM events WHERE user_id LIKE 'forged-%'").fetchone()[0] == 60
        rec = get_experiment(con, EXP)
        report = experiment_report(con, rec)
        assert sum(report["visitors"].values()) == 40  # not 100
        assert report["data"]["exposures"] == "server" and report["data"]["client_only_visitors"] == 60
        # The setting is what keeps the right-variant forgeries out: with "any" they would count.
        sums = load_sums(con, EXP, start=rec.started_at, end=datetime.now(UTC), exposures="any",
                         variants=["control", "armor"])
        assert sum(s.n for s in sums.totals.values()) == 100 and sums.client_only_visitors == 0
    finally:
        con.close()


def test_a_batch_with_refused_events_commits_the_rest(api) -> None:
    client, _ = api
    user = "mixed-1"
    batch = [ev(user), ev(user, variant=other(assigned(user))), ev(user, type="dwell", value=1500.0), ev(user)]
    r = post(client, batch)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 3, "duplicates": 0, "refused": [
        {"index": 1, "code": "variant_mismatch", "field": "events[1].variant", "message": r.json()["refused"][0]["message"]}]}
    stored = rows(client, "SELECT event_id::VARCHAR FROM events WHERE user_id = ?", [user])
    assert sorted(i for (i,) in stored) == sorted(batch[i]["event_id"] for i in (0, 2, 3))
    again = post(client, batch)  # a retry: the same refusal, the rest already stored
    assert (again.json()["accepted"], again.json()["duplicates"], len(again.json()["refused"])) == (0, 3, 1)
    only_bad = post(client, [ev(user, variant=other(assigned(user)))])
    assert only_bad.status_code == 200 and (only_bad.json()["accepted"], only_bad.json()["duplicates"]) == (0, 0)
    assert 'armor_ab_events_refused_total{reason="variant_mismatch"} 3.0' in client.get("/metrics").text


def test_the_beacon_refuses_forged_variants_alike(api) -> None:
    client, keys = api
    user = "beacon-forger"
    body = json.dumps({"events": [ev(user, variant=other(assigned(user))), ev(user)]})
    r = client.post(f"/v1/events/beacon?key={keys['client']}", content=body, headers={"Content-Type": "text/plain"})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert [x["code"] for x in r.json()["refused"]] == ["variant_mismatch"]


def test_events_without_variant_outside_coverage_and_forced_variants(api) -> None:
    client, keys = api
    half = Assigner.from_experiment(SPEC.model_copy(update={"key": "half", "coverage": 0.5}))
    outside = next(u for u in (f"out-{i}" for i in range(1000)) if not half.assign(u).in_experiment)
    inside = next(u for u in (f"in-{i}" for i in range(1000)) if half.assign(u).in_experiment)
    answer = client.get("/v1/experiments/half/assignment", params={"user_id": outside}).json()
    assert answer["variant"] is None and answer["exposure_id"] is None  # outside: logs nothing
    r = post(client, [
        {**ev(outside, experiment="half"), "variant": None},  # no variant claimed: kept
        {**ev(outside, experiment="half", type="exposure"), "variant": None},  # outside coverage: kept
        {**ev(outside, experiment="half"), "variant": "control"},  # outside, yet names a variant
        {**ev(inside, experiment="half"), "variant": half.assign(inside).variant},
        {**ev("anyone"), "variant": None, "type": "inquiry"},
    ])
    body = r.json()
    assert body["accepted"] == 4 and [(x["index"], x["code"]) for x in body["refused"]] == [(2, "variant_mismatch")]
    assert "outside the experiment" in body["refused"][0]["message"]

    # QA: an admin forces the other variant; that logs no exposure, and the page's events naming
    # the forced variant are refused (a QA view is not data).
    qa = "qa-visitor"
    forced = other(assigned(qa))
    shown = client.get(f"/v1/experiments/{EXP}/assignment", params={"user_id": qa, "force_variant": forced},
                       headers={"Authorization": f"Bearer {keys['admin']}"}).json()
    assert shown["variant"] == forced and shown["exposure_id"] is None
    r = post(client, [ev(qa, variant=forced)])
    assert r.json()["accepted"] == 0 and r.json()["refused"][0]["code"] == "variant_mismatch"
    assert rows(client, "SELECT count(*) FROM events WHERE user_id = ?", [qa]) == [(0,)]


# -- segments on client exposures ----------------------------------------------------------------------


def test_client_exposures_carry_only_declared_segments(api) -> None:
    client, _ = api
    u = "segmented"
    r = post(client, [
        ev(u, type="exposure", properties={"device": "mobile", "category": "pumps"}),  # the report's own
        ev(u, type="exposure", properties={"plan": "pro"}),  # not a segment of this experiment
        ev(u, type="exposure", properties={"bot": False}),  # the server's flag, never a client's
        ev(u, properties={"source": "page", "plan": "pro"}),  # page views: free-form
        {**ev(u, type="exposure", properties={"plan": "pro", "device": "mobile"}), "experiment": "planned"},
    ])
    body = r.json()
    assert body["accepted"] == 3
    assert [(x["index"], x["code"], x["field"]) for x in body["refused"]] == [
        (1, "undeclared_segment", "events[1].properties.plan"), (2, "undeclared_segment", "events[2].properties.bot")]
    assert "category, device" in body["refused"][0]["message"]


# -- strict types, ts bounds, control characters ---------------------------------------------------------


@pytest.mark.parametrize("value", ["100", True, False, "1e3"])
def test_a_value_must_be_a_json_number(shared, value) -> None:
    client, _ = shared
    u = f"typed-{value!r}"
    error_of(post(client, [ev(u, type="dwell", value=value)]), 422, "validation_error", "events[0].value")
    error_of(post(client, [ev(u, type="inquiry", value=value)]), 422, "validation_error", "events[0].value")
    # JSON numbers, integers included, stay accepted.
    r = post(client, [ev(u, type="dwell", value=100), ev(u, type="dwell", value=1500.5), ev(u, type="inquiry", value=0)])
    assert r.json() == {"accepted": 3, "duplicates": 0}
    assert sorted(v for (v,) in rows(client, "SELECT value FROM events WHERE user_id = ?", [u])) == [0.0, 100.0, 1500.5]


def test_ts_bounds(api) -> None:
    client, _ = api
    now = datetime.now(UTC)
    u = "clock"
    for ts in ("0001-01-01T00:00:00Z", "1999-12-31T23:59:59Z", (now + timedelta(hours=1)).isoformat()):
        error = error_of(post(client, [ev(u, ts=ts)]), 422, "validation_error", "events[0]")  # as for dwell ranges
        assert "ts is" in error["message"]
    r = post(client, [ev(u, ts=(now - timedelta(days=3)).isoformat()),  # before the experiment existed
                      ev(u, ts=(now - timedelta(hours=12)).isoformat()),  # within a day of its creation
                      ev(u, ts=(now + timedelta(minutes=1)).isoformat())])  # a slightly fast clock
    body = r.json()
    assert body["accepted"] == 2 and [(x["index"], x["code"], x["field"]) for x in body["refused"]] == [
        (0, "ts_out_of_range", "events[0].ts")]


@pytest.mark.parametrize("bad", ["a\x00b", "tab\there", "esc\x1b[31m", "del\x7f", "c1\x85", "\n"])
@pytest.mark.parametrize("field", ["user_id", "item_id", "experiment", "variant"])
def test_ids_with_control_characters_are_refused(shared, field, bad) -> None:
    client, _ = shared
    error_of(post(client, [ev("ctl", **{field: bad})]), 422, "validation_error", f"events[0].{field}")
    control = next(c for c in bad if ord(c) < 32 or 127 <= ord(c) <= 159)
    error_of(post(client, [ev("ctl", event_id=str(uuid.uuid4())[:-1] + control)]), 422, "validation_error",
             "events[0].event_id")  # a UUID, always: no control character gets in there either


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("param", ["user_id", "item_id", "force_variant"])
def test_query_ids_with_control_characters_are_refused(tmp_path: Path, fast: bool, param: str) -> None:
    db = tmp_path / "q.duckdb"
    keys = seed_database(db)
    with TestClient(create_app(ServerSettings(db_path=db, fast_path=fast))) as client:
        params = {"user_id": "fine", "item_id": "pumps-01", param: "x\x00y"}
        for path in ("assignment", "content"):
            r = client.get(f"/v1/experiments/{EXP}/{path}", params=params,
                           headers={"Authorization": f"Bearer {keys['admin']}"})
            error_of(r, 422, "validation_error", param)
        assert rows(client, "SELECT count(*) FROM events") == [(0,)]


# -- sources --------------------------------------------------------------------------------------------


def test_every_row_records_its_source(api) -> None:
    client, _ = api
    server_user, client_user, redelivered = "src-server", "src-client", "src-redelivered"
    assert client.get(f"/v1/experiments/{EXP}/assignment", params={"user_id": server_user}).status_code == 200
    fixed = exposure_event_id(EXP, 0, redelivered)  # the id the server answers (armor-ab.js re-sends it)
    r = post(client, [ev(client_user, type="exposure"), ev(client_user),
                      ev(redelivered, type="exposure", event_id=fixed, item_id="pumps-01")],
             **{"User-Agent": MOBILE_UA})
    assert r.json() == {"accepted": 3, "duplicates": 0}
    stored = {}
    for _ in range(100):  # the server's own exposure is queued, committed within a flush
        stored = {(u, t): (s, p) for u, t, s, p in rows(
            client, "SELECT user_id, type, source, properties::VARCHAR FROM events WHERE user_id LIKE 'src-%'")}
        if (server_user, "exposure") in stored:
            break
        time.sleep(0.05)
    assert stored[(server_user, "exposure")][0] == "server"
    assert stored[(client_user, "exposure")] == ("client", None)
    assert stored[(client_user, "page_view")] == ("client", None)
    source, props = stored[(redelivered, "exposure")]
    assert source == "server" and json.loads(props) == {"device": "mobile", "category": "pumps"}


def test_import_keeps_its_variants_with_source_import(tmp_path: Path) -> None:
    db = tmp_path / "imp.duckdb"
    seed_database(db)
    user = "imported-1"
    historical = [  # an admin's file: a variant the server would not assign, a time before the experiment
        {**ev(user, type="exposure", variant=other(assigned(user)), properties={"plan": "pro"}),
         "ts": "2026-01-05T10:00:00Z"},
        {**ev(user, variant=other(assigned(user))), "ts": "2026-01-05T10:01:00Z"},
    ]
    f = tmp_path / "events.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in historical) + "\n")
    r = CliRunner().invoke(cli_app, ["events", "import", str(f), "--db", str(db)])
    assert r.exit_code == 0, r.output
    con = duckdb.connect(str(db), read_only=True)
    try:
        stored = con.execute("SELECT variant, source FROM events WHERE user_id = ?", [user]).fetchall()
    finally:
        con.close()
    assert stored == [(other(assigned(user)), "import")] * 2

    bad = tmp_path / "bad.jsonl"  # the model's checks hold for imports too
    bad.write_text(json.dumps({**ev(user, type="dwell", value="100")}) + "\n")
    r = CliRunner().invoke(cli_app, ["events", "import", str(bad), "--db", str(db)])
    assert r.exit_code != 0 and "value" in r.output


# -- the analysis: which exposures let a visitor in -------------------------------------------------------


def test_the_analysis_counts_visitors_the_server_vouches_for() -> None:
    """A: server exposure; B: client exposures only; C: a client exposure (its real time) before the
    server's; D: a row from before sources were recorded (NULL); E: an import."""
    start = datetime(2026, 11, 2, 9, tzinfo=UTC)
    con = duckdb.connect(":memory:")
    ensure_schema(con)
    rows_ = []

    def add(user, typ, minutes, source, variant="control"):
        ts = start + timedelta(minutes=minutes)
        rows_.append([str(uuid.uuid4()), "x", variant if typ == "exposure" else None, user, None, typ, None, ts, ts,
                      None, source])

    add("A", "exposure", 10, "server")
    add("B", "exposure", 10, "client")
    add("B", "exposure", 20, "client")
    add("C", "exposure", 10, "client")
    add("C", "page_view", 15, "client")  # after the client exposure, before the server's: counts
    add("C", "exposure", 30, "server")
    add("D", "exposure", 10, None)
    add("E", "exposure", 10, "import")
    for user in "ABDE":
        add(user, "page_view", 40, "client")
    con.executemany(f"INSERT INTO events ({ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows_)
    end = start + timedelta(hours=5)
    server = load_sums(con, "x", start=start, end=end, exposures="server", variants=["control", "armor"], caps={})
    anyone = load_sums(con, "x", start=start, end=end, exposures="any", variants=["control", "armor"], caps={})
    assert server.totals["control"].n == 4 and server.client_only_visitors == 1
    assert anyone.totals["control"].n == 5 and anyone.client_only_visitors == 0
    assert server.totals["control"]["s_views"] == 4  # C's page view counts from its (earlier) client exposure
    assert anyone.totals["control"]["s_views"] == 5
    con.close()
    with pytest.raises(ValueError, match="exposures"):
        load_sums(duckdb.connect(":memory:"), "x", start=start, end=end, exposures="clients")
